//! `meshward proxy-config`: what one sidecar runs, in istioctl's `proxy-config` forms and
//! columns — listeners, clusters, endpoints, secrets and log levels.
//!
//! The workload is found in the control plane's configuration (as `proxy-status` finds the
//! control plane: the context file); its sidecar's admin port (15000 on the workload address,
//! answered to loopback clients only) says what the proxy actually runs (`/config_dump`,
//! `/certs`, `/logging`). The control plane's configuration adds what the proxy does not
//! carry: the policy that set each port's mode, the port's declared protocol, the
//! DestinationRule of each cluster.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
    process::ExitCode,
    time::Duration,
};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};
use meshward_api::v1::{ProxyStatus, ProxyStatusRequest};
use meshward_config::{
    Mesh, WorkloadInstance,
    resolve::{
        protocol::{PortProtocol, port_protocol},
        tls::Client,
    },
};
use meshward_local::StateDir;
use meshward_proxy::view::routes::Retries;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    client::ServerArgs,
    cmd::{cert::now_unix, proxy_status, runtime},
    output,
};

/// Connecting to the admin port, and the whole answer, are bounded by these.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest admin answer read (a config dump of 10 000 services fits).
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// The proxy's log filter when nothing else was asked (`RUST_LOG` unset); kept equal to the
/// default of `meshward`'s logging set-up.
const DEFAULT_FILTER: &str = "warn,meshward=info,meshward_control_plane=info,meshward_proxy=info";

/// Envoy's logger names, as `istioctl proxy-config log --level` takes them, and the tracing
/// targets of the Meshward sidecar each one sets.
const LOGGERS: &[(&str, &[&str])] = &[
    ("admin", &["meshward_proxy::admin"]),
    (
        "config",
        &["meshward_proxy::xds::discovery", "meshward_proxy::view"],
    ),
    (
        "connection",
        &[
            "meshward_proxy::inbound",
            "meshward_proxy::io",
            "meshward_proxy::tls",
        ],
    ),
    (
        "http",
        &["meshward_proxy::inbound::http", "meshward_proxy::web"],
    ),
    ("main", &["meshward_proxy::proxy", "meshward_proxy::drain"]),
    ("pool", &["meshward_proxy::outbound::pool"]),
    ("rbac", &["meshward::rbac"]),
    ("router", &["meshward_proxy::outbound::http_proxy"]),
    (
        "secret",
        &["meshward_proxy::creds", "meshward_proxy::xds::certify"],
    ),
    ("upstream", &["meshward_proxy::outbound"]),
];

/// The verbs of `meshward proxy-config`.
#[derive(Debug, Subcommand)]
pub(crate) enum ProxyConfigCommand {
    /// Inbound ports (mode, the policy that set it, protocol) and outbound listeners.
    #[command(visible_alias = "listener", alias = "l")]
    Listeners(TargetArgs),
    /// One row per service port the proxy may call, with its DestinationRule and TLS mode.
    #[command(visible_alias = "cluster", alias = "c")]
    Clusters(TargetArgs),
    /// Every endpoint of every cluster, with the identity it must present.
    #[command(visible_alias = "endpoint", alias = "ep")]
    Endpoints(TargetArgs),
    /// The HTTP and TCP routes of every service: VirtualService matches, destinations and
    /// weights, timeouts, retries and faults.
    #[command(visible_alias = "route", alias = "r")]
    Routes(TargetArgs),
    /// The workload certificate (`default`) and the trust roots (`ROOTCA`).
    #[command(visible_alias = "secrets", alias = "s")]
    Secret(TargetArgs),
    /// Show or change the proxy's log levels at runtime (`--level rbac:debug`).
    #[command(alias = "o")]
    Log(LogArgs),
}

/// `short`: istioctl's table; `json`: the data itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    /// A table.
    Short,
    /// JSON.
    Json,
}

/// The workload whose proxy is shown.
#[derive(Debug, Args)]
pub(crate) struct TargetArgs {
    /// The workload, `NAME.NAMESPACE` (or `NAME` with `-n`, or a name unique in the mesh).
    workload: String,
    /// Namespace of a bare workload name.
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Short)]
    output: Output,
    /// The sidecar's admin port.
    #[arg(long, default_value_t = 15000)]
    admin_port: u16,
    #[command(flatten)]
    server: ServerArgs,
}

/// Flags of `meshward proxy-config log`.
#[derive(Debug, Args)]
pub(crate) struct LogArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Comma-separated `LOGGER:LEVEL` (Envoy's logger names: admin, config, connection, http,
    /// main, pool, rbac, router, secret, upstream; or a tracing target) or `LEVEL` for every
    /// logger. Levels: trace, debug, info, warning, error, critical, off.
    #[arg(long, conflicts_with = "reset")]
    level: Option<String>,
    /// Go back to the default levels.
    #[arg(long)]
    reset: bool,
}

