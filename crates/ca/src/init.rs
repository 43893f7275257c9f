//! Creating a built-in CA: a self-signed ECDSA P-256 root and, optionally, an intermediate that
//! does the signing so the root key can be kept offline later.
//!
//! The result is written in Istio's `cacerts` layout (plus `root-key.pem` when an intermediate
//! signs, and `trust-domain`), so that loading a built-in CA is loading a plug-in one.

use std::time::Duration;

use meshward_identity::TrustDomain;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, SanType,
};
use time::OffsetDateTime;

use crate::authority::CaError;
use crate::cert::random_serial;
use crate::load::{CA_CERT, CA_KEY, CERT_CHAIN, ROOT_CERT, TRUST_DOMAIN};

/// Ten years, Istio's self-signed root lifetime.
const DEFAULT_ROOT_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// One year for an intermediate (never beyond the root).
const DEFAULT_INTERMEDIATE_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// Root key, written only when an intermediate signs (Istio's layout has no place for it).
pub(crate) const ROOT_KEY: &str = "root-key.pem";

/// How to create a built-in CA.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The trust domain the CA vouches for; named in its certificates as `spiffe://<td>`.
    pub trust_domain: TrustDomain,
    /// Lifetime of the root (default ten years).
    pub root_ttl: Duration,
    /// Lifetime of a signing intermediate; `None` signs with the root itself.
    pub intermediate_ttl: Option<Duration>,
}

impl InitOptions {
    /// A ten-year root that signs directly.
    pub fn new(trust_domain: TrustDomain) -> Self {
        Self {
            trust_domain,
            root_ttl: DEFAULT_ROOT_TTL,
            intermediate_ttl: None,
        }
    }

    /// Signs with a one-year intermediate under the root.
    pub fn with_intermediate(mut self) -> Self {
        self.intermediate_ttl = Some(DEFAULT_INTERMEDIATE_TTL);
        self
    }
}

pub(crate) fn ca_params(
    trust_domain: &TrustDomain,
    common_name: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::OrganizationName, trust_domain.as_str());
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    // SPIFFE lets CA certificates name their trust domain; loading reads it back from here.
    let uri = trust_domain.to_spiffe_id().to_string();
    params.subject_alt_names = vec![SanType::URI(uri.try_into().map_err(CaError::Rcgen)?)];
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(random_serial().map_err(|_| CaError::Random)?);
    Ok(params)
}

/// The files of a new CA directory, as (name, contents).
pub(crate) fn new_ca_files(options: &InitOptions) -> Result<Vec<(&'static str, String)>, CaError> {
    let now = OffsetDateTime::now_utc();
    // Backdated like leaves, so peers with a slow clock accept the CA from the first second.
    let not_before = now - crate::sign::BACKDATE;
    let root_end = now + options.root_ttl;
    let root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(CaError::Rcgen)?;
    let root_params = ca_params(
        &options.trust_domain,
        "Meshward root CA",
        not_before,
        root_end,
    )?;
    let root = root_params.self_signed(&root_key).map_err(CaError::Rcgen)?;
    let td = format!("{}\n", options.trust_domain);

    let Some(ttl) = options.intermediate_ttl else {
        return Ok(vec![
            (CA_CERT, root.pem()),
            (CA_KEY, root_key.serialize_pem()),
            (ROOT_CERT, root.pem()),
            (CERT_CHAIN, String::new()),
            (TRUST_DOMAIN, td),
        ]);
    };
    let inter_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(CaError::Rcgen)?;
    let inter_params = ca_params(
        &options.trust_domain,
        "Meshward intermediate CA",
        not_before,
        (now + ttl).min(root_end),
    )?;
    let issuer = Issuer::new(root_params, &root_key);
    let inter = inter_params
        .signed_by(&inter_key, &issuer)
        .map_err(CaError::Rcgen)?;
    Ok(vec![
        (CA_CERT, inter.pem()),
        (CA_KEY, inter_key.serialize_pem()),
        (ROOT_CERT, root.pem()),
        (CERT_CHAIN, format!("{}{}", inter.pem(), root.pem())),
        (ROOT_KEY, root_key.serialize_pem()),
        (TRUST_DOMAIN, td),
    ])
}
