//! From the applied resources to one [`ProxyView`] per workload with a sidecar.
//!
//! [`views`] is pure: the mesh snapshot in, the views out. [`run`] re-runs it on every store
//! change (debounced) and hands the result to the hub, which pushes only what changed.

use std::{collections::HashMap, sync::Arc, time::Duration};

use meshward_api::v1::{
    AccessLog, DirectResponseView, Endpoint, HeaderMatchView,
    HeaderOperations as WireHeaderOperations, HttpMatchView, HttpRouteView, InboundPort,
    LoadBalancer as WireLb, MtlsMode as WireMtls, OutboundMode, ProxyView, RedirectView,
    ServicePort, ServiceRef, ServiceView, StringMatchView, SubsetView, TcpRouteView,
    TlsMode as WireTls, TlsOrigination, TrafficPolicy, WeightedDestination, WorkloadMeta,
    WorkloadView, string_match_view,
};
use meshward_config::{
    Mesh, WorkloadInstance,
    authz::{AuthzAction, CompiledAuthz, CompiledPolicy},
    resolve::{
        endpoints::Destination,
        names::{rule_host, service_fqdn},
        protocol::{PortProtocol, port_protocol},
        tls::Client,
        traffic::TrafficSettings,
    },
    resources::{
        destination_rule::{ClientTls, ClientTlsMode, Subset},
        mesh_config::{AccessLogEncoding, OutboundTrafficMode},
        peer_authentication::MtlsMode,
        service_entry::{Location, Resolution},
        traffic::{GoDuration, SimpleLb},
        virtual_service::{DirectBody, HeaderOperations, Percent, RouteDestination, StringMatch},
    },
    validate::ACCESS_LOG_ANNOTATION,
};
use meshward_store::Store;
use tracing::{info, warn};

use crate::Shared;

/// Changes closer together than this are compiled once.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// Recompiles and publishes the views whenever the store's revision moves.
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut seen = None;
    loop {
        let revision = shared.store.revision();
        if seen != Some(revision) {
            tokio::time::sleep(DEBOUNCE).await;
            match shared.store.snapshot() {
                Ok((revision, documents)) => {
                    compile(&shared, revision.0, documents);
                    seen = Some(revision);
                }
                Err(e) => warn!(error = %e, "cannot read the store; keeping the last views"),
            }
        }
        let waiter = shared.clone();
        let after = seen.unwrap_or_default();
        // The store's wait is blocking; a timeout bounds how long the thread is held.
        let _ = tokio::task::spawn_blocking(move || {
            waiter.store.wait_for_change(after, Duration::from_secs(5))
        })
        .await;
    }
}

fn compile(shared: &Shared, revision: u64, documents: Vec<meshward_config::Document>) {
    match Mesh::new(documents) {
        Ok(mesh) => {
            let mesh = Arc::new(mesh);
            *shared.mesh.write().unwrap_or_else(|p| p.into_inner()) = mesh.clone();
            // Trust changes republish too: one publication at a time, with the trust in force.
            let _publishing = shared.ca.publishing();
            shared.ca.follow_mesh_config(&mesh);
            let changed = publish(shared, &mesh);
            info!(revision, changed, "configuration compiled");
        }
        // The store holds only validated streams, so this means a cross-resource conflict:
        // keep serving the last good views.
        Err(e) => {
            warn!(revision, error = %e, "cannot compile the configuration; keeping the last views")
        }
    }
    shared
        .metrics
        .config_revision
        .set(i64::try_from(revision).unwrap_or(i64::MAX));
}

/// Compiles the views of `mesh` with the trust in force and hands them to the hub; returns how
/// many changed. Call it under [`Ca::publishing`](crate::trust::Ca::publishing).
pub(crate) fn publish(shared: &Shared, mesh: &Mesh) -> usize {
    let trust_domain = shared.ca.domains().mesh;
    let mut views = views(mesh, trust_domain.as_str(), &shared.ca.roots_pem());
    shared.ca.decorate(mesh, &mut views);
    shared.hub.publish(views)
}

