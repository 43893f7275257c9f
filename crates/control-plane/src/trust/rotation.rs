//! Drives a root rotation: evaluates the gate of the phase in force against what every proxy
//! reports holding, moves on when it opens, saves the new state before putting it in force,
//! and performs the on-disk step (swap or discard) at the end.
//!
//! The state is saved first, so a control plane that dies between the two resumes from the
//! saved phase and puts it in force at start. Gates read only what the proxies report they
//! hold, never what was sent to them, so a restart (which forgets every report) blocks the gate
//! until the proxies are back and have reported again.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use meshward_api::v1::{ProxyGate, RotationStatus, RotationStep};
use meshward_ca::rotation::{Gate, Phase, RotationState, now_ms};
use tracing::{info, warn};

use crate::Shared;

/// How often the gate is looked at when nothing is reported.
const TICK: Duration = Duration::from_millis(200);

/// The gate of the phase in force, and each proxy's part in it.
#[derive(Debug, Clone)]
pub(crate) struct GateView {
    /// What the gate waits for, in words.
    pub(crate) summary: String,
    /// Whether it is open.
    pub(crate) passed: bool,
    /// One row per workload with a view.
    pub(crate) proxies: Vec<ProxyGate>,
}

/// What the gate of `state`'s phase waits for, and whether every proxy is there.
pub(crate) fn evaluate(shared: &Shared, state: &RotationState) -> GateView {
    let gate = state.phase.gate();
    let Some(expected) = shared.ca.expected() else {
        return GateView {
            summary: "waiting for the first configuration to be compiled".to_owned(),
            passed: false,
            proxies: Vec::new(),
        };
    };
    let roots: BTreeSet<String> = state.root_fingerprints().into_iter().collect();
    let signer = state.signer_key();
    let summary = match gate {
        Gate::None => "nothing to wait for".to_owned(),
        Gate::BundleInstalled => format!(
            "every proxy trusts exactly the {} root(s) of this stage",
            roots.len()
        ),
        Gate::Reissued => format!(
            "every proxy holds a certificate signed by {}",
            short(signer)
        ),
    };
    let reports = shared.ca.reports();
    let records: BTreeMap<String, _> = shared
        .registry
        .snapshot()
        .into_iter()
        .map(|r| (r.workload.clone(), r))
        .collect();
    let mut proxies = Vec::new();
    for workload in expected {
        let record = records.get(&workload);
        let connected = record.is_some_and(|r| r.connected);
        let (passed, mut detail) = match reports.get(&workload) {
            None if connected => (
                false,
                "connected, but has not reported what it holds".to_owned(),
            ),
            None => (
                false,
                "no proxy has reported since the control plane started".to_owned(),
            ),
            Some(report) => match gate {
                Gate::None => (true, String::new()),
                Gate::BundleInstalled if report.roots == roots => (
                    true,
                    format!("trusts the {} root(s) of this stage", roots.len()),
                ),
                Gate::BundleInstalled => {
                    let missing = roots.difference(&report.roots).count();
                    let extra = report.roots.difference(&roots).count();
                    let held = match (missing, extra) {
                        (0, e) => format!("still trusts {e} root(s) this stage removes"),
                        (m, 0) => format!("lacks {m} root(s) of this stage"),
                        (m, e) => format!(
                            "lacks {m} root(s) of this stage and still trusts {e} it removes"
                        ),
                    };
                    (false, format!("{held}: bundle not installed yet"))
                }
                Gate::Reissued if report.signer == signer => (
                    true,
                    format!(
                        "certificate {} from the signer in force",
                        short(&report.serial)
                    ),
                ),
                Gate::Reissued => (
                    false,
                    format!(
                        "certificate {} from signer {}; renewal requested",
                        short(&report.serial),
                        short(&report.signer)
                    ),
                ),
            },
        };
        if !passed {
            if let Some(nack) = record
                .map(|r| r.nack_reason.as_str())
                .filter(|n| !n.is_empty())
            {
                detail.push_str(&format!("; last view refused: {nack}"));
            }
            if !connected {
                detail.push_str("; not connected");
            }
        }
        proxies.push(ProxyGate {
            workload,
            passed,
            detail,
        });
    }
    GateView {
        passed: gate == Gate::None || proxies.iter().all(|p| p.passed),
        summary,
        proxies,
    }
}

