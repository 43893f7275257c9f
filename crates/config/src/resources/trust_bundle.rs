//! Meshward's own `meshward.io/v1alpha1` TrustBundle: the roots of another trust domain whose
//! workloads this mesh accepts (declared SPIFFE federation, what Istio's
//! `meshConfig.caCertificates[].trustDomains` does for one domain at a time).
//!
//! A peer naming `spiffe://<trustDomain>/…` is verified against these roots, and only when a
//! TrustBundle names its trust domain; several TrustBundles for one trust domain add up. The
//! bundle is mesh-wide whatever namespace it lives in.

use serde::{Deserialize, Serialize};

/// Largest `roots` accepted (a bundle travels with every proxy's view).
pub const MAX_ROOTS_BYTES: usize = 256 * 1024;

/// `spec` of a TrustBundle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrustBundleSpec {
    /// The trust domain these roots vouch for, e.g. `eu.cluster.local`.
    #[serde(default)]
    pub trust_domain: String,
    /// Its root certificates, PEM: one or more `CERTIFICATE` blocks.
    #[serde(default)]
    pub roots: String,
}

/// What is wrong with a trust domain name, per the SPIFFE ID specification (lower-case
/// letters, digits, `.`, `-`, `_`; at most 255 bytes), `None` when it is fine.
pub fn trust_domain_problem(td: &str) -> Option<String> {
    if td.is_empty() {
        return Some("a trust domain is required".to_owned());
    }
    if td.len() > 255 {
        return Some(format!("{} bytes long; the limit is 255", td.len()));
    }
    td.chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '-' | '_'))
        .map(|c| {
            format!(
                "contains {c:?}: a trust domain has only lower-case letters, digits, `.`, `-` and `_`"
            )
        })
}

/// What is wrong with a PEM bundle of roots, `None` when every block is a complete
/// `CERTIFICATE` (the certificates themselves are checked where they are used).
pub fn roots_problem(pem: &str) -> Option<String> {
    if pem.len() > MAX_ROOTS_BYTES {
        return Some(format!(
            "{} bytes; the limit is {MAX_ROOTS_BYTES}",
            pem.len()
        ));
    }
    let mut certificates = 0;
    let mut open: Option<&str> = None;
    for line in pem.lines().map(str::trim) {
        if let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            if open.is_some() {
                return Some(format!("`BEGIN {label}` inside another block"));
            }
            if label != "CERTIFICATE" {
                return Some(format!(
                    "a {label} block does not belong in a trust bundle (only CERTIFICATE)"
                ));
            }
            open = Some(label);
        } else if let Some(label) = line
            .strip_prefix("-----END ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            if open != Some(label) {
                return Some(format!("`END {label}` without its BEGIN"));
            }
            open = None;
            certificates += 1;
        } else if open.is_some()
            && !line
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='))
        {
            return Some("a CERTIFICATE block holds something other than base64".to_owned());
        }
    }
    if open.is_some() {
        return Some("the last CERTIFICATE block is not closed".to_owned());
    }
    (certificates == 0).then(|| "no PEM CERTIFICATE found".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_trust_domains_and_roots() {
        assert_eq!(trust_domain_problem("eu.cluster.local"), None);
        assert!(trust_domain_problem("").is_some());
        assert!(trust_domain_problem("EU.local").is_some());
        assert!(trust_domain_problem("eu.local:443").is_some());
        let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        assert_eq!(roots_problem(cert), None);
        assert_eq!(roots_problem(&format!("{cert}{cert}")), None);
        assert!(roots_problem("").is_some());
        assert!(
            roots_problem("-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n")
                .unwrap()
                .contains("PRIVATE KEY")
        );
        assert!(roots_problem("-----BEGIN CERTIFICATE-----\nMIIB\n").is_some());
        assert!(
            roots_problem("-----BEGIN CERTIFICATE-----\nMI IB!\n-----END CERTIFICATE-----")
                .is_some()
        );
    }
}
