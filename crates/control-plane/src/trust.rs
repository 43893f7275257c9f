//! The control plane's trust: the CA that signs (swapped live during a root rotation or when
//! its files change), the revocation list, what each proxy reports holding, and the rotation
//! driver ([`rotation`]).
//!
//! Every change of trust bumps a generation; [`run`] follows it and republishes every view
//! (bundle, revocations, renewal requests), rebuilds the TLS config of port 15012 (its client
//! verifier trusts the same roots and refuses the same revocations as the proxies) and
//! refreshes the administrator's credential and roots file. [`cafiles`] follows the CA files on
//! disk (a plug-in CA's new intermediate), [`watchdog`] says when the CA needs attention.

pub(crate) mod cafiles;
pub(crate) mod revocations;
pub(crate) mod rotation;
pub(crate) mod watchdog;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard, RwLock},
    time::Duration,
};

use meshward_api::v1::{ForeignBundle, ProxyView, TrustReport};
use meshward_ca::{
    Authority, CaError, IssuedSvid, SignError, SigningPolicy,
    rotation::{RotationFiles, RotationState},
};
use meshward_config::Mesh;
use meshward_identity::{SpiffeId, TrustBundle, TrustBundleSet, TrustDomain};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;
use tracing::{info, warn};

use self::revocations::RevocationList;
use crate::{Shared, StartError};

/// Lifetime of the control plane's serving certificate (bounded by the signing CA's).
const SERVER_CERT_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// What one proxy last reported holding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Report {
    /// Its certificate's serial, hex.
    pub(crate) serial: String,
    /// SPKI SHA-256 of the CA key that signed it.
    pub(crate) signer: String,
    /// Fingerprints of the roots it trusts for this trust domain.
    pub(crate) roots: BTreeSet<String>,
    /// Unix milliseconds.
    pub(crate) at_ms: i64,
}

/// The names this mesh's roots vouch for: the trust domain MeshConfig gives the mesh (new
/// certificates are issued in it) and its aliases (MeshConfig `trustDomainAliases`, and the
/// CA's own trust domain when MeshConfig names another: the old name during a migration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Domains {
    /// Where identities are issued.
    pub(crate) mesh: TrustDomain,
    /// Other names verified against the same roots, sorted.
    pub(crate) aliases: Vec<TrustDomain>,
}

impl Domains {
    /// The domains MeshConfig of `mesh` names, for a CA made for `ca`. An invalid MeshConfig
    /// trust domain keeps the CA's (validation refuses one at apply time anyway).
    fn of(mesh: &Mesh, ca: &TrustDomain) -> Self {
        let config = mesh.config();
        let mesh_td = TrustDomain::new(&config.trust_domain).unwrap_or_else(|e| {
            warn!(trust_domain = %config.trust_domain, error = %e, "MeshConfig trustDomain ignored");
            ca.clone()
        });
        let mut aliases: Vec<TrustDomain> = config
            .trust_domain_aliases
            .iter()
            .filter_map(|alias| match TrustDomain::new(alias) {
                Ok(td) => Some(td),
                Err(e) => {
                    warn!(%alias, error = %e, "MeshConfig trustDomainAliases: not a trust domain; ignored");
                    None
                }
            })
            .chain(std::iter::once(ca.clone()))
            .filter(|td| td != &mesh_td)
            .collect();
        aliases.sort();
        aliases.dedup();
        Self {
            mesh: mesh_td,
            aliases,
        }
    }

    /// Whether `td` is one of this mesh's names.
    pub(crate) fn is_local(&self, td: &TrustDomain) -> bool {
        td == &self.mesh || self.aliases.contains(td)
    }
}

