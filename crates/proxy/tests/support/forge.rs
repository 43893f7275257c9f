//! Hostile peers for the robustness tests: a PKI whose leaves can break any SVID rule, raw TLS
//! clients that present whatever chain they are given and never check the server, and
//! hand-made ClientHellos.

#![allow(dead_code)] // Each test crate uses a different part of the support code.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::pki::SvidFiles;

/// A CA (root or intermediate).
pub(crate) struct Ca {
    params: CertificateParams,
    key: KeyPair,
    /// This CA's certificate and those above it, root excluded.
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) root_pem: String,
    pub(crate) root_der: Vec<u8>,
}

pub(crate) fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = OffsetDateTime::now_utc() - time::Duration::days(1);
    params.not_after = OffsetDateTime::now_utc() + time::Duration::days(365);
    params
}

/// The SVID profile the mesh CA issues, for `uri`.
pub(crate) fn leaf_params(uri: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::URI(uri.try_into().unwrap())];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_before = OffsetDateTime::now_utc() - time::Duration::hours(1);
    params.not_after = OffsetDateTime::now_utc() + time::Duration::hours(24);
    params
}

/// A leaf profile for `uri` changed by `f`.
pub(crate) fn leaf_with(uri: &str, f: impl FnOnce(&mut CertificateParams)) -> CertificateParams {
    let mut params = leaf_params(uri);
    f(&mut params);
    params
}

/// A certificate and key, DER.
pub(crate) struct Leaf {
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
    pub(crate) key_pem: String,
}

impl Leaf {
    /// The chain as PEM, leaf first.
    pub(crate) fn chain_pem(&self) -> String {
        self.chain.iter().map(|c| pem("CERTIFICATE", c)).collect()
    }
}

