//! The value matchers of AuthorizationPolicy fields: Istio's string wildcards, IP/CIDR blocks,
//! ports and Envoy URI templates for `paths`. Plain data (serde), so a compiled policy travels
//! to the proxy as JSON.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// A string pattern with Istio's wildcard rules.
///
/// istio.io `authorization-policy` reference: "Exact match: `abc` will match on value `abc`.
/// Prefix match: `abc*` will match on value `abc` and `abcd`. Suffix match: `*abc` will match on
/// value `abc` and `xabc`. Presence match: `*` will match when value is not empty."
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StringMatch {
    /// The whole value.
    Exact(String),
    /// `abc*`.
    Prefix(String),
    /// `*abc`.
    Suffix(String),
    /// `*`: any non-empty value.
    Presence,
}

impl StringMatch {
    /// Parses Istio's pattern syntax. `*` alone is presence (checked first, so that it is not
    /// read as an empty prefix or suffix); a leading `*` is a suffix match, a trailing one a
    /// prefix match.
    pub fn parse(pattern: &str) -> StringMatch {
        if pattern == "*" {
            StringMatch::Presence
        } else if let Some(suffix) = pattern.strip_prefix('*') {
            StringMatch::Suffix(suffix.to_owned())
        } else if let Some(prefix) = pattern.strip_suffix('*') {
            StringMatch::Prefix(prefix.to_owned())
        } else {
            StringMatch::Exact(pattern.to_owned())
        }
    }

    /// Whether `value` matches, case-sensitively.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            StringMatch::Exact(exact) => value == exact,
            StringMatch::Prefix(prefix) => value.starts_with(prefix.as_str()),
            StringMatch::Suffix(suffix) => value.ends_with(suffix.as_str()),
            StringMatch::Presence => !value.is_empty(),
        }
    }

    /// Whether `value` matches, ignoring ASCII case (`hosts`: "the match is case-insensitive").
    pub fn matches_ignore_case(&self, value: &str) -> bool {
        let value = value.as_bytes();
        match self {
            StringMatch::Exact(exact) => value.eq_ignore_ascii_case(exact.as_bytes()),
            StringMatch::Prefix(prefix) => value
                .get(..prefix.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes())),
            StringMatch::Suffix(suffix) => value
                .len()
                .checked_sub(suffix.len())
                .and_then(|start| value.get(start..))
                .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix.as_bytes())),
            StringMatch::Presence => !value.is_empty(),
        }
    }
}

/// An IP address or CIDR block (`ipBlocks`, `remoteIpBlocks`, `source.ip`, `destination.ip`).
/// Istio: "Single IP (e.g. `203.0.113.4`) and CIDR (e.g. `203.0.113.0/24`) are supported";
/// no wildcards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpBlock {
    /// The network address.
    pub address: IpAddr,
    /// The prefix length (32 or 128 for a single address).
    pub prefix_len: u8,
}

impl IpBlock {
    /// Parses `IP` or `IP/LEN`; `None` when malformed. Like Go's `netip.ParsePrefix` (which
    /// Istio validates with), the length is plain decimal digits without a sign or a leading
    /// zero, and host bits may be set (`10.0.0.1/24` is the block `10.0.0.0/24`).
    pub fn parse(text: &str) -> Option<IpBlock> {
        let (address, prefix_len) = match text.split_once('/') {
            None => {
                let address: IpAddr = text.parse().ok()?;
                (address, max_len(address))
            }
            Some((ip, len)) => {
                let digits = !len.is_empty() && len.bytes().all(|b| b.is_ascii_digit());
                if !digits || (len.len() > 1 && len.starts_with('0')) {
                    return None;
                }
                (ip.parse().ok()?, len.parse().ok()?)
            }
        };
        (prefix_len <= max_len(address)).then_some(IpBlock {
            address,
            prefix_len,
        })
    }

    /// Whether `ip` lies in the block. Addresses of the other family never do.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.address, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// A port written as a string (`ports`, `notPorts`, `destination.port`): decimal digits only
/// (Go's `strconv.ParseUint` takes no sign), 1–65535.
pub fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u16>().ok().filter(|port| *port != 0)
}

