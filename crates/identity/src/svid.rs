//! X.509-SVID verification: one pure function that the rustls verifiers and `meshward cert
//! verify` all run, so what the CLI says is exactly what the proxy does.
//!
//! Order of checks: the leaf's own SVID rules first (they need no trust decision and give the
//! most precise error), then the chain against the bundle of the leaf's trust domain (webpki:
//! signatures, validity, CA constraints, EKU), then the SVID rules on the signing certificates
//! webpki does not enforce, then the allowed set.

use std::collections::BTreeSet;
use std::fmt;

use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::bundle::TrustBundleSet;
use crate::id::{IdError, SpiffeId, TrustDomain};
use crate::revocation::{Revocations, Serial};
use crate::verifier::crypto_provider;

/// Which side of a TLS connection presented the chain being verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// A client certificate, checked by a server: needs EKU clientAuth.
    Client,
    /// A server certificate, checked by a client: needs EKU serverAuth.
    Server,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Client => "client",
            Self::Server => "server",
        })
    }
}

/// Why a certificate chain is not an acceptable X.509-SVID. Each message names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SvidError {
    /// The peer sent no certificate.
    #[error("no certificate presented")]
    EmptyChain,
    /// A certificate is not parseable X.509 DER.
    #[error("certificate #{position} is malformed: {reason}")]
    Malformed {
        /// 1-based position in the chain (1 is the leaf).
        position: usize,
        /// The parser's complaint.
        reason: String,
    },
    /// The leaf has zero or several URI SANs.
    #[error("an SVID must have exactly one URI SAN; the leaf has {count}")]
    UriSanCount {
        /// Number of URI SANs found.
        count: usize,
    },
    /// The single URI SAN is not a valid SPIFFE ID.
    #[error("the URI SAN `{uri}` is not a valid SPIFFE ID: {source}")]
    InvalidSpiffeId {
        /// The URI as found in the certificate.
        uri: String,
        /// What is wrong with it.
        source: IdError,
    },
    /// The leaf's SPIFFE ID has no path: a trust domain's own ID names no workload
    /// (X.509-SVID §3.1 and §5.2).
    #[error("the leaf's SPIFFE ID `{0}` has no path: a trust domain's own ID names no workload")]
    LeafWithoutPath(SpiffeId),
    /// The leaf has basicConstraints CA:TRUE.
    #[error("a leaf SVID must not be a CA (basicConstraints CA:TRUE)")]
    LeafIsCa,
    /// The leaf lacks keyUsage digitalSignature.
    #[error("a leaf SVID must have keyUsage digitalSignature")]
    MissingDigitalSignature,
    /// The leaf has keyUsage keyCertSign.
    #[error("a leaf SVID must not have keyUsage keyCertSign")]
    LeafKeyCertSign,
    /// The leaf has keyUsage cRLSign.
    #[error("a leaf SVID must not have keyUsage cRLSign")]
    LeafCrlSign,
    /// The leaf lacks the extended key usage its side needs.
    #[error("a {side} SVID must have extendedKeyUsage {eku}")]
    MissingEku {
        /// The side that presented the chain.
        side: Side,
        /// The missing purpose (`clientAuth` or `serverAuth`).
        eku: &'static str,
    },
    /// No bundle for the peer's trust domain.
    #[error("trust domain `{0}` is not trusted (no bundle for it)")]
    UntrustedDomain(TrustDomain),
    /// No path from the leaf to a root of its trust domain.
    #[error("the chain does not lead to a root of trust domain `{0}`")]
    UnknownIssuer(TrustDomain),
    /// A certificate of the chain has expired.
    #[error("a certificate of the chain has expired")]
    Expired,
    /// A certificate of the chain is not valid yet.
    #[error("a certificate of the chain is not valid yet")]
    NotYetValid,
    /// Another chain validation failure, as webpki reports it.
    #[error("chain validation failed: {0}")]
    Chain(String),
    /// A certificate that signed part of the chain is not a CA.
    #[error("signing certificate `{subject}` must be a CA (basicConstraints CA:TRUE)")]
    SignerNotCa {
        /// Its subject.
        subject: String,
    },
    /// A certificate that signed part of the chain lacks keyUsage keyCertSign.
    #[error("signing certificate `{subject}` must have keyUsage keyCertSign")]
    SignerKeyCertSign {
        /// Its subject.
        subject: String,
    },
    /// The peer is valid but not one of the identities this side accepts.
    #[error("`{0}` is not among the allowed identities")]
    NotAllowed(SpiffeId),
    /// The peer's identity is revoked.
    #[error("`{0}` is revoked")]
    RevokedIdentity(SpiffeId),
    /// A certificate of the chain is revoked by its serial number.
    #[error("certificate #{position} of the chain (serial {serial}) is revoked")]
    RevokedCertificate {
        /// 1-based position in the chain (1 is the leaf).
        position: usize,
        /// Its serial number, hex.
        serial: String,
    },
}

