//! SPIFFE IDs and trust domains, parsed strictly per the SPIFFE-ID specification, with Istio's
//! `spiffe://<td>/ns/<ns>/sa/<sa>` form and the principal form AuthorizationPolicy uses.
//!
//! Strict means rejected, never normalised: an upper-case trust domain, `%`-escapes, a port,
//! userinfo, a query or a fragment are errors, because two spellings of one identity would let
//! a policy written for one miss the other.

use std::fmt;
use std::str::FromStr;

/// The only scheme a SPIFFE ID may have (lower case: the spec does not allow `SPIFFE://`).
const SCHEME: &str = "spiffe://";
/// Maximum length of a whole SPIFFE ID in bytes (SPIFFE-ID spec, section 2.3).
const MAX_ID_LEN: usize = 2048;
/// Maximum length of a trust domain name in bytes (SPIFFE-ID spec, section 2.1).
const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// Why a string is not a valid SPIFFE ID, trust domain or principal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The input was empty.
    #[error("SPIFFE ID is empty")]
    Empty,
    /// The input is longer than the spec allows.
    #[error("SPIFFE ID is {len} bytes long; the limit is {MAX_ID_LEN}")]
    TooLong {
        /// Length of the input in bytes.
        len: usize,
    },
    /// The input does not start with `spiffe://`.
    #[error("SPIFFE ID must start with `spiffe://` (lower case)")]
    WrongScheme,
    /// Nothing between `spiffe://` and the path.
    #[error("SPIFFE ID has no trust domain")]
    MissingTrustDomain,
    /// The trust domain is longer than the spec allows.
    #[error("trust domain is {len} bytes long; the limit is {MAX_TRUST_DOMAIN_LEN}")]
    TrustDomainTooLong {
        /// Length of the trust domain in bytes.
        len: usize,
    },
    /// A character outside `a-z 0-9 . - _` in the trust domain.
    #[error("trust domain contains {ch:?}: only a-z, 0-9, `.`, `-` and `_` are allowed{}", hint(*ch))]
    TrustDomainChar {
        /// The offending character.
        ch: char,
    },
    /// A trust domain was given with its `spiffe://` scheme where a bare name was expected.
    #[error("trust domain must be a bare name such as `cluster.local`, without `spiffe://`")]
    TrustDomainHasScheme,
    /// A character outside `a-z A-Z 0-9 . - _` in a path segment.
    #[error("path contains {ch:?}: only a-z, A-Z, 0-9, `.`, `-` and `_` are allowed in segments{}", hint(*ch))]
    PathChar {
        /// The offending character.
        ch: char,
    },
    /// `//` in the path.
    #[error("path has an empty segment (`//`)")]
    EmptySegment,
    /// The path ends with `/`.
    #[error("path ends with `/`")]
    TrailingSlash,
    /// A `.` or `..` segment.
    #[error("path segment `{segment}` is not allowed")]
    DotSegment {
        /// `.` or `..`.
        segment: &'static str,
    },
    /// A principal (`<td>/ns/<ns>/sa/<sa>`) was given with its `spiffe://` scheme.
    #[error(
        "a principal has no scheme: write `<trust-domain>/ns/<ns>/sa/<sa>` without `spiffe://`"
    )]
    PrincipalHasScheme,
}

/// A short explanation for characters people commonly try to use.
fn hint(ch: char) -> &'static str {
    match ch {
        ':' => " (a port is not allowed)",
        '@' => " (userinfo is not allowed)",
        '?' => " (a query is not allowed)",
        '#' => " (a fragment is not allowed)",
        '%' => " (percent-encoding is not allowed)",
        'A'..='Z' => " (trust domains are lower case)",
        _ => "",
    }
}

// === impl TrustDomain ===

/// A SPIFFE trust domain such as `cluster.local`: the scope of one root of trust.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrustDomain(String);

impl TrustDomain {
    /// Parses a bare trust domain name (`cluster.local`, not `spiffe://cluster.local`).
    pub fn new(name: &str) -> Result<Self, IdError> {
        if name.starts_with(SCHEME) {
            return Err(IdError::TrustDomainHasScheme);
        }
        validate_trust_domain(name)?;
        Ok(Self(name.to_owned()))
    }

