//! `meshward mtls debug NAMESPACE WORKLOAD TARGET`: walks one client → service path of a
//! running mesh, step by step — the client, the name, the endpoints, the policy on both sides,
//! the certificates, a live request — prints one line per step and stops at the first one that
//! breaks, saying why and what to change. Exit 0 when the whole path works, 1 otherwise.
//!
//! Nothing here decides policy: names resolve with the configuration crate's Kubernetes DNS
//! rules, the policy step is `authn tls-check`'s matrix for this one pair, and the live step
//! uses the probes of `meshward up` and `mtls verify`.

use std::{
    net::{IpAddr, SocketAddr},
    process::ExitCode,
};

use clap::Args;
use meshward_config::{
    WorkloadInstance,
    resolve::{
        endpoints::{Destination, Endpoint, ResolvedHost},
        names::dns_candidates,
        peer_authn::ModeSource,
    },
    resources::{destination_rule::ClientTlsMode, peer_authentication::MtlsMode},
    tls_check::{Pair, Scope, Status, tls_check},
};
use meshward_identity::{SpiffeId, describe};
use meshward_local::{
    plan::{PlannedService, PlannedWorkload},
    probe,
};
use rustls_pki_types::{CertificateDer, pem::PemObject};

use super::live::Live;
use crate::{
    client::ServerArgs,
    cmd::{cert::time_left, proxy_status, runtime},
};

/// Flags of `meshward mtls debug`.
#[derive(Debug, Args)]
pub(crate) struct DebugArgs {
    /// The client's namespace.
    namespace: String,
    /// The client workload's name.
    workload: String,
    /// The service as the client writes it: `NAME`, `NAME:PORT`, `NAME.NAMESPACE:PORT` or a
    /// full name; short names resolve in the client's namespace, as Kubernetes DNS does.
    target: String,
    #[command(flatten)]
    server: ServerArgs,
}

/// The steps, in order, as printed.
const STEPS: [&str; 6] = [
    "client",
    "resolution",
    "endpoints",
    "policy",
    "certificates",
    "live",
];

/// Where the path breaks: the step's line, why, and what to do.
struct Broken {
    step: usize,
    detail: String,
    why: String,
    hint: String,
}

impl Broken {
    fn new(step: usize, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        Self {
            step,
            why: detail.clone(),
            detail,
            hint: String::new(),
        }
    }

    fn why(mut self, why: impl Into<String>) -> Self {
        self.why = why.into();
        self
    }

    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = hint.into();
        self
    }
}

const CLIENT: usize = 0;
const RESOLUTION: usize = 1;
const ENDPOINTS: usize = 2;
const POLICY: usize = 3;
const CERTIFICATES: usize = 4;
const LIVE: usize = 5;

fn pass(step: usize, detail: &str) {
    println!("✓ {:<13}{detail}", STEPS[step]);
}

pub(crate) fn run(args: DebugArgs) -> anyhow::Result<ExitCode> {
    super::live::enter_mesh_network()?;
    runtime()?.block_on(async {
        let live = Live::gather(&args.server, "mtls debug").await?;
        println!("{}.{} → {}\n", args.workload, args.namespace, args.target);
        Ok(match walk(&live, &args).await {
            Ok(summary) => {
                println!("\npath works: {summary}");
                ExitCode::SUCCESS
            }
            Err(broken) => {
                println!("✗ {:<13}{}", STEPS[broken.step], broken.detail);
                let skipped = &STEPS[broken.step + 1..];
                if !skipped.is_empty() {
                    println!("· not checked: {}", skipped.join(", "));
                }
                println!("\nbreaks at: {}: {}", STEPS[broken.step], broken.why);
                if !broken.hint.is_empty() {
                    println!("hint: {}", broken.hint);
                }
                ExitCode::FAILURE
            }
        })
    })
}

/// The client, as the plan runs it and as the configuration declares it.
struct Caller<'a> {
    planned: &'a PlannedWorkload,
    instance: &'a WorkloadInstance,
}