/// The view of every workload that has a sidecar, keyed by `name.namespace`.
pub(crate) fn views(
    mesh: &Mesh,
    trust_domain: &str,
    bundle_pem: &str,
) -> HashMap<String, ProxyView> {
    let metas: Vec<WorkloadMeta> = mesh
        .workloads()
        .iter()
        .map(|w| workload_meta(w, trust_domain))
        .collect();
    let served = served_services(mesh);
    mesh.workloads()
        .iter()
        .zip(&metas)
        .filter(|(w, _)| w.sidecar)
        .map(|(w, meta)| {
            // The hub sets the version.
            let view = ProxyView {
                workload: Some(workload_view(mesh, w, meta, &served)),
                services: services_for(mesh, w),
                trust_bundle_pem: bundle_pem.to_owned(),
                trust_domain: trust_domain.to_owned(),
                workloads: metas.clone(),
                ..ProxyView::default()
            };
            (format!("{}.{}", w.name, w.namespace), view)
        })
        .collect()
}

/// What telemetry labels say about a workload, with Istio's rules for the canonical service
/// and revision.
fn workload_meta(w: &WorkloadInstance, trust_domain: &str) -> WorkloadMeta {
    let label = |key: &str| w.labels.get(key).filter(|v| !v.is_empty()).cloned();
    WorkloadMeta {
        name: w.name.clone(),
        namespace: w.namespace.clone(),
        identity: w.spiffe_id(trust_domain),
        address: w.address.clone().unwrap_or_default(),
        app: label("app").unwrap_or_default(),
        version: label("version").unwrap_or_default(),
        canonical_service: label("service.istio.io/canonical-name")
            .or_else(|| label("app.kubernetes.io/name"))
            .or_else(|| label("app"))
            .unwrap_or_else(|| w.name.clone()),
        canonical_revision: label("service.istio.io/canonical-revision")
            .or_else(|| label("app.kubernetes.io/version"))
            .or_else(|| label("version"))
            .unwrap_or_else(|| "latest".to_owned()),
    }
}

/// `(namespace, workload, target port)` → the first Service that sends traffic there.
type Served = HashMap<(String, String, u16), ServiceRef>;

fn served_services(mesh: &Mesh) -> Served {
    let mut served = Served::new();
    for entry in mesh.services() {
        let name = &entry.object.metadata.name;
        let namespace = entry.namespace();
        let destination = Destination::Service(entry);
        for port in destination.ports() {
            for ep in mesh.endpoints(&destination, port) {
                let Some(w) = ep.workload else { continue };
                served
                    .entry((w.namespace.clone(), w.name.clone(), ep.port))
                    .or_insert_with(|| ServiceRef {
                        host: service_fqdn(name, namespace),
                        name: name.clone(),
                        namespace: namespace.to_owned(),
                    });
            }
        }
    }
    served
}

/// The workload's access logs: its `meshward.io/access-log` annotation, else MeshConfig.
fn access_log(mesh: &Mesh, w: &WorkloadInstance) -> AccessLog {
    match w.annotations.get(ACCESS_LOG_ANNOTATION).map(String::as_str) {
        Some("off") => AccessLog::Off,
        Some("text") => AccessLog::Text,
        Some("json") => AccessLog::Json,
        // Validation refuses other values; MeshConfig decides otherwise.
        _ => match mesh.config().access_log() {
            None => AccessLog::Off,
            Some(AccessLogEncoding::Text) => AccessLog::Text,
            Some(AccessLogEncoding::Json) => AccessLog::Json,
        },
    }
}

fn workload_view(
    mesh: &Mesh,
    w: &WorkloadInstance,
    meta: &WorkloadMeta,
    served: &Served,
) -> WorkloadView {
    WorkloadView {
        meta: Some(meta.clone()),
        access_log: access_log(mesh, w) as i32,
        // Unset in MeshConfig: the sidecar's own flag decides.
        outbound_mode: match mesh.config().outbound_traffic_policy.map(|p| p.mode) {
            None => OutboundMode::Unspecified,
            Some(OutboundTrafficMode::AllowAny) => OutboundMode::AllowAny,
            Some(OutboundTrafficMode::RegistryOnly) => OutboundMode::RegistryOnly,
        } as i32,
        authorization_json: authorization_json(mesh, w),
        path_normalization_json: mesh
            .config()
            .path_normalization
            .and_then(|p| serde_json::to_string(&p.normalization).ok())
            .unwrap_or_default(),
        name: w.name.clone(),
        namespace: w.namespace.clone(),
        service_account: w.service_account.clone(),
        address: w.address.clone().unwrap_or_default(),
        ports: w
            .ports
            .iter()
            .filter_map(|p| {
                let port = p.port.valid()?;
                let effective = mesh.peer_authentication(w, port);
                let protocol = port_protocol(p.protocol.as_deref(), p.name.as_deref());
                Some(InboundPort {
                    port: u32::from(port),
                    mode: wire_mtls(effective.mode) as i32,
                    mode_source: effective.source.to_string(),
                    name: p.name.clone().unwrap_or_default(),
                    opaque: protocol == PortProtocol::Tcp,
                    service: served
                        .get(&(w.namespace.clone(), w.name.clone(), port))
                        .cloned(),
                })
            })
            .collect(),
    }
}