/// The CA in force and everything that decides who is trusted.
#[derive(Debug)]
pub(crate) struct Ca {
    trust_domain: TrustDomain,
    domains: RwLock<Domains>,
    data_dir: PathBuf,
    policy: SigningPolicy,
    files: RotationFiles,
    authority: RwLock<Arc<Authority>>,
    rotation: Mutex<Option<RotationState>>,
    revocations: RwLock<RevocationList>,
    reports: Mutex<BTreeMap<String, Report>>,
    /// The workloads with a view, from the last publication (`None` before the first
    /// compilation): every one must pass a rotation gate.
    expected: Mutex<Option<BTreeSet<String>>>,
    /// Held while views are built and published, so a trust change never interleaves with a
    /// configuration change.
    publishing: Mutex<()>,
    generation: watch::Sender<u64>,
    /// Why the CA files on disk are not what is loaded (watchdog), `None` when they are.
    load_error: Mutex<Option<String>>,
    /// Held by whoever moves the rotation (the driver, start, abort), one at a time.
    rotation_ops: Mutex<()>,
    /// The roots last served at `/bundle`, and their SPIFFE sequence number.
    bundle_sequence: Mutex<(String, u64)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section below replaces whole values; a poisoned lock holds no torn state.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Ca {
    /// Opens the CA of `data_dir/ca` (creating a built-in one on first start), finishing a
    /// rotation step a crash interrupted and resuming a rotation in progress.
    pub(crate) fn open(
        data_dir: &Path,
        trust_domain: &TrustDomain,
        policy: SigningPolicy,
    ) -> Result<Self, StartError> {
        let ca_dir = data_dir.join("ca");
        let files = RotationFiles::new(&ca_dir);
        let ca_err = |e: CaError| StartError::Ca(e.to_string());
        files.recover().map_err(ca_err)?;
        let state = files.load_state().map_err(ca_err)?;
        let authority = match &state {
            Some(s) if !s.phase.is_terminal() => {
                info!(phase = %s.phase, "resuming the root rotation");
                files.authority(s, trust_domain).map_err(ca_err)?
            }
            _ => Authority::load_or_init(&ca_dir, trust_domain).map_err(ca_err)?,
        };
        let revocations = RevocationList::open(data_dir).map_err(|reason| StartError::DataDir {
            path: data_dir.to_owned(),
            reason,
        })?;
        Ok(Self {
            trust_domain: trust_domain.clone(),
            domains: RwLock::new(Domains {
                mesh: trust_domain.clone(),
                aliases: Vec::new(),
            }),
            data_dir: data_dir.to_owned(),
            policy,
            files,
            authority: RwLock::new(Arc::new(authority.with_policy(policy))),
            rotation: Mutex::new(state),
            revocations: RwLock::new(revocations),
            reports: Mutex::default(),
            expected: Mutex::default(),
            publishing: Mutex::default(),
            generation: watch::Sender::new(0),
            load_error: Mutex::default(),
            rotation_ops: Mutex::default(),
            bundle_sequence: Mutex::default(),
        })
    }

    /// The CA that signs now.
    pub(crate) fn current(&self) -> Arc<Authority> {
        self.authority
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Puts `authority` in force and tells every follower.
    pub(crate) fn replace(&self, authority: Authority) {
        *self.authority.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(authority.with_policy(self.policy));
        self.changed();
    }

    /// The trust domain the CA was made for (the control plane's own identities live there).
    pub(crate) fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The trust domains in force.
    pub(crate) fn domains(&self) -> Domains {
        self.domains
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Follows MeshConfig `trustDomain` / `trustDomainAliases` of `mesh`: a change re-issues
    /// nothing by itself, but new certificates carry the new name, every verifier (proxies and
    /// port 15012) accepts both, and renewals move each proxy over.
    pub(crate) fn follow_mesh_config(&self, mesh: &Mesh) {
        let domains = Domains::of(mesh, &self.trust_domain);
        let mut current = self.domains.write().unwrap_or_else(|p| p.into_inner());
        if *current == domains {
            return;
        }
        info!(
            trust_domain = %domains.mesh,
            aliases = ?domains.aliases.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "trust domains changed"
        );
        *current = domains;
        drop(current);
        self.changed();
    }

    /// The data directory.
    pub(crate) fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The rotation's files.
    pub(crate) fn files(&self) -> &RotationFiles {
        &self.files
    }

    /// Signs a CSR for `identity`, unless the identity is revoked.
    pub(crate) fn sign(
        &self,
        csr: &[u8],
        identity: &SpiffeId,
        ttl: Option<Duration>,
    ) -> Result<IssuedSvid, SignError> {
        if self.is_revoked(identity) {
            return Err(SignError::Revoked(identity.clone()));
        }
        self.current()
            .sign_in(csr, identity, ttl, &self.domains().mesh)
    }

    /// `PERMISSION_DENIED` for a revoked identity: it may not enroll, even with a valid join
    /// token, until an administrator lifts the revocation.
    pub(crate) fn check_not_revoked(&self, identity: &SpiffeId) -> Result<(), tonic::Status> {
        if self.is_revoked(identity) {
            return Err(tonic::Status::permission_denied(
                SignError::Revoked(identity.clone()).to_string(),
            ));
        }
        Ok(())
    }

    fn is_revoked(&self, identity: &SpiffeId) -> bool {
        self.revocations
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .revocations()
            .revokes_id(identity)
    }

    /// The roots every workload trusts now (PEM).
    pub(crate) fn roots_pem(&self) -> String {
        self.current().roots_pem()
    }

    /// The root the signing chain ends at.
    pub(crate) fn root(&self) -> Option<CertificateDer<'static>> {
        self.current().root().cloned()
    }

    /// The roots of this mesh under each of its names, and the revocations, as verifiers
    /// take them.
    pub(crate) fn bundles(&self) -> TrustBundleSet {
        let own = self.current().trust_bundle().clone();
        let domains = self.domains();
        let mut set = TrustBundleSet::new();
        for td in std::iter::once(&domains.mesh).chain(&domains.aliases) {
            if td != own.trust_domain()
                && let Ok(bundle) = TrustBundle::new(td.clone(), own.roots().iter().cloned())
            {
                set.insert(bundle);
            }
        }
        set.insert(own);
        set.set_revocations(self.with_revocations(|r| r.revocations()));
        set
    }

    /// Reads the revocation list.
    pub(crate) fn with_revocations<T>(&self, f: impl FnOnce(&RevocationList) -> T) -> T {
        f(&self.revocations.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Changes the revocation list and tells every follower when `f` says it changed.
    pub(crate) fn update_revocations(
        &self,
        f: impl FnOnce(&mut RevocationList) -> Result<bool, String>,
    ) -> Result<bool, String> {
        let changed = f(&mut self.revocations.write().unwrap_or_else(|p| p.into_inner()))?;
        if changed {
            self.changed();
        }
        Ok(changed)
    }

    /// The rotation, if one was ever started.
    pub(crate) fn rotation(&self) -> Option<RotationState> {
        lock(&self.rotation).clone()
    }

    /// Records the rotation's new state (already saved) and puts its CA in force.
    pub(crate) fn set_rotation(&self, state: RotationState, authority: Authority) {
        *lock(&self.rotation) = Some(state);
        self.replace(authority);
    }

    /// Serializes every change of the rotation (start, each step, abort).
    pub(crate) fn rotation_lock(&self) -> MutexGuard<'_, ()> {
        lock(&self.rotation_ops)
    }

    /// Serializes view publication with trust changes.
    pub(crate) fn publishing(&self) -> MutexGuard<'_, ()> {
        lock(&self.publishing)
    }

    /// Adds what trust decides to freshly compiled views: revocations, other trust domains'
    /// roots (TrustBundle resources) and this one's aliases (MeshConfig
    /// `trustDomainAliases`), and the renewal request of a rotation that re-issues
    /// certificates. Call it under [`publishing`](Self::publishing).
    pub(crate) fn decorate(&self, mesh: &Mesh, views: &mut HashMap<String, ProxyView>) {
        let revocations = self.with_revocations(RevocationList::to_proto);
        let renew = self
            .rotation()
            .filter(|s| s.phase.reissue())
            .map(|s| s.signer_key().to_owned())
            .unwrap_or_default();
        let domains = self.domains();
        let aliases: Vec<String> = domains.aliases.iter().map(ToString::to_string).collect();
        let foreign = foreign_bundles(mesh, &domains.mesh, &aliases);
        for view in views.values_mut() {
            view.revocations = Some(revocations.clone());
            view.renew_unless_signer.clone_from(&renew);
            view.trust_domain_aliases.clone_from(&aliases);
            view.foreign_bundles.clone_from(&foreign);
            accept_aliases(view, &domains);
        }
        *lock(&self.expected) = Some(views.keys().cloned().collect());
    }

    /// The workloads that had a view at the last publication; `None` before the first
    /// configuration was compiled.
    pub(crate) fn expected(&self) -> Option<BTreeSet<String>> {
        lock(&self.expected).clone()
    }

    /// Records what the proxy of `workload` holds.
    pub(crate) fn record_report(&self, workload: &str, report: &TrustReport) {
        let report = Report {
            serial: report.serial.clone(),
            signer: report.signer.clone(),
            roots: report.roots.iter().cloned().collect(),
            at_ms: meshward_ca::rotation::now_ms(),
        };
        lock(&self.reports).insert(workload.to_owned(), report);
        // A rotation gate may have just opened.
        self.generation.send_modify(|_| {});
    }

    /// What every proxy last reported.
    pub(crate) fn reports(&self) -> BTreeMap<String, Report> {
        lock(&self.reports).clone()
    }

    /// Why the CA files on disk are not in force, if they are not.
    pub(crate) fn load_error(&self) -> Option<String> {
        lock(&self.load_error).clone()
    }

    /// Records whether the CA files on disk could be loaded (`None`: what is on disk is in
    /// force).
    pub(crate) fn set_load_error(&self, error: Option<String>) {
        let mut current = lock(&self.load_error);
        if *current != error {
            *current = error;
            drop(current);
            // The watchdog follows.
            self.generation.send_modify(|_| {});
        }
    }

    /// Tells every follower that trust changed.
    pub(crate) fn changed(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// A follower of trust changes (and of proxy reports).
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }
}

/// The serving certificate of port 15012, reissued when the signer changes.
struct Serving {
    identity: SpiffeId,
    signer: String,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Serving {
    fn issue(authority: &Authority, identity: &SpiffeId) -> Result<Self, String> {
        let (svid, key) = authority
            .issue_with_new_key(identity, Some(SERVER_CERT_TTL))
            .or_else(|_| {
                // A signing CA that expires sooner bounds the serving certificate.
                authority.issue_with_new_key(identity, Some(authority.policy().default_ttl))
            })
            .map_err(|e| e.to_string())?;
        Ok(Self {
            identity: identity.clone(),
            signer: authority.signer_key_sha256(),
            chain: svid.chain,
            key,
        })
    }

    fn config(&mut self, ca: &Ca) -> Result<ServerConfig, String> {
        let authority = ca.current();
        if authority.signer_key_sha256() != self.signer {
            *self = Self::issue(&authority, &self.identity)?;
        }
        crate::tls::server_config(
            Arc::new(ca.bundles()),
            self.chain.clone(),
            self.key.clone_key(),
        )
        .map_err(|e| e.to_string())
    }
}

/// The TLS config of port 15012 at start, and its follower: a config rebuilt on every trust
/// change (new connections take it, open ones keep theirs).
pub(crate) fn serving_configs(
    ca: &Ca,
    identity: &SpiffeId,
) -> Result<(watch::Receiver<Arc<ServerConfig>>, TlsFollower), StartError> {
    let mut serving = Serving::issue(&ca.current(), identity).map_err(StartError::Tls)?;
    let config = serving.config(ca).map_err(StartError::Tls)?;
    let (tx, rx) = watch::channel(Arc::new(config));
    Ok((rx, TlsFollower { serving, tx }))
}

/// Rebuilds the TLS config of port 15012 on trust changes.
pub(crate) struct TlsFollower {
    serving: Serving,
    tx: watch::Sender<Arc<ServerConfig>>,
}

impl std::fmt::Debug for TlsFollower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFollower").finish_non_exhaustive()
    }
}

/// Follows trust changes until the control plane stops: republishes the views, rebuilds the
/// TLS config, refreshes the administrator's files.
pub(crate) async fn run(shared: Arc<Shared>, mut tls: TlsFollower) {
    let mut changes = shared.ca.subscribe();
    let mut seen = *changes.borrow_and_update();
    let mut signer = shared.ca.current().signer_key_sha256();
    let mut roots = shared.ca.roots_pem();
    loop {
        if changes.changed().await.is_err() {
            return;
        }
        let generation = *changes.borrow_and_update();
        if generation == seen {
            // Only a proxy report: the rotation driver looks at those.
            continue;
        }
        seen = generation;
        republish(&shared);
        match tls.serving.config(&shared.ca) {
            Ok(config) => {
                tls.tx.send_replace(Arc::new(config));
            }
            Err(e) => warn!(error = %e, "cannot rebuild the control plane's TLS; keeping the last"),
        }
        let authority = shared.ca.current();
        let (new_signer, new_roots) = (authority.signer_key_sha256(), authority.roots_pem());
        if new_signer != signer || new_roots != roots {
            if let Err(e) = crate::credentials::ensure_admin(
                &authority,
                shared.ca.data_dir(),
                &shared.admin_identity,
            ) {
                warn!(error = %e, "cannot refresh the administrator's credential");
            }
            (signer, roots) = (new_signer, new_roots);
        }
    }
}

/// Secure naming across a trust-domain migration: a server may still present its identity
/// under an alias (its certificate predates the change), so every expected identity of the
/// mesh's trust domain is also accepted under each alias — as Istio expands SAN matchers with
/// `trustDomainAliases`. Ports with explicit names keep them and gain the aliases too.
fn accept_aliases(view: &mut ProxyView, domains: &Domains) {
    if domains.aliases.is_empty() {
        return;
    }
    for port in view.services.iter_mut().flat_map(|s| s.ports.iter_mut()) {
        if port.origination.is_some() {
            continue;
        }
        let base: BTreeSet<String> = if port.subject_alt_names.is_empty() {
            port.endpoints
                .iter()
                .filter(|e| !e.identity.is_empty())
                .map(|e| e.identity.clone())
                .collect()
        } else {
            port.subject_alt_names.iter().cloned().collect()
        };
        let mut names = base.clone();
        for id in base.iter().filter_map(|id| id.parse::<SpiffeId>().ok()) {
            if id.trust_domain() != &domains.mesh {
                continue;
            }
            for alias in &domains.aliases {
                if let Ok(other) = format!("spiffe://{alias}{}", id.path()).parse::<SpiffeId>() {
                    names.insert(other.to_string());
                }
            }
        }
        port.subject_alt_names = names.into_iter().collect();
    }
}

/// The roots of other trust domains, from TrustBundle resources: several for one trust domain
/// add up; roots that do not load, and bundles for this mesh's own trust domain or an alias,
/// are left out (with a warning), so a proxy never refuses a view for them.
fn foreign_bundles(
    mesh: &Mesh,
    trust_domain: &TrustDomain,
    aliases: &[String],
) -> Vec<ForeignBundle> {
    let mut by_domain: BTreeMap<TrustDomain, TrustBundle> = BTreeMap::new();
    for entry in mesh.trust_bundles() {
        let spec = &entry.object.spec;
        let name = format!(
            "{}/{}",
            entry.object.metadata.namespace(),
            entry.object.metadata.name
        );
        let td = match TrustDomain::new(&spec.trust_domain) {
            Ok(td) => td,
            Err(e) => {
                warn!(bundle = %name, error = %e, "TrustBundle ignored");
                continue;
            }
        };
        if &td == trust_domain || aliases.iter().any(|a| a == td.as_str()) {
            warn!(bundle = %name, %td, "TrustBundle for this mesh's own trust domain ignored: its roots come from the CA");
            continue;
        }
        let (bundle, skipped) = match TrustBundle::from_pem(td.clone(), spec.roots.as_bytes()) {
            Ok(loaded) => loaded,
            Err(e) => {
                warn!(bundle = %name, error = %e, "TrustBundle ignored");
                continue;
            }
        };
        for skip in skipped {
            warn!(bundle = %name, %skip, "TrustBundle: certificate left out");
        }
        match by_domain.get_mut(&td) {
            Some(existing) => {
                for root in bundle.roots() {
                    let _ = existing.add_root(root.clone());
                }
            }
            None => {
                by_domain.insert(td, bundle);
            }
        }
    }
    by_domain
        .into_iter()
        .map(|(td, bundle)| ForeignBundle {
            trust_domain: td.to_string(),
            roots_pem: meshward_ca::to_pem(bundle.roots()),
        })
        .collect()
}

/// How often federated peers should fetch `/bundle` again, seconds.
const BUNDLE_REFRESH_HINT: u64 = 300;

/// This mesh's bundle in the SPIFFE bundle format, for `GET :15014/bundle`. The sequence
/// grows whenever the roots change (the Unix time of the change, at least one more than the
/// last).
pub(crate) fn spiffe_bundle(shared: &Shared) -> String {
    let authority = shared.ca.current();
    let roots = authority.roots_pem();
    let sequence = {
        let mut last = lock(&shared.ca.bundle_sequence);
        if last.0 != roots {
            let now = u64::try_from(meshward_ca::rotation::now_ms() / 1000).unwrap_or_default();
            *last = (roots, now.max(last.1 + 1));
        }
        last.1
    };
    meshward_identity::spiffe_bundle_json(authority.trust_bundle(), sequence, BUNDLE_REFRESH_HINT)
}

/// Recompiles every view from the last configuration with the trust in force, and publishes.
pub(crate) fn republish(shared: &Shared) {
    let _publishing = shared.ca.publishing();
    if shared.ca.expected().is_none() {
        // Nothing compiled yet: the first compilation carries the trust in force.
        return;
    }
    let mesh = shared
        .mesh
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let changed = crate::compile::publish(shared, &mesh);
    info!(changed, "trust changed: views republished");
}

/// Why the control plane should not be ready, as far as its CA goes (see [`watchdog`]); empty
/// when it is fine.
pub(crate) fn not_ready(shared: &Shared) -> Vec<String> {
    watchdog::reasons(shared)
        .iter()
        .map(ToString::to_string)
        .collect()
}