/// One endpoint behind the service port, with where it runs.
struct Server<'a> {
    endpoint: Endpoint<'a>,
    planned: Option<&'a PlannedWorkload>,
    addr: Option<SocketAddr>,
}

impl Server<'_> {
    fn name(&self) -> String {
        match (self.planned, self.addr) {
            (Some(p), _) => p.id(),
            (None, Some(addr)) => addr.to_string(),
            (None, None) => "an endpoint without address".to_owned(),
        }
    }
}

async fn walk(live: &Live, args: &DebugArgs) -> Result<String, Broken> {
    let caller = client(live, &args.namespace, &args.workload)?;
    let (host, port) = split_target(&args.target)?;
    let (resolved, port) = resolution(live, &caller, host, port)?;
    let servers = endpoints(live, &resolved, port)?;
    let pairs = policy(live, &caller, &resolved, port, &servers)?;
    certificates(live, &caller, &servers, &pairs).await?;
    let outcome = probe(live, &caller, host, &resolved, port, &servers, &pairs).await?;
    let how = match pairs.first() {
        Some(pair) => format!("{} ({})", originates(pair.originates), pair.by),
        None => "no workload endpoint".to_owned(),
    };
    Ok(format!(
        "{} → {}:{port} over {how}: {outcome}",
        caller.planned.id(),
        resolved.fqdn
    ))
}

/// Step 1: the client runs, and whether a sidecar speaks for it.
fn client<'a>(live: &'a Live, namespace: &str, name: &str) -> Result<Caller<'a>, Broken> {
    let planned = live
        .running
        .workloads
        .iter()
        .find(|w| w.namespace == namespace && w.name == name);
    let instance = live.mesh.workload(namespace, name);
    let (Some(planned), Some(instance)) = (planned, instance) else {
        let here: Vec<&str> = live
            .running
            .workloads
            .iter()
            .filter(|w| w.namespace == namespace)
            .map(|w| w.name.as_str())
            .collect();
        let hint = if here.is_empty() {
            format!(
                "namespace {namespace} runs no workload; `meshward get workloads -A` lists them"
            )
        } else {
            format!("workloads of {namespace}: {}", here.join(", "))
        };
        return Err(Broken::new(
            CLIENT,
            format!("no workload {name} runs in namespace {namespace}"),
        )
        .hint(hint));
    };
    let detail = if planned.sidecar {
        let proxy = live
            .proxy(planned)
            .map_or("never connected".to_owned(), proxy_status::status);
        format!(
            "{} at {} has a sidecar ({proxy}, outbound {}:15001)",
            planned.id(),
            planned.address,
            planned.address
        )
    } else {
        let opted_out = instance
            .labels
            .get("sidecar.istio.io/inject")
            .is_some_and(|v| v == "false");
        format!(
            "{} at {} has no sidecar{}: it sends plaintext",
            planned.id(),
            planned.address,
            if opted_out {
                " (sidecar.istio.io/inject=false)"
            } else {
                ""
            }
        )
    };
    pass(CLIENT, &detail);
    Ok(Caller { planned, instance })
}

/// `host[:port]`.
fn split_target(target: &str) -> Result<(&str, Option<u16>), Broken> {
    match target.rsplit_once(':') {
        None => Ok((target, None)),
        Some((host, port)) => match port.parse() {
            Ok(port) => Ok((host, Some(port))),
            Err(_) => Err(Broken::new(
                RESOLUTION,
                format!("`{port}` in `{target}` is not a port number"),
            )
            .hint("write the target as NAME or NAME:PORT, e.g. httpbin-svc:8080")),
        },
    }
}