/// The workload's compiled AuthorizationPolicies as JSON; empty when none applies.
///
/// Validation refuses what cannot be compiled, so a failure here is a bug or a cross-resource
/// surprise: the workload then gets an ALLOW policy without rules, named after the policy that
/// failed — it denies everything (fail closed) and says why.
fn authorization_json(mesh: &Mesh, w: &WorkloadInstance) -> String {
    let compiled = mesh.compiled_authz(w).unwrap_or_else(|e| {
        warn!(workload = %w.name, namespace = %w.namespace, error = %e, "authorization denies everything");
        CompiledAuthz::new(vec![CompiledPolicy {
            namespace: e.namespace,
            name: e.name,
            action: AuthzAction::Allow,
            dry_run: false,
            rules: Vec::new(),
        }])
    });
    if compiled.policies.is_empty() {
        return String::new();
    }
    // Plain data (strings, numbers, addresses): serializing it cannot fail; were it to, the
    // workload would deny everything rather than allow it.
    serde_json::to_string(&compiled).unwrap_or_else(|_| DENY_ALL.to_owned())
}

/// An ALLOW policy without rules: nothing matches it, so everything is denied.
const DENY_ALL: &str = r#"{"policies":[{"namespace":"","name":"unserializable","action":"ALLOW","dryRun":false,"rules":[]}]}"#;

/// Every Service and ServiceEntry host the workload may call, with endpoints and the TLS to use
/// for each.
fn services_for(mesh: &Mesh, client: &WorkloadInstance) -> Vec<ServiceView> {
    let caller = Client {
        namespace: &client.namespace,
        labels: &client.labels,
    };
    let services = mesh.services().iter().map(|entry| {
        let name = entry.object.metadata.name.clone();
        let namespace = entry.namespace().to_owned();
        let host = service_fqdn(&name, &namespace);
        let destination = Destination::Service(entry);
        let ports = service_ports(mesh, caller, &destination, &host);
        ServiceView {
            host,
            name,
            namespace,
            address: entry.object.spec.cluster_ip.clone().unwrap_or_default(),
            ports,
            exact_name: false,
            ..ServiceView::default()
        }
    });
    // A ServiceEntry host is one service per name; a wildcard host has no name to connect to.
    let entries = mesh.service_entries().iter().flat_map(|entry| {
        let destination = Destination::ServiceEntry(entry);
        let spec = &entry.object.spec;
        // One virtual address only: a CIDR or several addresses name no single service address.
        let address = match spec.addresses.as_slice() {
            [one] if one.parse::<std::net::IpAddr>().is_ok() => one.clone(),
            _ => String::new(),
        };
        spec.hosts
            .iter()
            .filter(|host| !host.starts_with('*'))
            .map(move |host| {
                let host = host.to_ascii_lowercase();
                ServiceView {
                    ports: service_ports(mesh, caller, &destination, &host),
                    name: host.clone(),
                    namespace: entry.namespace().to_owned(),
                    host,
                    address: address.clone(),
                    exact_name: true,
                    ..ServiceView::default()
                }
            })
    });
    services
        .chain(entries)
        .map(|mut view| {
            attach_routes(mesh, client, &mut view);
            view
        })
        .collect()
}

/// Matches of named values (headers, query parameters) on the wire.
fn wire_named_matches(
    matches: &std::collections::BTreeMap<String, StringMatch>,
) -> Vec<HeaderMatchView> {
    matches
        .iter()
        .map(|(name, value)| HeaderMatchView {
            name: name.clone(),
            value: Some(wire_string_match(value)),
        })
        .collect()
}

/// A route's header changes on the wire.
fn wire_headers(ops: &HeaderOperations) -> WireHeaderOperations {
    WireHeaderOperations {
        set: ops.set.clone().into_iter().collect(),
        add: ops.add.clone().into_iter().collect(),
        remove: ops.remove.clone(),
    }
}

