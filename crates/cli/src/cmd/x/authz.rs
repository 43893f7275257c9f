//! `meshward x authz check --workload NAME.NS [request flags] [-f DIR] [-o json]`: the decision
//! the sidecar of one workload takes on one connection or request — with the engine the
//! sidecar uses, offline on manifests or on the running control plane — and the trace of every
//! policy and rule that applies to it.
//!
//! Exit 0 whenever the check ran, whatever the decision (it is data, as for istioctl's
//! `x authz check`); 2 when it could not run (bad flags, unreadable or invalid manifests,
//! unknown workload, control plane unreachable).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};
use meshward_config::authz::{
    self, Decision, HttpAttrs, PolicyTrace, RequestAttrs, normalize_path,
};
use meshward_config::resolve::endpoints::Destination;
use meshward_config::resolve::names::service_fqdn;
use meshward_config::resolve::protocol::{PortProtocol, port_protocol};
use meshward_config::resources::mesh_config::NormalizationType;
use meshward_config::resources::peer_authentication::MtlsMode;
use meshward_config::{Mesh, WorkloadInstance};
use meshward_identity::SpiffeId;
use serde::Serialize;

use crate::client::ServerArgs;
use crate::cmd::load_mesh;
use crate::output;

/// The exit code when the check could not run.
const CANNOT_RUN: u8 = 2;

/// `meshward x authz …`
#[derive(Debug, Subcommand)]
pub(crate) enum AuthzCommand {
    /// Evaluate one request against a workload's AuthorizationPolicies: the decision, the
    /// policy and rule that decided, and why every rule matched or not.
    Check(Box<CheckArgs>),
}

/// Flags of `x authz check`: the destination, then every attribute a rule or condition can
/// match.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// The destination: a Workload or WorkloadEntry, `NAME.NAMESPACE`.
    #[arg(long, value_name = "NAME.NAMESPACE")]
    workload: String,
    /// The caller's SPIFFE ID: an mTLS peer (`principals`, `namespaces`, `source.principal`).
    #[arg(long, value_name = "SPIFFE_ID", conflicts_with = "plaintext")]
    from: Option<String>,
    /// A plaintext caller, without identity (the default without --from).
    #[arg(long)]
    plaintext: bool,
    /// The address of the downstream connection (`ipBlocks`, `source.ip`).
    #[arg(long, value_name = "IP", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    source_ip: IpAddr,
    /// The original client address (`remoteIpBlocks`, `remote.ip`); default: the source IP.
    #[arg(long, value_name = "IP")]
    remote_ip: Option<IpAddr>,
    /// The address connected to (`destination.ip`); default: the workload's address.
    #[arg(long, value_name = "IP")]
    destination_ip: Option<IpAddr>,
    /// The workload port connected to (`ports`, `destination.port`); default: its first port.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    port: Option<u16>,
    /// The TLS server name the client sent (`connection.sni`).
    #[arg(long, value_name = "NAME")]
    sni: Option<String>,
    /// HTTP method; any HTTP flag makes the request HTTP. Default GET (POST on gRPC ports).
    #[arg(long, value_name = "M")]
    method: Option<String>,
    /// Request path, query allowed; normalized as the sidecar does before matching. Default `/`.
    #[arg(long, value_name = "P")]
    path: Option<String>,
    /// Host (`:authority`); default: the workload's Service name.
    #[arg(long, value_name = "H")]
    host: Option<String>,
    /// A request header, `NAME=VALUE` (`request.headers[NAME]`); repeat for more.
    #[arg(long = "header", value_name = "NAME=VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Check these files, directories (recursive) or `-` offline; without, the running
    /// control plane's configuration.
    #[arg(short = 'f', long = "filename")]
    files: Vec<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Text)]
    output: Format,
    #[command(flatten)]
    server: ServerArgs,
}

/// Output formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

pub(crate) fn run(command: AuthzCommand) -> anyhow::Result<ExitCode> {
    let AuthzCommand::Check(args) = command;
    let report = match check(&args) {
        Ok(report) => report,
        Err(err) => {
            eprintln!("error: {err:#}");
            return Ok(ExitCode::from(CANNOT_RUN));
        }
    };
    match args.output {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => print!("{}", render(&report)),
    }
    Ok(ExitCode::SUCCESS)
}

