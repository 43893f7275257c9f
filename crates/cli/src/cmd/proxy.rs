//! `meshward proxy`: the sidecar beside one workload, in the foreground until SIGTERM (or
//! `POST /quitquitquit`), then a drain of up to `--drain-timeout`.
//!
//! Two ways to get an identity: from the control plane with a join token
//! (`--control-plane --control-plane-root --join-token`), or static PEM files
//! (`--cert --key --bundle`), which with `--inbound`/`--upstream` is the standalone mode.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use meshward_identity::TrustDomain;
use meshward_proxy::config::{
    AccessLogFormat, IdentitySource, OutboundPolicy, Timeouts, Transparent, WorkloadName,
};
use meshward_proxy::{InboundPort, LogControl, Proxy, ProxyConfig, Upstream};

use crate::cmd::{duration::parse_duration, runtime, shutdown_signal};

/// Set once by the logging setup: replaces the log filter at runtime.
pub(crate) static LOG_FILTER: OnceLock<LogControl> = OnceLock::new();

/// Flags of `meshward proxy`.
#[derive(Debug, Args)]
pub(crate) struct ProxyArgs {
    /// The workload served, `NAME.NAMESPACE` (required with --control-plane).
    #[arg(long)]
    workload: Option<String>,
    /// The workload address: every listener binds here.
    #[arg(long)]
    address: IpAddr,
    /// The app's private address: inbound port P is forwarded to APP_ADDRESS:P.
    #[arg(long)]
    app_address: IpAddr,
    /// The control plane's gRPC endpoint, HOST:PORT.
    #[arg(long, requires_all = ["control_plane_root", "join_token", "workload"], conflicts_with_all = ["cert", "key", "bundle", "inbound"])]
    control_plane: Option<String>,
    /// PEM file with the root that signed the control plane's certificate.
    #[arg(long)]
    control_plane_root: Option<PathBuf>,
    /// One-time join token for the first certificate.
    #[arg(long, env = "MESHWARD_JOIN_TOKEN", hide_env_values = true)]
    join_token: Option<String>,
    /// Static identity: certificate chain (PEM, leaf first); reloaded when it changes.
    #[arg(long, requires_all = ["key", "bundle"])]
    cert: Option<PathBuf>,
    /// Static identity: the certificate's private key (PEM).
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Static identity: trust bundle (PEM roots of the trust domain).
    #[arg(long, requires = "cert")]
    bundle: Option<PathBuf>,
    /// A static inbound port, PORT=strict|permissive|disable (repeatable).
    #[arg(long, value_name = "PORT=MODE")]
    inbound: Vec<InboundPort>,
    /// A static upstream, LISTEN_ADDR=TARGET_ADDR,spiffe://EXPECTED-ID (repeatable).
    #[arg(long, value_name = "LISTEN=TARGET,ID")]
    upstream: Vec<Upstream>,
    /// The local trust domain.
    #[arg(long, default_value = "cluster.local")]
    trust_domain: String,
    /// How long in-flight connections may run after SIGTERM.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    drain_timeout: Duration,
    /// Outbound forward-proxy port on the workload address (0: off).
    #[arg(long, default_value_t = 15001)]
    outbound_port: u16,
    /// Admin port on the workload address, loopback clients only (0: off).
    #[arg(long, default_value_t = 15000)]
    admin_port: u16,
    /// Readiness port on the workload address (0: off).
    #[arg(long, default_value_t = 15021)]
    ready_port: u16,
    /// Prometheus stats port on the workload address, `/stats/prometheus` for any scraper
    /// (0: off).
    #[arg(long, default_value_t = 15090)]
    stats_port: u16,
    /// Access logs on stdout: off, text (Envoy's format) or json; overrides the mesh and
    /// workload settings.
    #[arg(long, value_name = "off|text|json")]
    access_log: Option<AccessLogFormat>,
    /// Transparent mode: serve connections captured by `meshward iptables` on the outbound
    /// port and on --inbound-capture-port, both on every address; the app owns its ports.
    #[arg(long)]
    transparent: bool,
    /// Where the capture rules redirect inbound connections (transparent mode).
    #[arg(long, default_value_t = 15006, requires = "transparent")]
    inbound_capture_port: u16,
    /// Captured connections to addresses outside the mesh: ALLOW_ANY (passed through) or
    /// REGISTRY_ONLY (closed), as MeshConfig `outboundTrafficPolicy.mode`.
    #[arg(long, default_value = "ALLOW_ANY", requires = "transparent")]
    outbound_traffic_policy: OutboundPolicy,
    /// The user ids the capture rules exempt (`meshward iptables -u`): in transparent mode
    /// this process must run as one of them, or as one of --proxy-gid, so that its own
    /// connections are never captured again.
    #[arg(
        long,
        default_value = "1337",
        value_delimiter = ',',
        requires = "transparent"
    )]
    proxy_uid: Vec<u32>,
    /// The group ids the capture rules exempt (`meshward iptables -g`); default: --proxy-uid.
    #[arg(long, value_delimiter = ',', requires = "transparent")]
    proxy_gid: Vec<u32>,
}

