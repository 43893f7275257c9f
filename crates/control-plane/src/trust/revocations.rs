//! The revocation list: identities and certificate serials no proxy may accept, with who asked
//! why and when. Kept in `DATA_DIR/revocations.json`, replaced atomically on every change.

use std::path::{Path, PathBuf};

use meshward_api::v1;
use meshward_identity::{Revocations, Serial, SpiffeId};
use serde::{Deserialize, Serialize};

use crate::files;

/// Largest revocation file read.
const MAX_BYTES: u64 = 16 * 1024 * 1024;
/// At most this many entries: the whole list travels with every view.
pub(crate) const MAX_ENTRIES: usize = 10_000;

/// What is revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "value")]
pub(crate) enum Target {
    /// Every certificate naming this SPIFFE ID.
    Identity(String),
    /// One certificate, by serial (lower-case hex).
    Serial(String),
}

impl Target {
    fn kind(&self) -> &'static str {
        match self {
            Self::Identity(_) => "identity",
            Self::Serial(_) => "serial",
        }
    }

    fn value(&self) -> &str {
        match self {
            Self::Identity(v) | Self::Serial(v) => v,
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Identity(id) => f.write_str(id),
            Self::Serial(s) => write!(f, "serial {s}"),
        }
    }
}

/// One revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Entry {
    #[serde(flatten)]
    pub(crate) target: Target,
    #[serde(default)]
    pub(crate) reason: String,
    /// Unix seconds.
    pub(crate) revoked_at: i64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct FileFormat {
    version: u32,
    entries: Vec<Entry>,
}

/// The list, and where it is kept.
#[derive(Debug)]
pub(crate) struct RevocationList {
    path: PathBuf,
    entries: Vec<Entry>,
}

impl RevocationList {
    /// Loads `DATA_DIR/revocations.json` (an empty list when it does not exist).
    pub(crate) fn open(data_dir: &Path) -> Result<Self, String> {
        let path = data_dir.join("revocations.json");
        if !path.exists() {
            return Ok(Self {
                path,
                entries: Vec::new(),
            });
        }
        let bytes = meshward_ca::read_bounded(&path).map_err(|e| e.to_string())?;
        if bytes.len() as u64 > MAX_BYTES {
            return Err(format!("{}: too large", path.display()));
        }
        let file: FileFormat =
            serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        let list = Self {
            path,
            entries: file.entries,
        };
        // Every entry must still parse: a list the proxies would read differently is refused.
        for entry in &list.entries {
            parse(&entry.target).map_err(|e| format!("{}: {e}", list.path.display()))?;
        }
        Ok(list)
    }

    fn save(&self) -> Result<(), String> {
        let file = FileFormat {
            version: 1,
            entries: self.entries.clone(),
        };
        let json = serde_json::to_vec_pretty(&file).map_err(|e| e.to_string())?;
        files::write_private(&self.path, &json).map_err(|e| format!("{}: {e}", self.path.display()))
    }

    /// Adds `target` (normalized) and saves. Returns `false` when it was already revoked.
    pub(crate) fn add(&mut self, target: Target, reason: String, now: i64) -> Result<bool, String> {
        let target = normalize(&target)?;
        if self.entries.iter().any(|e| e.target == target) {
            return Ok(false);
        }
        if self.entries.len() >= MAX_ENTRIES {
            return Err(format!(
                "the revocation list is full ({MAX_ENTRIES} entries); lift old ones first"
            ));
        }
        self.entries.push(Entry {
            target,
            reason,
            revoked_at: now,
        });
        if let Err(e) = self.save() {
            self.entries.pop();
            return Err(e);
        }
        Ok(true)
    }

    /// Removes `target` and saves. Returns `false` when it was not revoked.
    pub(crate) fn remove(&mut self, target: &Target) -> Result<bool, String> {
        let target = normalize(target)?;
        let Some(at) = self.entries.iter().position(|e| e.target == target) else {
            return Ok(false);
        };
        let removed = self.entries.remove(at);
        if let Err(e) = self.save() {
            self.entries.insert(at, removed);
            return Err(e);
        }
        Ok(true)
    }

    /// The entries, oldest first.
    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// What verifiers enforce.
    pub(crate) fn revocations(&self) -> Revocations {
        let mut r = Revocations::new();
        for entry in &self.entries {
            match parse(&entry.target) {
                Ok(Parsed::Id(id)) => r.revoke_id(id),
                Ok(Parsed::Serial(s)) => r.revoke_serial(s),
                // Checked when added and when loaded.
                Err(_) => {}
            }
        }
        r
    }

    /// What travels in every view.
    pub(crate) fn to_proto(&self) -> v1::Revocations {
        let mut out = v1::Revocations::default();
        for entry in &self.entries {
            match &entry.target {
                Target::Identity(id) => out.identities.push(id.clone()),
                Target::Serial(s) => out.serials.push(s.clone()),
            }
        }
        out
    }
}

impl From<&Entry> for v1::Revocation {
    fn from(e: &Entry) -> Self {
        Self {
            kind: e.target.kind().to_owned(),
            value: e.target.value().to_owned(),
            reason: e.reason.clone(),
            revoked_at: e.revoked_at,
        }
    }
}

enum Parsed {
    Id(SpiffeId),
    Serial(Serial),
}

fn parse(target: &Target) -> Result<Parsed, String> {
    match target {
        Target::Identity(id) => id
            .parse::<SpiffeId>()
            .map(Parsed::Id)
            .map_err(|e| format!("{id:?} is not a SPIFFE ID: {e}")),
        Target::Serial(s) => s
            .parse::<Serial>()
            .map(Parsed::Serial)
            .map_err(|e| e.to_string()),
    }
}

/// The one spelling of a target: the parsed SPIFFE ID, or the serial in lower-case hex.
pub(crate) fn normalize(target: &Target) -> Result<Target, String> {
    Ok(match parse(target)? {
        Parsed::Id(id) => Target::Identity(id.to_string()),
        Parsed::Serial(s) => Target::Serial(s.to_hex()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persists_normalized_entries_and_refuses_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut list = RevocationList::open(dir.path()).unwrap();
        let id = Target::Identity("spiffe://cluster.local/ns/a/sa/b".into());
        assert!(list.add(id.clone(), "stolen".into(), 10).unwrap());
        assert!(!list.add(id, "again".into(), 11).unwrap());
        assert!(
            list.add(Target::Serial("4A:0B".into()), String::new(), 12)
                .unwrap()
        );
        assert!(
            list.add(Target::Identity("not an id".into()), String::new(), 13)
                .is_err()
        );
        assert!(
            list.add(Target::Serial("xyz".into()), String::new(), 13)
                .is_err()
        );

        let reopened = RevocationList::open(dir.path()).unwrap();
        assert_eq!(reopened.entries().len(), 2);
        assert_eq!(reopened.entries()[1].target, Target::Serial("4a0b".into()));
        let r = reopened.revocations();
        assert!(r.revokes_id(&"spiffe://cluster.local/ns/a/sa/b".parse().unwrap()));
        assert!(r.revokes_serial(&"004a0b".parse().unwrap()));
        let wire = reopened.to_proto();
        assert_eq!(wire.identities, ["spiffe://cluster.local/ns/a/sa/b"]);
        assert_eq!(wire.serials, ["4a0b"]);

        let mut list = reopened;
        assert!(list.remove(&Target::Serial("4a:0b".into())).unwrap());
        assert!(!list.remove(&Target::Serial("4a:0b".into())).unwrap());
        assert_eq!(RevocationList::open(dir.path()).unwrap().entries().len(), 1);
    }
}
