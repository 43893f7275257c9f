//! Where applied resources live: one [`Store`] trait, and the embedded [`FileStore`] that is the
//! default backend (atomic writes, revisions, watchers, all-or-nothing apply).
//!
//! The trait is synchronous and runtime-agnostic: watchers get a `std::sync::mpsc` receiver of
//! revisions, or block on [`Store::wait_for_change`]; an async caller wraps either in
//! `spawn_blocking`.

use std::sync::mpsc::Receiver;
use std::time::Duration;

use meshward_config::{Diagnostic, Document, Kind, ResourceKey};
use thiserror::Error;

mod file;
mod watchers;

pub use file::FileStore;

/// A configuration version: bumped by every change, never reused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision(pub u64);

impl std::fmt::Display for Revision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What an apply changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The revision after the apply (unchanged when nothing changed).
    pub revision: Revision,
    /// Resources that were new.
    pub created: Vec<ResourceKey>,
    /// Resources whose text changed.
    pub updated: Vec<ResourceKey>,
    /// Resources applied again unchanged.
    pub unchanged: Vec<ResourceKey>,
}

/// Store failures.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The stream has invalid documents; nothing was written.
    #[error("{} invalid: nothing applied", if .0.len() == 1 { "1 error".to_owned() } else { format!("{} errors", .0.len()) })]
    Invalid(Vec<Diagnostic>),
    /// The stream would break the mesh (a resource defined twice); nothing was written.
    #[error("{0}; nothing applied")]
    Conflict(String),
    /// Another process holds the data directory.
    #[error("data directory {0} is in use by another process")]
    Locked(String),
    /// The persisted state cannot be read back.
    #[error("stored state {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// Reading or writing the data directory failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// A place applied resources live.
pub trait Store: Send + Sync {
    /// Validates every document of every file (`(name, text)` pairs) and applies them all, or
    /// nothing when any is invalid. New resources without `metadata.creationTimestamp` get one,
    /// as Kubernetes does, and updates keep the original one: Istio's "oldest policy wins"
    /// depends on it.
    fn apply_files(&self, files: &[(String, String)]) -> Result<Applied, StoreError>;
    /// [`Store::apply_files`] with one file.
    fn apply(&self, source: &str, text: &str) -> Result<Applied, StoreError> {
        self.apply_files(&[(source.to_owned(), text.to_owned())])
    }
    /// One resource.
    fn get(&self, key: &ResourceKey) -> Result<Option<Document>, StoreError>;
    /// Resources of a kind (all kinds when `None`) in a namespace (all when `None`).
    fn list(
        &self,
        kind: Option<Kind>,
        namespace: Option<&str>,
    ) -> Result<Vec<Document>, StoreError>;
    /// Deletes a resource; `Ok(false)` when it did not exist.
    fn delete(&self, key: &ResourceKey) -> Result<bool, StoreError>;
    /// The current revision.
    fn revision(&self) -> Revision;
    /// Every resource and the revision they form, read atomically.
    fn snapshot(&self) -> Result<(Revision, Vec<Document>), StoreError>;
    /// A channel that receives each new revision.
    fn watch(&self) -> Receiver<Revision>;
    /// Blocks until the revision is past `after` or `timeout` passes; returns the revision.
    fn wait_for_change(&self, after: Revision, timeout: Duration) -> Revision;
}
