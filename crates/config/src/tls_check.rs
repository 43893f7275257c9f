//! The effective-mTLS matrix behind `meshward authn tls-check`: for every server workload port
//! the effective PeerAuthentication mode and the policy that set it; for every client → service
//! port → server pair what the client originates, why, and whether the server accepts it; and
//! per namespace whether switching it to STRICT would cut any client off. Pure functions over a
//! [`Mesh`].

use std::collections::BTreeMap;

use serde::Serialize;

use crate::mesh::{Mesh, WorkloadInstance};
use crate::meta::DEFAULT_NAMESPACE;
use crate::resolve::endpoints::{Destination, Endpoint};
use crate::resolve::names::service_fqdn;
use crate::resolve::peer_authn::ModeSource;
use crate::resolve::tls::{Client, TlsSource};
use crate::resources::destination_rule::ClientTlsMode;
use crate::resources::peer_authentication::MtlsMode;

#[cfg(test)]
mod tests;

/// What to look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every workload and service.
    All,
    /// One workload, as server and as client.
    Workload {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// One service (its full name), as destination.
    Service {
        /// The fully qualified host.
        fqdn: String,
    },
}

impl Scope {
    /// Reads `name.namespace` as a workload, else a service name as Kubernetes DNS resolves it
    /// from the `default` namespace (`httpbin-svc.team-app`, a full name, a ServiceEntry host).
    pub fn resolve(mesh: &Mesh, target: &str) -> Option<Scope> {
        if let Some((name, namespace)) = target.split_once('.')
            && mesh.workload(namespace, name).is_some()
        {
            return Some(Scope::Workload {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            });
        }
        mesh.resolve_host(DEFAULT_NAMESPACE, target)
            .map(|resolved| Scope::Service {
                fqdn: resolved.fqdn,
            })
    }

    fn is_workload(&self, workload: &WorkloadInstance) -> bool {
        matches!(self, Scope::Workload { namespace, name }
            if *namespace == workload.namespace && *name == workload.name)
    }
}

/// One server workload port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerPort {
    /// `namespace/name`.
    pub workload: String,
    /// The workload (container) port.
    pub port: u16,
    /// Whether a sidecar terminates mesh traffic there.
    pub sidecar: bool,
    /// The effective mode; none without a sidecar (the application receives what is sent).
    pub mode: Option<MtlsMode>,
    /// Which policy set the mode.
    pub source: Option<ModeSource>,
}

/// Whether a client's traffic is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// The server accepts what the client sends.
    Ok,
    /// The connection fails.
    Conflict,
}

/// A status and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// OK or CONFLICT.
    pub status: Status,
    /// What happens on the wire.
    pub reason: String,
}

/// Whether a server port accepts what a client originates. `server` is the port's effective
/// PeerAuthentication mode, or none when the server runs without a sidecar.
///
/// Istio's rules: "STRICT: the connection is an mTLS tunnel"; "PERMISSIVE: can be either
/// plaintext or mTLS"; "DISABLE: the connection is not tunneled" — a DISABLE sidecar answers a
/// mesh handshake with plaintext (istio#32079: `WRONG_VERSION_NUMBER`), and without a sidecar
/// nothing terminates mesh mTLS. Application TLS (SIMPLE, MUTUAL) is not mesh mTLS: a STRICT
/// port rejects it, other ports pass it to the application.
pub fn fit(originates: ClientTlsMode, server: Option<MtlsMode>) -> Verdict {
    let ok = |reason: &str| Verdict {
        status: Status::Ok,
        reason: reason.to_owned(),
    };
    let conflict = |reason: String| Verdict {
        status: Status::Conflict,
        reason,
    };
    match (originates, server) {
        (ClientTlsMode::IstioMutual, None) => {
            conflict("client sends mTLS but the server has no sidecar to terminate it".into())
        }
        (ClientTlsMode::IstioMutual, Some(MtlsMode::Disable)) => {
            conflict("client sends mTLS but server port is DISABLE".into())
        }
        (ClientTlsMode::IstioMutual, _) => ok("mTLS"),
        (ClientTlsMode::Disable, Some(MtlsMode::Strict)) => {
            conflict("client sends plaintext but server port is STRICT".into())
        }
        (ClientTlsMode::Disable, _) => ok("plaintext"),
        (mode, Some(MtlsMode::Strict)) => conflict(format!(
            "client originates its own TLS ({}), not mesh mTLS, but server port is STRICT",
            mode.as_str()
        )),
        (_, _) => ok("application TLS"),
    }
}