pub(crate) fn run(command: ProxyConfigCommand) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async move {
        match command {
            ProxyConfigCommand::Listeners(args) => listeners(&args).await,
            ProxyConfigCommand::Clusters(args) => clusters(&args).await,
            ProxyConfigCommand::Endpoints(args) => endpoints(&args).await,
            ProxyConfigCommand::Routes(args) => routes(&args).await,
            ProxyConfigCommand::Secret(args) => secret(&args).await,
            ProxyConfigCommand::Log(args) => log(&args).await,
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

// === The target ===

/// One workload with a sidecar, as the control plane knows it, and its admin address.
struct Target {
    /// `name.namespace`.
    id: String,
    mesh: Mesh,
    /// Index of the workload in `mesh.workloads()`.
    index: usize,
    admin: SocketAddr,
    /// The workload address.
    address: IpAddr,
    /// The network namespace the sidecar runs in (`meshward up --netns`).
    netns: Option<String>,
    /// Where the app listens, when `meshward up` runs it.
    app: Option<IpAddr>,
    /// The proxy's sync state, if it ever connected.
    status: Option<ProxyStatus>,
}

impl Target {
    /// Finds the workload, refusing unknown ones (listing those that exist) and workloads
    /// without a sidecar.
    async fn find(args: &TargetArgs) -> anyhow::Result<Self> {
        let mut admin = args
            .server
            .admin()
            .await
            .context("reaching the control plane")?;
        let mesh = crate::client::fetch_mesh(&mut admin).await?;
        let proxies = admin
            .proxy_status(ProxyStatusRequest {})
            .await?
            .into_inner()
            .proxies;
        let index = find_workload(&mesh, &args.workload, args.namespace.as_deref())?;
        let instance = &mesh.workloads()[index];
        let id = format!("{}.{}", instance.name, instance.namespace);
        if !instance.sidecar {
            bail!(
                "workload {id} has no sidecar (it opts out of injection, or its namespace is not \
                 labelled istio-injection=enabled): there is no proxy configuration to show"
            );
        }
        let running = StateDir::default_location()
            .running()
            .and_then(|m| m.workloads.into_iter().find(|w| w.id() == id));
        let address = match instance.address.as_deref() {
            Some(address) => address
                .parse::<IpAddr>()
                .with_context(|| format!("workload {id} has the address {address:?}"))?,
            None => match &running {
                Some(w) => IpAddr::V4(w.address),
                None => bail!("workload {id} has no address yet: its sidecar cannot be reached"),
            },
        };
        let netns = running.as_ref().and_then(|w| w.netns.clone());
        let status = proxies
            .into_iter()
            .find(|p| p.workload == instance.name && p.namespace == instance.namespace);
        Ok(Self {
            app: running.map(|w| IpAddr::V4(w.app_address)),
            id,
            index,
            // In its own network namespace (`meshward up --netns`) a sidecar's admin listens
            // on 127.0.0.1 there, and is read from inside.
            admin: match &netns {
                Some(_) => SocketAddr::from(([127, 0, 0, 1], args.admin_port)),
                None => SocketAddr::new(address, args.admin_port),
            },
            address,
            netns,
            status,
            mesh,
        })
    }

    fn instance(&self) -> &WorkloadInstance {
        &self.mesh.workloads()[self.index]
    }

    /// `GET path` on the sidecar's admin port, as JSON.
    async fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        let (code, body) = self.request("GET", path).await?;
        if code != 200 {
            bail!(
                "the sidecar of {} answered {path} with {code}: {}",
                self.id,
                body.trim()
            );
        }
        serde_json::from_str(&body)
            .with_context(|| format!("the sidecar of {} answered {path} with no JSON", self.id))
    }

    /// One request to the admin port, with the errors a user can act on.
    async fn request(&self, method: &str, path: &str) -> anyhow::Result<(u16, String)> {
        let (code, body) = admin_request(self.netns.as_deref(), self.admin, method, path)
            .await
            .with_context(|| {
                let sync = self
                    .status
                    .as_ref()
                    .map_or("it never reached the control plane".to_owned(), |s| {
                        format!("the control plane sees it {}", proxy_status::status(s))
                    });
                format!(
                    "the sidecar of {} is not reachable on its admin port {} ({sync}; is it \
                 running? `meshward proxy-status`)",
                    self.id, self.admin
                )
            })?;
        if code == 403 {
            bail!(
                "the sidecar of {} answers its admin port {} to loopback clients only: run this \
                 on the workload's machine",
                self.id,
                self.admin
            );
        }
        Ok((code, body))
    }

    /// Warns on standard error when the proxy does not run the control plane's latest view.
    fn warn_unsynced(&self) {
        if let Some(status) = &self.status {
            let state = proxy_status::status(status);
            if state != "SYNCED" {
                eprintln!(
                    "warning: {} is {state}: what it runs may differ from the configuration",
                    self.id
                );
            }
        }
    }

    /// Whether something listens on `port` of the workload address.
    async fn listening(&self, port: u16) -> bool {
        let addr = SocketAddr::new(self.address, port);
        let connect = meshward_local::probe::connect_from(self.netns.as_deref(), addr);
        matches!(
            tokio::time::timeout(CONNECT_TIMEOUT, connect).await,
            Ok(Ok(_))
        )
    }
}

/// The index of the workload named `name` (`NAME.NAMESPACE`, or `NAME` in `namespace`, or a
/// name unique in the mesh).
fn find_workload(mesh: &Mesh, name: &str, namespace: Option<&str>) -> anyhow::Result<usize> {
    let (name, namespace) = match (name.split_once('.'), namespace) {
        (Some((name, ns)), _) => (name, Some(ns)),
        (None, ns) => (name, ns),
    };
    let matches: Vec<usize> = mesh
        .workloads()
        .iter()
        .enumerate()
        .filter(|(_, w)| w.name == name && namespace.is_none_or(|ns| w.namespace == ns))
        .map(|(i, _)| i)
        .collect();
    let known = || {
        let mut all: Vec<String> = mesh
            .workloads()
            .iter()
            .map(|w| format!("{}.{}", w.name, w.namespace))
            .collect();
        all.sort();
        if all.is_empty() {
            "none".to_owned()
        } else {
            all.join(", ")
        }
    };
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => {
            let wanted = namespace.map_or(name.to_owned(), |ns| format!("{name}.{ns}"));
            bail!("no workload {wanted}; the mesh has: {}", known())
        }
        _ => bail!(
            "workload name {name} is ambiguous: write NAME.NAMESPACE ({})",
            known()
        ),
    }
}

