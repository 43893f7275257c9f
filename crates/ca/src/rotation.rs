//! Staged root rotation: the state machine, its state file, and the new CA's files.
//!
//! A rotation replaces the root every workload trusts without a moment where two workloads
//! disagree about it:
//!
//! 1. **add the new root** to every trust bundle (signing unchanged), and wait until every
//!    proxy has installed it;
//! 2. **switch signing** to a new intermediate under the new root. Its cross-signed twin (same
//!    subject and key, signed by the old signer) travels in every chain, so a chain verifies
//!    under either root;
//! 3. **re-issue** every workload certificate (proxies renew early on request) and wait until
//!    every proxy holds one from the new signer;
//! 4. **remove the old root** and wait until every proxy has installed the bundle without it.
//!
//! Aborting walks the same road back: the old root is re-added if it was being removed, signing
//! returns to the old CA, every certificate is re-issued under it, and the new root is removed.
//!
//! [`RotationState`] is pure: the control plane evaluates each phase's [`Gate`] against what the
//! proxies report and calls [`RotationState::advance`]. [`RotationFiles`] keeps the state (one
//! JSON file, replaced atomically) and the new CA directory beside the current one, and swaps
//! them in one step at the end; [`RotationFiles::recover`] finishes a swap a crash interrupted.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use meshward_identity::TrustDomain;
use rcgen::{Issuer, KeyPair, PKCS_ECDSA_P256_SHA256, PublicKeyData};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::authority::{Authority, CaError};
use crate::cert::{fingerprint_sha256, named_trust_domain, spki_sha256};
use crate::files::{FilesError, create_dir_atomically, read_bounded, write_file_atomically};
use crate::init::{ROOT_KEY, ca_params};
use crate::load::{CA_CERT, CA_KEY, CERT_CHAIN, LoadError, ROOT_CERT, TRUST_DOMAIN, parse};

/// The new signer's twin, signed by the old signer (only in the new CA's staging directory).
const CROSS_SIGNED: &str = "cross-signed.pem";
/// Lifetime of the new signing intermediate (never beyond the new root).
const INTERMEDIATE_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// Lifetime of a generated root.
pub const DEFAULT_ROOT_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Version of the state file's format.
const STATE_VERSION: u32 = 1;

// === the state machine ===

/// Where a rotation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Stage 1: the new root is added to every bundle; the old CA still signs.
    AddRoot,
    /// Stage 2: signing switches to the new intermediate, cross-signed by the old signer.
    SwitchSigner,
    /// Stage 3: every proxy renews under the new signer.
    Reissue,
    /// Stage 4: the old root leaves every bundle.
    RemoveOld,
    /// Done: the new CA replaced the old one on disk.
    Complete,
    /// Abort, step 1: the old root is back in every bundle (the new CA still signs).
    RestoreOldRoot,
    /// Abort, step 2: the old CA signs again and every proxy renews under it.
    RevertSigner,
    /// Abort, step 3: the new root leaves every bundle.
    RemoveNew,
    /// Aborted: the old CA is in force alone, the new one is discarded.
    Aborted,
}

/// Which roots the bundles hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Roots {
    /// The old roots only.
    Old,
    /// The old roots and the new one.
    Both,
    /// The new root only.
    New,
}

/// Which CA signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signer {
    /// The CA in force before the rotation.
    Old,
    /// The new intermediate under the new root.
    New,
}

/// What a phase waits for before the next one starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Nothing: the next phase follows at once.
    None,
    /// Every proxy has installed the bundle of this phase.
    BundleInstalled,
    /// Every proxy holds a certificate from the signer of this phase.
    Reissued,
}

impl Phase {
    /// The roots every bundle holds in this phase.
    pub fn roots(self) -> Roots {
        match self {
            Self::AddRoot
            | Self::SwitchSigner
            | Self::Reissue
            | Self::RestoreOldRoot
            | Self::RevertSigner => Roots::Both,
            Self::RemoveOld | Self::Complete => Roots::New,
            Self::RemoveNew | Self::Aborted => Roots::Old,
        }
    }