/// The outcome, as `-o json` prints it; the text form is rendered from it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    /// `ALLOW` or `DENY`.
    decision: &'static str,
    /// The policy that decided, `namespace/name`; `null` for a default or a refusal before
    /// authorization.
    policy: Option<String>,
    /// The rule of that policy.
    rule: Option<usize>,
    /// Why, in words.
    reason: String,
    /// What a denied client sees.
    client_sees: Option<String>,
    /// `namespace/name` of the destination workload.
    workload: String,
    /// `HTTP` or `TCP`: how the sidecar handles the connection.
    protocol: &'static str,
    /// The attributes evaluated, defaults filled in and the path normalized.
    request: RequestAttrs,
    /// Every policy that applies to the workload, in evaluation order, with each rule.
    trace: Vec<TracedPolicy>,
    /// AUDIT rules that matched (logged, never enforced).
    audit: Vec<TracedRule>,
    /// Dry-run policies and the rule that would have matched (never enforced).
    dry_run: Vec<TracedDryRun>,
    /// How defaults were chosen, and what else bears on the answer.
    notes: Vec<String>,
    /// Whether the request reached authorization (the sidecar refuses some before).
    #[serde(skip)]
    evaluated: bool,
}

/// One policy of the trace.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TracedPolicy {
    policy: String,
    action: &'static str,
    dry_run: bool,
    rules: Vec<TracedRuleResult>,
}

/// One rule of a traced policy.
#[derive(Debug, Serialize)]
struct TracedRuleResult {
    rule: usize,
    matched: bool,
    why: Option<String>,
}

/// A policy and rule.
#[derive(Debug, Serialize)]
struct TracedRule {
    policy: String,
    rule: usize,
}

/// A dry-run policy's outcome.
#[derive(Debug, Serialize)]
struct TracedDryRun {
    policy: String,
    action: &'static str,
    rule: Option<usize>,
}

/// Something the sidecar refuses before any policy is evaluated.
struct Refusal {
    reason: String,
    client_sees: &'static str,
}

