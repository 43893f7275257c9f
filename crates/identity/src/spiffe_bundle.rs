//! A trust bundle in the SPIFFE bundle format (SPIFFE Trust Domain and Bundle §4): a JWK Set
//! (RFC 7517) with one `x509-svid` key per root, each carrying the root in `x5c`, plus
//! `spiffe_sequence` and `spiffe_refresh_hint`. What a SPIFFE bundle endpoint serves, so other
//! meshes (SPIRE, Istio's `spiffeBundleUrl`) can federate with this one.

use x509_parser::oid_registry::{OID_EC_P256, OID_NIST_EC_P384};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;

use crate::bundle::TrustBundle;

/// The bundle as SPIFFE bundle JSON. `sequence` must grow whenever the roots change;
/// `refresh_hint_secs` tells federated peers how often to fetch it again. Roots whose key is
/// neither EC P-256/P-384 nor RSA are left out (no JWK form here).
pub fn spiffe_bundle_json(bundle: &TrustBundle, sequence: u64, refresh_hint_secs: u64) -> String {
    let keys: Vec<String> = bundle
        .roots()
        .iter()
        .filter_map(|der| jwk(der.as_ref()))
        .collect();
    format!(
        "{{\"keys\":[{}],\"spiffe_refresh_hint\":{refresh_hint_secs},\"spiffe_sequence\":{sequence}}}",
        keys.join(",")
    )
}

/// One root as an `x509-svid` JWK.
fn jwk(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let spki = cert.public_key();
    let key = match spki.parsed().ok()? {
        PublicKey::EC(point) => {
            let oid = spki.algorithm.parameters.as_ref()?.as_oid().ok()?;
            let (crv, len) = if oid == OID_EC_P256 {
                ("P-256", 32)
            } else if oid == OID_NIST_EC_P384 {
                ("P-384", 48)
            } else {
                return None;
            };
            let data = point.data();
            // Uncompressed: 0x04 || X || Y.
            if data.len() != 1 + 2 * len || data[0] != 4 {
                return None;
            }
            format!(
                "\"kty\":\"EC\",\"crv\":\"{crv}\",\"x\":\"{}\",\"y\":\"{}\"",
                base64(&data[1..=len], URL),
                base64(&data[1 + len..], URL)
            )
        }
        PublicKey::RSA(rsa) => format!(
            "\"kty\":\"RSA\",\"n\":\"{}\",\"e\":\"{}\"",
            base64(unsigned(rsa.modulus), URL),
            base64(unsigned(rsa.exponent), URL)
        ),
        _ => return None,
    };
    Some(format!(
        "{{\"use\":\"x509-svid\",{key},\"x5c\":[\"{}\"]}}",
        base64(der, STANDARD)
    ))
}

/// An unsigned big-endian integer without its leading zero octets.
fn unsigned(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// A base64 flavour: its alphabet, and whether it pads.
struct Flavour(&'static [u8; 64], bool);

/// Standard base64, padded (`x5c`).
const STANDARD: Flavour = Flavour(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
    true,
);
/// base64url without padding (JWK members).
const URL: Flavour = Flavour(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
    false,
);

fn base64(bytes: &[u8], flavour: Flavour) -> String {
    let Flavour(alphabet, pad) = flavour;
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextets = [n >> 18, n >> 12, n >> 6, n];
        for (i, s) in sextets.iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(alphabet[(*s & 63) as usize]));
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::TrustDomain;
    use crate::test_pki::TestCa;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b"", STANDARD), "");
        assert_eq!(base64(b"f", STANDARD), "Zg==");
        assert_eq!(base64(b"fo", STANDARD), "Zm8=");
        assert_eq!(base64(b"foo", STANDARD), "Zm9v");
        assert_eq!(base64(b"foob", URL), "Zm9vYg");
        assert_eq!(base64(&[0xfb, 0xff], URL), "-_8");
        assert_eq!(base64(&[0xfb, 0xff], STANDARD), "+/8=");
    }

    #[test]
    fn one_x509_svid_key_per_root_with_its_certificate() {
        let (a, b) = (TestCa::root("a"), TestCa::root("b"));
        let td = TrustDomain::new("cluster.local").unwrap();
        let bundle = TrustBundle::new(td, [a.root.clone(), b.root.clone()]).unwrap();
        let json = spiffe_bundle_json(&bundle, 7, 300);
        assert!(
            json.starts_with("{\"keys\":[{\"use\":\"x509-svid\",\"kty\":\"EC\",\"crv\":\"P-256\""),
            "{json}"
        );
        assert_eq!(json.matches("\"x5c\"").count(), 2);
        assert!(
            json.ends_with("\"spiffe_refresh_hint\":300,\"spiffe_sequence\":7}"),
            "{json}"
        );
        assert!(json.contains(&base64(a.root.as_ref(), STANDARD)));
    }
}
