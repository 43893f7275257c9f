//! Trust bundles: the root certificates of each trust domain.
//!
//! A domain may hold several roots at once, so that a root rotation overlaps old and new. Loading
//! a PEM bundle reports and skips each bad certificate, but a bundle with no usable root at all
//! is an error: an empty bundle would silently trust nothing, and skipping the check would trust
//! anything.

use std::collections::BTreeMap;
use std::fmt;

use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, TrustAnchor};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::id::TrustDomain;
use crate::revocation::Revocations;

/// Why a trust bundle could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The input held no PEM `CERTIFICATE` section at all.
    #[error("no PEM certificate found")]
    NoCertificates,
    /// Every certificate in the input was unusable.
    #[error("no usable root certificate: {}", join(skipped))]
    NoUsableRoots {
        /// Why each one was skipped.
        skipped: Vec<SkippedCert>,
    },
    /// A root given as DER is unusable (strict constructors refuse instead of skipping).
    #[error("{0}")]
    BadRoot(SkippedCert),
}

fn join(skipped: &[SkippedCert]) -> String {
    skipped
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// One PEM section that was not loaded as a root, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedCert {
    /// 1-based position of the PEM section in the input.
    pub position: usize,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for SkippedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PEM section #{}: {}", self.position, self.reason)
    }
}

// === impl TrustBundle ===

/// The roots of one trust domain.
#[derive(Debug, Clone)]
pub struct TrustBundle {
    trust_domain: TrustDomain,
    roots: Vec<CertificateDer<'static>>,
    anchors: Vec<TrustAnchor<'static>>,
}

impl TrustBundle {
    /// Builds a bundle from DER roots; any unusable root is an error.
    pub fn new(
        trust_domain: TrustDomain,
        roots: impl IntoIterator<Item = CertificateDer<'static>>,
    ) -> Result<Self, BundleError> {
        let mut bundle = Self {
            trust_domain,
            roots: Vec::new(),
            anchors: Vec::new(),
        };
        for (i, root) in roots.into_iter().enumerate() {
            bundle.add_root(root).map_err(|reason| {
                BundleError::BadRoot(SkippedCert {
                    position: i + 1,
                    reason,
                })
            })?;
        }
        if bundle.roots.is_empty() {
            return Err(BundleError::NoCertificates);
        }
        Ok(bundle)
    }

    /// Loads every `CERTIFICATE` section of a PEM bundle. Bad sections are skipped and returned
    /// so the caller can report them; no usable root at all is an error.
    pub fn from_pem(
        trust_domain: TrustDomain,
        pem: &[u8],
    ) -> Result<(Self, Vec<SkippedCert>), BundleError> {
        let mut bundle = Self {
            trust_domain,
            roots: Vec::new(),
            anchors: Vec::new(),
        };
        let mut skipped = Vec::new();
        let mut seen = 0;
        // A base64 error ends only its own section: the iterator resumes after its END line.
        for (i, section) in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem).enumerate() {
            seen += 1;
            let result = match section {
                Ok((SectionKind::Certificate, der)) => bundle.add_root(CertificateDer::from(der)),
                Ok((kind, _)) => Err(format!("a {kind:?} section is not a certificate")),
                Err(err) => Err(format!("malformed PEM: {err}")),
            };
            if let Err(reason) = result {
                skipped.push(SkippedCert {
                    position: i + 1,
                    reason,
                });
            }
        }
        if seen == 0 {
            return Err(BundleError::NoCertificates);
        }
        if bundle.roots.is_empty() {
            return Err(BundleError::NoUsableRoots { skipped });
        }
        Ok((bundle, skipped))
    }

    /// Adds one more root (e.g. the next root during a rotation). Returns why it is unusable.
    pub fn add_root(&mut self, root: CertificateDer<'static>) -> Result<(), String> {
        check_root(&root)?;
        let anchor = webpki::anchor_from_trusted_cert(&root)
            .map_err(|err| format!("not usable as a trust anchor: {err}"))?
            .to_owned();
        if !self.roots.contains(&root) {
            self.roots.push(root);
            self.anchors.push(anchor);
        }
        Ok(())
    }

    /// The trust domain these roots vouch for.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The root certificates, in load order.
    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }

    pub(crate) fn anchors(&self) -> &[TrustAnchor<'static>] {
        &self.anchors
    }
}

/// A root must be a well-formed X.509 CA certificate; anything else in a bundle is a mistake.
fn check_root(der: &CertificateDer<'_>) -> Result<(), String> {
    let (rest, cert) = X509Certificate::from_der(der.as_ref())
        .map_err(|err| format!("not an X.509 certificate: {err}"))?;
    if !rest.is_empty() {
        return Err("trailing bytes after the certificate".to_owned());
    }
    if !cert.is_ca() {
        return Err(format!(
            "`{}` is not a CA certificate (basicConstraints CA:TRUE missing)",
            cert.subject()
        ));
    }
    Ok(())
}

// === impl TrustBundleSet ===

/// The bundles of every trust domain a workload trusts, keyed by trust domain, and the
/// identities and certificates it no longer accepts whatever their chain says.
#[derive(Debug, Clone, Default)]
pub struct TrustBundleSet {
    bundles: BTreeMap<TrustDomain, TrustBundle>,
    revocations: Revocations,
}

impl TrustBundleSet {
    /// An empty set: trusts no one.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a bundle, replacing any previous bundle of the same trust domain.
    pub fn insert(&mut self, bundle: TrustBundle) {
        self.bundles.insert(bundle.trust_domain.clone(), bundle);
    }

    /// The bundle of a trust domain, if trusted.
    pub fn get(&self, trust_domain: &TrustDomain) -> Option<&TrustBundle> {
        self.bundles.get(trust_domain)
    }

    /// Every bundle, ordered by trust domain.
    pub fn iter(&self) -> impl Iterator<Item = &TrustBundle> {
        self.bundles.values()
    }

    /// Replaces the revoked identities and certificates: verification refuses them from now on.
    pub fn set_revocations(&mut self, revocations: Revocations) {
        self.revocations = revocations;
    }

    /// The revoked identities and certificates.
    pub fn revocations(&self) -> &Revocations {
        &self.revocations
    }

    /// The same roots with nothing revoked (to check a workload's own certificate, which stays
    /// in use for its outbound calls even when others refuse it).
    pub fn without_revocations(&self) -> Self {
        Self {
            bundles: self.bundles.clone(),
            revocations: Revocations::new(),
        }
    }

    /// Whether both sets hold the same roots for the same trust domains and revoke the same.
    pub fn same_trust(&self, other: &Self) -> bool {
        self.revocations == other.revocations
            && self.bundles.len() == other.bundles.len()
            && self
                .bundles
                .iter()
                .zip(other.bundles.iter())
                .all(|((a, x), (b, y))| a == b && x.roots() == y.roots())
    }
}

impl From<TrustBundle> for TrustBundleSet {
    fn from(bundle: TrustBundle) -> Self {
        let mut set = Self::new();
        set.insert(bundle);
        set
    }
}

#[cfg(test)]
mod tests;