fn check(args: &CheckArgs) -> anyhow::Result<Report> {
    let (name, namespace) = args
        .workload
        .rsplit_once('.')
        .filter(|(name, namespace)| !name.is_empty() && !namespace.is_empty())
        .with_context(|| {
            format!(
                "--workload {:?}: expected NAME.NAMESPACE, e.g. httpbin.team-app",
                args.workload
            )
        })?;
    let peer = match &args.from {
        Some(from) if !args.plaintext => Some(parse_peer(from)?),
        _ => None,
    };
    let mesh = load_mesh(&args.files, &args.server)?;
    let origin = if args.files.is_empty() {
        "on the control plane"
    } else {
        "in the manifests"
    };
    let workload = mesh
        .workload(namespace, name)
        .ok_or_else(|| unknown_workload(&mesh, namespace, name, origin))?;
    let port = match args.port {
        Some(port) => port,
        None => workload
            .ports
            .iter()
            .find_map(|p| p.port.valid())
            .with_context(|| {
                format!(
                    "{} declares no ports: name the port with --port",
                    workload.qualified_name()
                )
            })?,
    };
    let compiled = mesh.compiled_authz(workload).with_context(|| {
        format!(
            "compiling the AuthorizationPolicies of {}",
            workload.qualified_name()
        )
    })?;

    let mut notes = Vec::new();
    let target = PortFacts::of(&mesh, workload, port);
    let http = target.carries_http(args, port, &mut notes);
    let destination_ip = match args.destination_ip {
        Some(ip) => ip,
        None => workload
            .address
            .as_deref()
            .and_then(|address| address.parse().ok())
            .unwrap_or_else(|| {
                notes.push(format!(
                    "{} has no IP address {origin}: destination.ip is 0.0.0.0 (set it with --destination-ip)",
                    workload.qualified_name()
                ));
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            }),
    };
    let mut request = RequestAttrs::new(args.source_ip, destination_ip, port);
    request.remote_ip = args.remote_ip;
    request.sni = args.sni.clone();
    if let Some(peer) = &peer {
        request = request.with_peer(&peer.to_string());
    }

    // What the sidecar refuses before any policy is evaluated, in the order it happens: the
    // TLS handshake, then the request path.
    let effective = mesh.peer_authentication(workload, port);
    let mut refused = (workload.sidecar && peer.is_none() && effective.mode == MtlsMode::Strict)
        .then(|| Refusal {
            reason: format!(
                "port {port} is STRICT ({}): the plaintext connection is refused before authorization",
                effective.source
            ),
            client_sees: "the connection is closed: no TLS handshake, no response",
        });
    if http {
        let (attrs, bad_path) = http_attrs(args, &mesh, workload, &target, &mut notes);
        request = request.with_http(attrs);
        refused = refused.or(bad_path);
    }

    let protocol = if http { "HTTP" } else { "TCP" };
    let mut report = Report {
        decision: "DENY",
        policy: None,
        rule: None,
        reason: String::new(),
        client_sees: None,
        workload: workload.qualified_name(),
        protocol,
        request,
        trace: Vec::new(),
        audit: Vec::new(),
        dry_run: Vec::new(),
        notes,
        evaluated: refused.is_none(),
    };
    if let Some(refusal) = refused {
        report.reason = refusal.reason;
        report.client_sees = Some(refusal.client_sees.to_owned());
        return Ok(report);
    }
    let decision = authz::evaluate(&compiled, &report.request);
    report.trace = authz::explain(&compiled, &report.request)
        .into_iter()
        .map(traced)
        .collect();
    report.audit = decision
        .audit
        .iter()
        .map(|a| TracedRule {
            policy: a.policy.to_string(),
            rule: a.rule,
        })
        .collect();
    report.dry_run = decision
        .dry_run
        .iter()
        .map(|d| TracedDryRun {
            policy: d.policy.to_string(),
            action: d.action.as_str(),
            rule: d.rule,
        })
        .collect();
    if !workload.sidecar {
        report.decision = "ALLOW";
        report.reason = format!(
            "{} has no sidecar: nothing enforces AuthorizationPolicy and the application receives the request (with a sidecar: {decision})",
            workload.qualified_name(),
        );
        return Ok(report);
    }
    report.client_sees = client_sees(&decision, protocol);
    report.decision = decision.verdict();
    report.policy = decision.policy.as_ref().map(ToString::to_string);
    report.rule = decision.rule;
    report.reason = decision.reason;
    Ok(report)
}

/// The HTTP request of the flags, defaults filled in and the path normalized as the sidecar
/// does (meshConfig `pathNormalization`, BASE by default); a path it refuses comes back raw,
/// with the refusal.
fn http_attrs(
    args: &CheckArgs,
    mesh: &Mesh,
    workload: &WorkloadInstance,
    target: &PortFacts,
    notes: &mut Vec<String>,
) -> (HttpAttrs, Option<Refusal>) {
    let raw = args.path.as_deref().unwrap_or("/");
    let mode = mesh
        .config()
        .path_normalization
        .map(|p| p.normalization)
        .unwrap_or_default();
    if !matches!(mode, NormalizationType::Default | NormalizationType::Base) {
        notes.push(format!("meshConfig.pathNormalization is {mode:?}"));
    }
    let (path, refusal) = match normalize_path(raw, mode) {
        Ok(normalized) => {
            // Policies match the path without its query string.
            let path = normalized.split('?').next().unwrap_or_default().to_owned();
            if path != raw {
                notes.push(format!("path {raw:?} is {path:?} once normalized"));
            }
            (path, None)
        }
        Err(err) => (
            raw.to_owned(),
            Some(Refusal {
                reason: format!(
                    "path {raw:?} cannot be normalized safely ({err}): the sidecar refuses the request before authorization"
                ),
                client_sees: "HTTP 400 Bad Request",
            }),
        ),
    };
    let host = args.host.clone().unwrap_or_else(|| {
        target
            .service
            .clone()
            .or_else(|| workload.address.clone())
            .unwrap_or_else(|| format!("{}.{}", workload.name, workload.namespace))
    });
    let attrs = HttpAttrs {
        host,
        method: args.method.clone().unwrap_or_else(|| "GET".to_owned()),
        path,
        headers: args.headers.clone(),
    };
    (attrs, refusal)
}

