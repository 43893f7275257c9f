//! Signing a PKCS#10 CSR into an X.509-SVID for the identity the caller *proved*.
//!
//! Only the CSR's public key is used, after its signature has shown the requester holds the
//! private key. Its subject, SANs and requested extensions are ignored, as Istio does: the
//! certificate says what the CA decided, never what the requester asked for.

use std::time::{Duration, SystemTime};

use meshward_identity::{KeyType, SpiffeId};
use rcgen::{
    CertificateParams, DistinguishedName, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SubjectPublicKeyInfo,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer};
use time::OffsetDateTime;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;

use crate::cert::{random_serial, to_pem};

/// Largest CSR accepted, PEM or DER, checked before any parsing (real ones are under 2 KiB).
pub const MAX_CSR_BYTES: usize = 64 * 1024;
/// How far `notBefore` is set in the past, for peers whose clocks run slow.
pub(crate) const BACKDATE: time::Duration = time::Duration::minutes(5);
/// Smallest RSA modulus accepted, in bits.
const MIN_RSA_BITS: usize = 2048;

/// Why a CSR was not signed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The CSR is over [`MAX_CSR_BYTES`].
    #[error("CSR is {size} bytes; the limit is {MAX_CSR_BYTES}")]
    TooLarge {
        /// Its size.
        size: usize,
    },
    /// Not a parseable PKCS#10 request.
    #[error("not a valid PKCS#10 CSR: {0}")]
    Malformed(String),
    /// The CSR's signature does not verify with its own public key.
    #[error("CSR signature does not verify: {0}")]
    BadSignature(String),
    /// A key type or curve the CA does not accept.
    #[error("unsupported CSR key: {0} (accepted: ECDSA P-256, ECDSA P-384, RSA >= 2048 bits)")]
    UnsupportedKey(String),
    /// An RSA key that is too short.
    #[error("RSA key of {bits} bits is too weak (minimum {MIN_RSA_BITS})")]
    WeakRsaKey {
        /// Its modulus size.
        bits: usize,
    },
    /// A zero TTL.
    #[error("requested TTL is zero")]
    ZeroTtl,
    /// A TTL above the configured maximum (refused, not clamped).
    #[error("requested TTL of {requested:?} exceeds the maximum of {max:?}")]
    TtlTooLong {
        /// What was asked.
        requested: Duration,
        /// The maximum.
        max: Duration,
    },
    /// The certificate would outlive the CA certificate that signs it.
    #[error("requested TTL of {requested:?} would outlive the signing CA certificate")]
    OutlivesCa {
        /// What was asked.
        requested: Duration,
    },
    /// The identity belongs to another trust domain than the CA's.
    #[error("`{id}` is not in this CA's trust domain `{ca}`")]
    WrongTrustDomain {
        /// The identity asked for.
        id: SpiffeId,
        /// The CA's trust domain.
        ca: String,
    },
    /// Certificate generation failed.
    #[error("cannot issue the certificate: {0}")]
    Issue(String),
    /// The identity is revoked: no certificate is issued for it until an administrator
    /// lifts the revocation.
    #[error("`{0}` is revoked; an administrator must run `meshward ca unrevoke {0}` first")]
    Revoked(SpiffeId),
}

/// The CA's rules for leaf lifetimes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigningPolicy {
    /// Used when the request names no TTL (Istio: 24 h).
    pub default_ttl: Duration,
    /// Requests above this are refused (Istio's `MAX_WORKLOAD_CERT_TTL`: 90 days).
    pub max_ttl: Duration,
}

impl Default for SigningPolicy {
    fn default() -> Self {
        Self {
            default_ttl: Duration::from_secs(24 * 3600),
            max_ttl: Duration::from_secs(90 * 24 * 3600),
        }
    }
}

/// A freshly issued X.509-SVID.
#[derive(Debug, Clone)]
pub struct IssuedSvid {
    /// The identity in its single URI SAN.
    pub spiffe_id: SpiffeId,
    /// Its serial number, hex.
    pub serial: String,
    /// Start of validity (backdated a few minutes).
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// Leaf, then intermediates, then the root.
    pub chain: Vec<CertificateDer<'static>>,
}

impl IssuedSvid {
    /// The leaf certificate.
    pub fn leaf(&self) -> Option<&CertificateDer<'static>> {
        self.chain.first()
    }

    /// The chain as PEM: leaf, intermediates, root.
    pub fn chain_pem(&self) -> String {
        to_pem(&self.chain)
    }
}

