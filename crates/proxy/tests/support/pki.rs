//! A test PKI built with rcgen: one root, SVIDs for any service account, written as PEM files;
//! and standalone proxies using them.

#![allow(dead_code)] // Each test crate uses a different part of the support code.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

pub(crate) struct Pki {
    pub(crate) dir: tempfile::TempDir,
    issuer: Issuer<'static, KeyPair>,
    pub(crate) root_pem: String,
}

/// PEM files of one SVID.
#[derive(Debug, Clone)]
pub(crate) struct SvidFiles {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) bundle: PathBuf,
}

impl Pki {
    pub(crate) fn new() -> Self {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "meshward test root");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let root = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("root.pem"), root.pem()).unwrap();
        Self {
            dir,
            issuer: Issuer::new(params, key),
            root_pem: root.pem(),
        }
    }

    pub(crate) fn root_path(&self) -> PathBuf {
        self.dir.path().join("root.pem")
    }

    /// Issues an SVID for `spiffe://cluster.local/ns/<ns>/sa/<sa>` and writes it as `<file>`.
    pub(crate) fn issue(&self, ns: &str, sa: &str, file: &str) -> SvidFiles {
        self.issue_id(&format!("spiffe://cluster.local/ns/{ns}/sa/{sa}"), file)
    }

    pub(crate) fn issue_id(&self, id: &str, file: &str) -> SvidFiles {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![SanType::URI(id.try_into().unwrap())];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let files = SvidFiles {
            cert: self.dir.path().join(format!("{file}.crt")),
            key: self.dir.path().join(format!("{file}.key")),
            bundle: self.root_path(),
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }
}

/// A standalone proxy on `ip` in front of an app on `app_ip`, with `svid`, static inbound
/// ports (`PORT=MODE`) and upstreams (`LISTEN=TARGET,ID`); no outbound, admin or readiness
/// port, and a 300 ms first-byte timeout.
pub(crate) async fn start_proxy(
    ip: &str,
    app_ip: &str,
    svid: &SvidFiles,
    inbound: &[&str],
    upstreams: &[String],
) -> meshward_proxy::Proxy {
    let config = proxy_config(ip, app_ip, svid, inbound, upstreams);
    meshward_proxy::Proxy::start(config, None).await.unwrap()
}

/// The configuration [`start_proxy`] uses.
pub(crate) fn proxy_config(
    ip: &str,
    app_ip: &str,
    svid: &SvidFiles,
    inbound: &[&str],
    upstreams: &[String],
) -> meshward_proxy::ProxyConfig {
    use std::time::Duration;

    use meshward_proxy::config::{IdentitySource, Timeouts};

    meshward_proxy::ProxyConfig {
        workload: None,
        address: ip.parse().unwrap(),
        app_address: app_ip.parse().unwrap(),
        trust_domain: "cluster.local".parse().unwrap(),
        identity: IdentitySource::Files {
            cert: svid.cert.clone(),
            key: svid.key.clone(),
            bundle: svid.bundle.clone(),
        },
        inbound: inbound.iter().map(|s| s.parse().unwrap()).collect(),
        upstreams: upstreams.iter().map(|s| s.parse().unwrap()).collect(),
        outbound_port: 0,
        admin_port: 0,
        ready_port: 0,
        stats_port: 0,
        access_log: None,
        access_log_sink: Default::default(),
        drain_timeout: Duration::from_secs(5),
        timeouts: Timeouts {
            first_byte: Duration::from_millis(300),
            ..Timeouts::default()
        },
        transparent: None,
    }
}

impl Pki {
    /// Signs a CSR (DER) for `id`, valid for `ttl` from now, as a CA that ignores the CSR's
    /// own names does; returns the leaf and the root, PEM.
    pub(crate) fn sign_csr(&self, csr_der: &[u8], id: &str, ttl: std::time::Duration) -> String {
        let der = rustls_pki_types::CertificateSigningRequestDer::from(csr_der.to_vec());
        let mut csr = rcgen::CertificateSigningRequestParams::from_der(&der).unwrap();
        csr.params.subject_alt_names = vec![SanType::URI(id.try_into().unwrap())];
        csr.params.is_ca = IsCa::ExplicitNoCa;
        csr.params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        csr.params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let now = time::OffsetDateTime::now_utc();
        csr.params.not_before = now - time::Duration::seconds(1);
        csr.params.not_after = now + ttl;
        format!(
            "{}{}",
            csr.signed_by(&self.issuer).unwrap().pem(),
            self.root_pem
        )
    }
}

pub(crate) fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}