// === listeners ===

/// One listener row.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ListenerRow {
    address: String,
    port: u16,
    direction: &'static str,
    /// PeerAuthentication mode of an inbound service port.
    mode: Option<String>,
    protocol: String,
    /// The policy that set the mode.
    policy: Option<String>,
    destination: String,
}

async fn listeners(args: &TargetArgs) -> anyhow::Result<()> {
    let target = Target::find(args).await?;
    let dump = target.get_json("/config_dump").await?;
    target.warn_unsynced();
    let view = &dump["view"];
    let opaque: BTreeSet<u64> = view["opaque"]
        .as_array()
        .map(|ports| ports.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    let address = target.address.to_string();
    let instance = target.instance();
    let mut rows = Vec::new();
    for (port, mode) in view["inbound"].as_object().into_iter().flatten() {
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        let mode = mode.as_str().unwrap_or("?").to_owned();
        let effective = target.mesh.peer_authentication(instance, port);
        let policy = if effective.mode.as_str() == mode {
            effective.source.to_string()
        } else {
            format!(
                "{} (control plane: {}, not acknowledged yet)",
                effective.source,
                effective.mode.as_str()
            )
        };
        let declared = instance.ports.iter().find(|p| p.port.valid() == Some(port));
        let protocol = if opaque.contains(&u64::from(port)) {
            "TCP"
        } else {
            match declared.map(|p| port_protocol(p.protocol.as_deref(), p.name.as_deref())) {
                Some(PortProtocol::Http) => "HTTP",
                Some(PortProtocol::Tcp) => "TCP",
                Some(PortProtocol::Detect) | None => "auto (sniffed)",
            }
        };
        let destination = match target.app {
            Some(app) => format!("app {}", SocketAddr::new(app, port)),
            None => format!("app port {port}"),
        };
        rows.push(ListenerRow {
            address: address.clone(),
            port,
            direction: "inbound",
            mode: Some(mode),
            protocol: protocol.to_owned(),
            policy: Some(policy),
            destination,
        });
    }
    let services = view["services"].as_array().map_or(0, Vec::len);
    let fixed = [
        (
            15001,
            "outbound",
            "HTTP proxy, CONNECT",
            format!("{services} mesh service(s), mTLS by endpoint"),
        ),
        (
            15021,
            "inbound",
            "HTTP",
            "readiness /healthz/ready".to_owned(),
        ),
    ];
    for (port, direction, protocol, destination) in fixed {
        if target.listening(port).await {
            rows.push(ListenerRow {
                address: address.clone(),
                port,
                direction,
                mode: None,
                protocol: protocol.to_owned(),
                policy: None,
                destination,
            });
        }
    }
    if args.output == Output::Json {
        return print_json(&rows);
    }
    let mut table = output::table([
        "ADDRESS",
        "PORT",
        "DIRECTION",
        "MODE",
        "PROTOCOL",
        "POLICY",
        "DESTINATION",
    ]);
    for row in rows {
        table.add_row([
            row.address,
            row.port.to_string(),
            row.direction.to_owned(),
            row.mode.unwrap_or_else(|| "-".into()),
            row.protocol,
            row.policy.unwrap_or_else(|| "-".into()),
            row.destination,
        ]);
    }
    print!("{}", output::render(&mut table));
    Ok(())
}

// === clusters and endpoints ===

/// One service port of the view.
struct ClusterPort<'a> {
    host: &'a str,
    namespace: &'a str,
    port: u16,
    port_json: &'a Value,
}

/// Every service port in the proxy's view, sorted by host and port.
fn cluster_ports(dump: &Value) -> Vec<ClusterPort<'_>> {
    let mut ports: Vec<ClusterPort<'_>> = dump["view"]["services"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|service| {
            let host = service["host"].as_str().unwrap_or_default();
            let namespace = service["namespace"].as_str().unwrap_or_default();
            service["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(move |port| {
                    Some(ClusterPort {
                        host,
                        namespace,
                        port: u16::try_from(port["port"].as_u64()?).ok()?,
                        port_json: port,
                    })
                })
        })
        .collect();
    ports.sort_by(|a, b| (a.host, a.port).cmp(&(b.host, b.port)));
    ports
}

