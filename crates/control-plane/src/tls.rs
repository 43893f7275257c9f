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
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tonic::{Request, Status, transport::server::TcpConnectInfo};

/// The server config of port 15012: TLS 1.3 only, ALPN h2, client SVID optional.
pub(crate) fn server_config(
    bundles: Arc<TrustBundleSet>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, rustls::Error> {
    let verifier = SpiffeClientVerifier::new(bundles, AllowedPeers::any()).optional();
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
