//! The context file: how the CLI finds a running control plane and proves it is the
//! administrator, as kubeconfig does for kubectl.
//!
//! Written by `meshward control-plane` (and `meshward up`) on start; read by every CLI verb that
//! talks to a control plane. Its location is `$MESHWARD_CONTEXT`, else
//! `$HOME/.meshward/context.json`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::files;

/// Where a control plane listens and the files that authenticate to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Context {
    /// `host:port` of the gRPC API (15012).
    pub server: String,
    /// `host:port` of the monitoring endpoint (15014).
    pub monitoring: String,
    /// PEM file with the roots that verify the control plane's certificate.
    pub root_cert: PathBuf,
    /// The administrator's certificate chain (PEM).
    pub admin_cert: PathBuf,
    /// The administrator's private key (PEM, mode 0600).
    pub admin_key: PathBuf,
    /// The mesh's trust domain.
    pub trust_domain: String,
    /// The control plane's data directory.
    pub data_dir: PathBuf,
}

/// Why the context could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// No context file: nothing was started on this machine (or `$HOME` is unset).
    #[error(
        "no control plane known: {0} does not exist (start one with `meshward control-plane` or `meshward up`, or pass --server)"
    )]
    Missing(PathBuf),
    /// The file exists but is not a context.
    #[error("{path}: {reason}")]
    Invalid {
        /// The context file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl Context {
    /// The context file's path: `$MESHWARD_CONTEXT`, else `$HOME/.meshward/context.json`.
    pub fn default_path() -> PathBuf {
        if let Some(path) = std::env::var_os("MESHWARD_CONTEXT") {
            return PathBuf::from(path);
        }
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
        home.join(".meshward").join("context.json")
    }

    /// Reads the context at `path`.
    pub fn load(path: &Path) -> Result<Self, ContextError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ContextError::Missing(path.to_owned()));
            }
            Err(e) => {
                return Err(ContextError::Invalid {
                    path: path.to_owned(),
                    reason: e.to_string(),
                });
            }
        };
        serde_json::from_slice(&bytes).map_err(|e| ContextError::Invalid {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }

    /// Writes the context to `path` atomically, creating its directory.
    pub fn store(&self, path: &Path) -> Result<(), ContextError> {
        let invalid = |reason: String| ContextError::Invalid {
            path: path.to_owned(),
            reason,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| invalid(e.to_string()))?;
        }
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| invalid(e.to_string()))?;
        files::write_private(path, &bytes).map_err(|e| invalid(e.to_string()))
    }
}