/// One client → service port → server endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pair {
    /// The client, `namespace/name`.
    pub client: String,
    /// Whether the client has a sidecar.
    pub client_sidecar: bool,
    /// The destination host.
    pub service: String,
    /// The service port.
    pub service_port: u16,
    /// The server endpoint, `namespace/name`.
    pub server: String,
    /// The port the server listens on.
    pub server_port: u16,
    /// What the client originates.
    pub originates: ClientTlsMode,
    /// Why: a DestinationRule, auto-mTLS, or no sidecar.
    pub by: String,
    /// The server port's mode (none: no sidecar).
    pub server_mode: Option<MtlsMode>,
    /// Fits or not.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// The client would not send mesh mTLS even if the server port were STRICT.
    pub breaks_under_strict: bool,
}

/// Whether a set of server ports can be made STRICT without cutting clients off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Readiness {
    /// What would be switched: `namespace X`, `workload ns/name` or `service host`.
    pub subject: String,
    /// Server ports with a sidecar.
    pub ports: usize,
    /// Of these, the ones already STRICT.
    pub strict_ports: usize,
    /// Clients that would be rejected: `client (MODE) → host:port`.
    pub plaintext_clients: Vec<String>,
    /// No client would be rejected.
    pub safe: bool,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsCheck {
    /// Every server workload port in scope.
    pub servers: Vec<ServerPort>,
    /// Every client → server pair in scope.
    pub pairs: Vec<Pair>,
    /// One verdict per namespace (or for the workload or service in scope).
    pub readiness: Vec<Readiness>,
}

impl TlsCheck {
    /// How many pairs conflict.
    pub fn conflicts(&self) -> usize {
        self.pairs
            .iter()
            .filter(|p| p.verdict.status == Status::Conflict)
            .count()
    }
}

/// Computes the report for `scope`. Clients are every declared workload; destinations every
/// Service and ServiceEntry host whose endpoints are workloads.
pub fn tls_check(mesh: &Mesh, scope: &Scope) -> TlsCheck {
    let mut pairs = Vec::new();
    let mut servers: BTreeMap<(String, u16), ServerPort> = BTreeMap::new();
    for (fqdn, destination) in destinations(mesh) {
        let service_in_scope = matches!(scope, Scope::Service { fqdn: f } if *f == fqdn);
        for service_port in destination.ports() {
            for endpoint in mesh.endpoints(&destination, service_port) {
                let Some(server) = endpoint.workload else {
                    continue;
                };
                if service_in_scope {
                    servers.insert(
                        (server.qualified_name(), endpoint.port),
                        server_port(mesh, server, endpoint.port),
                    );
                }
                for client in &mesh.workloads {
                    let wanted = match scope {
                        Scope::All => true,
                        Scope::Workload { .. } => {
                            scope.is_workload(client) || scope.is_workload(server)
                        }
                        Scope::Service { .. } => service_in_scope,
                    };
                    if wanted && client != server {
                        let target = Target {
                            fqdn: &fqdn,
                            destination: &destination,
                            service_port,
                            endpoint: &endpoint,
                        };
                        pairs.push(pair(mesh, client, &target));
                    }
                }
            }
        }
    }
    for workload in &mesh.workloads {
        if matches!(scope, Scope::All) || scope.is_workload(workload) {
            for port in workload.ports.iter().filter_map(|p| p.port.valid()) {
                servers.insert(
                    (workload.qualified_name(), port),
                    server_port(mesh, workload, port),
                );
            }
        }
    }
    pairs.sort_by(|a, b| {
        (&a.client, &a.service, a.service_port, &a.server).cmp(&(
            &b.client,
            &b.service,
            b.service_port,
            &b.server,
        ))
    });
    let servers: Vec<ServerPort> = servers.into_values().collect();
    let readiness = readiness(scope, &servers, &pairs);
    TlsCheck {
        servers,
        pairs,
        readiness,
    }
}

