//! The proxy's credentials: its SVID (key and chain) and trust bundle, with the rustls configs
//! built from them, published through a `watch` so a new certificate replaces the old one for
//! new connections without touching open ones.
//!
//! The store starts empty and stays empty until a certificate that verifies against its own
//! bundle arrives: until then no inbound mTLS is served and the proxy is not ready (fail
//! closed). A bad replacement is refused and the previous credentials stay in place.

pub(crate) mod files;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use meshward_identity::{
    AllowedPeers, Side, SpiffeId, SvidError, TrustBundleSet, peer_spiffe_id, verify_svid_chain,
};
use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use serde::Serialize;
use tokio::sync::watch;
use x509_parser::prelude::{FromDer, X509Certificate};

pub use files::{FileError, load_files, watch_files};

use crate::tls;

/// At most this many distinct outbound client configs are cached per certificate.
const CLIENT_CACHE_LIMIT: usize = 256;

/// Why a certificate cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredsError {
    /// The chain is not a valid SVID for this trust bundle.
    #[error("the certificate is not a valid SVID: {0}")]
    Svid(#[from] SvidError),
    /// rustls refused the key or chain (e.g. the key does not match the certificate).
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The leaf cannot be parsed for its validity period.
    #[error("cannot read the certificate's validity: {0}")]
    Validity(String),
}

/// Outbound client configs are cached by (accepted server identities, ALPN).
type ClientKey = (Vec<SpiffeId>, Vec<u8>);

// === impl Credentials ===