/// The VirtualService routes `client`'s requests to `view`'s host take: its `sourceLabels`
/// decided here, destination hosts qualified in the VirtualService's namespace.
fn attach_routes(mesh: &Mesh, client: &WorkloadInstance, view: &mut ServiceView) {
    let caller = Client {
        namespace: &client.namespace,
        labels: &client.labels,
    };
    let Some(vs) = mesh.virtual_service_for(caller, &view.host) else {
        return;
    };
    let namespace = vs.namespace();
    // `sourceLabels` and `sourceNamespace`: whether the match can hold for this client.
    let is_source = |labels: &std::collections::BTreeMap<String, String>, ns: &Option<String>| {
        labels.iter().all(|(k, v)| client.labels.get(k) == Some(v))
            && ns.as_deref().is_none_or(|ns| ns == client.namespace)
    };
    let destinations = |route: &[RouteDestination]| -> Vec<WeightedDestination> {
        route
            .iter()
            .map(|d| WeightedDestination {
                host: rule_host(&d.destination.host, namespace),
                port: d
                    .destination
                    .port
                    .and_then(|p| p.number.valid())
                    .map_or(0, u32::from),
                subset: d.destination.subset.clone().unwrap_or_default(),
                // A single destination takes everything.
                weight: if route.len() == 1 {
                    100
                } else {
                    d.weight.map_or(0, |w| u32::try_from(w).unwrap_or(0))
                },
                request_headers: d
                    .headers
                    .as_ref()
                    .and_then(|h| h.request.as_ref())
                    .map(wire_headers),
                response_headers: d
                    .headers
                    .as_ref()
                    .and_then(|h| h.response.as_ref())
                    .map(wire_headers),
            })
            .collect()
    };
    let ms = |d: Option<GoDuration>| {
        d.map_or(0, |d| {
            u32::try_from(d.0.as_millis()).unwrap_or(u32::MAX).max(1)
        })
    };
    for route in &vs.object.spec.http {
        let matches: Vec<HttpMatchView> = route
            .matches
            .iter()
            .filter(|m| is_source(&m.source_labels, &m.source_namespace))
            .map(|m| HttpMatchView {
                uri: m.uri.as_ref().map(wire_string_match),
                headers: wire_named_matches(&m.headers),
                method: m.method.as_ref().map(wire_string_match),
                port: m.port.unwrap_or(0),
                ignore_uri_case: m.ignore_uri_case.unwrap_or(false),
                scheme: m.scheme.as_ref().map(wire_string_match),
                authority: m.authority.as_ref().map(wire_string_match),
                query_params: wire_named_matches(&m.query_params),
            })
            .collect();
        // A route whose every match needs another client never applies to this one.
        if !route.matches.is_empty() && matches.is_empty() {
            continue;
        }
        let fault = route.fault.as_ref();
        let headers = route.headers.as_ref();
        let rewrite = route.rewrite.as_ref();
        let delay = fault.and_then(|f| f.delay.as_ref());
        let abort = fault.and_then(|f| f.abort.as_ref());
        let percent = |p: Option<Percent>, legacy: Option<i64>| {
            p.map(|p| p.value)
                .or(legacy.map(|p| p as f64))
                .unwrap_or(100.0)
        };
        view.http_routes.push(HttpRouteView {
            name: route.name.clone().unwrap_or_default(),
            matches,
            destinations: destinations(&route.route),
            timeout_ms: ms(route.timeout),
            retry_attempts: route
                .retries
                .as_ref()
                .map(|r| u32::try_from(r.attempts).unwrap_or(0)),
            per_try_timeout_ms: ms(route.retries.as_ref().and_then(|r| r.per_try_timeout)),
            retry_on: route
                .retries
                .as_ref()
                .and_then(|r| r.retry_on.clone())
                .unwrap_or_default(),
            delay_ms: ms(delay.and_then(|d| d.fixed_delay)),
            delay_percent: delay.map_or(0.0, |d| percent(d.percentage, d.percent)),
            abort_status: abort
                .and_then(|a| a.http_status)
                .map_or(0, |s| u32::try_from(s).unwrap_or(0)),
            abort_percent: abort.map_or(0.0, |a| percent(a.percentage, None)),
            request_headers: headers.and_then(|h| h.request.as_ref()).map(wire_headers),
            response_headers: headers.and_then(|h| h.response.as_ref()).map(wire_headers),
            rewrite_uri: rewrite.and_then(|r| r.uri.clone()).unwrap_or_default(),
            rewrite_authority: rewrite
                .and_then(|r| r.authority.clone())
                .unwrap_or_default(),
            redirect: route.redirect.as_ref().map(|r| RedirectView {
                uri: r.uri.clone().unwrap_or_default(),
                authority: r.authority.clone().unwrap_or_default(),
                port: r.port.unwrap_or(0),
                port_from_request: r.derive_port.as_deref() == Some("FROM_REQUEST_PORT"),
                scheme: r.scheme.clone().unwrap_or_default(),
                code: r.redirect_code.unwrap_or(301),
            }),
            direct_response: route.direct_response.as_ref().map(|d| DirectResponseView {
                status: d.status,
                // Validation refused a body that does not decode.
                body: d
                    .body
                    .as_ref()
                    .and_then(DirectBody::to_bytes)
                    .unwrap_or_default(),
            }),
        });
    }
    for route in &vs.object.spec.tcp {
        let matches: Vec<_> = route
            .matches
            .iter()
            .filter(|m| is_source(&m.source_labels, &m.source_namespace))
            .collect();
        if !route.matches.is_empty() && matches.is_empty() {
            continue;
        }
        view.tcp_routes.push(TcpRouteView {
            ports: matches.iter().filter_map(|m| m.port).collect(),
            destinations: destinations(&route.route),
        });
    }
    view.routes_source = format!("{namespace}/{}", vs.object.metadata.name);
}