/// What the signer needs from the authority.
pub(crate) struct SigningContext<'a> {
    pub(crate) issuer: &'a Issuer<'static, KeyPair>,
    pub(crate) ca_not_after: OffsetDateTime,
    /// The signing certificate and everything above it, root last.
    pub(crate) chain_above: &'a [CertificateDer<'static>],
    pub(crate) policy: SigningPolicy,
}

/// The CSR's public key, once it has proved possession and passed the key policy.
struct CheckedKey {
    spki: SubjectPublicKeyInfo,
    is_rsa: bool,
}

fn check_csr(csr: &[u8]) -> Result<CheckedKey, SignError> {
    if csr.len() > MAX_CSR_BYTES {
        return Err(SignError::TooLarge { size: csr.len() });
    }
    let der = if csr.trim_ascii_start().starts_with(b"-----BEGIN") {
        CertificateSigningRequestDer::from_pem_slice(csr)
            .map_err(|err| SignError::Malformed(format!("PEM: {err}")))?
    } else {
        CertificateSigningRequestDer::from(csr.to_vec())
    };
    let parsed = match X509CertificationRequest::from_der(der.as_ref()) {
        Ok(([], parsed)) => parsed,
        Ok(_) => {
            return Err(SignError::Malformed(
                "trailing bytes after the CSR".to_owned(),
            ));
        }
        Err(err) => return Err(SignError::Malformed(err.to_string())),
    };
    let pki = &parsed.certification_request_info.subject_pki;
    let is_rsa = match KeyType::from_spki_der(pki.raw) {
        KeyType::EcdsaP256 | KeyType::EcdsaP384 => false,
        KeyType::Rsa { bits } if bits >= MIN_RSA_BITS => true,
        KeyType::Rsa { bits } => return Err(SignError::WeakRsaKey { bits }),
        other => return Err(SignError::UnsupportedKey(other.to_string())),
    };
    // After the key policy: the verifier itself refuses weak RSA keys with a vaguer error.
    parsed
        .verify_signature()
        .map_err(|err| SignError::BadSignature(err.to_string()))?;
    let spki = SubjectPublicKeyInfo::from_der(pki.raw)
        .map_err(|err| SignError::UnsupportedKey(err.to_string()))?;
    Ok(CheckedKey { spki, is_rsa })
}

/// Signs `csr` (PEM or DER) for `identity`; `ttl` `None` means the policy's default.
pub(crate) fn sign_csr(
    ctx: &SigningContext<'_>,
    csr: &[u8],
    identity: &SpiffeId,
    ttl: Option<Duration>,
) -> Result<IssuedSvid, SignError> {
    let ttl = ttl.unwrap_or(ctx.policy.default_ttl);
    if ttl.is_zero() {
        return Err(SignError::ZeroTtl);
    }
    if ttl > ctx.policy.max_ttl {
        return Err(SignError::TtlTooLong {
            requested: ttl,
            max: ctx.policy.max_ttl,
        });
    }
    let key = check_csr(csr)?;
    let now = OffsetDateTime::now_utc();
    let not_after = now + ttl;
    if not_after > ctx.ca_not_after {
        return Err(SignError::OutlivesCa { requested: ttl });
    }

    let mut params = CertificateParams::default();
    // Empty subject, as Istio issues; rcgen then marks the SAN extension critical (RFC 5280).
    params.distinguished_name = DistinguishedName::new();
    let uri = identity.to_string();
    params.subject_alt_names = vec![SanType::URI(
        uri.try_into()
            .map_err(|err: rcgen::Error| SignError::Issue(err.to_string()))?,
    )];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if key.is_rsa {
        // RSA key exchange (TLS 1.2) encrypts to the certificate key.
        params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - BACKDATE;
    params.not_after = not_after;
    let serial =
        random_serial().map_err(|_| SignError::Issue("no randomness for the serial".to_owned()))?;
    let serial_hex = serial
        .to_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    params.serial_number = Some(serial);

    let leaf = params
        .signed_by(&key.spki, ctx.issuer)
        .map_err(|err| SignError::Issue(err.to_string()))?;
    let mut chain = Vec::with_capacity(1 + ctx.chain_above.len());
    chain.push(leaf.der().clone());
    chain.extend(ctx.chain_above.iter().cloned());
    Ok(IssuedSvid {
        spiffe_id: identity.clone(),
        serial: serial_hex,
        not_before: SystemTime::from(now - BACKDATE),
        not_after: SystemTime::from(not_after),
        chain,
    })
}