/// Refuses to run transparent mode as a user and group the capture rules do not exempt: the
/// proxy's own connections would be captured again and loop back to it.
fn check_exempt(uids: &[u32], gids: &[u32]) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let me = std::fs::metadata("/proc/self").context("reading this process's uid and gid")?;
    let gids = if gids.is_empty() { uids } else { gids };
    if uids.contains(&me.uid()) || gids.contains(&me.gid()) {
        return Ok(());
    }
    bail!(
        "--transparent: this process runs as uid {} gid {}, but the capture exempts uid {uids:?} \
         and gid {gids:?}: its own connections would be captured again; run it as that user or \
         group (e.g. `setpriv --regid 1337 --clear-groups`) or give the ids the rules exempt \
         with --proxy-uid/--proxy-gid",
        me.uid(),
        me.gid()
    )
}

impl ProxyArgs {
    fn into_config(self) -> anyhow::Result<ProxyConfig> {
        let trust_domain = TrustDomain::new(&self.trust_domain)
            .with_context(|| format!("--trust-domain {:?}", self.trust_domain))?;
        let workload = self
            .workload
            .as_deref()
            .map(str::parse::<WorkloadName>)
            .transpose()?;
        let identity = match (self.control_plane, self.cert, self.key, self.bundle) {
            (Some(address), None, None, None) => IdentitySource::ControlPlane {
                address,
                root: self
                    .control_plane_root
                    .context("--control-plane-root is required with --control-plane")?,
                join_token: self.join_token.context(
                    "--join-token (or MESHWARD_JOIN_TOKEN) is required with --control-plane",
                )?,
            },
            (None, Some(cert), Some(key), Some(bundle)) => {
                IdentitySource::Files { cert, key, bundle }
            }
            _ => bail!(
                "give either --control-plane (with --control-plane-root and --join-token) or --cert, --key and --bundle"
            ),
        };
        let transparent = if self.transparent {
            check_exempt(&self.proxy_uid, &self.proxy_gid)?;
            Some(Transparent {
                inbound_capture_port: self.inbound_capture_port,
                outbound_policy: self.outbound_traffic_policy,
            })
        } else {
            None
        };
        Ok(ProxyConfig {
            workload,
            address: self.address,
            app_address: self.app_address,
            trust_domain,
            identity,
            inbound: self.inbound,
            upstreams: self.upstream,
            outbound_port: self.outbound_port,
            admin_port: self.admin_port,
            ready_port: self.ready_port,
            stats_port: self.stats_port,
            access_log: self.access_log,
            access_log_sink: Default::default(),
            drain_timeout: self.drain_timeout,
            timeouts: Timeouts::default(),
            transparent,
        })
    }
}

pub(crate) fn run(args: ProxyArgs) -> anyhow::Result<ExitCode> {
    let config = args.into_config()?;
    let drain_timeout = config.drain_timeout;
    let log = LOG_FILTER.get().map(Arc::clone);
    runtime()?.block_on(async {
        let proxy = Proxy::start(config, log).await?;
        tokio::select! {
            signal = shutdown_signal() => signal?,
            () = proxy.quit_requested() => {}
        }
        if !proxy.shutdown(drain_timeout).await {
            tracing::warn!(
                ?drain_timeout,
                "drain timed out; closing the remaining connections"
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}