// === impl AllowedPeers ===

/// Which verified identities a side accepts. Empty (the default) accepts nobody.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedPeers {
    any: bool,
    ids: BTreeSet<SpiffeId>,
    trust_domains: BTreeSet<TrustDomain>,
}

impl AllowedPeers {
    /// Accepts every identity whose chain verifies against the bundles.
    pub fn any() -> Self {
        Self {
            any: true,
            ..Self::default()
        }
    }

    /// Also accepts exactly this identity.
    pub fn with_id(mut self, id: SpiffeId) -> Self {
        self.ids.insert(id);
        self
    }

    /// Also accepts every identity of this trust domain.
    pub fn with_trust_domain(mut self, trust_domain: TrustDomain) -> Self {
        self.trust_domains.insert(trust_domain);
        self
    }

    /// Whether `id` is accepted.
    pub fn allows(&self, id: &SpiffeId) -> bool {
        self.any || self.ids.contains(id) || self.trust_domains.contains(id.trust_domain())
    }
}

// === verification ===

/// Verifies `chain` (leaf first, then intermediates) presented by `side` against `bundles` at
/// time `now`, and returns the peer's SPIFFE ID if it is an acceptable X.509-SVID allowed by
/// `allowed`.
pub fn verify_svid_chain(
    chain: &[CertificateDer<'_>],
    side: Side,
    bundles: &TrustBundleSet,
    allowed: &AllowedPeers,
    now: UnixTime,
) -> Result<SpiffeId, SvidError> {
    let (leaf_der, intermediates) = chain.split_first().ok_or(SvidError::EmptyChain)?;
    for (i, der) in intermediates.iter().enumerate() {
        parse(der, i + 2)?;
    }
    let leaf = parse(leaf_der, 1)?;
    let id = leaf_spiffe_id(&leaf)?;
    check_leaf(&leaf, side)?;
    // After the CA check: a CA certificate presented as a leaf (its URI SAN is typically the
    // trust domain's own ID) is reported as a CA, the more useful reason.
    if id.path().is_empty() {
        return Err(SvidError::LeafWithoutPath(id));
    }

    let bundle = bundles
        .get(id.trust_domain())
        .ok_or_else(|| SvidError::UntrustedDomain(id.trust_domain().clone()))?;
    let ee = webpki::EndEntityCert::try_from(leaf_der).map_err(|err| SvidError::Malformed {
        position: 1,
        reason: err.to_string(),
    })?;
    let usage = match side {
        Side::Client => webpki::KeyUsage::client_auth(),
        Side::Server => webpki::KeyUsage::server_auth(),
    };
    let provider = crypto_provider();
    let path = ee
        .verify_for_usage(
            provider.signature_verification_algorithms.all,
            bundle.anchors(),
            intermediates,
            now,
            usage,
            None,
            None,
        )
        .map_err(|err| chain_error(err, id.trust_domain()))?;
    for signer in path.intermediate_certificates() {
        let der = signer.der();
        let position = intermediates
            .iter()
            .position(|c| c.as_ref() == der.as_ref())
            .map_or(0, |i| i + 2);
        check_signer(&parse(&der, position)?)?;
    }
    check_revocations(&id, &leaf, intermediates, bundles.revocations())?;

    if !allowed.allows(&id) {
        return Err(SvidError::NotAllowed(id));
    }
    Ok(id)
}

/// The SPIFFE ID of a verified peer: the single URI SAN of `certs[0]`. Call it on rustls'
/// `peer_certificates()` after the handshake; it does not verify anything by itself.
pub fn peer_spiffe_id(certs: &[CertificateDer<'_>]) -> Result<SpiffeId, SvidError> {
    let leaf = certs.first().ok_or(SvidError::EmptyChain)?;
    leaf_spiffe_id(&parse(leaf, 1)?)
}

/// Parses one DER certificate; `position` (1 = leaf) goes into the error.
pub(crate) fn parse<'a>(
    der: &'a CertificateDer<'_>,
    position: usize,
) -> Result<X509Certificate<'a>, SvidError> {
    match X509Certificate::from_der(der.as_ref()) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(SvidError::Malformed {
            position,
            reason: "trailing bytes after the certificate".to_owned(),
        }),
        Err(err) => Err(SvidError::Malformed {
            position,
            reason: err.to_string(),
        }),
    }
}

