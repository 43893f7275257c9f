//! Transparent capture, as Istio's init container does it: `nat` rules in the workload's
//! network namespace send every outbound TCP connection to the sidecar's 15001 and every inbound
//! one to 15006, except the proxy's own connections (matched by uid or gid), and the sidecar
//! reads where each connection was going ([`original_dst`]).
//!
//! The rules are computed by a pure function ([`rules`]) and applied with one
//! `iptables-restore --noflush` transaction, which replaces any earlier capture and touches
//! no other rule: a failure leaves the table as it was, never half installed.

pub mod original_dst;
pub mod rules;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub use self::rules::{CaptureConfig, Cidr, FlagError, Rule, Selection};

/// Why the capture could not be read or changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// The iptables tools are not installed.
    #[error("`{0}` not found: install iptables (Debian's `iptables` package, nf_tables backend)")]
    Missing(&'static str),
    /// A tool ran and failed (e.g. without permission); nothing was changed.
    #[error("`{tool}` failed, nothing was changed: {stderr}")]
    Failed {
        /// The command.
        tool: &'static str,
        /// Its standard error.
        stderr: String,
    },
    /// A tool could not be run.
    #[error("cannot run `{tool}`: {source}")]
    Io {
        /// The command.
        tool: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// What `install` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed {
    /// The rules were written.
    Changed,
    /// Exactly these rules were already in place: nothing was written.
    AlreadyInPlace,
}

/// How long one iptables tool may run (e.g. waiting for another's lock) before it is killed.
const TOOL_TIMEOUT: Duration = Duration::from_secs(30);

fn run(tool: &'static str, args: &[&str], input: Option<&str>) -> Result<String, CaptureError> {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => CaptureError::Missing(tool),
            _ => CaptureError::Io { tool, source },
        })?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(input.as_bytes())
            .map_err(|source| CaptureError::Io { tool, source })?;
    }
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(TOOL_TIMEOUT) {
        Ok(out) => out.map_err(|source| CaptureError::Io { tool, source })?,
        Err(_) => {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            return Err(CaptureError::Failed {
                tool,
                stderr: format!("still running after {TOOL_TIMEOUT:?}: killed"),
            });
        }
    };
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        return Err(CaptureError::Failed {
            tool,
            stderr: if stderr.is_empty() {
                format!("exit status {}", out.status)
            } else {
                stderr
            },
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The capture rules and chains now in this network namespace's `nat` table.
pub fn current() -> Result<(Vec<Rule>, Vec<String>), CaptureError> {
    let saved = run("iptables-save", &["-t", "nat"], None)?;
    Ok(rules::parse_saved(&saved))
}

/// Installs `config` in the current network namespace, replacing any earlier capture, in one
/// transaction. Idempotent: when exactly these rules are in place nothing is written.
pub fn install(config: &CaptureConfig) -> Result<Installed, CaptureError> {
    let (existing, chains) = current()?;
    if rules::differences(config, &existing, &chains).is_empty() {
        return Ok(Installed::AlreadyInPlace);
    }
    let script = config.restore_script(&existing, &chains);
    run("iptables-restore", &["--noflush"], Some(&script))?;
    Ok(Installed::Changed)
}

/// How the installed capture differs from `config`; empty when it is exactly in place.
pub fn check(config: &CaptureConfig) -> Result<Vec<String>, CaptureError> {
    let (existing, chains) = current()?;
    Ok(rules::differences(config, &existing, &chains))
}

/// Removes every capture rule and chain, in one transaction; returns whether there was any.
pub fn remove() -> Result<bool, CaptureError> {
    let (existing, chains) = current()?;
    let Some(script) = rules::removal_script(&existing, &chains) else {
        return Ok(false);
    };
    run("iptables-restore", &["--noflush"], Some(&script))?;
    Ok(true)
}
