//! Fixtures shared by the benchmarks in `benches/`: a CA on disk and requests to sign.
//!
//! Each benchmark measures a Meshward operation beside a baseline in the same run, so the
//! figure reads as "x times the floor" on whatever machine runs it.

use std::time::Duration;

use meshward_ca::{Authority, CaError, InitOptions};
use meshward_identity::{IdError, SpiffeId, TrustDomain};
use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256};

/// A built-in CA in a temporary directory (kept alive as long as the value).
pub struct BenchCa {
    /// The authority under test.
    pub authority: Authority,
    _dir: tempfile::TempDir,
}

/// Why a fixture could not be built.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// Creating the temporary directory failed.
    #[error("temporary directory: {0}")]
    Io(#[from] std::io::Error),
    /// A fixed identity did not parse.
    #[error("identity: {0}")]
    Id(#[from] IdError),
    /// Creating the CA failed.
    #[error("CA: {0}")]
    Ca(#[from] CaError),
    /// Generating a key or CSR failed.
    #[error("key or CSR: {0}")]
    Rcgen(#[from] rcgen::Error),
}

impl BenchCa {
    /// A CA for `cluster.local`; `intermediate` puts an intermediate under the root.
    pub fn new(intermediate: bool) -> Result<Self, FixtureError> {
        let dir = tempfile::tempdir()?;
        let td = TrustDomain::new("cluster.local")?;
        let mut options = InitOptions::new(td);
        if intermediate {
            options = options.with_intermediate();
        }
        let authority = Authority::init(&dir.path().join("ca"), &options)?;
        Ok(Self {
            authority,
            _dir: dir,
        })
    }
}

/// A DER PKCS#10 request from a fresh ECDSA P-256 key, as a proxy sends it.
pub fn p256_csr() -> Result<Vec<u8>, FixtureError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let csr = CertificateParams::default().serialize_request(&key)?;
    Ok(csr.der().to_vec())
}

/// The workload identity the benchmarks certify.
pub fn workload_id() -> Result<SpiffeId, IdError> {
    "spiffe://cluster.local/ns/default/sa/sleep".parse()
}

/// The TTL the benchmarks request (Istio's default).
pub const TTL: Duration = Duration::from_secs(24 * 3600);