/// What a denied client sees (istio `tests/integration/security/authz_test.go`; the authz-tcp
/// task): HTTP 403 with Envoy's RBAC body, or a TCP connection closed without a byte.
fn client_sees(decision: &Decision, protocol: &str) -> Option<String> {
    let details = decision.response_code_details()?;
    Some(if protocol == "HTTP" {
        format!("HTTP 403 `RBAC: access denied` ({details})")
    } else {
        "the connection is closed right after it is accepted, without a byte".to_owned()
    })
}

fn traced(policy: PolicyTrace) -> TracedPolicy {
    TracedPolicy {
        policy: policy.policy.to_string(),
        action: policy.action.as_str(),
        dry_run: policy.dry_run,
        rules: policy
            .rules
            .into_iter()
            .enumerate()
            .map(|(rule, trace)| TracedRuleResult {
                rule,
                matched: trace.matched,
                why: trace.why,
            })
            .collect(),
    }
}

/// What the manifests say about one port of the destination workload.
struct PortFacts {
    /// The protocol the sidecar gives the port, from the workload's own port (Istio's
    /// protocol selection: an explicit protocol, else the name `<protocol>[-<suffix>]`; a
    /// WorkloadEntry has only names), and where that comes from.
    own: (PortProtocol, String),
    /// The first protocol a Service or ServiceEntry port that sends to it declares.
    service_protocol: Option<(PortProtocol, String)>,
    /// The name clients call the workload by on this port: a Service's full name or a
    /// ServiceEntry host.
    service: Option<String>,
}

impl PortFacts {
    fn of(mesh: &Mesh, workload: &WorkloadInstance, port: u16) -> PortFacts {
        let what = format!("{} {}", workload.origin.as_str(), workload.qualified_name());
        let own = match workload.ports.iter().find(|p| p.port.valid() == Some(port)) {
            Some(own) => declaration(
                own.protocol.as_deref(),
                "protocol",
                own.name.as_deref(),
                &what,
            ),
            None => (PortProtocol::Detect, format!("{what} does not declare it")),
        };
        let mut declared: Vec<(PortProtocol, String)> = Vec::new();
        let mut service = None;
        for entry in mesh.services() {
            let name = &entry.object.metadata.name;
            for service_port in &entry.object.spec.ports {
                let Some(number) = service_port.port.valid() else {
                    continue;
                };
                if !serves(mesh, Destination::Service(entry), number, workload, port) {
                    continue;
                }
                service.get_or_insert_with(|| service_fqdn(name, entry.namespace()));
                let what = format!("Service {}/{name} port {number}", entry.namespace());
                declared.push(declaration(
                    service_port.app_protocol.as_deref(),
                    "appProtocol",
                    service_port.name.as_deref(),
                    &what,
                ));
            }
        }
        for entry in mesh.service_entries() {
            let spec = &entry.object.spec;
            for service_port in &spec.ports {
                let Some(number) = service_port.number.valid() else {
                    continue;
                };
                if !serves(
                    mesh,
                    Destination::ServiceEntry(entry),
                    number,
                    workload,
                    port,
                ) {
                    continue;
                }
                service = service.or_else(|| spec.hosts.first().cloned());
                let what = format!(
                    "ServiceEntry {}/{} port {number}",
                    entry.namespace(),
                    entry.object.metadata.name
                );
                declared.push(declaration(
                    service_port.protocol.as_deref(),
                    "protocol",
                    service_port.name.as_deref(),
                    &what,
                ));
            }
        }
        PortFacts {
            own,
            service_protocol: declared
                .into_iter()
                .find(|(protocol, _)| *protocol != PortProtocol::Detect),
            service,
        }
    }
}

