//! Static identity from PEM files (`--cert --key --bundle`), polled for changes: a changed file
//! is reloaded, validated and published; a broken one is logged and the last good credentials
//! stay in place.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use meshward_identity::{BundleError, TrustBundle, TrustBundleSet, TrustDomain};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

use super::{Credentials, CredsError, CredsStore};

/// How often the files are checked for changes.
const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Largest PEM file read (a chain or bundle is a few KiB; anything bigger is a mistake).
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// Why the files cannot be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// A file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file is larger than any sane PEM file.
    #[error("{0} is larger than 1 MiB")]
    TooLarge(PathBuf),
    /// A file holds no usable PEM of the expected kind.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The bundle has no usable root.
    #[error("bundle {path}: {source}")]
    Bundle {
        /// The file.
        path: PathBuf,
        /// Why.
        source: BundleError,
    },
    /// The certificate is not usable with this key and bundle.
    #[error("{path}: {source}")]
    Creds {
        /// The certificate file.
        path: PathBuf,
        /// Why.
        source: CredsError,
    },
}

pub(crate) async fn read(path: &Path) -> Result<Vec<u8>, FileError> {
    let err = |source| FileError::Read {
        path: path.to_owned(),
        source,
    };
    let meta = tokio::fs::metadata(path).await.map_err(err)?;
    if meta.len() > MAX_PEM_BYTES {
        return Err(FileError::TooLarge(path.to_owned()));
    }
    tokio::fs::read(path).await.map_err(err)
}

/// Loads and validates the three files.
pub async fn load_files(
    cert: &Path,
    key: &Path,
    bundle: &Path,
    trust_domain: &TrustDomain,
) -> Result<Credentials, FileError> {
    let pem_err = |path: &Path, reason: String| FileError::Pem {
        path: path.to_owned(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(&read(cert).await?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(pem_err(cert, "no CERTIFICATE section".to_owned()));
    }
    let key_der = PrivateKeyDer::from_pem_slice(&read(key).await?)
        .map_err(|e| pem_err(key, format!("no usable private key: {e}")))?;
    let (roots, skipped) = TrustBundle::from_pem(trust_domain.clone(), &read(bundle).await?)
        .map_err(|source| FileError::Bundle {
            path: bundle.to_owned(),
            source,
        })?;
    for s in skipped {
        tracing::warn!(bundle = %bundle.display(), position = s.position, reason = %s.reason, "skipped a bundle entry");
    }
    Credentials::new(chain, key_der, Arc::new(TrustBundleSet::from(roots))).map_err(|source| {
        FileError::Creds {
            path: cert.to_owned(),
            source,
        }
    })
}

pub(crate) async fn stamp(paths: &[&Path]) -> Vec<Option<(SystemTime, u64)>> {
    let mut out = Vec::with_capacity(paths.len());
    for p in paths {
        out.push(
            tokio::fs::metadata(p)
                .await
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len()))),
        );
    }
    out
}

/// Polls the files every two seconds until `stop`, publishing each change that validates.
pub async fn watch_files(
    store: CredsStore,
    cert: PathBuf,
    key: PathBuf,
    bundle: PathBuf,
    trust_domain: TrustDomain,
    stop: CancellationToken,
) {
    let paths = [cert.as_path(), key.as_path(), bundle.as_path()];
    let mut last = stamp(&paths).await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(POLL_INTERVAL) => {}
        }
        let now = stamp(&paths).await;
        if now == last {
            continue;
        }
        last = now;
        match load_files(&cert, &key, &bundle, &trust_domain).await {
            Ok(creds) => store.publish(creds),
            Err(err) => {
                tracing::error!(%err, "certificate files changed but cannot be used; keeping the previous certificate");
            }
        }
    }
}
