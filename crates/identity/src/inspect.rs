//! What a certificate says, in the terms operators grep `openssl x509 -text` for: subject,
//! SPIFFE ID, SANs, issuer, serial, validity, key type, usages and CA flag.

use rustls_pki_types::CertificateDer;
use time::format_description::well_known::Rfc3339;
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::{OID_EC_P256, OID_NIST_EC_P384};
use x509_parser::prelude::X509Certificate;
use x509_parser::public_key::PublicKey;

use crate::svid::SvidError;

/// A readable summary of one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Subject DN (empty for Istio-style SVIDs).
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// Serial number, colon-separated hex.
    pub serial: String,
    /// The SPIFFE ID when the certificate has exactly one URI SAN and it is valid.
    pub spiffe_id: Option<String>,
    /// Every SAN, as `URI:…`, `DNS:…`, `IP:…` or `other`.
    pub sans: Vec<String>,
    /// Start of validity, RFC 3339.
    pub not_before: String,
    /// End of validity, RFC 3339.
    pub not_after: String,
    /// End of validity, seconds since the Unix epoch (to compute time left).
    pub not_after_unix: i64,
    /// `ECDSA P-256`, `ECDSA P-384`, `RSA 2048`, …
    pub key_type: String,
    /// keyUsage bits set, e.g. `digitalSignature`.
    pub key_usage: Vec<String>,
    /// extendedKeyUsage purposes, e.g. `serverAuth`.
    pub extended_key_usage: Vec<String>,
    /// basicConstraints CA:TRUE.
    pub is_ca: bool,
}

/// Summarises one DER certificate.
pub fn describe(der: &CertificateDer<'_>) -> Result<CertInfo, SvidError> {
    let cert = crate::svid::parse(der, 1)?;
    let rfc3339 = |t: x509_parser::time::ASN1Time| {
        t.to_datetime()
            .format(&Rfc3339)
            .unwrap_or_else(|_| t.to_string())
    };
    let validity = cert.validity();
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: cert
            .raw_serial()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
        spiffe_id: crate::svid::peer_spiffe_id(std::slice::from_ref(der))
            .ok()
            .map(|id| id.to_string()),
        sans: sans(&cert),
        not_before: rfc3339(validity.not_before),
        not_after: rfc3339(validity.not_after),
        not_after_unix: validity.not_after.timestamp(),
        key_type: key_type(&cert),
        key_usage: key_usage(&cert),
        extended_key_usage: extended_key_usage(&cert),
        is_ca: cert.is_ca(),
    })
}

fn sans(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::URI(uri) => format!("URI:{uri}"),
            GeneralName::DNSName(dns) => format!("DNS:{dns}"),
            GeneralName::RFC822Name(mail) => format!("email:{mail}"),
            GeneralName::IPAddress(ip) => format!("IP:{}", ip_text(ip)),
            _ => "other".to_owned(),
        })
        .collect()
}

fn ip_text(bytes: &[u8]) -> String {
    match bytes.len() {
        4 => bytes
            .iter()
            .map(u8::to_string)
            .collect::<Vec<_>>()
            .join("."),
        _ => bytes
            .chunks(2)
            .map(|pair| pair.iter().map(|b| format!("{b:02x}")).collect::<String>())
            .collect::<Vec<_>>()
            .join(":"),
    }
}

fn key_type(cert: &X509Certificate<'_>) -> String {
    let spki = cert.public_key();
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => format!("RSA {}", rsa.key_size()),
        Ok(PublicKey::EC(_)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok());
            match curve {
                Some(oid) if oid == OID_EC_P256 => "ECDSA P-256".to_owned(),
                Some(oid) if oid == OID_NIST_EC_P384 => "ECDSA P-384".to_owned(),
                Some(oid) => format!("ECDSA {oid}"),
                None => "ECDSA".to_owned(),
            }
        }
        _ => spki.algorithm.algorithm.to_id_string(),
    }
}

fn key_usage(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(ku)) = cert.key_usage() else {
        return Vec::new();
    };
    let ku = ku.value;
    [
        (ku.digital_signature(), "digitalSignature"),
        (ku.non_repudiation(), "nonRepudiation"),
        (ku.key_encipherment(), "keyEncipherment"),
        (ku.data_encipherment(), "dataEncipherment"),
        (ku.key_agreement(), "keyAgreement"),
        (ku.key_cert_sign(), "keyCertSign"),
        (ku.crl_sign(), "cRLSign"),
    ]
    .into_iter()
    .filter(|(set, _)| *set)
    .map(|(_, name)| name.to_owned())
    .collect()
}

fn extended_key_usage(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(eku)) = cert.extended_key_usage() else {
        return Vec::new();
    };
    let eku = eku.value;
    let mut out: Vec<String> = [
        (eku.server_auth, "serverAuth"),
        (eku.client_auth, "clientAuth"),
        (eku.code_signing, "codeSigning"),
        (eku.email_protection, "emailProtection"),
        (eku.any, "any"),
    ]
    .into_iter()
    .filter(|(set, _)| *set)
    .map(|(_, name)| name.to_owned())
    .collect();
    out.extend(eku.other.iter().map(|oid| oid.to_id_string()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_pki::{TestCa, leaf_params};

    #[test]
    fn describes_an_svid_and_a_ca() {
        let ca = TestCa::root("Test root");
        let (chain, _) = ca.leaf(&leaf_params("spiffe://cluster.local/ns/a/sa/b"));
        let leaf = describe(&chain[0]).unwrap();
        assert_eq!(
            leaf.spiffe_id.as_deref(),
            Some("spiffe://cluster.local/ns/a/sa/b")
        );
        assert_eq!(leaf.sans, ["URI:spiffe://cluster.local/ns/a/sa/b"]);
        assert_eq!(leaf.key_type, "ECDSA P-256");
        assert_eq!(leaf.key_usage, ["digitalSignature"]);
        assert_eq!(leaf.extended_key_usage, ["serverAuth", "clientAuth"]);
        assert!(!leaf.is_ca);
        assert_eq!(leaf.issuer, "CN=Test root");
        let root = describe(&ca.root).unwrap();
        assert!(root.is_ca);
        assert_eq!(root.spiffe_id, None);
        assert_eq!(root.key_usage, ["keyCertSign", "cRLSign"]);
        assert!(describe(&CertificateDer::from(vec![1, 2])).is_err());
    }
}
