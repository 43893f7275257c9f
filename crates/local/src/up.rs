//! `meshward up`: the control plane, every workload's app and sidecar, the services' virtual
//! addresses — started, checked ready, reported, kept running, and stopped cleanly.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, time::Duration};

use meshward_control_plane::{ControlPlane, Settings, root_cert_path};
use meshward_identity::TrustDomain;
use tokio::{process::Command, sync::mpsc};
use tracing::{info, warn};

use meshward_config::resources::mesh_config::OutboundTrafficMode;

use crate::netns::PROXY_ID;
use crate::{
    plan::{Layout, Plan, PlannedService, PlannedWorkload},
    report,
    state::{RunningMesh, StateDir},
    supervisor::{Event, Supervisor},
};

/// How long workloads get to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Join tokens handed to sidecars live this long: enough to start, useless after.
const TOKEN_TTL: Duration = Duration::from_secs(300);

/// Why `meshward up` stopped.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    /// Another mesh runs already.
    #[error("a mesh is already running (pid {0}); stop it with `meshward down`")]
    AlreadyRunning(u32),
    /// The control plane did not start.
    #[error("control plane: {0}")]
    ControlPlane(String),
    /// The manifests could not be applied.
    #[error("{0}")]
    Apply(String),
    /// A workload failed to start or exited during start-up.
    #[error("workload {label}: {reason}")]
    Workload {
        /// `name.namespace app|sidecar`.
        label: String,
        /// What happened, with the end of its log.
        reason: String,
    },
    /// Some workloads were not ready in time.
    #[error("not ready after {READY_TIMEOUT:?}: {0} (logs in the state directory's logs/)")]
    NotReady(String),
    /// Local I/O failed.
    #[error("{0}")]
    Io(String),
}

/// How to run.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// The state directory.
    pub state: StateDir,
    /// The `meshward` executable (apps named `meshward` and all sidecars run it).
    pub exe: PathBuf,
    /// Where to write the CLI's context file.
    pub context_path: PathBuf,
    /// `--netns`: listeners on this machine's own network (bound before this process entered
    /// the node's namespace) that forward to the control plane's gRPC and HTTP ports, so the
    /// CLI reaches it from the host; the context file names them.
    pub host_ports: Option<std::sync::Arc<[std::net::TcpListener; 2]>>,
}

/// Runs `plan` until `shutdown` resolves; calls `ready` with the report once everything runs.
pub async fn run(
    plan: Plan,
    options: UpOptions,
    ready: impl FnOnce(String),
    shutdown: impl Future<Output = ()>,
) -> Result<(), UpError> {
    let state = &options.state;
    if let Some(running) = state.running() {
        return Err(UpError::AlreadyRunning(running.pid));
    }
    // A previous run killed before it could stop its children must not hold our addresses.
    let _ = Supervisor::reap_leftovers(&state.log_dir());
    // A fresh data directory: the store holds exactly this directory's manifests.
    let _ = std::fs::remove_dir_all(state.data_dir());
    std::fs::create_dir_all(state.log_dir()).map_err(|e| UpError::Io(e.to_string()))?;

    let trust_domain = TrustDomain::new(&plan.mesh.config().trust_domain)
        .map_err(|e| UpError::Apply(format!("trustDomain: {e}")))?;
    let cp_ip = plan.layout.control_plane();
    let mut control_plane = ControlPlane::start(Settings {
        data_dir: state.data_dir(),
        grpc_addr: SocketAddr::from((cp_ip, 15012)),
        http_addr: SocketAddr::from((cp_ip, 15014)),
        trust_domain,
        workload_cert_ttl: Duration::from_secs(24 * 3600),
        context_path: Some(options.context_path.clone()),
    })
    .await
    .map_err(|e| UpError::ControlPlane(e.to_string()))?;
    control_plane
        .apply(plan.sources.clone())
        .map_err(UpError::Apply)?;
    if let Some(ports) = options.host_ports.as_ref() {
        forward_control_plane(ports, &control_plane, &options.context_path)
            .map_err(|e| UpError::Io(format!("forwarding the control plane to the host: {e}")))?;
    }

    // Network namespaces: Service addresses are captured by the sidecars, or rewritten by
    // kube-proxy's rules in the namespaces without one (`netns::Pods`).
    let _services = if plan.layout == Layout::Netns {
        None
    } else {
        Some(
            crate::kube_proxy::start(&plan.services)
                .await
                .map_err(|e| UpError::Io(e.to_string()))?,
        )
    };
    let policy = match plan.mesh.config().outbound_traffic_mode() {
        OutboundTrafficMode::AllowAny => "ALLOW_ANY",
        OutboundTrafficMode::RegistryOnly => "REGISTRY_ONLY",
    };

    let (mut supervisor, mut events) = Supervisor::new(state.log_dir());
    let service_env = service_env(&plan.services);
    let root = root_cert_path(&state.data_dir());
    let cp_addr = control_plane.grpc_addr().to_string();
    for workload in &plan.workloads {
        if !workload.command.is_empty() {
            let command = app_command(workload, &options.exe, &service_env);
            supervisor.run(format!("{} app", workload.id()), Box::new(command));
        }
        if workload.sidecar {
            let exe = options.exe.clone();
            let (cp, root, w) = (cp_addr.clone(), root.clone(), workload.clone());
            let tokens = control_plane.token_source();
            supervisor.run(
                format!("{} sidecar", workload.id()),
                Box::new(move || {
                    let token = tokens
                        .create(&w.namespace, &w.service_account, TOKEN_TTL)
                        .map_err(|e| e.to_string())?
                        .0;
                    let mut command = Command::from(in_netns(w.netns.as_deref(), &exe));
                    command
                        .arg("proxy")
                        .args(["--workload", &w.id()])
                        .args(["--address", &w.address.to_string()])
                        .args(["--app-address", &w.app_address.to_string()])
                        .args(["--control-plane", &cp])
                        .arg("--control-plane-root")
                        .arg(&root)
                        .env("MESHWARD_JOIN_TOKEN", token);
                    if w.netns.is_some() {
                        // Captured traffic, and the proxy's own exempt from capture (root
                        // keeps its uid: `ip netns exec` needs it).
                        command
                            .args(["--transparent", "--outbound-traffic-policy", policy])
                            .gid(PROXY_ID);
                    }
                    Ok(command)
                }),
            );
        }
    }

    let running = RunningMesh {
        pid: std::process::id(),
        layout: plan.layout,
        control_plane: cp_addr.clone(),
        workloads: plan.workloads.clone(),
        services: plan.services.clone(),
    };
    let started = wait_ready(&plan, &control_plane, &mut events).await;
    if let Err(e) = started {
        supervisor.shutdown().await;
        return Err(e);
    }
    state
        .publish(&running)
        .map_err(|e| UpError::Io(format!("{}: {e}", state.0.display())))?;
    ready(report::render(&plan, &running).await);

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            () = control_plane.wait() => {
                warn!("control plane stopped");
                break;
            }
            Some(event) = events.recv() => match event {
                Event::Exited { label, status, .. } => warn!(%label, %status, "restarting"),
                Event::SpawnFailed { label, reason } => warn!(%label, %reason, "cannot restart"),
            },
        }
    }
    info!("stopping the mesh");
    supervisor.shutdown().await;
    state.clear();
    Ok(())
}

