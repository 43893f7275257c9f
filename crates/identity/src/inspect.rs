//! What a certificate says, in the terms operators grep `openssl x509 -text` for: subject,
//! SPIFFE ID, SANs, issuer, serial, validity, key type, usages and CA flag.

use std::fmt;

use rustls_pki_types::CertificateDer;
use time::format_description::well_known::Rfc3339;
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::{OID_EC_P256, OID_NIST_EC_P384};
use x509_parser::prelude::{FromDer, SubjectPublicKeyInfo, X509Certificate};
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
    /// ECDSA P-256, ECDSA P-384, RSA 2048, …
    pub key_type: KeyType,
    /// keyUsage bits set, e.g. `digitalSignature`.
    pub key_usage: Vec<String>,
    /// extendedKeyUsage purposes, e.g. `serverAuth`.
    pub extended_key_usage: Vec<String>,
    /// basicConstraints CA:TRUE.
    pub is_ca: bool,
}

/// SHA-256 of the DER, as colon-separated upper-case hex (what `openssl x509 -fingerprint
/// -sha256` prints).
pub fn fingerprint_sha256(der: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// SHA-256 (lower-case hex) of a certificate's SubjectPublicKeyInfo, `None` if it does not
/// parse. It names a key whatever certificate carries it: a CA and its cross-signed twin share
/// it.
pub fn spki_sha256(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cert.public_key().raw)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
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
        key_type: KeyType::of(cert.public_key()),
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

/// The kind of a public key, as certificate policies and `cert inspect` classify it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyType {
    /// ECDSA on NIST P-256.
    EcdsaP256,
    /// ECDSA on NIST P-384.
    EcdsaP384,
    /// ECDSA on another curve (its OID), or with no named curve (`None`).
    EcdsaOther(Option<String>),
    /// RSA with a modulus of `bits` bits.
    Rsa {
        /// Modulus size.
        bits: usize,
    },
    /// Anything else: the algorithm OID, or why the key could not be read.
    Other(String),
}

impl KeyType {
    /// Classifies a DER `SubjectPublicKeyInfo`.
    pub fn from_spki_der(spki: &[u8]) -> Self {
        match SubjectPublicKeyInfo::from_der(spki) {
            Ok((_, spki)) => Self::of(&spki),
            Err(err) => Self::Other(format!("unreadable key: {err}")),
        }
    }

    fn of(spki: &SubjectPublicKeyInfo<'_>) -> Self {
        match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => Self::Rsa {
                bits: rsa.key_size(),
            },
            Ok(PublicKey::EC(_)) => {
                match spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                {
                    Some(oid) if oid == OID_EC_P256 => Self::EcdsaP256,
                    Some(oid) if oid == OID_NIST_EC_P384 => Self::EcdsaP384,
                    oid => Self::EcdsaOther(oid.map(|o| o.to_id_string())),
                }
            }
            _ => Self::Other(spki.algorithm.algorithm.to_id_string()),
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EcdsaP256 => f.write_str("ECDSA P-256"),
            Self::EcdsaP384 => f.write_str("ECDSA P-384"),
            Self::EcdsaOther(Some(oid)) => write!(f, "ECDSA curve {oid}"),
            Self::EcdsaOther(None) => f.write_str("ECDSA without a named curve"),
            Self::Rsa { bits } => write!(f, "RSA {bits}"),
            Self::Other(what) => write!(f, "algorithm {what}"),
        }
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
        assert_eq!(leaf.key_type, KeyType::EcdsaP256);
        assert_eq!(leaf.key_type.to_string(), "ECDSA P-256");
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
