//! The one place that builds the sidecar's rustls configs: TLS 1.3 only between sidecars, no
//! 0-RTT, aws-lc-rs with the post-quantum hybrid group preferred, and the SPIFFE verifiers of
//! `meshward-identity` on both sides; TLS 1.2 or 1.3 with WebPKI name checks for origination to
//! servers outside the mesh (DestinationRule SIMPLE/MUTUAL).

use std::io;
use std::sync::Arc;

use meshward_identity::{
    AllowedPeers, SpiffeClientVerifier, SpiffeId, SpiffeServerVerifier, TrustBundleSet,
    crypto_provider,
};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{
    CertificateError, ClientConfig, CommonState, DigitallySignedStruct, ProtocolVersion,
    RootCertStore, ServerConfig, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

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

/// A client config for TLS origination to a server outside the mesh: TLS 1.2 or 1.3, the
/// server's chain verified against `roots` and its certificate required to name one of `names`
/// (WebPKI: DNS names against SAN dNSName entries, addresses against iPAddress entries),
/// `identity` presented when given (MUTUAL), `alpn` offered when given.
pub fn origination_config(
    roots: RootCertStore,
    names: Vec<ServerName<'static>>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    alpn: Option<&[u8]>,
) -> Result<ClientConfig, rustls::Error> {
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), crypto_provider())
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    let verifier = AnyName { webpki, names };
    let builder = ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .dangerous()
        // Safe: `AnyName` runs the full WebPKI verification, only for names of its own.
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.map(|p| vec![p.to_vec()]).unwrap_or_default();
    config.enable_early_data = false;
    Ok(config)
}

/// WebPKI verification that accepts a server certificate valid for any one of `names` (a
/// DestinationRule's `subjectAltNames`), whatever SNI was sent.
#[derive(Debug)]
struct AnyName {
    webpki: Arc<WebPkiServerVerifier>,
    names: Vec<ServerName<'static>>,
}

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _sni: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut last = rustls::Error::InvalidCertificate(CertificateError::NotValidForName);
        for name in &self.names {
            match self
                .webpki
                .verify_server_cert(end_entity, intermediates, name, ocsp, now)
            {
                Ok(verified) => return Ok(verified),
                Err(err) => last = err,
            }
        }
        Err(last)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// Why a handshake failed, as one of a few fixed words (a metric label): `timeout`,
/// `connection_closed`, `no_client_certificate`, `certificate_expired`,
/// `certificate_not_yet_valid`, `unknown_ca`, `certificate_rejected` (e.g. a SPIFFE ID not
/// allowed), `bad_certificate`, `alert_received` (the peer refused ours), `peer_incompatible`,
/// `protocol_error`, `io_error`, `other`.
pub fn failure_reason(err: &io::Error) -> &'static str {
    let Some(tls) = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return match err.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => "connection_closed",
            io::ErrorKind::TimedOut => "timeout",
            _ => "io_error",
        };
    };
    match tls {
        rustls::Error::NoCertificatesPresented => "no_client_certificate",
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "certificate_expired"
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "certificate_not_yet_valid"
            }
            CertificateError::UnknownIssuer => "unknown_ca",
            CertificateError::Other(_)
            | CertificateError::ApplicationVerificationFailure
            | CertificateError::NotValidForName
            | CertificateError::NotValidForNameContext { .. } => "certificate_rejected",
            _ => "bad_certificate",
        },
        rustls::Error::AlertReceived(_) => "alert_received",
        rustls::Error::PeerIncompatible(_) => "peer_incompatible",
        rustls::Error::PeerMisbehaved(_)
        | rustls::Error::InappropriateMessage { .. }
        | rustls::Error::InappropriateHandshakeMessage { .. }
        | rustls::Error::InvalidMessage(_) => "protocol_error",
        _ => "other",
    }
}

/// The negotiated version and cipher suite, as Envoy names them (`TLSv1.3`,
/// `TLS_AES_128_GCM_SHA256`), for access logs.
pub fn session_names(state: &CommonState) -> (Option<&'static str>, Option<&'static str>) {
    let version = state.protocol_version().map(|v| match v {
        ProtocolVersion::TLSv1_3 => "TLSv1.3",
        ProtocolVersion::TLSv1_2 => "TLSv1.2",
        _ => "unknown",
    });
    let cipher = state
        .negotiated_cipher_suite()
        .and_then(|s| s.suite().as_str())
        .map(|name| match name {
            "TLS13_AES_128_GCM_SHA256" => "TLS_AES_128_GCM_SHA256",
            "TLS13_AES_256_GCM_SHA384" => "TLS_AES_256_GCM_SHA384",
            "TLS13_CHACHA20_POLY1305_SHA256" => "TLS_CHACHA20_POLY1305_SHA256",
            other => other,
        });
    (version, cipher)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_reasons_are_fixed_words() {
        let tls = |e: rustls::Error| io::Error::new(io::ErrorKind::InvalidData, e);
        assert_eq!(
            failure_reason(&tls(rustls::Error::NoCertificatesPresented)),
            "no_client_certificate"
        );
        assert_eq!(
            failure_reason(&tls(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer
            ))),
            "unknown_ca"
        );
        assert_eq!(
            failure_reason(&io::Error::from(io::ErrorKind::UnexpectedEof)),
            "connection_closed"
        );
    }

    #[test]
    fn mesh_alpns_are_istios() {
        assert!(is_mesh_alpn(b"istio"));
        assert!(is_mesh_alpn(b"istio-http/1.1"));
        assert!(!is_mesh_alpn(b"h2"));
        assert!(!is_mesh_alpn(b"istio-http/2"));
    }
}
