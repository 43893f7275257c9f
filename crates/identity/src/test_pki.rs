//! Certificates for tests, generated with rcgen: a root per trust domain, optional
//! intermediates, and leaves whose every field a test can bend to break one SVID rule.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

use crate::{TrustBundle, TrustBundleSet, TrustDomain};

/// A CA (root or intermediate) that can issue certificates.
pub(crate) struct TestCa {
    params: CertificateParams,
    key: KeyPair,
    /// This CA's certificate followed by those above it, root excluded.
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) root: CertificateDer<'static>,
    pub(crate) root_pem: String,
}

pub(crate) fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = OffsetDateTime::now_utc() - Duration::days(1);
    params.not_after = OffsetDateTime::now_utc() + Duration::days(365);
    params
}

/// A well-formed SVID profile (what the CA issues) for `uri`.
pub(crate) fn leaf_params(uri: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::URI(uri.try_into().unwrap())];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_before = OffsetDateTime::now_utc() - Duration::hours(1);
    params.not_after = OffsetDateTime::now_utc() + Duration::hours(24);
    params
}

impl TestCa {
    pub(crate) fn root(name: &str) -> Self {
        Self::root_with(ca_params(name))
    }

    pub(crate) fn root_with(params: CertificateParams) -> Self {
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self {
            params,
            key,
            chain: Vec::new(),
            root: cert.der().clone(),
            root_pem: cert.pem(),
        }
    }

    /// An intermediate signed by this CA, built from `params`.
    pub(crate) fn intermediate(&self, params: CertificateParams) -> Self {
        let key = KeyPair::generate().unwrap();
        let cert = self.sign(&params, &key);
        let mut chain = vec![cert];
        chain.extend(self.chain.iter().cloned());
        Self {
            params,
            key,
            chain,
            root: self.root.clone(),
            root_pem: self.root_pem.clone(),
        }
    }

    pub(crate) fn sign(
        &self,
        params: &CertificateParams,
        key: &KeyPair,
    ) -> CertificateDer<'static> {
        let issuer = Issuer::from_params(&self.params, &self.key);
        params.signed_by(key, &issuer).unwrap().der().clone()
    }

    /// A leaf from `params`: its full chain (leaf, intermediates) and its key.
    pub(crate) fn leaf(
        &self,
        params: &CertificateParams,
    ) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let mut chain = vec![self.sign(params, &key)];
        chain.extend(self.chain.iter().cloned());
        let key = PrivatePkcs8KeyDer::from(key.serialize_der()).into();
        (chain, key)
    }

    pub(crate) fn bundles(&self, trust_domain: &str) -> TrustBundleSet {
        let td = TrustDomain::new(trust_domain).unwrap();
        TrustBundle::new(td, [self.root.clone()]).unwrap().into()
    }
}
