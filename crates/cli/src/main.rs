//! `meshward`: the one binary. Every verb of the product is a subcommand here; each lives in its
//! own module under `cmd/` and returns an exit code, so errors print once, here, with context.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod client;
mod cmd;
mod output;
mod sources;

/// A zero-trust service mesh that speaks Istio's YAML.
#[derive(Debug, Parser)]
#[command(name = "meshward", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the control plane: certificate authority, configuration push, admin API.
    ControlPlane(cmd::control_plane::ControlPlaneArgs),
    /// Apply Istio (and Meshward) resources to the control plane, all or nothing.
    Apply(cmd::apply::ApplyArgs),
    /// List resources applied to the control plane.
    Get(cmd::get::GetArgs),
    /// Delete one resource from the control plane.
    Delete(cmd::get::DeleteArgs),
    /// Run the sidecar beside one workload (mTLS inbound and outbound, admin, readiness).
    Proxy(Box<cmd::proxy::ProxyArgs>),
    /// Transparent capture in this network namespace, as Istio's init container: install, check
    /// or remove the iptables rules.
    Iptables(cmd::iptables::IptablesArgs),
    /// One row per proxy: sync state and certificate expiry.
    ProxyStatus(cmd::proxy_status::ProxyStatusArgs),
    /// What one sidecar runs, as istioctl proxy-config: listeners, clusters, endpoints, secret, log.
    #[command(subcommand, visible_alias = "pc")]
    ProxyConfig(cmd::proxy_config::ProxyConfigCommand),
    /// Join tokens for new proxies.
    #[command(subcommand)]
    Token(cmd::token::TokenCommand),
    /// Validate manifests offline: a verdict per document, exit 1 if any is invalid.
    Validate(cmd::validate::ValidateArgs),
    /// Cross-resource findings, as istioctl analyze: exit 1 on any Error.
    Analyze(cmd::analyze::AnalyzeArgs),
    /// Authentication checks: the effective mTLS of every server port and client.
    #[command(subcommand)]
    Authn(cmd::authn::AuthnCommand),
    /// Experimental verbs, as istioctl's `x`: `x authz check`.
    #[command(subcommand)]
    X(cmd::x::XCommand),
    /// Certificate authority: create a built-in CA or adopt an Istio plug-in one.
    #[command(subcommand)]
    Ca(cmd::ca::CaCommand),
    /// Certificates: inspect, verify as the proxy does, sign a CSR offline.
    #[command(subcommand)]
    Cert(cmd::cert::CertCommand),
    /// Namespace mTLS: set the mode, or verify it with live probes.
    #[command(subcommand)]
    Mtls(cmd::mtls::MtlsCommand),
    /// Run a whole mesh on this machine from a directory of manifests.
    Up(cmd::up::UpArgs),
    /// Stop a mesh started with `meshward up --detach`.
    Down(cmd::up::DownArgs),
    /// Run a command as a workload of the running mesh (its proxy and service variables set).
    Exec(cmd::up::ExecArgs),
    /// Built-in demo workloads (httpbin, echo, sleep).
    #[command(subcommand)]
    Demo(cmd::demo::DemoCommand),
    /// Print the version.
    Version,
}

fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    if !cli.command.is_long_running() {
        restore_sigpipe();
    }
    let result: anyhow::Result<ExitCode> = match cli.command {
        Command::ControlPlane(args) => cmd::control_plane::run(args),
        Command::Apply(args) => cmd::apply::run(args),
        Command::Get(args) => cmd::get::run(args),
        Command::Delete(args) => cmd::get::run_delete(args),
        Command::Proxy(args) => cmd::proxy::run(*args),
        Command::Iptables(args) => cmd::iptables::run(args),
        Command::ProxyStatus(args) => cmd::proxy_status::run(args),
        Command::ProxyConfig(command) => cmd::proxy_config::run(command),
        Command::Token(command) => cmd::token::run(command),
        Command::Validate(args) => cmd::validate::run(args),
        Command::Analyze(args) => cmd::analyze::run(args),
        Command::Authn(command) => cmd::authn::run(command),
        Command::X(command) => cmd::x::run(command),
        Command::Ca(command) => cmd::ca::run(command),
        Command::Cert(command) => cmd::cert::run(command),
        Command::Mtls(command) => cmd::mtls::run(command),
        Command::Up(args) => cmd::up::run(args),
        Command::Down(args) => cmd::up::down(args),
        Command::Exec(args) => cmd::up::exec(args),
        Command::Demo(command) => cmd::demo::run(command),
        Command::Version => {
            println!("meshward {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

impl Command {
    /// Servers keep Rust's ignored SIGPIPE (a closed socket is an error to handle, not a
    /// reason to die); one-shot verbs get the Unix default.
    fn is_long_running(&self) -> bool {
        matches!(
            self,
            Self::ControlPlane(_) | Self::Proxy(_) | Self::Up(_) | Self::Demo(_)
        )
    }
}

/// Restores the default SIGPIPE action, so that `meshward get pa -A | head -1` ends quietly as
/// Unix tools do instead of panicking on the closed pipe (Rust ignores SIGPIPE by default).
#[allow(unsafe_code)]
fn restore_sigpipe() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: runs in main before any other thread exists, and installs the default action,
    // not a handler, so no code of ours ever runs in signal context.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

/// Logs go to standard error, filtered by `RUST_LOG` (default `info` for long-running verbs'
/// own crates, `warn` for everything else).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "warn,meshward=info,meshward_control_plane=info,meshward_proxy=info",
        )
    });
    let current = std::sync::Mutex::new(filter.to_string());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_filter_reloading();
    let handle = builder.reload_handle();
    // `meshward proxy`'s `/logging?level=` replaces the filter through this.
    // An empty spec reads the filter in force.
    let _ = cmd::proxy::LOG_FILTER.set(std::sync::Arc::new(move |spec: &str| {
        let mut current = current.lock().unwrap_or_else(|p| p.into_inner());
        if !spec.is_empty() {
            let filter = tracing_subscriber::EnvFilter::try_new(spec).map_err(|e| e.to_string())?;
            handle.reload(filter).map_err(|e| e.to_string())?;
            spec.clone_into(&mut current);
        }
        Ok(current.clone())
    }));
    builder.init();
}