impl PortFacts {
    /// Whether the sidecar parses the connection as HTTP: always on an HTTP port, never on an
    /// opaque one; on an undeclared port it sniffs, so when the client speaks HTTP — an HTTP
    /// flag, or else what the Service declares.
    fn carries_http(&self, args: &CheckArgs, port: u16, notes: &mut Vec<String>) -> bool {
        let http_flags = args.method.is_some()
            || args.path.is_some()
            || args.host.is_some()
            || !args.headers.is_empty();
        let (protocol, by) = &self.own;
        match protocol {
            PortProtocol::Http => {
                notes.push(format!("port {port} is HTTP: {by}"));
                true
            }
            PortProtocol::Tcp => {
                notes.push(format!("port {port} is opaque TCP: {by}"));
                if http_flags {
                    notes.push(
                        "HTTP flags ignored: the sidecar does not parse an opaque port".to_owned(),
                    );
                }
                false
            }
            PortProtocol::Detect => {
                let (service_http, said) = match &self.service_protocol {
                    Some((protocol, said)) => (
                        *protocol == PortProtocol::Http,
                        format!("; {said} says {}", protocol_name(*protocol)),
                    ),
                    None => (false, String::new()),
                };
                let http = http_flags || service_http;
                notes.push(format!(
                    "port {port} has no protocol ({by}): the sidecar detects HTTP from the first bytes{said}; checked as {}",
                    if http { "HTTP" } else { "TCP" }
                ));
                http
            }
        }
    }
}

fn protocol_name(protocol: PortProtocol) -> &'static str {
    match protocol {
        PortProtocol::Http => "HTTP",
        PortProtocol::Tcp => "TCP",
        PortProtocol::Detect => "nothing",
    }
}

/// One port declaration: the protocol it selects and where it says so.
fn declaration(
    explicit: Option<&str>,
    field: &str,
    name: Option<&str>,
    what: &str,
) -> (PortProtocol, String) {
    let by = match (explicit, name) {
        (Some(protocol), _) => format!("{field} {protocol} of {what}"),
        (None, Some(name)) => format!("port name {name} of {what}"),
        (None, None) => format!("unnamed port of {what}"),
    };
    (port_protocol(explicit, name), by)
}

/// Whether `destination`'s `service_port` sends to `workload` on `port`.
fn serves(
    mesh: &Mesh,
    destination: Destination<'_>,
    service_port: u16,
    workload: &WorkloadInstance,
    port: u16,
) -> bool {
    mesh.endpoints(&destination, service_port)
        .iter()
        .any(|endpoint| {
            endpoint.port == port
                && endpoint
                    .workload
                    .is_some_and(|w| w.namespace == workload.namespace && w.name == workload.name)
        })
}

/// `spiffe://td/ns/NS/sa/SA`, or the principal form without the scheme.
fn parse_peer(from: &str) -> anyhow::Result<SpiffeId> {
    let parsed = if from.starts_with("spiffe://") {
        from.parse()
    } else {
        SpiffeId::from_principal(from)
    };
    let expected =
        "expected a workload's SPIFFE ID, spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT";
    let id = parsed.with_context(|| format!("--from {from:?}: {expected}"))?;
    if id.path().is_empty() {
        bail!("--from {from:?} names a trust domain, not a workload: {expected}");
    }
    Ok(id)
}

/// `NAME=VALUE`.
fn parse_header(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("{text:?}: expected NAME=VALUE")),
    }
}

/// The error for a workload that does not exist, naming the ones that do.
fn unknown_workload(mesh: &Mesh, namespace: &str, name: &str, origin: &str) -> anyhow::Error {
    let mut here: Vec<&str> = mesh
        .workloads()
        .iter()
        .filter(|w| w.namespace == namespace)
        .map(|w| w.name.as_str())
        .collect();
    here.sort_unstable();
    if !here.is_empty() {
        return anyhow!(
            "no workload {name}.{namespace} {origin}; workloads in namespace {namespace}: {}",
            here.join(", ")
        );
    }
    let mut namespaces: Vec<&str> = mesh
        .workloads()
        .iter()
        .map(|w| w.namespace.as_str())
        .collect();
    namespaces.sort_unstable();
    namespaces.dedup();
    let known = if namespaces.is_empty() {
        "none".to_owned()
    } else {
        namespaces.join(", ")
    };
    anyhow!(
        "no workload {name}.{namespace} {origin}: namespace {namespace} has none (namespaces with workloads: {known})"
    )
}