/// The TLS the proxy originates to one endpoint.
fn endpoint_tls(endpoint: &Value, port: &Value) -> &'static str {
    match endpoint["tls"].as_str() {
        Some("ISTIO_MUTUAL") => "ISTIO_MUTUAL",
        Some("DISABLE") => "DISABLE",
        Some("AUTO") if endpoint["has_sidecar"].as_bool() == Some(true) => "ISTIO_MUTUAL",
        Some("AUTO") => "DISABLE",
        // TLS origination: MUTUAL presents the rule's client certificate.
        Some("ORIGINATE") if port["origination"]["client_identity"].is_null() => "SIMPLE",
        Some("ORIGINATE") => "MUTUAL",
        _ => "UNKNOWN",
    }
}

/// Istio's cluster name for an outbound service port.
fn cluster_name(port: &ClusterPort<'_>) -> String {
    format!("outbound|{}||{}", port.port, port.host)
}

/// One cluster row.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ClusterRow {
    name: String,
    service_fqdn: String,
    port: u16,
    subset: Option<String>,
    direction: &'static str,
    r#type: &'static str,
    destination_rule: Option<String>,
    /// What the proxy originates, per distinct endpoint mode.
    tls: Vec<&'static str>,
    subject_alt_names: Vec<String>,
    endpoints: usize,
    /// The DestinationRule's load balancing, limits and outlier detection, as the sidecar
    /// holds them.
    traffic_policy: Value,
    /// What the sidecar holds now: connections, requests, ejected endpoints.
    state: Value,
}

/// The sidecar's `/clusters` by cluster name (empty from a sidecar that does not serve it).
async fn cluster_states(target: &Target) -> BTreeMap<String, Value> {
    let states = target.get_json("/clusters").await.unwrap_or_default();
    states
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| Some((c["name"].as_str()?.to_owned(), c.clone())))
        .collect()
}

/// A short form of a port's traffic policy: `LEAST_REQUEST maxConnections=1 outlier(5xx=2)`.
fn policy_summary(policy: &Value) -> String {
    let mut parts = vec![match &policy["balance"] {
        Value::String(lb) => lb.clone(),
        Value::Object(hash) => match hash.get("HASH") {
            Some(Value::Object(on)) => match (on.get("header"), on.get("query_parameter")) {
                (Some(Value::String(header)), _) => format!("HASH({header})"),
                (_, Some(Value::String(name))) => format!("HASH(?{name})"),
                _ => "HASH".to_owned(),
            },
            _ => "HASH(source ip)".to_owned(),
        },
        _ => "ROUND_ROBIN".to_owned(),
    }];
    let limits = &policy["limits"];
    for (field, name) in [
        ("max_connections", "maxConnections"),
        ("max_pending", "http1MaxPendingRequests"),
        ("max_requests", "http2MaxRequests"),
        ("max_requests_per_connection", "maxRequestsPerConnection"),
    ] {
        if let Some(n) = limits[field].as_u64() {
            parts.push(format!("{name}={n}"));
        }
    }
    if let Some(idle) = limits["tcp_idle_timeout"].as_object() {
        parts.push(match duration_ms(idle) {
            0 => "tcpIdleTimeout=off".to_owned(),
            ms => format!("tcpIdleTimeout={ms}ms"),
        });
    }
    if let Some(outlier) = policy["outlier"].as_object() {
        parts.push(format!(
            "outlier(5xx={},gateway={})",
            outlier
                .get("consecutive_5xx")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            outlier
                .get("consecutive_gateway")
                .and_then(Value::as_u64)
                .unwrap_or(0)
        ));
    }
    parts.join(" ")
}

async fn clusters(args: &TargetArgs) -> anyhow::Result<()> {
    let target = Target::find(args).await?;
    let dump = target.get_json("/config_dump").await?;
    target.warn_unsynced();
    let instance = target.instance();
    let client = Client {
        namespace: &instance.namespace,
        labels: &instance.labels,
    };
    let states = cluster_states(&target).await;
    let rows: Vec<ClusterRow> = cluster_ports(&dump)
        .iter()
        .map(|cp| {
            let rule = target
                .mesh
                .destination_rule_tls(client, cp.host, Some(cp.namespace), cp.port, None)
                .map(|(_, key, _)| format!("{}.{}", key.name, key.namespace));
            let endpoints = cp.port_json["endpoints"].as_array();
            let tls: BTreeSet<&'static str> = endpoints
                .into_iter()
                .flatten()
                .map(|e| endpoint_tls(e, cp.port_json))
                .collect();
            let name = cluster_name(cp);
            ClusterRow {
                state: states.get(&name).cloned().unwrap_or(Value::Null),
                traffic_policy: cp.port_json["policy"].clone(),
                name,
                service_fqdn: cp.host.to_owned(),
                port: cp.port,
                subset: None,
                direction: "outbound",
                r#type: "EDS",
                destination_rule: rule,
                tls: tls.into_iter().collect(),
                subject_alt_names: strings(&cp.port_json["subject_alt_names"]),
                endpoints: endpoints.map_or(0, Vec::len),
            }
        })
        .collect();
    if args.output == Output::Json {
        return print_json(&rows);
    }
    let mut table = output::table([
        "SERVICE FQDN",
        "PORT",
        "SUBSET",
        "DIRECTION",
        "TYPE",
        "DESTINATION RULE",
        "TLS",
        "TRAFFIC POLICY",
    ]);
    for row in rows {
        let policy = policy_summary(&row.traffic_policy);
        table.add_row([
            row.service_fqdn,
            row.port.to_string(),
            row.subset.unwrap_or_else(|| "-".into()),
            row.direction.to_owned(),
            row.r#type.to_owned(),
            row.destination_rule.unwrap_or_else(|| "-".into()),
            if row.tls.is_empty() {
                "- (no endpoints)".to_owned()
            } else {
                row.tls.join(",")
            },
            policy,
        ]);
    }
    print!("{}", output::render(&mut table));
    Ok(())
}