/// Every destination host with a name: Services and the non-wildcard ServiceEntry hosts.
pub(crate) fn destinations(mesh: &Mesh) -> Vec<(String, Destination<'_>)> {
    let mut out: Vec<(String, Destination<'_>)> = mesh
        .services
        .iter()
        .map(|s| {
            (
                service_fqdn(&s.object.metadata.name, s.namespace()),
                Destination::Service(s),
            )
        })
        .collect();
    for entry in &mesh.service_entries {
        for host in entry.object.spec.hosts.iter().filter(|h| !h.contains('*')) {
            out.push((host.to_ascii_lowercase(), Destination::ServiceEntry(entry)));
        }
    }
    out
}

fn server_port(mesh: &Mesh, workload: &WorkloadInstance, port: u16) -> ServerPort {
    let effective = workload
        .sidecar
        .then(|| mesh.peer_authentication(workload, port));
    ServerPort {
        workload: workload.qualified_name(),
        port,
        sidecar: workload.sidecar,
        mode: effective.as_ref().map(|e| e.mode),
        source: effective.map(|e| e.source),
    }
}

/// A destination port and one endpoint behind it.
struct Target<'a> {
    fqdn: &'a str,
    destination: &'a Destination<'a>,
    service_port: u16,
    endpoint: &'a Endpoint<'a>,
}

fn pair(mesh: &Mesh, client: &WorkloadInstance, target: &Target<'_>) -> Pair {
    let endpoint = target.endpoint;
    let server_mode = endpoint
        .workload
        .filter(|w| w.sidecar)
        .map(|w| mesh.peer_authentication(w, endpoint.port).mode);
    // "Clients without sidecar send plaintext": nothing in them originates mesh mTLS.
    let (originates, by, follows_server) = if client.sidecar {
        let decision = mesh.client_tls(
            Client {
                namespace: &client.namespace,
                labels: &client.labels,
            },
            target.fqdn,
            Some(target.destination.namespace()),
            target.service_port,
            None,
            endpoint,
        );
        let follows = decision.source == TlsSource::AutoServerDisabled;
        (decision.mode, decision.source.to_string(), follows)
    } else {
        (
            ClientTlsMode::Disable,
            "client has no sidecar".to_owned(),
            false,
        )
    };
    let verdict = fit(originates, server_mode);
    Pair {
        client: client.qualified_name(),
        client_sidecar: client.sidecar,
        service: target.fqdn.to_owned(),
        service_port: target.service_port,
        server: endpoint
            .workload
            .map(WorkloadInstance::qualified_name)
            .unwrap_or_default(),
        server_port: endpoint.port,
        originates,
        by,
        server_mode,
        verdict,
        // Auto-mTLS that chose plaintext only because the server is DISABLE switches to mTLS
        // once the server is STRICT; everything else keeps sending what it sends.
        breaks_under_strict: server_mode.is_some()
            && originates != ClientTlsMode::IstioMutual
            && !follows_server,
    }
}

fn readiness(scope: &Scope, servers: &[ServerPort], pairs: &[Pair]) -> Vec<Readiness> {
    // Group server ports by what an operator would switch.
    let subject_of = |workload: &str| -> String {
        match scope {
            Scope::All => {
                let namespace = workload.split('/').next().unwrap_or_default();
                format!("namespace {namespace}")
            }
            Scope::Workload { namespace, name } => format!("workload {namespace}/{name}"),
            Scope::Service { fqdn } => format!("service {fqdn}"),
        }
    };
    let mut groups: BTreeMap<String, Readiness> = BTreeMap::new();
    for server in servers.iter().filter(|s| s.sidecar) {
        let group = groups
            .entry(subject_of(&server.workload))
            .or_insert_with_key(|subject| Readiness {
                subject: subject.clone(),
                ports: 0,
                strict_ports: 0,
                plaintext_clients: Vec::new(),
                safe: true,
            });
        group.ports += 1;
        if server.mode == Some(MtlsMode::Strict) {
            group.strict_ports += 1;
        }
    }
    for pair in pairs.iter().filter(|p| p.breaks_under_strict) {
        let server_in_scope = match scope {
            Scope::Workload { namespace, name } => pair.server == format!("{namespace}/{name}"),
            _ => true,
        };
        if !server_in_scope {
            continue;
        }
        if let Some(group) = groups.get_mut(&subject_of(&pair.server)) {
            let mode = match pair.originates {
                ClientTlsMode::Disable => String::new(),
                other => format!(" ({})", other.as_str()),
            };
            let entry = format!(
                "{}{mode} → {}:{}",
                pair.client, pair.service, pair.service_port
            );
            if !group.plaintext_clients.contains(&entry) {
                group.plaintext_clients.push(entry);
                group.safe = false;
            }
        }
    }
    groups.into_values().collect()
}