/// One SVID with its trust bundle and the configs built from them.
pub struct Credentials {
    id: SpiffeId,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    bundles: Arc<TrustBundleSet>,
    not_before: SystemTime,
    not_after: SystemTime,
    server: Arc<ServerConfig>,
    clients: Mutex<HashMap<ClientKey, Arc<ClientConfig>>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("id", &self.id)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Checks that `chain` is a valid SVID under `bundles` now and that `key` matches it, then
    /// builds the server config. The bundles' revocations apply to peers, not to this proxy's
    /// own certificate: a revoked workload is cut off by the others.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        bundles: Arc<TrustBundleSet>,
    ) -> Result<Self, CredsError> {
        let id = verify_svid_chain(
            &chain,
            Side::Client,
            &bundles.without_revocations(),
            &AllowedPeers::any(),
            UnixTime::now(),
        )?;
        let (not_before, not_after) = validity(&chain)?;
        // `with_single_cert` refuses a key that does not match the leaf.
        let server = tls::server_config(Arc::clone(&bundles), chain.clone(), key.clone_key())?;
        Ok(Self {
            id,
            chain,
            key,
            bundles,
            not_before,
            not_after,
            server: Arc::new(server),
            clients: Mutex::new(HashMap::new()),
        })
    }

    /// This proxy's SPIFFE ID.
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// The trusted roots.
    pub fn bundles(&self) -> &Arc<TrustBundleSet> {
        &self.bundles
    }

    /// The certificate chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// The private key (for the control-plane channel; it never leaves the process).
    pub(crate) fn key(&self) -> &PrivateKeyDer<'static> {
        &self.key
    }

    /// SHA-256 (hex) of the SubjectPublicKeyInfo of the CA that signed the leaf (the next
    /// certificate of the chain), empty when the chain has none.
    pub fn signer_key(&self) -> String {
        self.chain
            .get(1)
            .and_then(|c| meshward_identity::spki_sha256(c.as_ref()))
            .unwrap_or_default()
    }

    /// The leaf's serial number, lower-case hex.
    pub fn serial(&self) -> String {
        self.chain
            .first()
            .and_then(|leaf| X509Certificate::from_der(leaf.as_ref()).ok())
            .map(|(_, cert)| meshward_identity::Serial::from_der_bytes(cert.raw_serial()).to_hex())
            .unwrap_or_default()
    }

    /// SHA-256 fingerprints of the roots trusted for this proxy's own trust domain.
    pub fn own_roots(&self) -> Vec<String> {
        self.bundles
            .get(self.id.trust_domain())
            .map(|b| {
                b.roots()
                    .iter()
                    .map(|r| meshward_identity::fingerprint_sha256(r.as_ref()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// When the leaf expires.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// When the leaf became valid.
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// Whether the leaf is expired at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        now >= self.not_after
    }

    /// The inbound server config.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.server)
    }

    /// A client config that accepts only servers named in `expected` and offers `alpn`.
    /// Cached, so TLS session resumption works across connections to the same service.
    pub fn client_config(
        &self,
        expected: &[SpiffeId],
        alpn: &[u8],
    ) -> Result<Arc<ClientConfig>, CredsError> {
        let cache_key = (expected.to_vec(), alpn.to_vec());
        // A poisoned lock only means another thread panicked mid-insert; the map is still a
        // valid cache, so keep using it.
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(config) = clients.get(&cache_key) {
            return Ok(Arc::clone(config));
        }
        let config = Arc::new(tls::client_config(
            Arc::clone(&self.bundles),
            expected,
            alpn,
            self.chain.clone(),
            self.key.clone_key(),
        )?);
        if clients.len() >= CLIENT_CACHE_LIMIT {
            clients.clear();
        }
        clients.insert(cache_key, Arc::clone(&config));
        Ok(config)
    }

    /// A summary for the admin endpoints.
    pub fn summary(&self) -> CertSummary {
        CertSummary {
            identity: self.id.to_string(),
            serial: self.serial(),
            signer: self.signer_key(),
            not_before: unix(self.not_before),
            not_after: unix(self.not_after),
            chain_len: self.chain.len(),
            trust_domains: self
                .bundles
                .iter()
                .map(|b| b.trust_domain().to_string())
                .collect(),
            roots: self.bundles.iter().map(|b| b.roots().len()).sum(),
        }
    }
}

/// What `/certs` shows about the current certificate.
#[derive(Debug, Clone, Serialize)]
pub struct CertSummary {
    /// The SPIFFE ID.
    pub identity: String,
    /// The leaf's serial number, lower-case hex (what `meshward ca revoke --serial` takes).
    pub serial: String,
    /// SHA-256 of the signing CA's public key (changes when a root rotation re-issues it).
    pub signer: String,
    /// Unix seconds.
    pub not_before: u64,
    /// Unix seconds.
    pub not_after: u64,
    /// Certificates in the chain.
    pub chain_len: usize,
    /// Trust domains with a bundle.
    pub trust_domains: Vec<String>,
    /// Trusted roots, all domains together.
    pub roots: usize,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn validity(chain: &[CertificateDer<'_>]) -> Result<(SystemTime, SystemTime), CredsError> {
    let leaf = chain
        .first()
        .ok_or(CredsError::Svid(SvidError::EmptyChain))?;
    let (_, cert) = X509Certificate::from_der(leaf.as_ref())
        .map_err(|e| CredsError::Validity(e.to_string()))?;
    let at = |ts: i64| {
        u64::try_from(ts)
            .map(|s| UNIX_EPOCH + Duration::from_secs(s))
            .map_err(|_| CredsError::Validity(format!("timestamp {ts} before 1970")))
    };
    Ok((
        at(cert.validity().not_before.timestamp())?,
        at(cert.validity().not_after.timestamp())?,
    ))
}

/// The SPIFFE ID of a verified peer, from rustls' `peer_certificates()`.
pub fn peer_id(certs: Option<&[CertificateDer<'_>]>) -> Option<SpiffeId> {
    certs.and_then(|c| peer_spiffe_id(c).ok())
}

// === impl CredsStore ===

/// The writer side: publishes validated credentials to every reader.
#[derive(Debug, Clone)]
pub struct CredsStore {
    tx: watch::Sender<Option<Arc<Credentials>>>,
    renew: Arc<tokio::sync::Notify>,
}

/// The reader side: the current credentials, `None` until the first certificate.
pub type CredsReceiver = watch::Receiver<Option<Arc<Credentials>>>;

impl Default for CredsStore {
    fn default() -> Self {
        Self::new()
    }
}

impl CredsStore {
    /// An empty store: fails closed until [`CredsStore::publish`].
    pub fn new() -> Self {
        Self {
            tx: watch::Sender::new(None),
            renew: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Asks whoever renews the certificate to do it now (the control plane wants every
    /// certificate re-issued, e.g. during a root rotation).
    pub fn request_renewal(&self) {
        self.renew.notify_one();
    }

    /// Resolves when a renewal is requested.
    pub async fn renewal_requested(&self) {
        self.renew.notified().await;
    }

    /// Replaces the current credentials. Open connections keep the config they started with.
    pub fn publish(&self, creds: Credentials) {
        tracing::info!(
            identity = %creds.id,
            not_after = unix(creds.not_after),
            "certificate installed"
        );
        self.tx.send_replace(Some(Arc::new(creds)));
    }

    /// A reader.
    pub fn subscribe(&self) -> CredsReceiver {
        self.tx.subscribe()
    }

    /// The current credentials.
    pub fn current(&self) -> Option<Arc<Credentials>> {
        self.tx.borrow().clone()
    }
}