/// One endpoint row.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct EndpointRow {
    endpoint: String,
    status: &'static str,
    outlier_check: &'static str,
    cluster: String,
    /// The identities the server must prove (mTLS only).
    identity: Vec<String>,
    tls: &'static str,
    tls_source: String,
    workload_identity: Option<String>,
    has_sidecar: bool,
}

async fn endpoints(args: &TargetArgs) -> anyhow::Result<()> {
    let target = Target::find(args).await?;
    let dump = target.get_json("/config_dump").await?;
    target.warn_unsynced();
    let states = cluster_states(&target).await;
    let mut rows = Vec::new();
    for cp in cluster_ports(&dump) {
        let sans = strings(&cp.port_json["subject_alt_names"]);
        let ejected: BTreeSet<&str> = states
            .get(&cluster_name(&cp))
            .and_then(|s| s["ejected"].as_array())
            .into_iter()
            .flatten()
            .filter_map(|e| e["endpoint"].as_str())
            .collect();
        for endpoint in cp.port_json["endpoints"].as_array().into_iter().flatten() {
            let tls = endpoint_tls(endpoint, cp.port_json);
            let own = endpoint["identity"].as_str().map(str::to_owned);
            let identity = match tls {
                "ISTIO_MUTUAL" if sans.is_empty() => own.iter().cloned().collect(),
                "ISTIO_MUTUAL" => sans.clone(),
                // Origination: the names the server certificate must carry.
                "SIMPLE" | "MUTUAL" => {
                    let origination = &cp.port_json["origination"];
                    let names = strings(&origination["subject_alt_names"]);
                    if names.is_empty() {
                        origination["server_name"]
                            .as_str()
                            .map(str::to_owned)
                            .into_iter()
                            .collect()
                    } else {
                        names
                    }
                }
                _ => Vec::new(),
            };
            let address = endpoint["address"].as_str().unwrap_or("?");
            rows.push(EndpointRow {
                endpoint: address.to_owned(),
                // No active health checking: as in Envoy, every endpoint is HEALTHY, and
                // outlier detection says whether it is ejected now.
                status: "HEALTHY",
                outlier_check: if ejected.contains(address) {
                    "FAILED"
                } else {
                    "OK"
                },
                cluster: cluster_name(&cp),
                identity,
                tls,
                tls_source: endpoint["tls_source"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                workload_identity: own,
                has_sidecar: endpoint["has_sidecar"].as_bool().unwrap_or(false),
            });
        }
    }
    if args.output == Output::Json {
        return print_json(&rows);
    }
    let mut table = output::table([
        "ENDPOINT",
        "STATUS",
        "OUTLIER CHECK",
        "CLUSTER",
        "TLS",
        "EXPECTED IDENTITY",
    ]);
    for row in rows {
        table.add_row([
            row.endpoint,
            row.status.to_owned(),
            row.outlier_check.to_owned(),
            row.cluster,
            row.tls.to_owned(),
            if row.identity.is_empty() {
                "- (plaintext)".to_owned()
            } else {
                row.identity.join(",")
            },
        ]);
    }
    print!("{}", output::render(&mut table));
    Ok(())
}

// === routes ===

/// One route row.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RouteRow {
    host: String,
    protocol: &'static str,
    /// `match` conditions, any of which selects the route.
    r#match: Vec<String>,
    destinations: Vec<String>,
    /// Timeout, retries and faults.
    policy: Vec<String>,
    virtual_service: Option<String>,
    /// The route as the sidecar holds it.
    route: Value,
}

impl RouteRow {
    /// The row of one `route` of `host`; no `matches` shows as `any`.
    fn new(
        host: &str,
        protocol: &'static str,
        matches: Vec<String>,
        any: &str,
        route: &Value,
        policy: Vec<String>,
        source: &Option<String>,
    ) -> Self {
        Self {
            host: host.to_owned(),
            protocol,
            r#match: if matches.is_empty() {
                vec![any.to_owned()]
            } else {
                matches
            },
            destinations: route["destinations"]
                .as_array()
                .into_iter()
                .flatten()
                .map(destination_summary)
                .collect(),
            policy,
            virtual_service: source.clone(),
            route: route.clone(),
        }
    }
}

/// `prefix:/api header x-canary=exact:yes`: one `match` of a route.
fn match_summary(m: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(uri) = m["uri"].as_str() {
        parts.push(uri.to_owned());
    }
    for header in m["headers"].as_array().into_iter().flatten() {
        parts.push(format!(
            "header {}={}",
            header[0].as_str().unwrap_or("?"),
            header[1].as_str().unwrap_or("?")
        ));
    }
    if let Some(method) = m["method"].as_str() {
        parts.push(format!("method {method}"));
    }
    if let Some(port) = m["port"].as_u64() {
        parts.push(format!("port {port}"));
    }
    parts.join(" ")
}