/// The text form: the decision, the request, then one row per rule of every policy.
fn render(report: &Report) -> String {
    let mut out = match (&report.policy, report.rule) {
        (Some(policy), Some(rule)) => {
            let action = if report.decision == "ALLOW" {
                "ALLOW"
            } else {
                "DENY"
            };
            format!(
                "{} by {action} policy {policy} rule {rule}\n",
                report.decision
            )
        }
        _ => format!("{}: {}\n", report.decision, report.reason),
    };
    if let Some(sees) = &report.client_sees {
        out.push_str(&format!("the client sees: {sees}\n"));
    }
    out.push('\n');
    out.push_str(&format!("request: {}\n", describe(report)));
    for note in &report.notes {
        out.push_str(&format!("  {note}\n"));
    }
    out.push('\n');
    if report.trace.is_empty() {
        out.push_str(if report.evaluated {
            "no AuthorizationPolicy applies to this workload\n"
        } else {
            "authorization not reached\n"
        });
    } else {
        let mut table = output::table(["ACTION", "AuthorizationPolicy", "RULE", "RESULT"]);
        for policy in &report.trace {
            let action = if policy.dry_run {
                format!("{} (dry-run)", policy.action)
            } else {
                policy.action.to_owned()
            };
            if policy.rules.is_empty() {
                table.add_row(vec![
                    action.clone(),
                    policy.policy.clone(),
                    "-".to_owned(),
                    "no rules: matches nothing".to_owned(),
                ]);
            }
            for (index, rule) in policy.rules.iter().enumerate() {
                let decided = report.policy.as_deref() == Some(policy.policy.as_str())
                    && report.rule == Some(rule.rule)
                    && !policy.dry_run;
                let result = match (&rule.why, decided) {
                    (_, true) => "matched: decides".to_owned(),
                    (None, false) => "matched".to_owned(),
                    (Some(why), false) => format!("no match: {why}"),
                };
                let (action, name) = if index == 0 {
                    (action.clone(), policy.policy.clone())
                } else {
                    (String::new(), String::new())
                };
                table.add_row(vec![action, name, rule.rule.to_string(), result]);
            }
        }
        out.push_str(&output::render(&mut table));
    }
    for audit in &report.audit {
        out.push_str(&format!(
            "audit: {} rule {} matched (logged, never enforced)\n",
            audit.policy, audit.rule
        ));
    }
    for dry in &report.dry_run {
        let outcome = match dry.rule {
            Some(rule) => format!("would match rule {rule}"),
            None => "matches no rule".to_owned(),
        };
        out.push_str(&format!(
            "dry-run: {} {} {outcome} (not enforced)\n",
            dry.action, dry.policy
        ));
    }
    out
}

/// `HTTP GET host/path to ns/name 10.0.0.1:8080, mTLS from spiffe://… (127.0.0.1)`.
fn describe(report: &Report) -> String {
    let request = &report.request;
    let what = match &request.http {
        Some(http) => {
            let mut line = format!("HTTP {} {} {}", http.method, http.host, http.path);
            for (name, value) in &http.headers {
                line.push_str(&format!(" [{name}: {value}]"));
            }
            line
        }
        None => "TCP connection".to_owned(),
    };
    let from = match &request.source_principal {
        Some(principal) => format!("mTLS from spiffe://{principal}"),
        None => "plaintext".to_owned(),
    };
    let mut line = format!(
        "{what} to {} {}:{}, {from} ({}",
        report.workload, request.destination_ip, request.destination_port, request.source_ip
    );
    if let Some(remote) = request.remote_ip {
        line.push_str(&format!(", remote {remote}"));
    }
    if let Some(sni) = &request.sni {
        line.push_str(&format!(", SNI {sni}"));
    }
    line.push(')');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_and_headers_from_the_command_line() {
        let id = parse_peer("spiffe://cluster.local/ns/default/sa/a").unwrap();
        assert_eq!(id.to_principal(), "cluster.local/ns/default/sa/a");
        assert_eq!(parse_peer("cluster.local/ns/default/sa/a").unwrap(), id);
        assert!(parse_peer("cluster.local").is_err());
        assert!(parse_peer("spiffe://Bad Domain/x").is_err());
        assert_eq!(
            parse_header("x-user=a=b"),
            Ok(("x-user".to_owned(), "a=b".to_owned()))
        );
        assert_eq!(
            parse_header("x-empty="),
            Ok(("x-empty".to_owned(), String::new()))
        );
        assert!(parse_header("=v").is_err());
        assert!(parse_header("x-user").is_err());
    }
}