fn malformed_leaf(err: impl fmt::Display) -> SvidError {
    SvidError::Malformed {
        position: 1,
        reason: err.to_string(),
    }
}

fn leaf_spiffe_id(leaf: &X509Certificate<'_>) -> Result<SpiffeId, SvidError> {
    let uris: Vec<&str> = match leaf.subject_alternative_name().map_err(malformed_leaf)? {
        Some(san) => san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::URI(uri) => Some(*uri),
                _ => None,
            })
            .collect(),
        None => Vec::new(),
    };
    let [uri] = uris.as_slice() else {
        return Err(SvidError::UriSanCount { count: uris.len() });
    };
    uri.parse().map_err(|source| SvidError::InvalidSpiffeId {
        uri: (*uri).to_owned(),
        source,
    })
}

fn check_leaf(leaf: &X509Certificate<'_>, side: Side) -> Result<(), SvidError> {
    if leaf.is_ca() {
        return Err(SvidError::LeafIsCa);
    }
    let key_usage = leaf.key_usage().map_err(malformed_leaf)?;
    let Some(key_usage) = key_usage.map(|ext| ext.value) else {
        return Err(SvidError::MissingDigitalSignature);
    };
    if !key_usage.digital_signature() {
        return Err(SvidError::MissingDigitalSignature);
    }
    if key_usage.key_cert_sign() {
        return Err(SvidError::LeafKeyCertSign);
    }
    if key_usage.crl_sign() {
        return Err(SvidError::LeafCrlSign);
    }
    let eku = leaf.extended_key_usage().map_err(malformed_leaf)?;
    let (has, name) = match side {
        Side::Client => (eku.is_some_and(|e| e.value.client_auth), "clientAuth"),
        Side::Server => (eku.is_some_and(|e| e.value.server_auth), "serverAuth"),
    };
    if !has {
        return Err(SvidError::MissingEku { side, eku: name });
    }
    Ok(())
}

/// Refuses a revoked identity, and any certificate of the chain revoked by serial.
fn check_revocations(
    id: &SpiffeId,
    leaf: &X509Certificate<'_>,
    intermediates: &[CertificateDer<'_>],
    revocations: &Revocations,
) -> Result<(), SvidError> {
    if revocations.is_empty() {
        return Ok(());
    }
    if revocations.revokes_id(id) {
        return Err(SvidError::RevokedIdentity(id.clone()));
    }
    let revoked = |position: usize, cert: &X509Certificate<'_>| {
        let serial = Serial::from_der_bytes(cert.raw_serial());
        if revocations.revokes_serial(&serial) {
            Err(SvidError::RevokedCertificate {
                position,
                serial: serial.to_hex(),
            })
        } else {
            Ok(())
        }
    };
    revoked(1, leaf)?;
    for (i, der) in intermediates.iter().enumerate() {
        revoked(i + 2, &parse(der, i + 2)?)?;
    }
    Ok(())
}

fn check_signer(cert: &X509Certificate<'_>) -> Result<(), SvidError> {
    let subject = || cert.subject().to_string();
    if !cert.is_ca() {
        return Err(SvidError::SignerNotCa { subject: subject() });
    }
    let can_sign = cert
        .key_usage()
        .ok()
        .flatten()
        .is_some_and(|ku| ku.value.key_cert_sign());
    if !can_sign {
        return Err(SvidError::SignerKeyCertSign { subject: subject() });
    }
    Ok(())
}

fn chain_error(err: webpki::Error, trust_domain: &TrustDomain) -> SvidError {
    match err {
        webpki::Error::CertExpired { .. } => SvidError::Expired,
        webpki::Error::CertNotValidYet { .. } => SvidError::NotYetValid,
        // webpki reports a bad signature when a root has the issuer's name but another key
        // (two CAs named alike): either way, no root of the bundle signed this chain.
        webpki::Error::UnknownIssuer | webpki::Error::InvalidSignatureForPublicKey => {
            SvidError::UnknownIssuer(trust_domain.clone())
        }
        other => SvidError::Chain(other.to_string()),
    }
}

#[cfg(test)]
mod tests;