fn destination_summary(d: &Value) -> String {
    let host = d["host"].as_str().unwrap_or("?");
    let mut out = host.split('.').next().unwrap_or(host).to_owned();
    if let Some(port) = d["port"].as_u64() {
        out.push_str(&format!(":{port}"));
    }
    if let Some(subset) = d["subset"].as_str() {
        out.push_str(&format!("|{subset}"));
    }
    format!("{out} {}", d["weight"].as_u64().unwrap_or(0))
}

async fn routes(args: &TargetArgs) -> anyhow::Result<()> {
    let target = Target::find(args).await?;
    let dump = target.get_json("/config_dump").await?;
    target.warn_unsynced();
    let mut rows = Vec::new();
    for service in dump["view"]["services"].as_array().into_iter().flatten() {
        let host = service["host"].as_str().unwrap_or_default().to_owned();
        let source = service["routes_source"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        let http = service["http_routes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let tcp = service["tcp_routes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if http.is_empty() && tcp.is_empty() {
            rows.push(RouteRow {
                host: host.clone(),
                protocol: "HTTP",
                r#match: vec!["/*".to_owned()],
                destinations: vec![format!(
                    "{} (every endpoint)",
                    host.split('.').next().unwrap_or(&host)
                )],
                // What the sidecar applies to a service without a VirtualService.
                policy: vec![format!(
                    "retries {} (Istio's default)",
                    Retries::istio_default().attempts
                )],
                virtual_service: None,
                route: Value::Null,
            });
            continue;
        }
        for route in &http {
            let mut policy = Vec::new();
            if let Some(t) = route["timeout"].as_object() {
                policy.push(format!("timeout {}ms", duration_ms(t)));
            }
            if let Some(r) = route["retries"].as_object() {
                policy.push(format!(
                    "retries {}",
                    r.get("attempts").and_then(Value::as_u64).unwrap_or(0)
                ));
            }
            if !route["delay"].is_null() {
                policy.push("fault delay".to_owned());
            }
            if let Some(status) = route["abort"][0].as_u64() {
                policy.push(format!("fault abort {status}"));
            }
            if let Some(code) = route["local"]["Redirect"]["code"].as_u64() {
                policy.push(format!("redirect {code}"));
            }
            if let Some(status) = route["local"]["Direct"]["status"].as_u64() {
                policy.push(format!("direct response {status}"));
            }
            if let Some(uri) = route["rewrite_uri"].as_str() {
                policy.push(format!("rewrite {uri}"));
            }
            if let Some(host) = route["rewrite_authority"].as_str() {
                policy.push(format!("authority {host}"));
            }
            for part in ["request", "response"] {
                let ops = &route[format!("{part}_headers").as_str()];
                let changed = ["set", "add", "remove"]
                    .iter()
                    .any(|op| ops[op].as_array().is_some_and(|a| !a.is_empty()));
                if changed {
                    policy.push(format!("{part} headers"));
                }
            }
            let matches: Vec<String> = route["matches"]
                .as_array()
                .into_iter()
                .flatten()
                .map(match_summary)
                .collect();
            rows.push(RouteRow::new(
                &host, "HTTP", matches, "/*", route, policy, &source,
            ));
        }
        for route in &tcp {
            let ports: Vec<String> = route["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_u64)
                .map(|p| format!("port {p}"))
                .collect();
            rows.push(RouteRow::new(
                &host,
                "TCP",
                ports,
                "*",
                route,
                Vec::new(),
                &source,
            ));
        }
    }
    if args.output == Output::Json {
        return print_json(&rows);
    }
    let mut table = output::table([
        "VHOST",
        "PROTOCOL",
        "MATCH",
        "DESTINATIONS",
        "POLICY",
        "VIRTUAL SERVICE",
    ]);
    for row in rows {
        table.add_row([
            row.host,
            row.protocol.to_owned(),
            row.r#match.join(" | "),
            row.destinations.join(", "),
            if row.policy.is_empty() {
                "-".to_owned()
            } else {
                row.policy.join(", ")
            },
            row.virtual_service.unwrap_or_else(|| "-".into()),
        ]);
    }
    print!("{}", output::render(&mut table));
    Ok(())
}

/// Milliseconds of a serialized `Duration` (`{"secs": …, "nanos": …}`).
fn duration_ms(d: &serde_json::Map<String, Value>) -> u64 {
    let secs = d.get("secs").and_then(Value::as_u64).unwrap_or(0);
    let nanos = d.get("nanos").and_then(Value::as_u64).unwrap_or(0);
    secs * 1000 + nanos / 1_000_000
}

// === secret ===

async fn secret(args: &TargetArgs) -> anyhow::Result<()> {
    let target = Target::find(args).await?;
    let certs = target.get_json("/certs").await?;
    if certs["certificate"].is_null() {
        bail!(
            "the sidecar of {} has no certificate yet: it waits for the control plane to sign \
             its CSR (`meshward proxy-status`)",
            target.id
        );
    }
    if args.output == Output::Json {
        return print_json(&certs);
    }
    let now = now_unix();
    let mut table = output::table([
        "RESOURCE NAME",
        "TYPE",
        "STATUS",
        "VALID CERT",
        "SERIAL NUMBER",
        "NOT AFTER",
        "NOT BEFORE",
    ]);
    let dumped = &certs["certificates"][0];
    if dumped.is_null() {
        // A sidecar whose `/certs` has only the summary: no serial number to show.
        let summary = &certs["certificate"];
        let (from, to) = (
            summary["not_before"].as_i64().unwrap_or_default(),
            summary["not_after"].as_i64().unwrap_or_default(),
        );
        table.add_row([
            "default".to_owned(),
            "Cert Chain".to_owned(),
            "ACTIVE".to_owned(),
            (from <= now && now < to).to_string(),
            "unknown".to_owned(),
            to.to_string(),
            from.to_string(),
        ]);
    } else {
        let rows = dumped["cert_chain"]
            .as_array()
            .into_iter()
            .flatten()
            .take(1)
            .map(|c| ("default", "Cert Chain", c))
            .chain(
                dumped["ca_cert"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| ("ROOTCA", "CA", c)),
            );
        for (name, kind, cert) in rows {
            let text = |key: &str| cert[key].as_str().unwrap_or("-").to_owned();
            let valid = cert["valid_from_unix"].as_i64().unwrap_or(i64::MAX) <= now
                && now < cert["expiration_time_unix"].as_i64().unwrap_or(i64::MIN);
            table.add_row([
                name.to_owned(),
                kind.to_owned(),
                "ACTIVE".to_owned(),
                valid.to_string(),
                text("serial_number"),
                text("expiration_time"),
                text("valid_from"),
            ]);
        }
    }
    print!("{}", output::render(&mut table));
    Ok(())
}

// === log ===

/// One logger and its level under a filter.
#[derive(Debug, Serialize)]
struct LoggerRow {
    name: &'static str,
    level: String,
    targets: &'static [&'static str],
}

async fn log(args: &LogArgs) -> anyhow::Result<()> {
    let target = Target::find(&args.target).await?;
    let change = match (&args.level, args.reset) {
        (Some(level), _) => Some(level.as_str()),
        (None, true) => Some(""),
        (None, false) => None,
    };
    // The filter in force, when the sidecar reports it.
    let (code, body) = target.request("GET", "/logging").await?;
    let reported = (code == 200)
        .then(|| body.trim().strip_prefix("log filter: ").map(str::to_owned))
        .flatten();
    let filter = match change {
        Some(levels) => {
            let base = reported.as_deref().unwrap_or(DEFAULT_FILTER);
            let wanted = if levels.is_empty() {
                DEFAULT_FILTER.to_owned()
            } else {
                apply_levels(base, levels)?
            };
            let (code, body) = target
                .request("POST", &format!("/logging?level={wanted}"))
                .await?;
            if code != 200 {
                bail!(
                    "the sidecar of {} refused the filter {wanted:?}: {}",
                    target.id,
                    body.trim()
                );
            }
            Some(
                body.trim()
                    .strip_prefix("log filter: ")
                    .unwrap_or(&wanted)
                    .to_owned(),
            )
        }
        None => reported,
    };
    let shown = filter.as_deref().unwrap_or(DEFAULT_FILTER);
    let rows: Vec<LoggerRow> = LOGGERS
        .iter()
        .map(|(name, targets)| LoggerRow {
            name,
            level: level_of(shown, targets.first().copied().unwrap_or_default()),
            targets,
        })
        .collect();
    if args.target.output == Output::Json {
        return print_json(&json!({
            "filter": shown,
            "reported": filter.is_some(),
            "loggers": rows,
        }));
    }
    match &filter {
        Some(filter) => println!("active filter: {filter}"),
        None => println!(
            "the sidecar does not report its filter; it starts with RUST_LOG, else {DEFAULT_FILTER}"
        ),
    }
    println!("active loggers:");
    let mut table = output::table(["LOGGER", "LEVEL", "TARGETS"]);
    for row in rows {
        table.add_row([row.name.to_owned(), row.level, row.targets.join(",")]);
    }
    print!("{}", output::render(&mut table));
    Ok(())
}

/// Envoy's level names to tracing's.
fn tracing_level(level: &str) -> anyhow::Result<&'static str> {
    Ok(match level.to_ascii_lowercase().as_str() {
        "trace" => "trace",
        "debug" => "debug",
        "info" => "info",
        "warning" | "warn" => "warn",
        "error" | "critical" => "error",
        "off" => "off",
        other => {
            bail!("unknown level {other:?}: trace, debug, info, warning, error, critical or off")
        }
    })
}

/// `base` with the changes of `levels` (`LOGGER:LEVEL,…` or `LEVEL`): a bare level sets every
/// logger; a logger sets each of its tracing targets. Other directives of `base` stay.
fn apply_levels(base: &str, levels: &str) -> anyhow::Result<String> {
    let mut directives: Vec<(Option<String>, String)> = base
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| match d.rsplit_once('=') {
            Some((target, level)) => (Some(target.to_owned()), level.to_owned()),
            None => (None, d.to_owned()),
        })
        .collect();
    fn set(directives: &mut Vec<(Option<String>, String)>, target: Option<String>, level: &str) {
        match directives.iter_mut().find(|(t, _)| *t == target) {
            Some(existing) => level.clone_into(&mut existing.1),
            None => directives.push((target, level.to_owned())),
        }
    }
    for entry in levels.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        match entry.rsplit_once(':') {
            None => {
                // Every logger: the whole of Meshward at this level, other crates at warn.
                let level = tracing_level(entry)?;
                directives.clear();
                directives.push((None, "warn".to_owned()));
                directives.push((Some("meshward".to_owned()), level.to_owned()));
            }
            Some((logger, level)) => {
                let level = tracing_level(level)?;
                let targets: Vec<String> = match LOGGERS.iter().find(|(n, _)| *n == logger) {
                    Some((_, targets)) => targets.iter().map(|t| (*t).to_owned()).collect(),
                    None if logger.contains("::") || logger.starts_with("meshward") => {
                        vec![logger.to_owned()]
                    }
                    None => {
                        let known: Vec<&str> = LOGGERS.iter().map(|(n, _)| *n).collect();
                        bail!(
                            "unknown logger {logger:?}: {} (or a tracing target such as \
                             meshward_proxy::inbound)",
                            known.join(", ")
                        )
                    }
                };
                for target in targets {
                    set(&mut directives, Some(target), level);
                }
            }
        }
    }
    Ok(directives
        .into_iter()
        .map(|(target, level)| match target {
            Some(target) => format!("{target}={level}"),
            None => level,
        })
        .collect::<Vec<_>>()
        .join(","))
}

