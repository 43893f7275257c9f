//! `meshward up DIR`, `meshward down` and `meshward exec WORKLOAD.NS -- CMD…`.

use std::{
    path::PathBuf,
    process::{ExitCode, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::Args;
use meshward_control_plane::Context;
use meshward_local::{Layout, StateDir, Subnet, UpOptions, netns::Pods, up};
use nix::{sys::signal, unistd::Pid};

use crate::{cmd::runtime, sources};

/// Flags of `meshward up`.
#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// A directory of manifests: Namespaces, Services, Workloads and Istio policies.
    dir: PathBuf,
    /// Return once the mesh is ready, leaving it running (stop it with `meshward down`).
    #[arg(long)]
    detach: bool,
    /// The /16 of 127.0.0.0/8 to run in: workloads get 127.X.1.N, services 127.X.3.N.
    #[arg(long, default_value = "127.0")]
    subnet: String,
    /// State directory (default `$MESHWARD_HOME/up` or `~/.meshward/up`).
    #[arg(long, env = "MESHWARD_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Run every workload in a network namespace of its own (root, Linux, `ip` and iptables):
    /// real addresses on a bridge, traffic captured by iptables into transparent sidecars, no
    /// proxy variables.
    #[arg(long, conflicts_with = "subnet")]
    netns: bool,
    /// Internal: write the report here once ready (used by --detach).
    #[arg(long, hide = true)]
    ready_file: Option<PathBuf>,
}

/// Flags of `meshward down`.
#[derive(Debug, Args)]
pub(crate) struct DownArgs {
    /// State directory of the mesh to stop.
    #[arg(long, env = "MESHWARD_STATE_DIR")]
    state_dir: Option<PathBuf>,
}

/// Flags of `meshward exec`.
#[derive(Debug, Args)]
pub(crate) struct ExecArgs {
    /// The workload to act as: `NAME.NAMESPACE`.
    workload: String,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
    /// State directory of the running mesh.
    #[arg(long, env = "MESHWARD_STATE_DIR")]
    state_dir: Option<PathBuf>,
}

fn state_dir(flag: Option<PathBuf>) -> StateDir {
    flag.map_or_else(StateDir::default_location, StateDir)
}

pub(crate) fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    let state = state_dir(args.state_dir.clone());
    if let Some(running) = state.running() {
        bail!(
            "a mesh is already running (pid {}); stop it with `meshward down`",
            running.pid
        );
    }
    if args.detach {
        return detach(&args, &state);
    }
    let files: Vec<(String, String)> = sources::read_all(std::slice::from_ref(&args.dir))?
        .into_iter()
        .map(|s| (s.name, s.content))
        .collect();
    let layout = if args.netns {
        Layout::Netns
    } else {
        Layout::Loopback(Subnet::parse(&args.subnet)?)
    };
    let plan = meshward_local::plan_in(&files, layout)?;
    std::fs::create_dir_all(&state.0).with_context(|| format!("creating {}", state.0.display()))?;
    let mut options = UpOptions {
        state,
        exe: std::env::current_exe().context("locating the meshward binary")?,
        context_path: Context::default_path(),
        host_ports: None,
    };
    // Network namespaces first, then this process moves to the node's before any thread
    // starts; they are deleted when `_pods` is dropped (and by the next `up`/`down` after a
    // crash).
    let _pods = if args.netns {
        let root = std::fs::metadata("/proc/self").is_ok_and(|m| {
            use std::os::unix::fs::MetadataExt as _;
            m.uid() == 0
        });
        if !root {
            bail!("--netns needs root: it creates network namespaces and installs iptables rules");
        }
        let removed = meshward_local::netns::reap(None);
        if !removed.is_empty() {
            eprintln!(
                "removed network namespaces left by a killed run: {}",
                removed.join(", ")
            );
        }
        let pods = Pods::create(&plan, &options.exe).context("creating the network namespaces")?;
        // Bound here, on the host's network, before leaving it: the CLI reaches the control
        // plane through them (15012/15014 on 127.0.0.1, or any free ports).
        let bind = |port: u16| {
            std::net::TcpListener::bind(("127.0.0.1", port))
                .or_else(|_| std::net::TcpListener::bind(("127.0.0.1", 0)))
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .context("binding the host's control-plane ports")
        };
        options.host_ports = Some(std::sync::Arc::new([bind(15012)?, bind(15014)?]));
        pods.enter_node()
            .context("entering the node's network namespace")?;
        Some(pods)
    } else {
        None
    };
    let ready_file = args.ready_file;
    let interactive = ready_file.is_none();
    runtime()?.block_on(async move {
        let shutdown = async {
            let _ = crate::cmd::shutdown_signal().await;
        };
        up::run(
            plan,
            options,
            |report| {
                print!("{report}");
                if interactive {
                    println!("\nThe mesh is running. Try: meshward exec <workload>.<namespace> -- curl -s http://<service>:<port>/get");
                    println!("Ctrl-C stops everything.");
                }
                if let Some(path) = &ready_file {
                    let _ = std::fs::write(path, report);
                }
            },
            shutdown,
        )
        .await?;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// Starts `meshward up` again in the background, waits until it is ready, prints its report.
fn detach(args: &UpArgs, state: &StateDir) -> anyhow::Result<ExitCode> {
    use std::os::unix::process::CommandExt;
    std::fs::create_dir_all(&state.0)?;
    let ready = state.0.join("ready.txt");
    let _ = std::fs::remove_file(&ready);
    let log = state.0.join("up.log");
    let out = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .arg("up")
        .arg(&args.dir)
        .args(if args.netns {
            vec!["--netns"]
        } else {
            vec!["--subnet", &args.subnet]
        })
        .arg("--state-dir")
        .arg(&state.0)
        .arg("--ready-file")
        .arg(&ready)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        // Its own process group: the terminal's Ctrl-C no longer reaches it.
        .process_group(0)
        .spawn()
        .context("starting meshward up in the background")?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(report) = std::fs::read_to_string(&ready) {
            print!("{report}");
            println!(
                "\nThe mesh runs in the background (pid {}); stop it with `meshward down`.",
                child.id()
            );
            return Ok(ExitCode::SUCCESS);
        }
        if let Some(status) = child.try_wait()? {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            eprint!("{text}");
            bail!("meshward up exited ({status}) before the mesh was ready");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("the mesh was not ready in time; see {}", log.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(crate) fn down(args: DownArgs) -> anyhow::Result<ExitCode> {
    let state = state_dir(args.state_dir);
    let Some(running) = state.running() else {
        // A `meshward up` that was killed may have left its children and namespaces behind.
        match meshward_local::supervisor::Supervisor::reap_leftovers(&state.log_dir()) {
            0 => println!("no mesh is running"),
            n => println!("no mesh is running; stopped {n} process(es) left over from one"),
        }
        reap_namespaces(None);
        return Ok(ExitCode::SUCCESS);
    };
    let pid = Pid::from_raw(i32::try_from(running.pid)?);
    signal::kill(pid, signal::Signal::SIGTERM).context("signalling meshward up")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while meshward_local::state::alive(running.pid) {
        if Instant::now() > deadline {
            bail!("meshward up (pid {}) did not stop within 30s", running.pid);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if running.layout == Layout::Netns {
        reap_namespaces(Some(running.pid));
    }
    println!("mesh stopped");
    Ok(ExitCode::SUCCESS)
}

/// Removes the network namespaces of `owner` and of every dead `meshward up`, saying which.
fn reap_namespaces(owner: Option<u32>) {
    let removed = meshward_local::netns::reap(owner);
    if !removed.is_empty() {
        println!("removed network namespaces: {}", removed.join(", "));
    }
}

pub(crate) fn exec(args: ExecArgs) -> anyhow::Result<ExitCode> {
    let state = state_dir(args.state_dir);
    let running = state
        .running()
        .context("no mesh is running: start one with `meshward up DIR`")?;
    let workload = running
        .workloads
        .iter()
        .find(|w| w.id() == args.workload)
        .with_context(|| {
            let known: Vec<_> = running.workloads.iter().map(|w| w.id()).collect();
            format!(
                "no workload {:?}; the mesh runs {}",
                args.workload,
                known.join(", ")
            )
        })?;
    let env = up::workload_env(workload, &up::service_env(&running.services));
    let (program, rest) = args
        .command
        .split_first()
        .context("no command given after --")?;
    let status = up::in_netns(workload.netns.as_deref(), program)
        .args(rest)
        .envs(&env)
        .status()
        .with_context(|| format!("running {program}"))?;
    Ok(ExitCode::from(
        status
            .code()
            .and_then(|c| u8::try_from(c).ok())
            .unwrap_or(1),
    ))
}