fn wire_string_match(m: &StringMatch) -> StringMatchView {
    StringMatchView {
        kind: Some(match m {
            StringMatch::Exact(v) => string_match_view::Kind::Exact(v.clone()),
            StringMatch::Prefix(v) => string_match_view::Kind::Prefix(v.clone()),
            StringMatch::Regex(v) => string_match_view::Kind::Regex(v.clone()),
        }),
    }
}

/// The ports of one destination as `caller` reaches it under the name `host`.
fn service_ports(
    mesh: &Mesh,
    caller: Client<'_>,
    destination: &Destination<'_>,
    host: &str,
) -> Vec<ServicePort> {
    let namespace = destination.namespace();
    destination
        .ports()
        .into_iter()
        .map(|port| {
            let declared = mesh.destination_rule_tls(caller, host, Some(namespace), port, None);
            let mut view = ServicePort {
                port: u32::from(port),
                name: String::new(),
                endpoints: endpoint_views(mesh, caller, destination, host, port, None),
                tls_mode: WireTls::Unspecified as i32,
                tls_source: "auto-mTLS".to_owned(),
                subject_alt_names: Vec::new(),
                sni: String::new(),
                origination: None,
                traffic: wire_traffic(&mesh.traffic_settings(
                    caller,
                    host,
                    Some(namespace),
                    port,
                    None,
                )),
                subsets: subset_views(mesh, caller, destination, host, port),
            };
            if let Some((tls, rule, _)) = declared {
                view.tls_mode = wire_tls(tls.mode) as i32;
                view.tls_source = format!("DestinationRule {}/{}", rule.namespace, rule.name);
                view.sni = tls.sni.clone().unwrap_or_default();
                match tls.mode {
                    ClientTlsMode::Simple | ClientTlsMode::Mutual => {
                        view.origination = Some(origination(&tls, destination, host));
                    }
                    ClientTlsMode::IstioMutual | ClientTlsMode::Disable => {
                        view.subject_alt_names = tls.subject_alt_names;
                    }
                }
            }
            view
        })
        .collect()
}

/// The endpoints of `host:port` (of `subset`: those whose workload carries its labels), each
/// with the TLS the client originates to it.
fn endpoint_views(
    mesh: &Mesh,
    caller: Client<'_>,
    destination: &Destination<'_>,
    host: &str,
    port: u16,
    subset: Option<&Subset>,
) -> Vec<Endpoint> {
    let namespace = destination.namespace();
    destination_endpoints(mesh, destination, host, port)
        .into_iter()
        .filter(|ep| {
            subset.is_none_or(|s| {
                ep.workload
                    .is_some_and(|w| s.labels.iter().all(|(k, v)| w.labels.get(k) == Some(v)))
            })
        })
        .filter_map(|ep| {
            let name = subset.map(|s| s.name.as_str());
            let decision = mesh.client_tls(caller, host, Some(namespace), port, name, &ep);
            Some(Endpoint {
                address: ep.address.clone()?,
                port: u32::from(ep.port),
                identity: ep.identity.clone().unwrap_or_default(),
                has_sidecar: ep.sidecar,
                workload: ep
                    .workload
                    .map(|w| format!("{}.{}", w.name, w.namespace))
                    .unwrap_or_default(),
                tls_mode: wire_tls(decision.mode) as i32,
                tls_source: decision.source.to_string(),
            })
        })
        .collect()
}