/// PEM of one DER object.
pub(crate) fn pem(label: &str, der: &[u8]) -> String {
    // 64 columns of base64, as every tool writes it.
    let b64 = base64(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(T[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl Ca {
    pub(crate) fn root(name: &str) -> Self {
        Self::root_with(ca_params(name))
    }

    pub(crate) fn root_with(params: CertificateParams) -> Self {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self {
            params,
            key,
            chain: Vec::new(),
            root_pem: cert.pem(),
            root_der: cert.der().to_vec(),
        }
    }

    /// An intermediate signed by this CA.
    pub(crate) fn intermediate(&self, params: CertificateParams) -> Self {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = self.sign(&params, &key);
        let mut chain = vec![cert];
        chain.extend(self.chain.iter().cloned());
        Self {
            params,
            key,
            chain,
            root_pem: self.root_pem.clone(),
            root_der: self.root_der.clone(),
        }
    }

    fn sign(&self, params: &CertificateParams, key: &KeyPair) -> CertificateDer<'static> {
        let issuer = Issuer::from_params(&self.params, &self.key);
        params.signed_by(key, &issuer).unwrap().der().clone()
    }

    /// Signs a CSR as its (already rewritten) params say: the leaf, this CA's chain and the
    /// root, PEM.
    pub(crate) fn sign_csr(&self, csr: rcgen::CertificateSigningRequestParams) -> String {
        let issuer = Issuer::from_params(&self.params, &self.key);
        let leaf = csr.signed_by(&issuer).unwrap();
        let mut out = leaf.pem();
        for der in &self.chain {
            out.push_str(&pem("CERTIFICATE", der));
        }
        out.push_str(&self.root_pem);
        out
    }

    /// A leaf from `params` with its chain up to (not including) the root.
    pub(crate) fn leaf(&self, params: &CertificateParams) -> Leaf {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut chain = vec![self.sign(params, &key)];
        chain.extend(self.chain.iter().cloned());
        Leaf {
            chain,
            key_pem: key.serialize_pem(),
            key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        }
    }

    /// A well-formed SVID for `spiffe://cluster.local/ns/<ns>/sa/<sa>`.
    pub(crate) fn svid(&self, ns: &str, sa: &str) -> Leaf {
        self.leaf(&leaf_params(&format!(
            "spiffe://cluster.local/ns/{ns}/sa/{sa}"
        )))
    }

    /// Writes `leaf` and this CA's root as the files a standalone proxy reads.
    pub(crate) fn write(&self, dir: &Path, name: &str, leaf: &Leaf) -> SvidFiles {
        let files = SvidFiles {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
            bundle: dir.join(format!("{name}-root.pem")),
        };
        std::fs::write(&files.cert, leaf.chain_pem()).unwrap();
        std::fs::write(&files.key, &leaf.key_pem).unwrap();
        std::fs::write(&files.bundle, &self.root_pem).unwrap();
        files
    }
}

/// Accepts any server: these clients test the server, not the other way round.
#[derive(Debug)]
struct AnyServer;

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client config offering `alpn` and presenting `leaf` (or no certificate).
pub(crate) fn client_config(leaf: Option<&Leaf>, alpn: &[u8]) -> ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer));
    let mut config = match leaf {
        Some(leaf) => builder
            .with_client_auth_cert(leaf.chain.clone(), leaf.key.clone_key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    config
}

/// Like [`client_config`], offering X25519 only: a ClientHello of about 250 bytes (the default
/// post-quantum key share makes it 1.5 KiB).
pub(crate) fn small_hello_config(leaf: Option<&Leaf>, alpn: &[u8]) -> ClientConfig {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519];
    let builder = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer));
    let mut config = match leaf {
        Some(leaf) => builder
            .with_client_auth_cert(leaf.chain.clone(), leaf.key.clone_key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    config
}

/// Presents a chain as it is, without the checks `with_client_auth_cert` makes (a client that
/// sends what it likes, however large).
#[derive(Debug)]
struct AnyChain(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for AnyChain {
    fn resolve(
        &self,
        _: &[&[u8]],
        _: &[SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A client config presenting `chain` signed with `key`, unchecked.
pub(crate) fn raw_chain_config(
    chain: Vec<CertificateDer<'static>>,
    key: &PrivateKeyDer<'static>,
    alpn: &[u8],
) -> ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let signer = provider
        .key_provider
        .load_private_key(key.clone_key())
        .unwrap();
    let certified = rustls::sign::CertifiedKey::new(chain, signer);
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer))
        .with_client_cert_resolver(Arc::new(AnyChain(Arc::new(certified))));
    config.alpn_protocols = vec![alpn.to_vec()];
    config
}

/// Connects to `addr` with `config`, sends `request` and reads until the server closes (at most
/// 10 s). `Ok(response)` only if the handshake and the exchange worked; an empty response or an
/// error means the server refused.
pub(crate) async fn tls_exchange(
    addr: SocketAddr,
    config: ClientConfig,
    request: &[u8],
) -> io::Result<Vec<u8>> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::IpAddress(addr.ip().into());
    let exchange = async {
        let mut tls = connector.connect(name, tcp).await?;
        tls.write_all(request).await?;
        tls.flush().await?;
        let mut out = Vec::new();
        tls.read_to_end(&mut out).await?;
        Ok::<_, io::Error>(out)
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| io::Error::other("timed out"))?
}

/// A GET request that closes the connection after the response.
pub(crate) const GET: &[u8] = b"GET /get HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n";

/// Whether an exchange was refused: an error, or nothing at all came back.
pub(crate) fn refused(result: &io::Result<Vec<u8>>) -> bool {
    result.as_ref().map_or(true, Vec::is_empty)
}

/// A TLS record of `kind` (0x16 handshake) carrying `payload`.
pub(crate) fn record(kind: u8, version: [u8; 2], payload: &[u8]) -> Vec<u8> {
    let mut out = vec![kind, version[0], version[1]];
    out.extend_from_slice(
        &u16::try_from(payload.len())
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(payload);
    out
}

/// A ClientHello handshake message (no record header) offering `alpns`, `legacy_version`, the
/// TLS 1.3 suites, and `padding` bytes of padding extension.
pub(crate) fn client_hello(alpns: &[&[u8]], legacy_version: [u8; 2], padding: usize) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&legacy_version);
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0, 6, 0x13, 0x01, 0x13, 0x02, 0x13, 0x03]); // suites
    body.extend_from_slice(&[1, 0]); // compression: null
    let mut exts = Vec::new();
    if !alpns.is_empty() {
        let mut list = Vec::new();
        for p in alpns {
            list.push(u8::try_from(p.len()).unwrap());
            list.extend_from_slice(p);
        }
        let mut data = (u16::try_from(list.len()).unwrap()).to_be_bytes().to_vec();
        data.extend_from_slice(&list);
        exts.extend_from_slice(&16u16.to_be_bytes());
        exts.extend_from_slice(&u16::try_from(data.len()).unwrap().to_be_bytes());
        exts.extend_from_slice(&data);
    }
    if padding > 0 {
        exts.extend_from_slice(&21u16.to_be_bytes());
        exts.extend_from_slice(&u16::try_from(padding).unwrap().to_be_bytes());
        exts.extend(std::iter::repeat_n(0u8, padding));
    }
    body.extend_from_slice(&u16::try_from(exts.len()).unwrap().to_be_bytes());
    body.extend_from_slice(&exts);
    let mut out = vec![1u8];
    let len = u32::try_from(body.len()).unwrap().to_be_bytes();
    out.extend_from_slice(&len[1..]);
    out.extend_from_slice(&body);
    out
}

/// The ClientHello rustls sends for `config`, record header included.
pub(crate) fn rustls_client_hello(config: ClientConfig) -> Vec<u8> {
    let mut conn = rustls::ClientConnection::new(
        Arc::new(config),
        ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
    )
    .unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

/// Writes `bytes` to a new connection to `addr`, then reads until the server closes (at most
/// `wait`): what came back, or the error.
pub(crate) async fn raw_exchange(
    addr: SocketAddr,
    bytes: &[u8],
    wait: Duration,
) -> io::Result<Vec<u8>> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.write_all(bytes).await?;
    let mut out = Vec::new();
    match tokio::time::timeout(wait, tcp.read_to_end(&mut out)).await {
        Ok(Ok(_)) => Ok(out),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(io::Error::other(format!(
            "still open after {wait:?}, {} bytes back",
            out.len()
        ))),
    }
}