/// Step 2: the name resolves, from the client's namespace, to a service with that port.
fn resolution<'a>(
    live: &'a Live,
    caller: &Caller<'_>,
    host: &str,
    port: Option<u16>,
) -> Result<(ResolvedHost<'a>, u16), Broken> {
    let namespace = &caller.planned.namespace;
    let Some(resolved) = live.mesh.resolve_host(namespace, host) else {
        let services: Vec<String> = live
            .running
            .services
            .iter()
            .map(|s| s.name_in(namespace))
            .collect();
        return Err(Broken::new(
            RESOLUTION,
            format!(
                "`{host}` resolves to no service from namespace {namespace} (tried {})",
                dns_candidates(namespace, host).join(", ")
            ),
        )
        .why(format!(
            "no Service or ServiceEntry is named `{host}` as seen from namespace {namespace}"
        ))
        .hint(format!(
            "services as {} names them: {}; a short name only resolves in the client's own namespace",
            caller.planned.id(),
            if services.is_empty() {
                "none".to_owned()
            } else {
                services.join(", ")
            }
        )));
    };
    let what = destination_name(&resolved.destination);
    let ports = resolved.destination.ports();
    let listed = ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let port = match (port, ports.as_slice()) {
        (Some(port), _) if ports.contains(&port) => port,
        (None, [only]) => *only,
        (Some(port), _) => {
            return Err(Broken::new(
                RESOLUTION,
                format!("`{host}` → {what}, which has no port {port} (ports: {listed})"),
            )
            .hint(format!("use one of the ports {what} declares: {listed}")));
        }
        (None, _) => {
            return Err(Broken::new(
                RESOLUTION,
                format!("`{host}` → {what}, which has ports {listed}: which one?"),
            )
            .hint(format!("name the port: {host}:PORT")));
        }
    };
    let address = virtual_service(live, &resolved)
        .map(|s| format!(", {}", s.address))
        .unwrap_or_default();
    pass(
        RESOLUTION,
        &format!(
            "`{host}` → {what} ({}{address}), port {port}",
            resolved.fqdn
        ),
    );
    Ok((resolved, port))
}

fn destination_name(destination: &Destination<'_>) -> String {
    match destination {
        Destination::Service(e) => {
            format!("Service {}/{}", e.namespace(), e.object.metadata.name)
        }
        Destination::ServiceEntry(e) => {
            format!("ServiceEntry {}/{}", e.namespace(), e.object.metadata.name)
        }
    }
}

/// The Service's virtual address, as `meshward up` forwards it.
fn virtual_service<'a>(live: &'a Live, resolved: &ResolvedHost<'_>) -> Option<&'a PlannedService> {
    let Destination::Service(entry) = resolved.destination else {
        return None;
    };
    live.running
        .services
        .iter()
        .find(|s| s.name == entry.object.metadata.name && s.namespace == entry.namespace())
}

