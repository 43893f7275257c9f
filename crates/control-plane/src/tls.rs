//! The control plane's TLS: its own SVID as the server certificate, and an *optional* client
//! certificate, verified as an X.509-SVID when presented.
//!
//! Optional because a brand-new proxy has no certificate yet and authenticates its first CSR
//! with a join token instead. Every RPC other than that first `Sign` checks the peer identity
//! itself (see [`peer_identity`]), so an unauthenticated connection can do nothing else.

use std::sync::Arc;

use meshward_identity::{
    AllowedPeers, SpiffeClientVerifier, SpiffeId, TrustBundleSet, crypto_provider, peer_spiffe_id,
};
use rustls::{
    DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme,
    client::danger::HandshakeSignatureValid,
    server::danger::{ClientCertVerified, ClientCertVerifier},
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tonic::{Request, Status, transport::server::TcpConnectInfo};

/// A [`SpiffeClientVerifier`] that lets clients without a certificate through the handshake.
#[derive(Debug)]
struct OptionalClientAuth(SpiffeClientVerifier);

impl ClientCertVerifier for OptionalClientAuth {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0.verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The server config of port 15012: TLS 1.3 only, ALPN h2, client SVID optional.
pub(crate) fn server_config(
    bundles: Arc<TrustBundleSet>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, rustls::Error> {
    let verifier = OptionalClientAuth(SpiffeClientVerifier::new(bundles, AllowedPeers::any()));
    let mut config = ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

type TlsInfo = tonic::transport::server::TlsConnectInfo<TcpConnectInfo>;

/// The SPIFFE ID the caller proved with its client certificate, if it presented one.
pub(crate) fn peer_identity<T>(request: &Request<T>) -> Option<SpiffeId> {
    let certs = request.extensions().get::<TlsInfo>()?.peer_certs()?;
    peer_spiffe_id(&certs).ok()
}

/// Expiry (Unix seconds) of the certificate the caller presented, if any.
pub(crate) fn peer_not_after<T>(request: &Request<T>) -> Option<i64> {
    let certs = request.extensions().get::<TlsInfo>()?.peer_certs()?;
    crate::not_after(certs.first()?)
}

/// The caller's SPIFFE ID, or `Unauthenticated`.
pub(crate) fn require_identity<T>(request: &Request<T>) -> Result<SpiffeId, Status> {
    peer_identity(request)
        .ok_or_else(|| Status::unauthenticated("this call needs a client certificate (an SVID)"))
}