fn max_len(address: IpAddr) -> u8 {
    match address {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// A `paths` entry: a wildcard string, or an Envoy URI template.
///
/// istio/api: "`paths` also support `{*}` and `{**}` ... `{*}` matches a single glob that cannot
/// extend beyond a path segment; `{**}` matches zero or more globs, may span path segments and
/// must be the last operator."
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PathMatch {
    /// Exact, prefix, suffix or presence.
    String(StringMatch),
    /// A URI template, as tokens.
    Template(Vec<TemplateToken>),
}

/// One piece of a URI template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TemplateToken {
    /// Text that must appear as is.
    Literal(String),
    /// `{*}`: one or more path characters, not `/`.
    Segment,
    /// `{**}`: zero or more path characters, `/` included.
    Segments,
}

impl PathMatch {
    /// Parses a `paths` value; `Err` names what is wrong with a template.
    ///
    /// istio `pkg/config/security` CheckValidPathTemplate: a path that contains `{*}` or `{**}`
    /// is a template, and every segment between `/` must be `{*}`, `{**}` or a literal of RFC
    /// 3986 path characters (so no `*` wildcard); `{**}` must be the last operator; `{` or `}`
    /// anywhere else is invalid ("/foo/{*}.txt", "/{**}/{*}", "/a/{id}" are all rejected).
    /// Envoy's URI template parser further requires the leading `/` and no empty segment but a
    /// single trailing `/`.
    pub fn parse(pattern: &str) -> Result<PathMatch, String> {
        let template = pattern.contains("{*}") || pattern.contains("{**}");
        if !template {
            if pattern.contains('{') || pattern.contains('}') {
                return Err(
                    "`{` or `}` outside a `{*}` or `{**}` operator is not a supported path \
                     template"
                        .to_owned(),
                );
            }
            return Ok(PathMatch::String(StringMatch::parse(pattern)));
        }
        let Some(rest) = pattern.strip_prefix('/') else {
            return Err("a path template must start with `/`".to_owned());
        };
        let segments: Vec<&str> = rest.split('/').collect();
        let last = segments.len().saturating_sub(1);
        let mut tokens = Vec::new();
        let mut literal = String::from("/");
        let mut seen_segments = false;
        for (i, segment) in segments.iter().enumerate() {
            if i > 0 {
                literal.push('/');
            }
            let operator = match *segment {
                "{*}" => Some(TemplateToken::Segment),
                "{**}" => Some(TemplateToken::Segments),
                _ => None,
            };
            match operator {
                Some(_) if seen_segments => {
                    return Err("`{**}` must be the last operator".to_owned());
                }
                Some(token) => {
                    seen_segments = token == TemplateToken::Segments;
                    tokens.push(TemplateToken::Literal(std::mem::take(&mut literal)));
                    tokens.push(token);
                }
                // A single trailing `/` is allowed.
                None if segment.is_empty() && i == last && i > 0 => {}
                None if segment.contains('{') || segment.contains('}') => {
                    return Err(format!(
                        "segment `{segment}`: `{{` or `}}` outside a whole-segment `{{*}}` or \
                         `{{**}}` operator"
                    ));
                }
                None if !segment.chars().all(|c| path_char(c) || c == '=')
                    || segment.is_empty() =>
                {
                    return Err(format!(
                        "segment `{segment}` is not a valid literal in a path template (RFC 3986 \
                         path characters only, no `*` wildcard, no empty segment)"
                    ));
                }
                None => literal.push_str(segment),
            }
        }
        if !literal.is_empty() {
            tokens.push(TemplateToken::Literal(literal));
        }
        tokens.retain(|t| !matches!(t, TemplateToken::Literal(text) if text.is_empty()));
        Ok(PathMatch::Template(tokens))
    }

    /// Whether `path` (normalized, without the query string) matches.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::String(string) => string.matches(path),
            PathMatch::Template(tokens) => template_matches(tokens, path),
        }
    }
}

/// Envoy `uri_template_internal.cc` kLiteral: `{*}` is `[a-zA-Z0-9-._~%!$&'()+,;:@]+` (RFC 3986
/// unreserved, percent-encodings, the sub-delims but `*` and `=`, `:` and `@`); `{**}` is the
/// same set plus `/`, zero or more times.
fn path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~%!$&'()+,;:@".contains(c)
}

fn template_matches(tokens: &[TemplateToken], path: &str) -> bool {
    let Some((first, rest)) = tokens.split_first() else {
        return path.is_empty();
    };
    match first {
        TemplateToken::Literal(text) => path
            .strip_prefix(text.as_str())
            .is_some_and(|tail| template_matches(rest, tail)),
        TemplateToken::Segment | TemplateToken::Segments => {
            let slash = matches!(first, TemplateToken::Segments);
            let min = usize::from(!slash);
            // Try every length the variable can take, longest span of path characters first.
            let span = path
                .char_indices()
                .find(|(_, c)| !(path_char(*c) || (slash && *c == '/')))
                .map_or(path.len(), |(i, _)| i);
            (min..=span)
                .rev()
                .filter(|end| path.is_char_boundary(*end))
                .any(|end| template_matches(rest, &path[end..]))
        }
    }
}
