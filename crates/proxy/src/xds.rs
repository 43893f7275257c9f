//! The control-plane client (`meshward.v1`): gets and renews the proxy's certificate
//! ([`certify`]) and follows its view ([`discovery`]).
//!
//! Static stability: when the control plane is gone, the last certificate and view stay in
//! force; both loops retry with capped exponential backoff and jitter.

pub mod certify;
pub mod discovery;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use meshward_identity::{
    AllowedPeers, SpiffeId, SpiffeServerVerifier, TrustBundle, TrustBundleSet, TrustDomain,
    crypto_provider,
};
use rustls::ClientConfig;
use tonic::transport::Channel;

use crate::creds::Credentials;

/// The control plane's service account, in the `istio-system` namespace.
const CONTROL_PLANE_SA: &str = "meshward-control-plane";
const CONTROL_PLANE_NS: &str = "istio-system";
/// Backoff bounds for reconnects and retries.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(15);

/// Why a control-plane call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum XdsError {
    /// The control plane's root cannot be loaded.
    #[error("control-plane root: {0}")]
    Root(String),
    /// `--control-plane` does not resolve.
    #[error("cannot resolve the control plane `{0}`")]
    Resolve(String),
    /// TLS configuration failed.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// The channel could not be opened.
    #[error("{0}")]
    Channel(#[from] meshward_api::ChannelError),
    /// The control plane answered with an error.
    #[error("control plane: {}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    /// The signed certificate is unusable.
    #[error("signed certificate refused: {0}")]
    Certificate(String),
}

/// How to reach and authenticate the control plane.
#[derive(Debug, Clone)]
pub struct ControlPlane {
    address: String,
    roots: Arc<TrustBundleSet>,
    expected: SpiffeId,
}

impl ControlPlane {
    /// Loads the control plane's root from `root_pem_file`; the control plane must present
    /// `spiffe://<trust_domain>/ns/istio-system/sa/meshward-control-plane`.
    pub async fn new(
        address: String,
        root_pem_file: &std::path::Path,
        trust_domain: &TrustDomain,
    ) -> Result<Self, XdsError> {
        let pem = tokio::fs::read(root_pem_file)
            .await
            .map_err(|e| XdsError::Root(format!("cannot read {}: {e}", root_pem_file.display())))?;
        let (bundle, _) = TrustBundle::from_pem(trust_domain.clone(), &pem)
            .map_err(|e| XdsError::Root(format!("{}: {e}", root_pem_file.display())))?;
        let expected = SpiffeId::istio(trust_domain, CONTROL_PLANE_NS, CONTROL_PLANE_SA)
            .map_err(|e| XdsError::Root(e.to_string()))?;
        Ok(Self {
            address,
            roots: Arc::new(TrustBundleSet::from(bundle)),
            expected,
        })
    }

    async fn resolve(&self) -> Result<SocketAddr, XdsError> {
        tokio::net::lookup_host(&self.address)
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| XdsError::Resolve(self.address.clone()))
    }

    /// The roots that verify the control plane: `--control-plane-root`'s, and the mesh's roots
    /// in force (after a root rotation the control plane's certificate chains to the new root).
    fn roots(&self, creds: Option<&Credentials>) -> Arc<TrustBundleSet> {
        let td = self.expected.trust_domain();
        let (Some(file), Some(pushed)) =
            (self.roots.get(td), creds.and_then(|c| c.bundles().get(td)))
        else {
            return Arc::clone(&self.roots);
        };
        let mut bundle = file.clone();
        for root in pushed.roots() {
            // The pushed roots were checked when they were installed.
            let _ = bundle.add_root(root.clone());
        }
        Arc::new(TrustBundleSet::from(bundle))
    }

    /// A channel authenticated by `creds` (mTLS), or by nothing (join-token signing).
    async fn channel(&self, creds: Option<&Credentials>) -> Result<Channel, XdsError> {
        let verifier = SpiffeServerVerifier::new(
            self.roots(creds),
            AllowedPeers::default().with_id(self.expected.clone()),
        );
        let builder = ClientConfig::builder_with_provider(crypto_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            // Safe: full chain validation against the control-plane root, then the control
            // plane's SPIFFE ID instead of a DNS name.
            .with_custom_certificate_verifier(Arc::new(verifier));
        let config = match creds {
            Some(c) => builder.with_client_auth_cert(c.chain().to_vec(), c.key().clone_key())?,
            None => builder.with_no_client_auth(),
        };
        Ok(meshward_api::connect(self.resolve().await?, config).await?)
    }
}

/// Capped exponential backoff with ±50 % jitter.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Self { next: BACKOFF_MIN }
    }

    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }

    /// The next delay to wait.
    fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        base.mul_f64(0.5 + random_unit())
    }
}

/// A uniform number in [0, 1) from the crypto provider's secure random source.
pub(crate) fn random_unit() -> f64 {
    let mut bytes = [0u8; 4];
    // A failed read leaves zeroes: no jitter, still a valid delay.
    let _ = crypto_provider().secure_random.fill(&mut bytes);
    f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let mut b = Backoff::new();
        let mut last = Duration::ZERO;
        for _ in 0..20 {
            last = b.next_delay();
            assert!(last <= BACKOFF_MAX.mul_f64(1.5));
        }
        assert!(last >= BACKOFF_MAX.mul_f64(0.5));
        b.reset();
        assert!(b.next_delay() <= BACKOFF_MIN.mul_f64(1.5));
    }

    #[test]
    fn random_unit_is_in_range() {
        for _ in 0..100 {
            let r = random_unit();
            assert!((0.0..1.0).contains(&r));
        }
    }
}