/// Forwards the host's listeners to the control plane's gRPC and HTTP ports (plain TCP: the
/// CLI's TLS goes through) and points the context file at them.
fn forward_control_plane(
    ports: &[std::net::TcpListener; 2],
    control_plane: &ControlPlane,
    context_path: &std::path::Path,
) -> std::io::Result<()> {
    let mut context = meshward_control_plane::Context::load(context_path)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let targets = [control_plane.grpc_addr(), control_plane.http_addr()];
    let mut listeners = Vec::new();
    for (host, target) in ports.iter().zip(targets) {
        listeners.push((
            tokio::net::TcpListener::from_std(host.try_clone()?)?,
            target,
        ));
        // The same address inside the node's namespace, where `mtls verify` and `mtls debug`
        // run their probes from.
        let inside = std::net::TcpListener::bind(host.local_addr()?)?;
        inside.set_nonblocking(true)?;
        listeners.push((tokio::net::TcpListener::from_std(inside)?, target));
    }
    for (listener, target) in listeners {
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let connect = tokio::net::TcpStream::connect(target);
                    if let Ok(Ok(mut server)) =
                        tokio::time::timeout(Duration::from_secs(5), connect).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
    }
    context.server = ports[0].local_addr()?.to_string();
    context.monitoring = ports[1].local_addr()?.to_string();
    context
        .store(context_path)
        .map_err(|e| std::io::Error::other(e.to_string()))
}

/// Waits until every sidecar is SYNCED and ready and every app accepts connections.
async fn wait_ready(
    plan: &Plan,
    control_plane: &ControlPlane,
    events: &mut mpsc::UnboundedReceiver<Event>,
) -> Result<(), UpError> {
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        let pending = pending(plan, control_plane).await;
        if pending.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(UpError::NotReady(pending.join(", ")));
        }
        tokio::select! {
            Some(event) = events.recv() => return Err(match event {
                Event::SpawnFailed { label, reason } => UpError::Workload { label, reason },
                Event::Exited { label, status, log } => UpError::Workload {
                    reason: format!("exited during start-up ({status}):\n{}", tail(&log)),
                    label,
                },
            }),
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

/// The workloads not ready yet, each with what it waits for.
async fn pending(plan: &Plan, control_plane: &ControlPlane) -> Vec<String> {
    let status: BTreeMap<String, (u64, u64)> = control_plane
        .proxy_status()
        .into_iter()
        .map(|r| (r.workload, (r.version_sent, r.version_acked)))
        .collect();
    let mut pending = Vec::new();
    for w in &plan.workloads {
        if w.sidecar {
            let synced = status
                .get(&w.id())
                .is_some_and(|(sent, acked)| *sent > 0 && sent == acked);
            if !synced {
                pending.push(format!("{} (sidecar not synced)", w.id()));
                continue;
            }
            if !report::http_ok(SocketAddr::from((w.address, 15021)), "/healthz/ready").await {
                pending.push(format!("{} (sidecar not ready)", w.id()));
                continue;
            }
        }
        // Inside a namespace with a sidecar the app listens on its own 127.0.0.1: the
        // sidecar's readiness stands for the workload.
        let app_inside = w.sidecar && w.netns.is_some();
        if !w.command.is_empty() && !app_inside {
            for port in &w.ports {
                let app = SocketAddr::from((w.app_address, *port));
                if tokio::net::TcpStream::connect(app).await.is_err() {
                    pending.push(format!("{} (app not listening on {app})", w.id()));
                }
            }
        }
    }
    pending
}

/// Kubernetes' service environment variables for every service, as every pod gets them.
pub fn service_env(services: &[PlannedService]) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for service in services {
        let prefix = service.name.to_ascii_uppercase().replace('-', "_");
        if let Some(first) = service.ports.keys().next() {
            env.insert(
                format!("{prefix}_SERVICE_HOST"),
                service.address.to_string(),
            );
            env.insert(format!("{prefix}_SERVICE_PORT"), first.to_string());
            env.insert(
                format!("{prefix}_PORT"),
                format!("tcp://{}:{first}", service.address),
            );
        }
        for port in service.ports.keys() {
            env.insert(
                format!("{prefix}_PORT_{port}_TCP_ADDR"),
                service.address.to_string(),
            );
        }
    }
    env
}