/// The DestinationRule subsets of `host:port`: their endpoints, and their traffic policy and
/// TLS merged over the port's (Istio: "subset policies apply when a route sends traffic to the
/// subset").
fn subset_views(
    mesh: &Mesh,
    caller: Client<'_>,
    destination: &Destination<'_>,
    host: &str,
    port: u16,
) -> Vec<SubsetView> {
    let namespace = destination.namespace();
    mesh.subset_names(caller, host, Some(namespace))
        .into_iter()
        .filter_map(|name| {
            let subset = mesh.subset(caller, host, Some(namespace), &name)?;
            let tls = mesh.destination_rule_tls(caller, host, Some(namespace), port, Some(&name));
            let origination = tls
                .filter(|(tls, _, _)| {
                    matches!(tls.mode, ClientTlsMode::Simple | ClientTlsMode::Mutual)
                })
                .map(|(tls, _, _)| origination(&tls, destination, host));
            Some(SubsetView {
                endpoints: endpoint_views(mesh, caller, destination, host, port, Some(subset)),
                traffic: wire_traffic(&mesh.traffic_settings(
                    caller,
                    host,
                    Some(namespace),
                    port,
                    Some(&name),
                )),
                origination,
                name,
            })
        })
        .collect()
}

/// The endpoints of `host:port`. A ServiceEntry with DNS resolution and no endpoints of its own
/// stands for the host itself, as does one with resolution NONE (the "original destination" is
/// the name the client asked for): the proxy resolves the name when it connects.
fn destination_endpoints<'a>(
    mesh: &'a Mesh,
    destination: &Destination<'a>,
    host: &str,
    port: u16,
) -> Vec<meshward_config::resolve::endpoints::Endpoint<'a>> {
    let endpoints = mesh.endpoints(destination, port);
    let Destination::ServiceEntry(entry) = destination else {
        return endpoints;
    };
    let spec = &entry.object.spec;
    let by_name = matches!(
        spec.resolution,
        Resolution::Dns | Resolution::DnsRoundRobin | Resolution::None
    );
    if !endpoints.is_empty() || !by_name || spec.workload_selector.is_some() {
        return endpoints;
    }
    let target = spec
        .ports
        .iter()
        .find(|p| p.number.valid() == Some(port))
        .and_then(|p| p.target_port.and_then(|t| t.valid()))
        .unwrap_or(port);
    vec![meshward_config::resolve::endpoints::Endpoint {
        workload: None,
        address: Some(host.to_owned()),
        port: target,
        identity: None,
        sidecar: spec.location == Location::MeshInternal,
    }]
}

/// A DestinationRule's SIMPLE/MUTUAL settings. Istio: "`subjectAltNames` overrides the
/// ServiceEntry SANs; if unset, SAN/SNI follow the host"; the SNI is `sni` or the host.
fn origination(tls: &ClientTls, destination: &Destination<'_>, host: &str) -> TlsOrigination {
    let entry_sans = match destination {
        Destination::ServiceEntry(entry) => entry.object.spec.subject_alt_names.clone(),
        Destination::Service(_) => Vec::new(),
    };
    let subject_alt_names = if tls.subject_alt_names.is_empty() {
        entry_sans
    } else {
        tls.subject_alt_names.clone()
    };
    TlsOrigination {
        mutual: tls.mode == ClientTlsMode::Mutual,
        ca_certificates: tls.ca_certificates.clone().unwrap_or_default(),
        client_certificate: tls.client_certificate.clone().unwrap_or_default(),
        private_key: tls.private_key.clone().unwrap_or_default(),
        server_name: tls.sni.clone().unwrap_or_else(|| host.to_owned()),
        subject_alt_names,
    }
}

