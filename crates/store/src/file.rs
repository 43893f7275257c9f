//! The embedded file store: one directory, one state file rewritten atomically on every change
//! (temporary file, fsync, rename, fsync of the directory), a revision that survives restarts,
//! and an OS lock so two processes never share a data directory.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use meshward_config::{Document, Kind, Limits, Mesh, ResourceKey, parse_stream};
use serde::{Deserialize, Serialize};

use crate::watchers::Watchers;

mod created;
use crate::{Applied, Revision, Store, StoreError};

const STATE: &str = "state.json";
const LOCK: &str = "LOCK";

/// What is persisted: the revision and each resource's own document text.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    revision: u64,
    resources: Vec<StoredResource>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredResource {
    source: String,
    text: String,
}

/// The embedded file store.
#[derive(Debug)]
pub struct FileStore {
    dir: PathBuf,
    /// Held open for the store's lifetime: the OS releases the lock if the process dies.
    _lock: File,
    resources: Mutex<BTreeMap<ResourceKey, Document>>,
    watchers: Watchers,
    limits: Limits,
}

impl FileStore {
    /// Opens (creating if needed) the store in `dir` and locks it.
    pub fn open(dir: impl AsRef<Path>) -> Result<FileStore, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let lock_path = dir.join(LOCK);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(format!("opening {}", lock_path.display())))?;
        if lock.try_lock().is_err() {
            return Err(StoreError::Locked(dir.display().to_string()));
        }
        let limits = Limits::default();
        let state_path = dir.join(STATE);
        let state: State = match fs::read_to_string(&state_path) {
            Ok(text) => serde_json::from_str(&text).map_err(|err| StoreError::Corrupt {
                path: state_path.display().to_string(),
                reason: err.to_string(),
            })?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(err) => {
                return Err(StoreError::Io {
                    context: format!("reading {}", state_path.display()),
                    source: err,
                });
            }
        };
        let mut resources = BTreeMap::new();
        for stored in state.resources {
            let documents = parse_stream(&stored.source, &stored.text, &limits)
                .into_documents()
                .map_err(|errors| StoreError::Corrupt {
                    path: state_path.display().to_string(),
                    reason: errors
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; "),
                })?;
            for document in documents {
                resources.insert(document.resource.key(), document);
            }
        }
        Ok(FileStore {
            dir,
            _lock: lock,
            resources: Mutex::new(resources),
            watchers: Watchers::new(Revision(state.revision)),
            limits,
        })
    }

    /// Writes the state atomically: a crash leaves either the old or the new file.
    fn persist(
        &self,
        revision: Revision,
        resources: &BTreeMap<ResourceKey, Document>,
    ) -> Result<(), StoreError> {
        let state = State {
            revision: revision.0,
            resources: resources
                .values()
                .map(|d| StoredResource {
                    source: d.location.source.to_string(),
                    text: d.text.clone(),
                })
                .collect(),
        };
        let bytes = serde_json::to_vec_pretty(&state).map_err(|err| StoreError::Io {
            context: "encoding the state".to_owned(),
            source: std::io::Error::other(err),
        })?;
        let tmp = self.dir.join(format!("{STATE}.tmp"));
        let mut file = File::create(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
        file.write_all(&bytes)
            .map_err(io(format!("writing {}", tmp.display())))?;
        file.sync_all()
            .map_err(io(format!("syncing {}", tmp.display())))?;
        let target = self.dir.join(STATE);
        fs::rename(&tmp, &target).map_err(io(format!("renaming to {}", target.display())))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(format!("syncing {}", self.dir.display())))
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, BTreeMap<ResourceKey, Document>> {
        self.resources
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Store for FileStore {
    fn apply_files(&self, files: &[(String, String)]) -> Result<Applied, StoreError> {
        let mut documents = Vec::new();
        let mut errors = Vec::new();
        for (source, text) in files {
            match parse_stream(source, text, &self.limits).into_documents() {
                Ok(docs) => documents.extend(docs),
                Err(diagnostics) => errors.extend(diagnostics),
            }
        }
        if !errors.is_empty() {
            return Err(StoreError::Invalid(errors));
        }
        // Catches a resource defined twice within the stream.
        Mesh::new(documents.clone()).map_err(|err| StoreError::Conflict(err.to_string()))?;
        let mut resources = self.locked();
        let mut next = resources.clone();
        let mut applied = Applied {
            revision: self.watchers.current(),
            created: Vec::new(),
            updated: Vec::new(),
            unchanged: Vec::new(),
        };
        let now = created::now();
        for document in documents {
            let key = document.resource.key();
            let created = next
                .get(&key)
                .and_then(|old| old.resource.metadata().creation_timestamp.clone())
                .unwrap_or_else(|| now.clone());
            let document = created::stamp(document, &created, &self.limits)?;
            match next.get(&key) {
                None => applied.created.push(key.clone()),
                Some(old) if old.resource == document.resource => {
                    applied.unchanged.push(key);
                    continue;
                }
                Some(_) => applied.updated.push(key.clone()),
            }
            next.insert(key, document);
        }
        if applied.created.is_empty() && applied.updated.is_empty() {
            return Ok(applied);
        }
        let revision = Revision(applied.revision.0 + 1);
        self.persist(revision, &next)?;
        *resources = next;
        drop(resources);
        self.watchers.publish(revision);
        applied.revision = revision;
        Ok(applied)
    }

    fn get(&self, key: &ResourceKey) -> Result<Option<Document>, StoreError> {
        Ok(self.locked().get(key).cloned())
    }

    fn list(
        &self,
        kind: Option<Kind>,
        namespace: Option<&str>,
    ) -> Result<Vec<Document>, StoreError> {
        Ok(self
            .locked()
            .iter()
            .filter(|(key, _)| kind.is_none_or(|k| key.kind == k))
            .filter(|(key, _)| namespace.is_none_or(|ns| key.namespace == ns))
            .map(|(_, d)| d.clone())
            .collect())
    }

    fn delete(&self, key: &ResourceKey) -> Result<bool, StoreError> {
        let mut resources = self.locked();
        if !resources.contains_key(key) {
            return Ok(false);
        }
        let mut next = resources.clone();
        next.remove(key);
        let revision = Revision(self.watchers.current().0 + 1);
        self.persist(revision, &next)?;
        *resources = next;
        drop(resources);
        self.watchers.publish(revision);
        Ok(true)
    }

    fn revision(&self) -> Revision {
        self.watchers.current()
    }

    fn snapshot(&self) -> Result<(Revision, Vec<Document>), StoreError> {
        let resources = self.locked();
        Ok((
            self.watchers.current(),
            resources.values().cloned().collect(),
        ))
    }

    fn watch(&self) -> Receiver<Revision> {
        self.watchers.subscribe()
    }

    fn wait_for_change(&self, after: Revision, timeout: Duration) -> Revision {
        self.watchers.wait(after, timeout)
    }
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> StoreError {
    move |source| StoreError::Io { context, source }
}

#[cfg(test)]
mod tests;