/// The level `filter` gives events of `target`: the directive with the longest target that
/// prefixes it, else the bare level, else off; in Envoy's names.
fn level_of(filter: &str, target: &str) -> String {
    let mut best: Option<(usize, &str)> = None;
    let mut bare = None;
    for directive in filter.split(',').map(str::trim) {
        match directive.rsplit_once('=') {
            Some((t, level))
                if target.starts_with(t) && best.is_none_or(|(len, _)| t.len() >= len) =>
            {
                best = Some((t.len(), level));
            }
            Some(_) => {}
            None if !directive.is_empty() => bare = Some(directive),
            None => {}
        }
    }
    let level = best.map(|(_, l)| l).or(bare).unwrap_or("off");
    match level {
        "warn" => "warning".to_owned(),
        other => other.to_owned(),
    }
}

// === plumbing ===

/// The strings of a JSON array.
fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// One HTTP/1.1 request to an admin port: the status code and the body, read to the end of
/// the connection (the request asks the server to close), every step bounded in time and size.
pub(crate) async fn admin_request(
    netns: Option<&str>,
    addr: SocketAddr,
    method: &str,
    path: &str,
) -> anyhow::Result<(u16, String)> {
    let connect = meshward_local::probe::connect_from(netns, addr);
    let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| anyhow::anyhow!("connecting to {addr} timed out"))??;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let read = async {
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            if answer.len() + n > MAX_ANSWER_BYTES {
                return Err(std::io::Error::other(format!(
                    "answer larger than {MAX_ANSWER_BYTES} bytes"
                )));
            }
            answer.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(ANSWER_TIMEOUT, read)
        .await
        .map_err(|_| anyhow::anyhow!("{addr} did not answer {path} in time"))??;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("{addr} answered {path} with no HTTP head"))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .with_context(|| format!("{addr} answered {path} with {head:?}"))?;
    let chunked = head.lines().any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.eq_ignore_ascii_case("transfer-encoding")
                && value.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((code, body))
}