    /// The CA that signs in this phase.
    pub fn signer(self) -> Signer {
        match self {
            Self::SwitchSigner
            | Self::Reissue
            | Self::RemoveOld
            | Self::Complete
            | Self::RestoreOldRoot => Signer::New,
            Self::AddRoot | Self::RevertSigner | Self::RemoveNew | Self::Aborted => Signer::Old,
        }
    }

    /// Whether proxies whose certificate another signer issued are asked to renew now.
    pub fn reissue(self) -> bool {
        matches!(self, Self::Reissue | Self::RevertSigner)
    }

    /// What this phase waits for.
    pub fn gate(self) -> Gate {
        match self {
            Self::AddRoot | Self::RemoveOld | Self::RestoreOldRoot | Self::RemoveNew => {
                Gate::BundleInstalled
            }
            Self::Reissue | Self::RevertSigner => Gate::Reissued,
            Self::SwitchSigner | Self::Complete | Self::Aborted => Gate::None,
        }
    }

    /// The phase that follows once the gate opens; `None` for the two ends.
    pub fn next(self) -> Option<Self> {
        match self {
            Self::AddRoot => Some(Self::SwitchSigner),
            Self::SwitchSigner => Some(Self::Reissue),
            Self::Reissue => Some(Self::RemoveOld),
            Self::RemoveOld => Some(Self::Complete),
            Self::RestoreOldRoot => Some(Self::RevertSigner),
            Self::RevertSigner => Some(Self::RemoveNew),
            Self::RemoveNew => Some(Self::Aborted),
            Self::Complete | Self::Aborted => None,
        }
    }

    /// Whether the rotation is over (completed or aborted).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Complete | Self::Aborted)
    }

    /// Whether this phase belongs to an abort.
    pub fn is_abort(self) -> bool {
        matches!(
            self,
            Self::RestoreOldRoot | Self::RevertSigner | Self::RemoveNew | Self::Aborted
        )
    }

    /// The stage number of the forward road (1–4), `None` otherwise.
    pub fn stage(self) -> Option<u8> {
        match self {
            Self::AddRoot => Some(1),
            Self::SwitchSigner => Some(2),
            Self::Reissue => Some(3),
            Self::RemoveOld => Some(4),
            _ => None,
        }
    }

    /// The kebab-case name, as in the state file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AddRoot => "add-root",
            Self::SwitchSigner => "switch-signer",
            Self::Reissue => "reissue",
            Self::RemoveOld => "remove-old",
            Self::Complete => "complete",
            Self::RestoreOldRoot => "restore-old-root",
            Self::RevertSigner => "revert-signer",
            Self::RemoveNew => "remove-new",
            Self::Aborted => "aborted",
        }
    }

    /// One line for operators.
    pub fn describe(self) -> &'static str {
        match self {
            Self::AddRoot => "add the new root to every trust bundle",
            Self::SwitchSigner => "switch signing to the new intermediate (cross-signed)",
            Self::Reissue => "re-issue every workload certificate under the new signer",
            Self::RemoveOld => "remove the old root from every trust bundle",
            Self::Complete => "the new CA is in force",
            Self::RestoreOldRoot => "abort: put the old root back in every trust bundle",
            Self::RevertSigner => "abort: sign with the old CA and re-issue every certificate",
            Self::RemoveNew => "abort: remove the new root from every trust bundle",
            Self::Aborted => "the old CA is in force alone; the new one is discarded",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One phase entered, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// The phase.
    pub phase: Phase,
    /// Unix milliseconds.
    pub at_ms: i64,
}

/// Why a rotation cannot do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RotationError {
    /// Abort of a rotation that is over.
    #[error("the rotation is already {0}; there is nothing to abort")]
    Finished(Phase),
    /// Abort of a rotation that is already being aborted.
    #[error("the rotation is already being aborted ({0})")]
    AlreadyAborting(Phase),
}

