//! `meshward control-plane`: runs the control plane in the foreground until SIGINT/SIGTERM.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::Args;
use meshward_control_plane::{Context, ControlPlane, Settings};
use meshward_identity::TrustDomain;

use crate::cmd::{duration::parse_duration, runtime};

/// Flags of `meshward control-plane`.
#[derive(Debug, Args)]
pub(crate) struct ControlPlaneArgs {
    /// Where the CA, applied resources and tokens are kept.
    #[arg(long, default_value = "meshward-data")]
    data_dir: PathBuf,
    /// gRPC over TLS: certificate signing, configuration push, admin API.
    #[arg(long, default_value = "127.0.0.1:15012")]
    grpc_addr: SocketAddr,
    /// Health and Prometheus metrics.
    #[arg(long, default_value = "127.0.0.1:15014")]
    http_addr: SocketAddr,
    /// The mesh's trust domain (used when the CA is first created).
    #[arg(long, default_value = "cluster.local")]
    trust_domain: String,
    /// Lifetime of workload certificates when a proxy asks for none (e.g. 24h, 60s).
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    workload_cert_ttl: Duration,
    /// Where to write the context file for the CLI.
    #[arg(long, env = "MESHWARD_CONTEXT")]
    context: Option<PathBuf>,
}

pub(crate) fn run(args: ControlPlaneArgs) -> anyhow::Result<ExitCode> {
    let trust_domain = TrustDomain::new(&args.trust_domain)
        .with_context(|| format!("--trust-domain {:?}", args.trust_domain))?;
    let settings = Settings {
        data_dir: args.data_dir,
        grpc_addr: args.grpc_addr,
        http_addr: args.http_addr,
        trust_domain,
        workload_cert_ttl: args.workload_cert_ttl,
        context_path: Some(args.context.unwrap_or_else(Context::default_path)),
    };
    runtime()?.block_on(async {
        let mut control_plane = ControlPlane::start(settings).await?;
        println!(
            "control plane listening on {} (gRPC) and {} (metrics)",
            control_plane.grpc_addr(),
            control_plane.http_addr()
        );
        tokio::select! {
            () = control_plane.wait() => anyhow::bail!("control plane stopped unexpectedly"),
            signal = crate::cmd::shutdown_signal() => signal?,
        }
        Ok(ExitCode::SUCCESS)
    })
}