/// Step 3: the service port has endpoints.
fn endpoints<'a>(
    live: &'a Live,
    resolved: &ResolvedHost<'a>,
    port: u16,
) -> Result<Vec<Server<'a>>, Broken> {
    let found = live.mesh.endpoints(&resolved.destination, port);
    if found.is_empty() {
        let what = destination_name(&resolved.destination);
        let why = match resolved.destination {
            Destination::Service(e) if e.object.spec.selector.is_empty() => {
                format!("{what} has no selector, so no endpoints")
            }
            Destination::Service(e) => format!(
                "the selector {} of {what} picks no workload of namespace {} that has its target port",
                e.object
                    .spec
                    .selector
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
                e.namespace()
            ),
            Destination::ServiceEntry(_) => format!("{what} lists no endpoint for port {port}"),
        };
        return Err(
            Broken::new(ENDPOINTS, format!("no endpoint behind {}:{port}", resolved.fqdn))
                .why(why)
                .hint("compare the selector and targetPort with the workloads' labels and ports: `meshward get workloads -A -o wide`"),
        );
    }
    let servers: Vec<Server<'a>> = found
        .into_iter()
        .map(|endpoint| {
            let planned = endpoint.workload.and_then(|w| {
                live.running
                    .workloads
                    .iter()
                    .find(|p| p.namespace == w.namespace && p.name == w.name)
            });
            let ip = endpoint
                .address
                .as_deref()
                .and_then(|a| a.parse::<IpAddr>().ok())
                .or(planned.map(|p| IpAddr::V4(p.address)));
            let addr = ip.map(|ip| SocketAddr::new(ip, endpoint.port));
            Server {
                endpoint,
                planned,
                addr,
            }
        })
        .collect();
    let detail = servers
        .iter()
        .map(|s| {
            format!(
                "{}{} {} {}",
                s.name(),
                s.addr.map(|a| format!(" {a}")).unwrap_or_default(),
                s.endpoint.identity.as_deref().unwrap_or("(no identity)"),
                if s.endpoint.sidecar {
                    "with sidecar"
                } else {
                    "without sidecar"
                }
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    pass(ENDPOINTS, &detail);
    Ok(servers)
}

/// Step 4: what the client originates and what the server port accepts, from the same matrix
/// as `meshward authn tls-check`, restricted to this client and service port.
fn policy(
    live: &Live,
    caller: &Caller<'_>,
    resolved: &ResolvedHost<'_>,
    port: u16,
    servers: &[Server<'_>],
) -> Result<Vec<Pair>, Broken> {
    let report = tls_check(
        &live.mesh,
        &Scope::Service {
            fqdn: resolved.fqdn.clone(),
        },
    );
    let client = caller.instance.qualified_name();
    let pairs: Vec<Pair> = report
        .pairs
        .into_iter()
        .filter(|p| p.client == client && p.service == resolved.fqdn && p.service_port == port)
        .collect();
    if pairs.is_empty() {
        pass(
            POLICY,
            &format!(
                "no workload endpoint to check ({} endpoint(s) outside the mesh)",
                servers.len()
            ),
        );
        return Ok(pairs);
    }
    let source = |pair: &Pair| {
        report
            .servers
            .iter()
            .find(|s| s.workload == pair.server && s.port == pair.server_port)
            .and_then(|s| s.source.clone())
    };
    let line = |pair: &Pair| {
        let server = match (pair.server_mode, source(pair)) {
            (Some(mode), Some(by)) => format!("is {} (set by {by})", mode.as_str()),
            (Some(mode), None) => format!("is {}", mode.as_str()),
            (None, _) => "has no sidecar".to_owned(),
        };
        format!(
            "client sends {} ({}); {}:{} {server}",
            originates(pair.originates),
            pair.by,
            pair.server,
            pair.server_port
        )
    };
    if let Some(pair) = pairs.iter().find(|p| p.verdict.status == Status::Conflict) {
        let hint = policy_hint(caller, pair, source(pair).as_ref());
        return Err(Broken::new(POLICY, format!("{}: CONFLICT", line(pair)))
            .why(pair.verdict.reason.clone())
            .hint(hint));
    }
    let detail = pairs
        .iter()
        .map(|p| format!("{}: fits ({})", line(p), p.verdict.reason))
        .collect::<Vec<_>>()
        .join("; ");
    pass(POLICY, &detail);
    Ok(pairs)
}

fn originates(mode: ClientTlsMode) -> String {
    match mode {
        ClientTlsMode::IstioMutual => "mTLS".to_owned(),
        ClientTlsMode::Disable => "plaintext".to_owned(),
        other => format!("its own TLS ({})", other.as_str()),
    }
}

/// What to change so that the pair fits, given the policy that set the server's mode.
fn policy_hint(caller: &Caller<'_>, pair: &Pair, source: Option<&ModeSource>) -> String {
    let loosen = match source {
        Some(ModeSource::Namespace { policy }) => format!(
            "let plaintext in with `meshward mtls enable {} PERMISSIVE` (updates {}/{})",
            policy.namespace, policy.namespace, policy.name
        ),
        Some(ModeSource::Mesh { policy }) => format!(
            "let plaintext in for the server's namespace with `meshward mtls enable {} PERMISSIVE` (the mesh-wide {}/{} stays STRICT)",
            pair.server.split('/').next().unwrap_or_default(),
            policy.namespace,
            policy.name
        ),
        Some(ModeSource::Workload { policy } | ModeSource::Port { policy, .. }) => format!(
            "set port {} PERMISSIVE in PeerAuthentication {}/{} (portLevelMtls)",
            pair.server_port, policy.namespace, policy.name
        ),
        _ => "set the server port PERMISSIVE".to_owned(),
    };
    match (pair.originates, pair.server_mode) {
        (ClientTlsMode::Disable, Some(MtlsMode::Strict)) if !pair.client_sidecar => {
            let opted_out = caller
                .instance
                .labels
                .get("sidecar.istio.io/inject")
                .is_some_and(|v| v == "false");
            let sidecar = if opted_out {
                format!(
                    "give {} a sidecar (remove its label sidecar.istio.io/inject: \"false\")",
                    caller.planned.id()
                )
            } else {
                format!("give {} a sidecar", caller.planned.id())
            };
            format!("{sidecar}, or {loosen}")
        }
        (ClientTlsMode::Disable, Some(MtlsMode::Strict)) => format!(
            "{} makes the client send plaintext: remove its tls (auto-mTLS then sends mTLS), or {loosen}",
            pair.by
        ),
        (ClientTlsMode::IstioMutual, None) => format!(
            "{} asks for ISTIO_MUTUAL but {} has no sidecar: give it one, or set that rule's tls mode to DISABLE",
            pair.by, pair.server
        ),
        (ClientTlsMode::IstioMutual, Some(_)) => format!(
            "{} asks for ISTIO_MUTUAL towards a DISABLE port: remove its tls (auto-mTLS follows the server), or make the port PERMISSIVE",
            pair.by
        ),
        _ => format!(
            "{} originates application TLS, which a STRICT port refuses: use ISTIO_MUTUAL or remove its tls, or {loosen}",
            pair.by
        ),
    }
}

/// Step 5: the client's and every server sidecar's certificate are valid now and fit the
/// current trust bundle; each server proves it in a real handshake.
async fn certificates(
    live: &Live,
    caller: &Caller<'_>,
    servers: &[Server<'_>],
    pairs: &[Pair],
) -> Result<(), Broken> {
    let roots = CertificateDer::pem_file_iter(&live.context.root_cert)
        .map(Iterator::count)
        .map_err(|e| {
            Broken::new(
                CERTIFICATES,
                format!(
                    "cannot read the trust bundle {}: {e}",
                    live.context.root_cert.display()
                ),
            )
        })?;
    let mut lines = Vec::new();
    if caller.planned.sidecar {
        let cert = proxy_certificate(live, caller.planned, "client", roots).await?;
        lines.push(format!(
            "client: {cert} (the server checks its chain in the live step)"
        ));
    } else {
        lines.push("client: none (no sidecar)".to_owned());
    }
    for server in servers {
        let Some(planned) = server.planned.filter(|p| p.sidecar) else {
            lines.push(format!("{}: none (no sidecar)", server.name()));
            continue;
        };
        let cert = proxy_certificate(live, planned, "server", roots).await?;
        let mode = pairs
            .iter()
            .find(|p| p.server == format!("{}/{}", planned.namespace, planned.name))
            .and_then(|p| p.server_mode);
        let handshake = match (mode, server.addr) {
            (Some(MtlsMode::Disable), _) => "no handshake: the port is DISABLE".to_owned(),
            (_, None) => "no handshake: no address".to_owned(),
            (_, Some(addr)) => presented(live, planned, addr).await?,
        };
        lines.push(format!("server {}: {cert}; {handshake}", planned.id()));
    }
    pass(CERTIFICATES, &lines.join("; "));
    Ok(())
}

/// What a sidecar's admin `/certs` and the control plane say of its certificate: the
/// expected identity, valid now, trusting the current bundle.
async fn proxy_certificate(
    live: &Live,
    w: &PlannedWorkload,
    side: &str,
    bundle_roots: usize,
) -> Result<String, Broken> {
    let fail = |detail: String| Broken::new(CERTIFICATES, format!("{side} {}: {detail}", w.id()));
    let expected = live
        .identity(w)
        .map_err(|e| fail(e.to_string()))?
        .to_string();
    let Some(status) = live.proxy(w) else {
        return Err(fail(
            "its sidecar never reached the control plane, so it has no certificate".to_owned(),
        )
        .hint(
            "look at `meshward proxy-status` and the sidecar's log in the state directory's logs/",
        ));
    };
    if status.cert_not_after > 0 && status.cert_not_after <= live.now {
        return Err(fail(format!(
            "the control plane last saw a certificate that {}",
            time_left(status.cert_not_after - live.now)
        ))
        .hint("the sidecar cannot renew: `meshward proxy-status`, `meshward cert monitor`"));
    }
    // In its own network namespace a sidecar's admin listens on 127.0.0.1 there.
    let admin = match &w.netns {
        Some(_) => SocketAddr::from(([127, 0, 0, 1], 15000)),
        None => SocketAddr::from((w.address, 15000)),
    };
    let (head, body) = probe::get(w.netns.as_deref(), admin, "/certs")
        .await
        .map_err(|e| fail(format!("its admin {admin} does not answer /certs: {e}")))?;
    let json: serde_json::Value = serde_json::from_str(&body)
        .map_err(|_| fail(format!("its admin {admin} answered /certs with {head}")))?;
    let cert = &json["certificate"];
    if cert.is_null() {
        return Err(fail("its sidecar has no certificate yet".to_owned()).hint(
            "the sidecar waits for the control plane to sign its CSR: `meshward proxy-status`",
        ));
    }
    let identity = cert["identity"].as_str().unwrap_or_default();
    let not_before = cert["not_before"].as_i64().unwrap_or_default();
    let not_after = cert["not_after"].as_i64().unwrap_or_default();
    let proxy_roots = cert["roots"].as_u64().unwrap_or_default();
    let domains: Vec<&str> = cert["trust_domains"]
        .as_array()
        .map(|a| a.iter().filter_map(serde_json::Value::as_str).collect())
        .unwrap_or_default();
    let td = live.trust_domain.to_string();
    if identity != expected {
        return Err(fail(format!(
            "its certificate is for {identity}, not {expected}"
        )));
    }
    if not_before > live.now {
        return Err(fail(format!(
            "its certificate is not valid before {not_before} (Unix time): is the clock right?"
        )));
    }
    if not_after <= live.now {
        return Err(fail(format!(
            "its certificate {}",
            time_left(not_after - live.now)
        ))
        .hint("the sidecar cannot renew: `meshward proxy-status`, `meshward cert monitor`"));
    }
    if !domains.contains(&td.as_str()) || proxy_roots != bundle_roots as u64 {
        return Err(fail(format!(
            "it trusts {proxy_roots} root(s) of {}, the current bundle has {bundle_roots} of {td}",
            domains.join(",")
        ))
        .why("its trust bundle is not the current one: peers under the current roots may be refused")
        .hint("`meshward ca status` shows the current chain; the sidecar takes the new bundle with its next view (`meshward proxy-status`)"));
    }
    Ok(format!(
        "valid, {}, trusts the current {bundle_roots} root(s)",
        time_left(not_after - live.now)
    ))
}

/// The certificate the server sidecar presents in a mesh handshake, verified against the
/// current trust bundle and its expected identity.
async fn presented(live: &Live, w: &PlannedWorkload, addr: SocketAddr) -> Result<String, Broken> {
    let fail = |detail: String| Broken::new(CERTIFICATES, format!("server {}: {detail}", w.id()));
    let expected: SpiffeId = live.identity(w).map_err(|e| fail(e.to_string()))?;
    let config = live
        .mtls_config(expected.clone())
        .map_err(|e| fail(format!("no administrator TLS client: {e:#}")))?;
    let chain = probe::peer_chain(addr, config).await.map_err(|e| {
        fail(format!("the handshake on {addr} fails: {e}"))
            .why(format!(
                "{addr} does not prove to be {expected} under the current trust bundle: {e}"
            ))
            .hint("`meshward ca status` shows the current chain; `meshward cert monitor` every workload certificate")
    })?;
    let left = chain
        .first()
        .and_then(|leaf| describe(leaf).ok())
        .map(|info| format!(", {}", time_left(info.not_after_unix - live.now)))
        .unwrap_or_default();
    Ok(format!(
        "presents {expected} on {addr}, accepted by the current bundle{left}"
    ))
}

/// Step 6: a real request, through the client's sidecar when it has one, else in plaintext to
/// the service's address — as `meshward up` probes every pair.
async fn probe(
    live: &Live,
    caller: &Caller<'_>,
    host: &str,
    resolved: &ResolvedHost<'_>,
    port: u16,
    servers: &[Server<'_>],
    pairs: &[Pair],
) -> Result<String, Broken> {
    let client = caller.planned;
    let target = || {
        virtual_service(live, resolved)
            .map(|s| SocketAddr::from((s.address, port)))
            .or_else(|| servers.iter().find_map(|s| s.addr))
    };
    let (how, outcome) = if let (Some(netns), Some(target)) = (&client.netns, target()) {
        let outcome = probe::from_netns(netns, target, host).await;
        (format!("{target} from inside {netns}"), outcome)
    } else if client.sidecar {
        let proxy = SocketAddr::from((client.address, 15001));
        let outcome = probe::via_sidecar(proxy, host, port).await;
        (format!("CONNECT {host}:{port} through {proxy}"), outcome)
    } else {
        let Some(target) = target() else {
            return Err(Broken::new(LIVE, "no address to send plaintext to"));
        };
        let outcome = probe::direct(target, &resolved.fqdn).await;
        (format!("plaintext to {target}"), outcome)
    };
    match outcome {
        probe::Outcome::Allowed(answer) => {
            let detail = format!("{how}: answered {answer}");
            pass(LIVE, &detail);
            Ok(answer)
        }
        probe::Outcome::Denied(answer) => Err(Broken::new(
            LIVE,
            format!("{how}: mTLS is fine, but an AuthorizationPolicy of the server denied the request ({answer})"),
        )
        .hint("`meshward x authz check` on the server workload says which policy decided")),
        probe::Outcome::Refused(why) => {
            let strict = pairs
                .iter()
                .any(|p| p.server_mode == Some(MtlsMode::Strict));
            let closed = why.contains("closed");
            let (explained, hint) = if why.starts_with("sidecar:") {
                (
                    format!(
                        "the client's sidecar refused: {}",
                        why.trim_start_matches("sidecar: ")
                    ),
                    "the client's sidecar has not got (or does not accept) the route: `meshward proxy-status`, its log in the state directory's logs/",
                )
            } else if closed && !client.sidecar && strict {
                (
                    "connection closed by the server sidecar: the port is STRICT and the client sent plaintext".to_owned(),
                    "give the client a sidecar, or make the server port PERMISSIVE",
                )
            } else if closed {
                (
                    format!("connection closed without an answer ({why})"),
                    "the server's sidecar closed it: its log says why (an AuthorizationPolicy, a policy not applied yet: `meshward proxy-status`)",
                )
            } else {
                (
                    format!("nothing answered: {why}"),
                    "is the server's app running? `meshward up` restarts crashed apps; its log is in the state directory's logs/",
                )
            };
            Err(Broken::new(LIVE, format!("{how}: {explained}"))
                .why(explained)
                .hint(hint))
        }
    }
}