/// A DestinationRule's traffic settings on the wire, with Envoy's defaults where Istio leaves
/// them to Envoy; `None` when no rule sets any.
fn wire_traffic(settings: &TrafficSettings) -> Option<TrafficPolicy> {
    let rule = settings.rule.as_ref()?;
    let ms = |d: Option<GoDuration>| {
        d.map_or(0, |d| {
            u32::try_from(d.0.as_millis()).unwrap_or(u32::MAX).max(1)
        })
    };
    let count = |n: Option<i64>| n.map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX));
    let mut wire = TrafficPolicy {
        source: format!("{}/{}", rule.namespace, rule.name),
        ..TrafficPolicy::default()
    };
    if let Some(lb) = &settings.load_balancer {
        wire.load_balancer = match (&lb.consistent_hash, lb.simple) {
            (Some(hash), _) => {
                wire.hash_header = hash.http_header_name.clone().unwrap_or_default();
                wire.hash_query_parameter =
                    hash.http_query_parameter_name.clone().unwrap_or_default();
                WireLb::ConsistentHash
            }
            (None, Some(SimpleLb::RoundRobin)) => WireLb::RoundRobin,
            (None, Some(SimpleLb::Random)) => WireLb::Random,
            (None, Some(SimpleLb::LeastRequest | SimpleLb::LeastConn)) => WireLb::LeastRequest,
            // UNSPECIFIED; PASSTHROUGH is refused by validation.
            (None, _) => WireLb::LbDefault,
        } as i32;
    }
    if let Some(pool) = &settings.connection_pool {
        if let Some(tcp) = &pool.tcp {
            wire.max_connections = count(tcp.max_connections);
            wire.connect_timeout_ms = ms(tcp.connect_timeout);
            // Zero stays zero: it turns the idle timeout off.
            wire.tcp_idle_timeout_ms = tcp
                .idle_timeout
                .map(|d| u32::try_from(d.0.as_millis()).unwrap_or(u32::MAX));
            if let Some(keepalive) = &tcp.tcp_keepalive {
                wire.keepalive_time_ms = ms(keepalive.time);
                wire.keepalive_interval_ms = ms(keepalive.interval);
                wire.keepalive_probes = keepalive.probes.unwrap_or_default();
            }
        }
        if let Some(http) = &pool.http {
            wire.max_pending_requests = count(http.http1_max_pending_requests);
            wire.max_requests = count(http.http2_max_requests);
            wire.max_requests_per_connection = count(http.max_requests_per_connection);
            wire.max_retries = count(http.max_retries);
            wire.idle_timeout_ms = ms(http.idle_timeout);
        }
    }
    if let Some(outlier) = &settings.outlier_detection {
        wire.outlier_detection = true;
        // Envoy's defaults: 5 consecutive 5xx, gateway errors off. Istio reads the deprecated
        // `consecutiveErrors` as gateway errors, with 5xx off.
        let deprecated = outlier.consecutive_errors.map(|n| count(Some(n)));
        wire.consecutive_5xx_errors = outlier
            .consecutive_5xx_errors
            .unwrap_or(if deprecated.is_some() { 0 } else { 5 });
        wire.consecutive_gateway_errors = outlier
            .consecutive_gateway_errors
            .or(deprecated)
            .unwrap_or(0);
        wire.interval_ms = outlier.interval.map_or(10_000, |d| ms(Some(d)));
        wire.base_ejection_time_ms = outlier.base_ejection_time.map_or(30_000, |d| ms(Some(d)));
        wire.max_ejection_percent = count(outlier.max_ejection_percent.or(Some(10)));
        wire.min_health_percent = count(outlier.min_health_percent);
    }
    Some(wire)
}

fn wire_mtls(mode: MtlsMode) -> WireMtls {
    match mode {
        MtlsMode::Strict => WireMtls::Strict,
        MtlsMode::Disable => WireMtls::Disable,
        // UNSET never comes out of resolution; PERMISSIVE is its meaning anyway.
        MtlsMode::Permissive | MtlsMode::Unset => WireMtls::Permissive,
    }
}