/// A rotation: where it stands, what it rotates from and to, and its history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationState {
    /// Format version.
    pub version: u32,
    /// The phase in force.
    pub phase: Phase,
    /// SHA-256 fingerprints of the roots being replaced.
    pub old_roots: Vec<String>,
    /// SHA-256 fingerprint of the new root.
    pub new_root: String,
    /// SHA-256 of the old signing key's SubjectPublicKeyInfo.
    pub old_signer: String,
    /// SHA-256 of the new signing key's SubjectPublicKeyInfo.
    pub new_signer: String,
    /// Every phase entered, oldest first (the last one is `phase`).
    pub history: Vec<Step>,
}

impl RotationState {
    /// A rotation at stage 1.
    pub fn new(
        old_roots: Vec<String>,
        new_root: String,
        old_signer: String,
        new_signer: String,
        now_ms: i64,
    ) -> Self {
        Self {
            version: STATE_VERSION,
            phase: Phase::AddRoot,
            old_roots,
            new_root,
            old_signer,
            new_signer,
            history: vec![Step {
                phase: Phase::AddRoot,
                at_ms: now_ms,
            }],
        }
    }

    /// When the rotation started, Unix milliseconds.
    pub fn started_ms(&self) -> i64 {
        self.history.first().map_or(0, |s| s.at_ms)
    }

    /// When the phase in force started, Unix milliseconds.
    pub fn phase_started_ms(&self) -> i64 {
        self.history.last().map_or(0, |s| s.at_ms)
    }

    /// The signing key (SPKI SHA-256) proxies must hold a certificate from in this phase.
    pub fn signer_key(&self) -> &str {
        match self.phase.signer() {
            Signer::Old => &self.old_signer,
            Signer::New => &self.new_signer,
        }
    }

    /// The root fingerprints every bundle holds in this phase.
    pub fn root_fingerprints(&self) -> Vec<String> {
        match self.phase.roots() {
            Roots::Old => self.old_roots.clone(),
            Roots::New => vec![self.new_root.clone()],
            Roots::Both => {
                let mut all = self.old_roots.clone();
                all.push(self.new_root.clone());
                all
            }
        }
    }

    fn enter(&mut self, phase: Phase, now_ms: i64) {
        self.phase = phase;
        self.history.push(Step {
            phase,
            at_ms: now_ms,
        });
    }

    /// Moves on when the gate of the phase in force is open (`gate_open`, ignored for phases
    /// without a gate), then through every following phase without a gate. Returns the phase
    /// entered last, or `None` when nothing moved. A gated phase is never passed in the same
    /// call it was entered: its target must first be put in force and observed.
    pub fn advance(&mut self, gate_open: bool, now_ms: i64) -> Option<Phase> {
        if self.phase.is_terminal() {
            return None;
        }
        if self.phase.gate() != Gate::None && !gate_open {
            return None;
        }
        let mut entered = None;
        while let Some(next) = self.phase.next() {
            self.enter(next, now_ms);
            entered = Some(next);
            if next.gate() != Gate::None {
                break;
            }
        }
        entered
    }

    /// Starts walking back to the old CA from wherever the rotation stands. Returns the phase
    /// entered.
    pub fn abort(&mut self, now_ms: i64) -> Result<Phase, RotationError> {
        let to = match self.phase {
            Phase::Complete | Phase::Aborted => return Err(RotationError::Finished(self.phase)),
            p if p.is_abort() => return Err(RotationError::AlreadyAborting(p)),
            // Nothing was signed by the new CA yet: only the new root has to go.
            Phase::AddRoot => Phase::RemoveNew,
            // Some bundles may already lack the old root: put it back before signing with it.
            _ => Phase::RestoreOldRoot,
        };
        self.enter(to, now_ms);
        Ok(to)
    }

    /// How long the rotation took (or has been running), in milliseconds.
    pub fn elapsed_ms(&self, now_ms: i64) -> i64 {
        let end = if self.phase.is_terminal() {
            self.phase_started_ms()
        } else {
            now_ms
        };
        end - self.started_ms()
    }
}

// === the files ===