fn short(hex: &str) -> &str {
    hex.get(..16).unwrap_or(hex)
}

/// Looks at the gate whenever a proxy reports or trust changes (and every 200 ms), until the
/// control plane stops.
pub(crate) async fn drive(shared: Arc<Shared>) {
    let mut changes = shared.ca.subscribe();
    loop {
        tick(&shared);
        tokio::select! {
            () = tokio::time::sleep(TICK) => {}
            changed = changes.changed() => if changed.is_err() { return },
        }
    }
}

fn tick(shared: &Shared) {
    let _rotating = shared.ca.rotation_lock();
    let Some(state) = shared.ca.rotation() else {
        return;
    };
    if state.phase.is_terminal() {
        if state.phase == Phase::Complete && shared.ca.files().next_dir().exists() {
            // The swap failed earlier: try again.
            if let Err(e) = shared.ca.files().complete() {
                warn!(error = %e, "cannot put the new CA in place; retrying");
            }
        }
        return;
    }
    let gate = evaluate(shared, &state);
    let mut next = state;
    if next.advance(gate.passed, now_ms()).is_none() {
        return;
    }
    if let Err(e) = commit(shared, next) {
        warn!(error = %e, "root rotation cannot move on; retrying");
    }
}

/// Saves `state`, performs the on-disk step it needs, and puts its CA in force.
pub(crate) fn commit(shared: &Shared, state: RotationState) -> Result<(), String> {
    let files = shared.ca.files();
    files.save_state(&state).map_err(|e| e.to_string())?;
    let step = match state.phase {
        Phase::Complete => files.complete(),
        Phase::Aborted => files.discard(),
        _ => Ok(()),
    };
    if let Err(e) = step {
        // The state is saved: the CA in force follows it, and the step is retried.
        warn!(error = %e, phase = %state.phase, "root rotation: on-disk step failed");
    }
    let authority = files
        .authority(&state, shared.ca.trust_domain())
        .map_err(|e| e.to_string())?;
    info!(
        phase = %state.phase,
        stage = state.phase.stage().unwrap_or_default(),
        elapsed_ms = state.elapsed_ms(now_ms()),
        "root rotation: {}",
        state.phase.describe()
    );
    shared.ca.set_rotation(state, authority);
    Ok(())
}

/// The wire form of a rotation and its gate.
pub(crate) fn status(shared: &Shared, state: Option<&RotationState>) -> RotationStatus {
    let Some(state) = state else {
        return RotationStatus::default();
    };
    let now = now_ms();
    let gate = if state.phase.is_terminal() {
        None
    } else {
        Some(evaluate(shared, state))
    };
    RotationStatus {
        exists: true,
        phase: state.phase.as_str().to_owned(),
        stage: u32::from(state.phase.stage().unwrap_or_default()),
        description: state.phase.describe().to_owned(),
        finished: state.phase.is_terminal(),
        started_ms: state.started_ms(),
        phase_started_ms: state.phase_started_ms(),
        elapsed_ms: state.elapsed_ms(now),
        old_roots: state.old_roots.join(", "),
        new_root: state.new_root.clone(),
        gate: gate.as_ref().map(|g| g.summary.clone()).unwrap_or_default(),
        proxies: gate.map(|g| g.proxies).unwrap_or_default(),
        history: state
            .history
            .iter()
            .map(|s| RotationStep {
                phase: s.phase.as_str().to_owned(),
                stage: u32::from(s.phase.stage().unwrap_or_default()),
                description: s.phase.describe().to_owned(),
                at_ms: s.at_ms,
            })
            .collect(),
        plan: Vec::new(),
    }
}