/// The payload of a chunked body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size =
            usize::from_str_radix(size.split(';').next().unwrap_or("0").trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].strip_prefix("\r\n").unwrap_or(&rest[size..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_change_only_the_named_loggers() {
        let filter = apply_levels(DEFAULT_FILTER, "rbac:debug").unwrap();
        assert_eq!(
            filter,
            "warn,meshward=info,meshward_control_plane=info,meshward_proxy=info,meshward::rbac=debug"
        );
        assert_eq!(level_of(&filter, "meshward::rbac"), "debug");
        assert_eq!(level_of(&filter, "meshward_proxy::admin"), "info");
        assert_eq!(level_of(&filter, "hyper::proto"), "warning");
        // Set again: replaced, not repeated.
        let again = apply_levels(&filter, "rbac:warning,http:trace").unwrap();
        assert_eq!(again.matches("meshward::rbac=").count(), 1);
        assert_eq!(level_of(&again, "meshward::rbac"), "warning");
        assert_eq!(level_of(&again, "meshward_proxy::inbound::http"), "trace");
        assert_eq!(level_of(&again, "meshward_proxy::inbound"), "info");
        // A bare level sets everything.
        let all = apply_levels(&again, "debug").unwrap();
        assert_eq!(all, "warn,meshward=debug");
        assert_eq!(level_of(&all, "meshward::rbac"), "debug");
        // A tracing target is taken as is.
        let raw = apply_levels(DEFAULT_FILTER, "meshward_proxy::outbound::pool:trace").unwrap();
        assert!(
            raw.ends_with("meshward_proxy::outbound::pool=trace"),
            "{raw}"
        );
    }

    #[test]
    fn bad_levels_and_loggers_are_refused() {
        assert!(apply_levels(DEFAULT_FILTER, "rbac:loud").is_err());
        let err = apply_levels(DEFAULT_FILTER, "nosuch:debug")
            .unwrap_err()
            .to_string();
        assert!(err.contains("rbac"), "{err}");
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(
            dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
    }
}