/// Where the new root comes from.
#[derive(Debug, Clone)]
pub enum NewRoot {
    /// A fresh self-signed ECDSA P-256 root, made here.
    Generate {
        /// Its lifetime.
        ttl: Duration,
    },
    /// An operator's root certificate and key (PEM files), read here; the key is not copied.
    Provided {
        /// The root certificate.
        cert: PathBuf,
        /// Its private key.
        key: PathBuf,
    },
}

/// The files of a rotation, beside a CA directory `D`: the new CA in `D.next` and the state in
/// `D.rotation.json`.
#[derive(Debug, Clone)]
pub struct RotationFiles {
    ca_dir: PathBuf,
    next_dir: PathBuf,
    retired_dir: PathBuf,
    state_path: PathBuf,
}

impl RotationFiles {
    /// The rotation files of the CA in `ca_dir`.
    pub fn new(ca_dir: &Path) -> Self {
        let name = ca_dir
            .file_name()
            .map_or_else(|| "ca".to_owned(), |n| n.to_string_lossy().into_owned());
        let sibling = |suffix: &str| ca_dir.with_file_name(format!("{name}.{suffix}"));
        Self {
            ca_dir: ca_dir.to_owned(),
            next_dir: sibling("next"),
            retired_dir: sibling("retired"),
            state_path: sibling("rotation.json"),
        }
    }

    /// The current CA directory.
    pub fn ca_dir(&self) -> &Path {
        &self.ca_dir
    }

    /// The new CA's directory while a rotation runs.
    pub fn next_dir(&self) -> &Path {
        &self.next_dir
    }

    /// The state file.
    pub fn state_path(&self) -> &Path {
        &self.state_path
    }

    /// The last rotation's state, if any was ever started.
    pub fn load_state(&self) -> Result<Option<RotationState>, CaError> {
        if !self.state_path.exists() {
            return Ok(None);
        }
        let bytes = read_bounded(&self.state_path)?;
        let state: RotationState = serde_json::from_slice(&bytes).map_err(|e| {
            CaError::Load(LoadError::BadState {
                path: self.state_path.clone(),
                reason: e.to_string(),
            })
        })?;
        if state.version != STATE_VERSION {
            return Err(CaError::Load(LoadError::BadState {
                path: self.state_path.clone(),
                reason: format!("unknown format version {}", state.version),
            }));
        }
        Ok(Some(state))
    }

    /// Replaces the state file atomically (0600, fsynced).
    pub fn save_state(&self, state: &RotationState) -> Result<(), CaError> {
        let json = serde_json::to_vec_pretty(state).map_err(|e| {
            CaError::Load(LoadError::BadState {
                path: self.state_path.clone(),
                reason: e.to_string(),
            })
        })?;
        write_file_atomically(&self.state_path, &json)?;
        Ok(())
    }

    /// Brings the directories in line with the state after a crash: finishes a swap that was
    /// under way, drops the new CA of an aborted rotation or of one that never started.
    pub fn recover(&self) -> Result<(), CaError> {
        let state = self.load_state()?;
        match state.map(|s| s.phase) {
            Some(Phase::Complete) => self.swap()?,
            Some(p) if !p.is_terminal() => {}
            // Aborted, or no rotation: a new CA directory is a leftover.
            _ => remove_dir(&self.next_dir)?,
        }
        remove_dir(&self.retired_dir)
    }

