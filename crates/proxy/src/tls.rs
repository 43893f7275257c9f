//! The one place that builds the sidecar's rustls configs: TLS 1.3 only between sidecars, no
//! 0-RTT, aws-lc-rs with the post-quantum hybrid group preferred, and the SPIFFE verifiers of
//! `meshward-identity` on both sides.

use std::sync::Arc;

use meshward_identity::{
    AllowedPeers, SpiffeClientVerifier, SpiffeId, SpiffeServerVerifier, TrustBundleSet,
    crypto_provider,
};
use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The ALPN values that mark a ClientHello as mesh traffic (Istio's, so PERMISSIVE ports tell
/// mesh mTLS from an app's own TLS the same way Istio does).
pub const MESH_ALPNS: [&[u8]; 5] = [
    b"istio-peer-exchange",
    b"istio",
    b"istio-http/1.0",
    b"istio-http/1.1",
    b"istio-h2",
];

/// ALPN the client sidecar offers for HTTP/1.1 it carries.
pub const ALPN_HTTP1: &[u8] = b"istio-http/1.1";

/// ALPN the client sidecar offers for opaque TCP (CONNECT tunnels, upstreams).
pub const ALPN_TCP: &[u8] = b"istio";

/// Whether one ALPN protocol name is a mesh one.
pub fn is_mesh_alpn(proto: &[u8]) -> bool {
    MESH_ALPNS.contains(&proto)
}

/// The inbound server config: presents `chain`/`key`, requires a client SVID that verifies
/// against `bundles`, TLS 1.3 only. No ALPN is advertised: the client's mesh ALPN selected
/// this path, and the inner protocol is detected from the decrypted bytes.
pub fn server_config(
    bundles: Arc<TrustBundleSet>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, rustls::Error> {
    let verifier = SpiffeClientVerifier::new(bundles, AllowedPeers::any());
    let mut config = ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(chain, key)?;
    // No 0-RTT: early data is replayable and would reach the app before the handshake is done.
    config.max_early_data_size = 0;
    Ok(config)
}

/// An outbound client config: presents `chain`/`key`, offers `alpn`, and accepts only a server
/// whose SVID verifies against `bundles` and names one of `expected`.
pub fn client_config(
    bundles: Arc<TrustBundleSet>,
    expected: &[SpiffeId],
    alpn: &[u8],
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ClientConfig, rustls::Error> {
    let allowed = expected
        .iter()
        .cloned()
        .fold(AllowedPeers::default(), AllowedPeers::with_id);
    let verifier = SpiffeServerVerifier::new(bundles, allowed);
    let mut config = ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        // Safe: the SPIFFE verifier runs full webpki chain validation against the trust bundle,
        // then checks the server's SPIFFE ID in place of the DNS-name check it replaces.
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(chain, key)?;
    config.alpn_protocols = vec![alpn.to_vec()];
    config.enable_early_data = false;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mesh_alpns_are_istios() {
        assert!(is_mesh_alpn(b"istio"));
        assert!(is_mesh_alpn(b"istio-http/1.1"));
        assert!(!is_mesh_alpn(b"h2"));
        assert!(!is_mesh_alpn(b"istio-http/2"));
    }
}