/// The environment a workload's processes get: its own variables, the pod's, the services',
/// and for a workload with a sidecar the proxy variables that send HTTP through it.
pub fn workload_env(
    workload: &PlannedWorkload,
    services: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut env = services.clone();
    env.insert("POD_NAME".into(), workload.name.clone());
    env.insert("POD_NAMESPACE".into(), workload.namespace.clone());
    env.insert("POD_IP".into(), workload.address.to_string());
    env.insert("MESHWARD_APP_IP".into(), workload.app_address.to_string());
    // In a network namespace the capture sends everything through the sidecar: no variables.
    if workload.sidecar && workload.netns.is_none() {
        let proxy = format!("http://{}:15001", workload.address);
        for key in ["HTTP_PROXY", "http_proxy"] {
            env.insert(key.into(), proxy.clone());
        }
        env.insert("NO_PROXY".into(), "localhost,127.0.0.1".into());
    }
    env.extend(workload.env.clone());
    env
}

/// The command of a workload's app, ready to spawn: `$(VAR)` expanded from its environment
/// (as Kubernetes does), a leading `meshward` meaning this very binary.
fn app_command(
    workload: &PlannedWorkload,
    exe: &std::path::Path,
    services: &BTreeMap<String, String>,
) -> impl Fn() -> Result<Command, String> + Send + 'static {
    let env = workload_env(workload, services);
    let argv: Vec<String> = workload.command.iter().map(|a| expand(a, &env)).collect();
    let exe = exe.to_owned();
    let netns = workload.netns.clone();
    move || {
        let (program, args) = argv.split_first().ok_or("empty command")?;
        let mut command = if program == "meshward" {
            Command::from(in_netns(netns.as_deref(), &exe))
        } else {
            Command::from(in_netns(netns.as_deref(), program))
        };
        command.args(args).env_clear().envs(&env);
        // `meshward` inside a shell command finds this very binary first.
        let mut path: Vec<PathBuf> = exe.parent().map(PathBuf::from).into_iter().collect();
        if let Some(inherited) = std::env::var_os("PATH") {
            path.extend(std::env::split_paths(&inherited));
        }
        if let Ok(joined) = std::env::join_paths(path) {
            command.env("PATH", joined);
        }
        Ok(command)
    }
}

/// `program`, run inside network namespace `netns` when given (`ip netns exec`, which also
/// mounts the namespace's own `/etc/hosts`).
pub fn in_netns(
    netns: Option<&str>,
    program: impl AsRef<std::ffi::OsStr>,
) -> std::process::Command {
    match netns {
        Some(ns) => {
            let mut command = std::process::Command::new("ip");
            command.args(["netns", "exec", ns]).arg(program);
            command
        }
        None => std::process::Command::new(program),
    }
}

/// Expands `$(VAR)` references; unknown ones stay as written, as in Kubernetes.
fn expand(arg: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = arg;
    while let Some(start) = rest.find("$(") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find(')') {
            Some(end) => {
                let name = &after[..end];
                match env.get(name) {
                    Some(value) => out.push_str(value),
                    None => out.push_str(&rest[start..start + 3 + end]),
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The last lines of a log file, for error messages.
fn tail(log: &std::path::Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_kubernetes_style_references() {
        let env = BTreeMap::from([("MESHWARD_APP_IP".to_owned(), "127.0.2.1".to_owned())]);
        assert_eq!(expand("$(MESHWARD_APP_IP):8080", &env), "127.0.2.1:8080");
        assert_eq!(expand("$(UNKNOWN)/x", &env), "$(UNKNOWN)/x");
        assert_eq!(expand("no refs", &env), "no refs");
        assert_eq!(expand("$(unterminated", &env), "$(unterminated");
    }
}