    /// Writes the new CA (a new intermediate under `source`'s root, and its twin cross-signed
    /// by `old`) into the staging directory, checks it, and returns the rotation at stage 1.
    /// The state is not saved: the caller saves it once it decides to go ahead.
    pub fn prepare(
        &self,
        old: &Authority,
        source: &NewRoot,
        now_ms: i64,
    ) -> Result<RotationState, CaError> {
        // A leftover of a rotation that never started or is over.
        remove_dir(&self.next_dir)?;
        let td = old.trust_domain().clone();
        let now = OffsetDateTime::now_utc();
        let not_before = now - crate::sign::BACKDATE;
        let stamp = now
            .replace_nanosecond(0)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_default();
        let (root_der, root_issuer, root_key_pem, root_end) = match source {
            NewRoot::Generate { ttl } => {
                let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(CaError::Rcgen)?;
                let end = now + *ttl;
                let params = ca_params(&td, &format!("Meshward root CA {stamp}"), not_before, end)?;
                let cert = params.self_signed(&key).map_err(CaError::Rcgen)?;
                let pem = key.serialize_pem();
                (cert.der().clone(), Issuer::new(params, key), Some(pem), end)
            }
            NewRoot::Provided { cert, key } => {
                let (der, key) = read_provided_root(cert, key, &td)?;
                let end = parse(cert, 1, &der)?.validity().not_after.to_datetime();
                let issuer = Issuer::from_ca_cert_der(&der, key).map_err(CaError::Rcgen)?;
                (der, issuer, None, end)
            }
        };
        if old.trust_bundle().roots().contains(&root_der) {
            return Err(CaError::Rotation(
                "the new root is already a root of this CA".to_owned(),
            ));
        }
        let inter_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(CaError::Rcgen)?;
        let inter_end = (now + INTERMEDIATE_TTL).min(root_end);
        let name = format!("Meshward intermediate CA {stamp}");
        let params = ca_params(&td, &name, not_before, inter_end)?;
        let inter = params
            .signed_by(&inter_key, &root_issuer)
            .map_err(CaError::Rcgen)?;
        // The twin: same subject, same key, same extensions, signed by the old signer, so a
        // chain through it leads to the old root as well.
        let twin_params = ca_params(
            &td,
            &name,
            not_before,
            inter_end.min(old.signing_not_after()),
        )?;
        let twin = old.sign_ca(&twin_params, &inter_key)?;

        let root_pem = crate::cert::to_pem([&root_der]);
        let mut files: Vec<(&str, String)> = vec![
            (CA_CERT, inter.pem()),
            (CA_KEY, inter_key.serialize_pem()),
            (ROOT_CERT, root_pem.clone()),
            (CERT_CHAIN, format!("{}{root_pem}", inter.pem())),
            (TRUST_DOMAIN, format!("{td}\n")),
            (CROSS_SIGNED, twin.pem()),
        ];
        if let Some(pem) = root_key_pem {
            files.push((ROOT_KEY, pem));
        }
        let files: Vec<(&str, &[u8])> = files.iter().map(|(n, c)| (*n, c.as_bytes())).collect();
        create_dir_atomically(&self.next_dir, &files)?;
        let new = match Authority::load(&self.next_dir, Some(&td)) {
            Ok(new) => new,
            Err(e) => {
                let _ = remove_dir(&self.next_dir);
                return Err(e);
            }
        };
        Ok(RotationState::new(
            old.trust_bundle()
                .roots()
                .iter()
                .map(|r| fingerprint_sha256(r.as_ref()))
                .collect(),
            fingerprint_sha256(root_der.as_ref()),
            old.signer_key_sha256(),
            new.signer_key_sha256(),
            now_ms,
        ))
    }

    /// The CA that signs in `state`'s phase, handing out that phase's roots.
    pub fn authority(
        &self,
        state: &RotationState,
        trust_domain: &TrustDomain,
    ) -> Result<Authority, CaError> {
        if state.phase.is_terminal() {
            // A completed rotation whose swap has not happened yet signs with the new CA.
            let dir = if state.phase == Phase::Complete && self.next_dir.exists() {
                &self.next_dir
            } else {
                &self.ca_dir
            };
            return Authority::load(dir, Some(trust_domain));
        }
        let old = Authority::load(&self.ca_dir, Some(trust_domain))?;
        let new = Authority::load(&self.next_dir, Some(trust_domain))?;
        let roots_path = self.next_dir.join(ROOT_CERT);
        let mut roots = Vec::new();
        if state.phase.roots() != Roots::New {
            roots.extend(old.trust_bundle().roots().iter().cloned());
        }
        if state.phase.roots() != Roots::Old {
            roots.extend(new.trust_bundle().roots().iter().cloned());
        }
        match state.phase.signer() {
            Signer::Old => old.with_roots(roots, &roots_path),
            Signer::New if state.phase.roots() == Roots::New => new.with_roots(roots, &roots_path),
            Signer::New => {
                // The new intermediate, then its twin and the old chain up to the old root:
                // peers that trust only the old root still find a path.
                let twin_path = self.next_dir.join(CROSS_SIGNED);
                let twin = CertificateDer::pem_slice_iter(&read_bounded(&twin_path)?)
                    .next()
                    .and_then(Result::ok)
                    .ok_or(CaError::Load(LoadError::NoCertificate { path: twin_path }))?;
                let mut chain = vec![new.signing_cert().clone(), twin];
                chain.extend(old.chain_above().iter().cloned());
                Ok(new.with_roots(roots, &roots_path)?.with_chain_above(chain))
            }
        }
    }

