//! The plug-in CA's lifecycle: `DATA_DIR/ca` (Istio's `cacerts` layout) is watched, and a new
//! intermediate, key or chain is checked in full before it signs anything.
//!
//! The files are read every second; a change is acted on once the files have stayed the same
//! for one more look (an operator copies them one by one). The new CA must load with every
//! check of `meshward ca init --plugin-certs` and keep every root in force (certificates in use
//! chain to them; replacing a root is `meshward ca rotate`). Anything else is refused: the
//! previous CA keeps signing, the reason is logged and reported (`meshward ca status`, the
//! watchdog), until the files are fixed or put back.

use std::{sync::Arc, time::Duration};

use meshward_ca::{Authority, fingerprint_sha256, read_bounded};
use tracing::{info, warn};

use crate::Shared;

/// How often the files are looked at.
const POLL: Duration = Duration::from_secs(1);
/// The files that make a CA, in Istio's layout plus Meshward's trust-domain file.
const FILES: [&str; 5] = [
    "ca-cert.pem",
    "ca-key.pem",
    "root-cert.pem",
    "cert-chain.pem",
    "trust-domain",
];

/// What the files hold: a digest of each one (or of its absence, or of why it is unreadable).
fn snapshot(dir: &std::path::Path) -> String {
    FILES
        .iter()
        .map(|name| match read_bounded(&dir.join(name)) {
            Ok(bytes) => fingerprint_sha256(&bytes),
            Err(e) => format!("unreadable: {e}"),
        })
        .collect::<Vec<_>>()
        .join("|")
}

/// Watches the CA directory until the control plane stops.
pub(crate) async fn run(shared: Arc<Shared>) {
    let dir = shared.ca.files().ca_dir().to_owned();
    let mut loaded = snapshot(&dir);
    let mut last = loaded.clone();
    loop {
        tokio::time::sleep(POLL).await;
        let now = snapshot(&dir);
        let settled = now == last;
        last.clone_from(&now);
        if !settled || now == loaded {
            continue;
        }
        if shared.ca.rotation().is_some_and(|s| !s.phase.is_terminal()) {
            // The rotation owns the directory until it is complete.
            continue;
        }
        let _rotating = shared.ca.rotation_lock();
        match check(&shared, &dir) {
            Ok(Some(authority)) => {
                info!(
                    signer = %describe_signer(&authority),
                    roots = authority.trust_bundle().roots().len(),
                    "CA files changed: the new CA signs from now on"
                );
                shared.ca.replace(authority);
                shared.ca.set_load_error(None);
            }
            Ok(None) => shared.ca.set_load_error(None),
            Err(reason) => {
                warn!(error = %reason, "CA files changed but are refused; the previous CA keeps signing");
                shared.ca.set_load_error(Some(reason));
            }
        }
        loaded = now;
    }
}

/// Loads and checks the CA in `dir`: `Some` when it differs from the CA in force and may
/// replace it, `None` when it is the same, the reason otherwise.
fn check(shared: &Shared, dir: &std::path::Path) -> Result<Option<Authority>, String> {
    let candidate =
        Authority::load(dir, Some(shared.ca.trust_domain())).map_err(|e| e.to_string())?;
    let current = shared.ca.current();
    let dropped: Vec<String> = current
        .trust_bundle()
        .roots()
        .iter()
        .filter(|root| !candidate.trust_bundle().roots().contains(root))
        .map(|root| fingerprint_sha256(root.as_ref()))
        .collect();
    if !dropped.is_empty() {
        return Err(format!(
            "{}: drops the root(s) {} that certificates in use chain to; replace a root with \
             `meshward ca rotate --new-root FILE --new-key FILE`",
            dir.join("root-cert.pem").display(),
            dropped.join(", ")
        ));
    }
    let same = candidate.signing_cert() == current.signing_cert()
        && candidate.chain_above() == current.chain_above()
        && candidate.trust_bundle().roots() == current.trust_bundle().roots();
    Ok((!same).then_some(candidate))
}

fn describe_signer(authority: &Authority) -> String {
    meshward_identity::describe(authority.signing_cert())
        .map(|info| format!("{} (expires {})", info.subject, info.not_after))
        .unwrap_or_default()
}
