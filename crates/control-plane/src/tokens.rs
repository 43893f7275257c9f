//! One-time join tokens: the credential a new proxy presents for its first certificate.
//!
//! A token is bound to one namespace and service account, expires, and is spent by its first
//! successful use. Only a SHA-256 hash is kept, so the data directory never holds a usable
//! token. Tokens are 256 random bits: no rate limiting is needed against guessing.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::{digest, rand::SecureRandom};
use serde::{Deserialize, Serialize};

use crate::files;

/// What a valid token proves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenGrant {
    /// Namespace of the workload the token admits.
    pub namespace: String,
    /// Service account of the workload the token admits.
    pub service_account: String,
    /// Expiry, Unix seconds.
    pub expires: u64,
}

/// Why a token was refused. Deliberately coarse towards the caller: the log says which.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// No token with this value was ever issued (or it was malformed).
    #[error("unknown join token")]
    Unknown,
    /// The token's lifetime is over.
    #[error("join token expired")]
    Expired,
    /// The token was already spent on a certificate.
    #[error("join token already used")]
    Used,
    /// The token file could not be read or written.
    #[error("token store: {0}")]
    Storage(String),
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct TokenFile {
    /// SHA-256 (hex) of the token → its grant and whether it is spent.
    tokens: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    grant: TokenGrant,
    used: bool,
}

/// The join-token registry, persisted in `<data dir>/tokens.json`.
#[derive(Debug)]
pub struct JoinTokens {
    path: PathBuf,
    state: Mutex<TokenFile>,
}

const PREFIX: &str = "mwjt_";

impl JoinTokens {
    /// Opens (or starts) the registry in `dir`.
    pub fn open(dir: &Path) -> Result<Self, TokenError> {
        let path = dir.join("tokens.json");
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| TokenError::Storage(format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => TokenFile::default(),
            Err(e) => return Err(TokenError::Storage(format!("{}: {e}", path.display()))),
        };
        Ok(Self {
            path,
            state: Mutex::new(state),
        })
    }

    /// Creates a token for `namespace`/`service_account` valid for `ttl`; returns the token and
    /// its expiry (Unix seconds). The token itself is never stored.
    pub fn create(
        &self,
        namespace: &str,
        service_account: &str,
        ttl: Duration,
    ) -> Result<(String, u64), TokenError> {
        let mut secret = [0u8; 32];
        aws_lc_rs::rand::SystemRandom::new()
            .fill(&mut secret)
            .map_err(|_| TokenError::Storage("system random number generator failed".into()))?;
        let token = format!("{PREFIX}{}", hex(&secret));
        let expires = unix_now().saturating_add(ttl.as_secs());
        let grant = TokenGrant {
            namespace: namespace.to_owned(),
            service_account: service_account.to_owned(),
            expires,
        };
        let mut state = self.lock();
        state
            .tokens
            .insert(hash(&token), Entry { grant, used: false });
        self.persist(&state)?;
        Ok((token, expires))
    }

    /// Checks `token` without spending it: what identity it proves.
    pub fn check(&self, token: &str) -> Result<TokenGrant, TokenError> {
        let state = self.lock();
        Self::lookup(&state, token).map(|e| e.grant.clone())
    }

    /// Marks `token` spent. Called once the certificate it paid for was issued, so a failed
    /// signing (a bad CSR, say) does not burn the token.
    pub fn spend(&self, token: &str) -> Result<TokenGrant, TokenError> {
        let mut state = self.lock();
        let grant = Self::lookup(&state, token)?.grant.clone();
        if let Some(entry) = state.tokens.get_mut(&hash(token)) {
            entry.used = true;
        }
        // Expired entries are dropped here so the file does not grow without bound.
        let now = unix_now();
        state.tokens.retain(|_, e| e.grant.expires > now || !e.used);
        self.persist(&state)?;
        Ok(grant)
    }

    fn lookup<'a>(state: &'a TokenFile, token: &str) -> Result<&'a Entry, TokenError> {
        if !token.starts_with(PREFIX) || token.len() > 128 {
            return Err(TokenError::Unknown);
        }
        let entry = state.tokens.get(&hash(token)).ok_or(TokenError::Unknown)?;
        if entry.used {
            return Err(TokenError::Used);
        }
        if entry.grant.expires <= unix_now() {
            return Err(TokenError::Expired);
        }
        Ok(entry)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TokenFile> {
        // A poisoned lock only means another request panicked mid-update; the map itself is
        // always consistent because every update is a single insert or flag.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn persist(&self, state: &TokenFile) -> Result<(), TokenError> {
        let bytes =
            serde_json::to_vec_pretty(state).map_err(|e| TokenError::Storage(e.to_string()))?;
        files::write_private(&self.path, &bytes)
            .map_err(|e| TokenError::Storage(format!("{}: {e}", self.path.display())))
    }
}

fn hash(token: &str) -> String {
    hex(digest::digest(&digest::SHA256, token.as_bytes()).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_single_use_and_bound_to_its_identity() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = JoinTokens::open(dir.path()).unwrap();
        let (token, _) = tokens
            .create("team-app", "httpbin", Duration::from_secs(60))
            .unwrap();
        let grant = tokens.check(&token).unwrap();
        assert_eq!(grant.namespace, "team-app");
        assert_eq!(grant.service_account, "httpbin");
        tokens.spend(&token).unwrap();
        assert_eq!(tokens.check(&token), Err(TokenError::Used));
        assert_eq!(tokens.spend(&token), Err(TokenError::Used));
    }

    #[test]
    fn tokens_survive_a_restart_and_are_stored_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let (token, _) = JoinTokens::open(dir.path())
            .unwrap()
            .create("ns", "sa", Duration::from_secs(60))
            .unwrap();
        let file = std::fs::read_to_string(dir.path().join("tokens.json")).unwrap();
        assert!(
            !file.contains(&token[PREFIX.len()..]),
            "token stored in clear"
        );
        let reopened = JoinTokens::open(dir.path()).unwrap();
        assert_eq!(reopened.check(&token).unwrap().service_account, "sa");
    }

    #[test]
    fn expired_unknown_and_malformed_tokens_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = JoinTokens::open(dir.path()).unwrap();
        let (token, _) = tokens.create("ns", "sa", Duration::ZERO).unwrap();
        assert_eq!(tokens.check(&token), Err(TokenError::Expired));
        assert_eq!(tokens.check("mwjt_00"), Err(TokenError::Unknown));
        assert_eq!(tokens.check("not-a-token"), Err(TokenError::Unknown));
        assert_eq!(tokens.check(&"mwjt_".repeat(100)), Err(TokenError::Unknown));
    }
}