fn wire_tls(mode: ClientTlsMode) -> WireTls {
    match mode {
        ClientTlsMode::Disable => WireTls::TlsDisable,
        ClientTlsMode::Simple => WireTls::Simple,
        ClientTlsMode::Mutual => WireTls::Mutual,
        ClientTlsMode::IstioMutual => WireTls::IstioMutual,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use meshward_config::{Limits, parse_stream};

    const MESH: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    accessLogFile: /dev/stdout
---
apiVersion: meshward.io/v1alpha1
kind: Workload
metadata:
  name: web-1
  namespace: shop
  labels: {app: web, version: v2}
spec:
  serviceAccount: web
  sidecar: true
  address: 127.0.10.1
  ports: [{name: http, port: 8080}]
---
apiVersion: meshward.io/v1alpha1
kind: Workload
metadata:
  name: db
  namespace: shop
  labels: {app.kubernetes.io/name: database}
  annotations: {meshward.io/access-log: json}
spec:
  serviceAccount: db
  sidecar: true
  address: 127.0.10.2
  ports: [{name: tcp, port: 5432}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"#;

    fn compiled() -> HashMap<String, ProxyView> {
        let docs = parse_stream("mesh.yaml", MESH, &Limits::default())
            .into_documents()
            .unwrap();
        let mesh = Mesh::new(docs).unwrap();
        views(&mesh, "cluster.local", "")
    }

    #[test]
    fn views_carry_telemetry_metadata_and_access_logs() {
        let views = compiled();
        let web = &views["web-1.shop"];
        let workload = web.workload.as_ref().unwrap();
        let meta = workload.meta.as_ref().unwrap();
        assert_eq!(
            (meta.name.as_str(), meta.app.as_str(), meta.version.as_str()),
            ("web-1", "web", "v2")
        );
        assert_eq!(meta.identity, "spiffe://cluster.local/ns/shop/sa/web");
        assert_eq!(
            (
                meta.canonical_service.as_str(),
                meta.canonical_revision.as_str()
            ),
            ("web", "v2")
        );
        // The port the Service targets names it; MeshConfig turns TEXT logs on.
        let service = workload.ports[0].service.as_ref().unwrap();
        assert_eq!(service.host, "web.shop.svc.cluster.local");
        assert_eq!(
            (service.name.as_str(), service.namespace.as_str()),
            ("web", "shop")
        );
        assert_eq!(workload.access_log, AccessLog::Text as i32);
        // Every workload is listed for peer labels.
        assert_eq!(web.workloads.len(), 2);

        let db = views["db.shop"].workload.as_ref().unwrap();
        let meta = db.meta.as_ref().unwrap();
        assert_eq!(meta.app, "");
        assert_eq!(
            (
                meta.canonical_service.as_str(),
                meta.canonical_revision.as_str()
            ),
            ("database", "latest")
        );
        assert!(db.ports[0].service.is_none());
        // The annotation overrides MeshConfig.
        assert_eq!(db.access_log, AccessLog::Json as i32);
    }

    #[test]
    fn service_entry_hosts_carry_their_endpoints_and_origination() {
        let extra = r#"
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: shop}
spec:
  hosts: [api.example.com, "*.example.org"]
  location: MESH_EXTERNAL
  resolution: DNS
  subjectAltNames: [edge.example.com]
  ports: [{number: 443, name: https, protocol: TLS}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ext, namespace: shop}
spec:
  host: api.example.com
  trafficPolicy: {tls: {mode: MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem}}
"#;
        let docs = parse_stream("mesh.yaml", &format!("{MESH}{extra}"), &Limits::default())
            .into_documents()
            .unwrap();
        let views = views(&Mesh::new(docs).unwrap(), "cluster.local", "");
        let services = &views["web-1.shop"].services;
        // The wildcard host names no single host.
        let ext: Vec<_> = services.iter().filter(|s| s.exact_name).collect();
        assert_eq!(ext.len(), 1, "{ext:?}");
        assert_eq!(ext[0].host, "api.example.com");
        let port = &ext[0].ports[0];
        // DNS resolution without endpoints: the host itself, resolved by the proxy.
        assert_eq!(port.endpoints[0].address, "api.example.com");
        assert_eq!(port.endpoints[0].tls_mode, WireTls::Mutual as i32);
        let tls = port.origination.as_ref().unwrap();
        assert!(tls.mutual);
        assert_eq!(tls.server_name, "api.example.com");
        // "subjectAltNames overrides the ServiceEntry SANs; if unset, the ServiceEntry's apply."
        assert_eq!(tls.subject_alt_names, ["edge.example.com"]);
        assert!(port.subject_alt_names.is_empty());
    }
}
