//! rustls glue: a [`ServerCertVerifier`] for the client side and a [`ClientCertVerifier`] for the
//! server side, both running [`verify_svid_chain`], plus the one place that builds TLS configs.
//!
//! rustls' own `WebPkiServerVerifier` cannot be wrapped on the client side: it insists on a DNS
//! or IP SAN matching the server name, and an SVID carries only a URI SAN. So both verifiers
//! call webpki through [`verify_svid_chain`] and check identity instead of names.

use std::sync::{Arc, LazyLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, OtherError,
    ServerConfig, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::bundle::TrustBundleSet;
use crate::svid::{AllowedPeers, Side, verify_svid_chain};

static PROVIDER: LazyLock<Arc<CryptoProvider>> =
    LazyLock::new(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));

/// The crypto provider every Meshward TLS config and verifier uses: aws-lc-rs, passed
/// explicitly so that no process-wide default is needed (a library must not install one).
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::clone(&PROVIDER)
}

// === impl SvidPolicy ===

/// What both verifiers hold and do; each trait impl delegates here.
#[derive(Debug)]
struct SvidPolicy {
    bundles: Arc<TrustBundleSet>,
    allowed: AllowedPeers,
    provider: Arc<CryptoProvider>,
}

impl SvidPolicy {
    fn new(bundles: Arc<TrustBundleSet>, allowed: AllowedPeers) -> Self {
        Self {
            bundles,
            allowed,
            provider: crypto_provider(),
        }
    }

    fn verify(
        &self,
        side: Side,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let mut chain = Vec::with_capacity(1 + intermediates.len());
        chain.push(end_entity.clone());
        chain.extend_from_slice(intermediates);
        verify_svid_chain(&chain, side, &self.bundles, &self.allowed, now)
            .map(drop)
            .map_err(|err| {
                rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
                    err,
                ))))
            })
    }

    fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

// === impl SpiffeServerVerifier ===

/// Client side: verifies the server's X.509-SVID and that its SPIFFE ID is allowed.
///
/// The `ServerName` of the connection is not checked: SVIDs carry no DNS names, and the
/// identity check against [`AllowedPeers`] takes its place.
#[derive(Debug)]
pub struct SpiffeServerVerifier(SvidPolicy);

impl SpiffeServerVerifier {
    /// Trusts the roots in `bundles` and accepts the server identities in `allowed`.
    pub fn new(bundles: Arc<TrustBundleSet>, allowed: AllowedPeers) -> Self {
        Self(SvidPolicy::new(bundles, allowed))
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0
            .verify(Side::Server, end_entity, intermediates, now)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.schemes()
    }
}

// === impl SpiffeClientVerifier ===

/// Server side: verifies the client's X.509-SVID (with EKU clientAuth) and that its SPIFFE ID
/// is allowed. A client certificate is required unless [`Self::optional`] says otherwise.
#[derive(Debug)]
pub struct SpiffeClientVerifier {
    policy: SvidPolicy,
    mandatory: bool,
}

impl SpiffeClientVerifier {
    /// Trusts the roots in `bundles` and accepts the client identities in `allowed`.
    pub fn new(bundles: Arc<TrustBundleSet>, allowed: AllowedPeers) -> Self {
        Self {
            policy: SvidPolicy::new(bundles, allowed),
            mandatory: true,
        }
    }

    /// Lets clients without any certificate complete the handshake (a certificate that *is*
    /// sent is still fully verified). For endpoints where a workload first obtains its SVID;
    /// the application must then authenticate such clients another way.
    pub fn optional(mut self) -> Self {
        self.mandatory = false;
        self
    }
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: a mesh client has exactly one SVID, so there is nothing to choose between.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.policy
            .verify(Side::Client, end_entity, intermediates, now)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.policy.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.policy.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.policy.schemes()
    }
}

// === configs ===

/// A client config that presents `cert_chain`/`key` and accepts servers allowed by `allowed`.
pub fn client_config(
    bundles: Arc<TrustBundleSet>,
    allowed: AllowedPeers,
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ClientConfig, rustls::Error> {
    ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        // Safe: this verifier runs full webpki chain validation, then checks SPIFFE identity
        // in place of the DNS name check it replaces.
        .with_custom_certificate_verifier(Arc::new(SpiffeServerVerifier::new(bundles, allowed)))
        .with_client_auth_cert(cert_chain, key)
}

/// A server config that presents `cert_chain`/`key` and requires clients allowed by `allowed`.
pub fn server_config(
    bundles: Arc<TrustBundleSet>,
    allowed: AllowedPeers,
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, rustls::Error> {
    ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(SpiffeClientVerifier::new(bundles, allowed)))
        .with_single_cert(cert_chain, key)
}

#[cfg(test)]
mod tests;
