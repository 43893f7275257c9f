//! Child processes of `meshward up`: apps and sidecars, each restarted with backoff when it
//! exits, each stopped with SIGTERM (then SIGKILL after a grace period) on shutdown.

use std::{
    fs::OpenOptions,
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    time::Duration,
};

use nix::{sys::signal, unistd::Pid};
use tokio::{
    process::{Child, Command},
    sync::{mpsc, watch},
    task::JoinSet,
};
use tracing::{info, warn};

/// First restart delay; doubled after each quick exit up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A process that ran this long is considered healthy again: its backoff resets.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);
/// How long a process may take to stop after SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(6);

/// Builds the command for one (re)start; sidecars need a fresh join token every time.
pub type MakeCommand = Box<dyn FnMut() -> Result<Command, String> + Send>;

/// What a supervised process reports.
#[derive(Debug)]
pub enum Event {
    /// It could not be started at all.
    SpawnFailed {
        /// `name.namespace app|sidecar`.
        label: String,
        /// Why.
        reason: String,
    },
    /// It exited (and will be restarted unless shutting down).
    Exited {
        /// `name.namespace app|sidecar`.
        label: String,
        /// How.
        status: String,
        /// Its log file.
        log: PathBuf,
    },
}

/// The supervised processes.
pub struct Supervisor {
    log_dir: PathBuf,
    tasks: JoinSet<()>,
    stop: watch::Sender<bool>,
    events: mpsc::UnboundedSender<Event>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("log_dir", &self.log_dir)
            .field("processes", &self.tasks.len())
            .finish()
    }
}

impl Supervisor {
    /// A supervisor writing logs into `log_dir`; events arrive on the returned receiver.
    pub fn new(log_dir: PathBuf) -> (Self, mpsc::UnboundedReceiver<Event>) {
        let (events, rx) = mpsc::unbounded_channel();
        let supervisor = Self {
            log_dir,
            tasks: JoinSet::new(),
            stop: watch::channel(false).0,
            events,
        };
        (supervisor, rx)
    }

    /// Starts `label` now and keeps it running.
    pub fn run(&mut self, label: String, make: MakeCommand) {
        let file = label.replace(' ', ".");
        let paths = Paths {
            log: self.log_dir.join(format!("{file}.log")),
            pid: pid_dir(&self.log_dir).join(file),
        };
        let stop = self.stop.subscribe();
        let events = self.events.clone();
        self.tasks
            .spawn(keep_running(label, make, paths, stop, events));
    }

    /// Kills what a previous supervisor left running (when it was killed before it could stop
    /// its children): every recorded process whose start time is still the one recorded, so a
    /// recycled PID is never hit.
    /// Returns how many it stopped.
    pub fn reap_leftovers(log_dir: &Path) -> usize {
        let mut stopped = 0;
        let Ok(entries) = std::fs::read_dir(pid_dir(log_dir)) else {
            return stopped;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if let Ok(text) = std::fs::read_to_string(&path)
                && let Some((pid, started)) = text.split_once('\n')
                && let Ok(pid) = pid.parse::<i32>()
                && start_time_of(pid).as_deref() == Some(started)
            {
                warn!(pid, "stopping a process left over from an earlier run");
                let _ = signal::kill(Pid::from_raw(pid), signal::Signal::SIGKILL);
                stopped += 1;
                // Its sockets are only released once it is gone; an orphan is reaped by init.
                let deadline = std::time::Instant::now() + STOP_GRACE;
                while start_time_of(pid).as_deref() == Some(started)
                    && std::time::Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            let _ = std::fs::remove_file(path);
        }
        stopped
    }

    /// Stops every process: SIGTERM, then SIGKILL after [`STOP_GRACE`].
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

/// The PID records live beside the logs.
fn pid_dir(log_dir: &Path) -> PathBuf {
    log_dir.with_file_name("pids")
}

/// Where one process's log and PID record live.
struct Paths {
    log: PathBuf,
    pid: PathBuf,
}

/// The start time of a live (not zombie) process, in clock ticks since boot: field 22 of
/// `/proc/PID/stat`. With the PID it names one process for good, unlike the command line,
/// which is not yet the new one right after a spawn.
fn start_time_of(pid: i32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count fields after its end.
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    let state = fields.next()?;
    (state != "Z").then_some(())?;
    fields.nth(18).map(str::to_owned)
}

async fn keep_running(
    label: String,
    mut make: MakeCommand,
    paths: Paths,
    mut stop: watch::Receiver<bool>,
    events: mpsc::UnboundedSender<Event>,
) {
    let Paths { log, pid: pid_file } = paths;
    let mut backoff = FIRST_BACKOFF;
    loop {
        let child = make().and_then(|mut command| {
            let out = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .map_err(|e| format!("log file {}: {e}", log.display()))?;
            let err = out.try_clone().map_err(|e| e.to_string())?;
            command
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| e.to_string())
        });
        let mut child = match child {
            Ok(child) => child,
            Err(reason) => {
                let _ = events.send(Event::SpawnFailed {
                    label: label.clone(),
                    reason,
                });
                return;
            }
        };
        if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
            // Best effort: the record only helps a later run clean up after a crash of ours.
            if let Some(dir) = pid_file.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            if let Some(started) = start_time_of(pid) {
                let _ = std::fs::write(&pid_file, format!("{pid}\n{started}"));
            }
        }
        let started = tokio::time::Instant::now();
        tokio::select! {
            status = child.wait() => {
                let status = describe(status);
                warn!(%label, %status, "process exited; restarting in {backoff:?}");
                let _ = events.send(Event::Exited { label: label.clone(), status, log: log.clone() });
            }
            () = stopped(&mut stop) => {
                terminate(&label, &mut child).await;
                let _ = std::fs::remove_file(&pid_file);
                return;
            }
        }
        if started.elapsed() > HEALTHY_AFTER {
            backoff = FIRST_BACKOFF;
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stopped(&mut stop) => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Resolves once shutdown was requested.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, before any other await.
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

async fn terminate(label: &str, child: &mut Child) {
    if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
        let _ = signal::kill(Pid::from_raw(pid), signal::Signal::SIGTERM);
        if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_ok() {
            info!(%label, "stopped");
            return;
        }
        warn!(%label, "did not stop within {STOP_GRACE:?}; killing it");
    }
    let _ = child.kill().await;
}

fn describe(status: std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("wait failed: {e}"),
    }
}