    /// Puts the new CA in place of the old one (after stage 4). Each step can be repeated, so
    /// [`recover`](Self::recover) finishes it after a crash.
    pub fn complete(&self) -> Result<(), CaError> {
        self.swap()
    }

    /// Drops the new CA (after an abort).
    pub fn discard(&self) -> Result<(), CaError> {
        remove_dir(&self.next_dir)
    }

    fn swap(&self) -> Result<(), CaError> {
        let rename = |from: &Path, to: &Path| {
            fs::rename(from, to).map_err(|source| FilesError::Write {
                path: to.to_owned(),
                source,
            })
        };
        if self.next_dir.exists() {
            if self.ca_dir.exists() {
                remove_dir(&self.retired_dir)?;
                rename(&self.ca_dir, &self.retired_dir)?;
            }
            rename(&self.next_dir, &self.ca_dir)?;
            if let Some(parent) = self.ca_dir.parent() {
                crate::files::sync_dir(parent)?;
            }
        }
        // The old keys go: a completed rotation never returns to them.
        remove_dir(&self.retired_dir)?;
        Ok(())
    }
}

fn remove_dir(dir: &Path) -> Result<(), CaError> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(CaError::Files(FilesError::Write {
            path: dir.to_owned(),
            source,
        })),
    }
}

/// Checks an operator's new root without using it: returns its subject and SHA-256
/// fingerprint.
pub fn check_provided_root(
    cert: &Path,
    key: &Path,
    trust_domain: &TrustDomain,
) -> Result<(String, String), CaError> {
    let (der, _key) = read_provided_root(cert, key, trust_domain)?;
    let subject = parse(cert, 1, &der)?.subject().to_string();
    Ok((subject, fingerprint_sha256(der.as_ref())))
}

/// Reads and checks an operator's new root: a CA certificate valid now, with keyCertSign,
/// whose key is `key` and whose `spiffe://` SAN, if any, names this trust domain.
fn read_provided_root(
    cert_path: &Path,
    key_path: &Path,
    td: &TrustDomain,
) -> Result<(CertificateDer<'static>, KeyPair), CaError> {
    let bytes = read_bounded(cert_path)?;
    let der = CertificateDer::pem_slice_iter(&bytes)
        .next()
        .and_then(Result::ok)
        .ok_or_else(|| LoadError::NoCertificate {
            path: cert_path.to_owned(),
        })?;
    let cert = parse(cert_path, 1, &der)?;
    crate::load::check_ca(cert_path, &cert)?;
    crate::load::check_validity(cert_path, &cert)?;
    let key = crate::load::read_key(key_path)?;
    if key.der_bytes() != cert.public_key().subject_public_key.data.as_ref() {
        return Err(LoadError::KeyMismatch {
            key: key_path.to_owned(),
            cert: cert_path.to_owned(),
        }
        .into());
    }
    if let Some(found) = named_trust_domain(&cert)
        && &found != td
    {
        return Err(CaError::TrustDomainMismatch {
            path: cert_path.to_owned(),
            found,
            expected: td.clone(),
        });
    }
    if spki_sha256(der.as_ref()).is_none() {
        return Err(LoadError::BadCert {
            path: cert_path.to_owned(),
            position: 1,
            reason: "no public key".to_owned(),
        }
        .into());
    }
    Ok((der, key))
}

/// Now, Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;
