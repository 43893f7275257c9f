//! Small certificate utilities shared by loading, issuing and the CLI: PEM encoding, SHA-256
//! fingerprints, random serials and the trust domain a CA certificate names.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use meshward_identity::TrustDomain;
pub use meshward_identity::{fingerprint_sha256, spki_sha256};
use rcgen::SerialNumber;
use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::X509Certificate;

/// PEM text of `certs`, one `CERTIFICATE` block each, in order, with `\n` line endings.
pub fn to_pem<'a>(certs: impl IntoIterator<Item = &'a CertificateDer<'a>>) -> String {
    certs
        .into_iter()
        .map(|der| {
            pem::encode_config(
                &pem::Pem::new("CERTIFICATE", der.as_ref()),
                pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
            )
        })
        .collect()
}

/// A random positive serial with 127 bits of entropy (RFC 5280 allows up to 20 octets).
pub(crate) fn random_serial() -> Result<SerialNumber, aws_lc_rs::error::Unspecified> {
    let mut bytes = [0u8; 16];
    SystemRandom::new().fill(&mut bytes)?;
    // Clear the sign bit so the DER INTEGER is positive without a padding byte, and set the
    // next one so the serial is always 16 octets long.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

/// The trust domain a CA certificate names in a `spiffe://<td>` URI SAN, if any.
pub(crate) fn named_trust_domain(cert: &X509Certificate<'_>) -> Option<TrustDomain> {
    let san = cert.subject_alternative_name().ok().flatten()?;
    san.value.general_names.iter().find_map(|name| match name {
        GeneralName::URI(uri) => uri
            .strip_prefix("spiffe://")
            .and_then(|td| TrustDomain::new(td).ok()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_positive_sixteen_octets_and_distinct() {
        let a = random_serial().unwrap();
        let b = random_serial().unwrap();
        assert_ne!(a, b);
        let bytes = a.to_bytes();
        assert_eq!(bytes.len(), 16);
        assert_eq!(bytes[0] & 0xc0, 0x40);
    }

    #[test]
    fn fingerprint_is_colon_hex() {
        let fp = fingerprint_sha256(b"abc");
        assert!(fp.starts_with("BA:78:16:BF:"), "{fp}");
        assert_eq!(fp.len(), 32 * 3 - 1);
    }
}