    /// The name, e.g. `cluster.local`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The SPIFFE ID of the trust domain itself (`spiffe://<td>`, no path), which CA
    /// certificates may carry.
    pub fn to_spiffe_id(&self) -> SpiffeId {
        SpiffeId {
            trust_domain: self.clone(),
            path: String::new(),
        }
    }
}

impl FromStr for TrustDomain {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn validate_trust_domain(name: &str) -> Result<(), IdError> {
    if name.is_empty() {
        return Err(IdError::MissingTrustDomain);
    }
    if name.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(IdError::TrustDomainTooLong { len: name.len() });
    }
    match name
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '-' | '_'))
    {
        Some(ch) => Err(IdError::TrustDomainChar { ch }),
        None => Ok(()),
    }
}

fn validate_path(path: &str) -> Result<(), IdError> {
    if path.is_empty() {
        return Ok(());
    }
    if path.ends_with('/') {
        return Err(IdError::TrailingSlash);
    }
    // The path starts with `/` (the caller split on it), so the first element is empty.
    for segment in path.split('/').skip(1) {
        match segment {
            "" => return Err(IdError::EmptySegment),
            "." => return Err(IdError::DotSegment { segment: "." }),
            ".." => return Err(IdError::DotSegment { segment: ".." }),
            _ => {}
        }
        if let Some(ch) = segment
            .chars()
            .find(|c| !matches!(c, 'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_'))
        {
            return Err(IdError::PathChar { ch });
        }
    }
    Ok(())
}

// === impl SpiffeId ===

/// A SPIFFE ID, `spiffe://<trust-domain>[/<path>]`, validated at construction.
///
/// Ordering and equality are on the exact (canonical) text, since strict parsing leaves only one
/// spelling of each identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpiffeId {
    trust_domain: TrustDomain,
    /// Empty, or `/seg(/seg)*`.
    path: String,
}

impl SpiffeId {
    /// Builds Istio's identity for a service account: `spiffe://<td>/ns/<ns>/sa/<sa>`.
    pub fn istio(
        trust_domain: &TrustDomain,
        namespace: &str,
        service_account: &str,
    ) -> Result<Self, IdError> {
        // A `/` inside a part would still make a valid path, but not Istio's form.
        if namespace.contains('/') || service_account.contains('/') {
            return Err(IdError::PathChar { ch: '/' });
        }
        let path = format!("/ns/{namespace}/sa/{service_account}");
        validate_path(&path)?;
        Ok(Self {
            trust_domain: trust_domain.clone(),
            path,
        })
    }

    /// Parses the principal form used by AuthorizationPolicy, `<td>/ns/<ns>/sa/<sa>` (any
    /// SPIFFE path is accepted; it is the ID without `spiffe://`).
    pub fn from_principal(principal: &str) -> Result<Self, IdError> {
        if principal.starts_with(SCHEME) {
            return Err(IdError::PrincipalHasScheme);
        }
        format!("{SCHEME}{principal}").parse()
    }

    /// The principal form, `<td>/ns/<ns>/sa/<sa>`: this ID without `spiffe://`.
    pub fn to_principal(&self) -> String {
        format!("{}{}", self.trust_domain, self.path)
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The path, empty or starting with `/`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The namespace when the path is exactly Istio's `/ns/<ns>/sa/<sa>`, else `None`.
    pub fn namespace(&self) -> Option<&str> {
        self.istio_parts().map(|(ns, _)| ns)
    }

    /// The service account when the path is exactly Istio's `/ns/<ns>/sa/<sa>`, else `None`.
    pub fn service_account(&self) -> Option<&str> {
        self.istio_parts().map(|(_, sa)| sa)
    }

    fn istio_parts(&self) -> Option<(&str, &str)> {
        let mut segments = self.path.strip_prefix('/')?.split('/');
        match (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) {
            (Some("ns"), Some(ns), Some("sa"), Some(sa), None) => Some((ns, sa)),
            _ => None,
        }
    }
}

impl FromStr for SpiffeId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        if s.len() > MAX_ID_LEN {
            return Err(IdError::TooLong { len: s.len() });
        }
        let rest = s.strip_prefix(SCHEME).ok_or(IdError::WrongScheme)?;
        let (td, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        validate_trust_domain(td)?;
        validate_path(path)?;
        Ok(Self {
            trust_domain: TrustDomain(td.to_owned()),
            path: path.to_owned(),
        })
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}{}", self.trust_domain, self.path)
    }
}

#[cfg(test)]
mod tests;
