//! The control plane's `ProxyView` → [`View`], validated: an invalid view is refused as a whole
//! (and NACKed with the error) so the last good view stays in force.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use meshward_api::v1 as pb;
use meshward_config::authz::CompiledAuthz;
use meshward_config::resources::mesh_config::NormalizationType;
use meshward_identity::{SpiffeId, TrustDomain};
use rustls_pki_types::{DnsName, ServerName};

use super::{
    Address, Endpoint, Origination, Policy, Service, ServicePort, TelemetryView, TlsMode, View,
    routes,
};
use crate::access_log::AccessLogFormat;
use crate::config::{MtlsMode, OutboundPolicy};
use crate::metrics::labels::{Peers, ServiceLabels, WorkloadLabels};

/// Most services, ports, endpoints or workloads one view may carry (bounds memory and lookups).
const MAX_ITEMS: usize = 10_000;
/// Longest name or label value a view may carry for telemetry (metric label values).
const MAX_LABEL: usize = 256;

/// Why a `ProxyView` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidView {
    /// No workload section.
    #[error("the view has no workload")]
    MissingWorkload,
    /// The view is for another workload.
    #[error("the view is for workload `{got}`, this proxy serves `{want}`")]
    WrongWorkload {
        /// Who the view is for.
        got: String,
        /// Who this proxy serves.
        want: String,
    },
    /// A field is out of range or malformed.
    #[error("{field}: {reason}")]
    Field {
        /// Where in the view.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

pub(super) fn field(field: impl Into<String>, reason: impl Into<String>) -> InvalidView {
    InvalidView::Field {
        field: field.into(),
        reason: reason.into(),
    }
}

fn port(value: u32, at: &str) -> Result<u16, InvalidView> {
    u16::try_from(value)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| field(at, format!("port {value} out of range")))
}

fn bounded<T>(items: &[T], at: &str) -> Result<(), InvalidView> {
    if items.len() > MAX_ITEMS {
        return Err(field(
            at,
            format!("{} items, at most {MAX_ITEMS}", items.len()),
        ));
    }
    Ok(())
}

/// Converts a view for workload `name.namespace`.
pub fn from_proto(view: pb::ProxyView, name: &str, namespace: &str) -> Result<View, InvalidView> {
    let workload = view.workload.ok_or(InvalidView::MissingWorkload)?;
    if workload.name != name || workload.namespace != namespace {
        return Err(InvalidView::WrongWorkload {
            got: format!("{}.{}", workload.name, workload.namespace),
            want: format!("{name}.{namespace}"),
        });
    }
    let trust_domain =
        TrustDomain::new(&view.trust_domain).map_err(|e| field("trust_domain", e.to_string()))?;
    bounded(&workload.ports, "workload.ports")?;
    let mut inbound = BTreeMap::new();
    let mut opaque = BTreeSet::new();
    for p in &workload.ports {
        let at = format!("workload.ports[{}]", p.port);
        let mode = match pb::MtlsMode::try_from(p.mode) {
            Ok(pb::MtlsMode::Strict) => MtlsMode::Strict,
            // UNSPECIFIED is Istio's default: PERMISSIVE.
            Ok(pb::MtlsMode::Permissive | pb::MtlsMode::Unspecified) => MtlsMode::Permissive,
            Ok(pb::MtlsMode::Disable) => MtlsMode::Disable,
            Err(_) => return Err(field(at, format!("unknown mTLS mode {}", p.mode))),
        };
        let number = port(p.port, &at)?;
        if inbound.insert(number, mode).is_some() {
            return Err(field(at, "duplicate port"));
        }
        if p.opaque {
            opaque.insert(number);
        }
    }
    let telemetry = telemetry(&view.workloads, &workload, name, namespace)?;
    bounded(&view.services, "services")?;
    let services = view
        .services
        .into_iter()
        .map(service)
        .collect::<Result<_, _>>()?;
    Ok(View {
        version: view.version,
        namespace: namespace.to_owned(),
        trust_domain,
        inbound,
        opaque,
        services,
        authz: Arc::new(authz(&workload.authorization_json)?),
        path_normalization: path_normalization(&workload.path_normalization_json)?,
        outbound_policy: match pb::OutboundMode::try_from(workload.outbound_mode) {
            Ok(pb::OutboundMode::AllowAny) => Some(OutboundPolicy::AllowAny),
            Ok(pb::OutboundMode::RegistryOnly) => Some(OutboundPolicy::RegistryOnly),
            Ok(pb::OutboundMode::Unspecified) | Err(_) => None,
        },
        telemetry,
    })
}

/// A name or label value for metrics: bounded, printable.
fn label<'a>(value: &'a str, at: &str) -> Result<&'a str, InvalidView> {
    if value.len() > MAX_LABEL {
        return Err(field(at, format!("longer than {MAX_LABEL} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(field(at, "control characters"));
    }
    Ok(value)
}

fn workload_labels(meta: &pb::WorkloadMeta, at: &str) -> Result<WorkloadLabels, InvalidView> {
    Ok(WorkloadLabels::new(
        label(&meta.name, &format!("{at}.name"))?,
        label(&meta.namespace, &format!("{at}.namespace"))?,
        label(&meta.app, &format!("{at}.app"))?,
        label(&meta.version, &format!("{at}.version"))?,
        label(&meta.canonical_service, &format!("{at}.canonical_service"))?,
        label(
            &meta.canonical_revision,
            &format!("{at}.canonical_revision"),
        )?,
    ))
}

/// Who this workload and its peers are, which Service each port serves, and the access log
/// format.
fn telemetry(
    workloads: &[pb::WorkloadMeta],
    workload: &pb::WorkloadView,
    name: &str,
    namespace: &str,
) -> Result<TelemetryView, InvalidView> {
    let own = match &workload.meta {
        Some(meta) => workload_labels(meta, "workload.meta")?,
        None => WorkloadLabels::named(name, namespace),
    };
    bounded(workloads, "workloads")?;
    let mut peers = Peers::default();
    for (i, meta) in workloads.iter().enumerate() {
        let at = format!("workloads[{i}]");
        if !meta.identity.is_empty() {
            meta.identity
                .parse::<SpiffeId>()
                .map_err(|e| field(format!("{at}.identity"), e.to_string()))?;
        }
        let address = if meta.address.is_empty() {
            None
        } else {
            Some(
                meta.address
                    .parse::<IpAddr>()
                    .map_err(|e| field(format!("{at}.address"), e.to_string()))?,
            )
        };
        peers.insert(&meta.identity, address, workload_labels(meta, &at)?);
    }
    let mut inbound_services = BTreeMap::new();
    for p in &workload.ports {
        let Some(service) = &p.service else { continue };
        let at = format!("workload.ports[{}].service", p.port);
        let labels = ServiceLabels::new(
            label(&service.host, &format!("{at}.host"))?,
            label(&service.name, &format!("{at}.name"))?,
            label(&service.namespace, &format!("{at}.namespace"))?,
        );
        inbound_services.insert(port(p.port, &at)?, Arc::new(labels));
    }
    let access_log = match pb::AccessLog::try_from(workload.access_log) {
        Ok(pb::AccessLog::Off) => AccessLogFormat::Off,
        Ok(pb::AccessLog::Text) => AccessLogFormat::Text,
        Ok(pb::AccessLog::Json) => AccessLogFormat::Json,
        Err(_) => {
            return Err(field(
                "workload.access_log",
                format!("unknown access log format {}", workload.access_log),
            ));
        }
    };
    Ok(TelemetryView {
        workload: Arc::new(own),
        peers,
        inbound_services,
        access_log: Some(access_log),
    })
}

/// The compiled AuthorizationPolicies; one that does not parse refuses the whole view, so the
/// last good policies stay in force.
fn authz(json: &str) -> Result<CompiledAuthz, InvalidView> {
    if json.is_empty() {
        return Ok(CompiledAuthz::default());
    }
    serde_json::from_str(json).map_err(|e| field("workload.authorization_json", e.to_string()))
}

fn path_normalization(json: &str) -> Result<NormalizationType, InvalidView> {
    if json.is_empty() {
        return Ok(NormalizationType::default());
    }
    serde_json::from_str(json).map_err(|e| field("workload.path_normalization_json", e.to_string()))
}

fn service(s: pb::ServiceView) -> Result<Service, InvalidView> {
    let at = format!("services[{}]", s.host);
    if s.host.is_empty() || s.name.is_empty() || s.namespace.is_empty() {
        return Err(field(at, "host, name and namespace are required"));
    }
    let address = if s.address.is_empty() {
        None
    } else {
        Some(
            s.address
                .parse::<IpAddr>()
                .map_err(|e| field(format!("{at}.address"), e.to_string()))?,
        )
    };
    bounded(&s.ports, &at)?;
    let ports = s
        .ports
        .into_iter()
        .map(|p| service_port(p, &at))
        .collect::<Result<_, _>>()?;
    let mut service = Service::new(s.host, s.name, s.namespace, address, ports);
    service.exact_name = s.exact_name;
    bounded(&s.http_routes, &at)?;
    bounded(&s.tcp_routes, &at)?;
    service.http_routes = routes::http_routes(&s.http_routes, &at)?;
    service.tcp_routes = routes::tcp_routes(&s.tcp_routes, &at)?;
    service.routes_source = s.routes_source;
    Ok(service)
}

fn service_port(p: pb::ServicePort, service: &str) -> Result<ServicePort, InvalidView> {
    let at = format!("{service}.ports[{}]", p.port);
    let number = port(p.port, &at)?;
    let sans = p
        .subject_alt_names
        .iter()
        .map(|s| s.parse::<SpiffeId>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| field(format!("{at}.subject_alt_names"), e.to_string()))?;
    bounded(&p.endpoints, &at)?;
    let endpoints: Vec<Endpoint> = p
        .endpoints
        .into_iter()
        .map(|e| endpoint(e, &at))
        .collect::<Result<_, _>>()?;
    let origination = p
        .origination
        .map(|o| origination(o, &format!("{at}.origination")))
        .transpose()?;
    if origination.is_none() && endpoints.iter().any(|e| e.tls == TlsMode::Originate) {
        return Err(field(
            format!("{at}.origination"),
            "SIMPLE/MUTUAL endpoints need the origination settings",
        ));
    }
    bounded(&p.subsets, &at)?;
    let mut subsets = BTreeMap::new();
    for subset in p.subsets {
        let sub_at = format!("{at}.subsets[{}]", subset.name);
        let wire = pb::ServicePort {
            port: p.port,
            endpoints: subset.endpoints,
            origination: subset.origination,
            traffic: subset.traffic,
            subject_alt_names: p.subject_alt_names.clone(),
            ..pb::ServicePort::default()
        };
        subsets.insert(subset.name, service_port(wire, &sub_at)?);
    }
    let mut port = ServicePort::new(number, sans, endpoints);
    port.origination = origination.map(Arc::new);
    if let Some(traffic) = &p.traffic {
        port.policy = Arc::new(Policy::from_proto(traffic));
    }
    port.subsets = subsets;
    Ok(port)
}

/// A server name to send and check: a DNS name or an IP address.
fn server_name(name: &str, at: &str) -> Result<String, InvalidView> {
    ServerName::try_from(name)
        .map(|_| name.to_ascii_lowercase())
        .map_err(|e| field(at, format!("`{name}` is not a DNS name or IP address: {e}")))
}

fn origination(o: pb::TlsOrigination, at: &str) -> Result<Origination, InvalidView> {
    let path = |p: String| (!p.is_empty()).then(|| PathBuf::from(p));
    let client_identity = match (path(o.client_certificate), path(o.private_key)) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) if !o.mutual => None,
        _ => {
            return Err(field(
                at,
                "MUTUAL needs both client_certificate and private_key; SIMPLE neither",
            ));
        }
    };
    bounded(&o.subject_alt_names, at)?;
    Ok(Origination {
        ca_certificates: path(o.ca_certificates),
        client_identity,
        server_name: server_name(&o.server_name, &format!("{at}.server_name"))?,
        subject_alt_names: o
            .subject_alt_names
            .iter()
            .map(|n| server_name(n, &format!("{at}.subject_alt_names")))
            .collect::<Result<_, _>>()?,
    })
}

fn endpoint(e: pb::Endpoint, port_at: &str) -> Result<Endpoint, InvalidView> {
    let at = format!("{port_at}.endpoints[{}]", e.address);
    let number = port(e.port, &at)?;
    let address = match e.address.parse::<IpAddr>() {
        Ok(ip) => Address::Ip(SocketAddr::new(ip, number)),
        Err(_) => match DnsName::try_from(e.address.as_str()) {
            Ok(name) => Address::Dns(name.as_ref().to_ascii_lowercase(), number),
            Err(_) => {
                return Err(field(&at, "address: neither an IP address nor a DNS name"));
            }
        },
    };
    let identity = if e.identity.is_empty() {
        None
    } else {
        Some(
            e.identity
                .parse::<SpiffeId>()
                .map_err(|err| field(&at, format!("identity: {err}")))?,
        )
    };
    let tls = match pb::TlsMode::try_from(e.tls_mode) {
        Ok(pb::TlsMode::IstioMutual) => TlsMode::IstioMutual,
        Ok(pb::TlsMode::TlsDisable) => TlsMode::Disable,
        Ok(pb::TlsMode::Unspecified) => TlsMode::Auto,
        Ok(pb::TlsMode::Simple | pb::TlsMode::Mutual) => TlsMode::Originate,
        Err(_) => return Err(field(at, format!("unknown TLS mode {}", e.tls_mode))),
    };
    let tls_source = if e.tls_source.is_empty() {
        format!("{tls:?}")
    } else {
        e.tls_source
    };
    Ok(Endpoint {
        address,
        identity,
        has_sidecar: e.has_sidecar,
        tls,
        tls_source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pb_view() -> pb::ProxyView {
        pb::ProxyView {
            version: 3,
            workload: Some(pb::WorkloadView {
                name: "sleep".into(),
                namespace: "team-app".into(),
                service_account: "sleep".into(),
                address: "127.0.10.1".into(),
                ports: vec![pb::InboundPort {
                    port: 8080,
                    mode: pb::MtlsMode::Strict as i32,
                    mode_source: String::new(),
                    name: "http".into(),
                    opaque: true,
                    service: Some(pb::ServiceRef {
                        host: "sleep.team-app.svc.cluster.local".into(),
                        name: "sleep".into(),
                        namespace: "team-app".into(),
                    }),
                }],
                meta: Some(pb::WorkloadMeta {
                    name: "sleep".into(),
                    namespace: "team-app".into(),
                    identity: "spiffe://cluster.local/ns/team-app/sa/sleep".into(),
                    address: "127.0.10.1".into(),
                    app: "sleep".into(),
                    version: String::new(),
                    canonical_service: "sleep".into(),
                    canonical_revision: "latest".into(),
                }),
                access_log: pb::AccessLog::Json as i32,
                authorization_json: r#"{"policies":[{"namespace":"team-app","name":"deny-all","action":"ALLOW","dryRun":false,"rules":[]}]}"#.into(),
                path_normalization_json: r#""MERGE_SLASHES""#.into(),
                outbound_mode: pb::OutboundMode::RegistryOnly as i32,
            }),
            services: vec![pb::ServiceView {
                host: "httpbin.team-app.svc.cluster.local".into(),
                name: "httpbin".into(),
                namespace: "team-app".into(),
                address: String::new(),
                ports: vec![pb::ServicePort {
                    port: 8000,
                    name: "http".into(),
                    endpoints: vec![pb::Endpoint {
                        address: "127.0.10.2".into(),
                        port: 8000,
                        identity: "spiffe://cluster.local/ns/team-app/sa/httpbin".into(),
                        has_sidecar: true,
                        workload: "httpbin-1".into(),
                        tls_mode: pb::TlsMode::Unspecified as i32,
                        tls_source: "auto-mTLS".into(),
                    }],
                    tls_mode: pb::TlsMode::Unspecified as i32,
                    tls_source: "auto-mTLS".into(),
                    subject_alt_names: vec![],
                    sni: String::new(),
                    origination: None,
                    traffic: None,
                    subsets: vec![],
                }],
                exact_name: false,
                ..Default::default()
            }],
            trust_domain: "cluster.local".into(),
            workloads: vec![pb::WorkloadMeta {
                name: "httpbin-1".into(),
                namespace: "team-app".into(),
                identity: "spiffe://cluster.local/ns/team-app/sa/httpbin".into(),
                address: "127.0.10.2".into(),
                app: "httpbin".into(),
                version: "v1".into(),
                canonical_service: "httpbin".into(),
                canonical_revision: "v1".into(),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn converts_a_valid_view() {
        let v = from_proto(pb_view(), "sleep", "team-app").unwrap();
        assert_eq!(v.version, 3);
        assert_eq!(v.inbound_mode(8080), Some(MtlsMode::Strict));
        assert_eq!(v.services[0].ports[0].endpoints[0].tls, TlsMode::Auto);
        assert!(v.opaque.contains(&8080));
        assert_eq!(v.authz.policies[0].name, "deny-all");
        assert_eq!(v.path_normalization, NormalizationType::MergeSlashes);
        assert_eq!(v.outbound_policy, Some(OutboundPolicy::RegistryOnly));
        let t = &v.telemetry;
        assert_eq!(&*t.workload.app, "sleep");
        assert_eq!(&*t.workload.version, "unknown");
        assert_eq!(
            &*t.inbound_service(8080).host,
            "sleep.team-app.svc.cluster.local"
        );
        assert_eq!(&*t.inbound_service(9).host, "unknown");
        assert_eq!(t.access_log, Some(AccessLogFormat::Json));
        let peer = t.peers.caller(
            &"spiffe://cluster.local/ns/team-app/sa/httpbin"
                .parse()
                .unwrap(),
            "127.0.10.2".parse().unwrap(),
        );
        assert_eq!((&*peer.workload, &*peer.version), ("httpbin-1", "v1"));
    }

    #[test]
    fn refuses_invalid_views() {
        assert!(matches!(
            from_proto(pb_view(), "other", "team-app"),
            Err(InvalidView::WrongWorkload { .. })
        ));
        let mut bad_port = pb_view();
        if let Some(w) = bad_port.workload.as_mut() {
            w.ports[0].port = 70_000;
        }
        assert!(from_proto(bad_port, "sleep", "team-app").is_err());
        let mut bad_id = pb_view();
        bad_id.services[0].ports[0].endpoints[0].identity = "cluster.local/ns/x".into();
        assert!(from_proto(bad_id, "sleep", "team-app").is_err());
        let mut bad_mode = pb_view();
        bad_mode.services[0].ports[0].endpoints[0].tls_mode = 42;
        assert!(from_proto(bad_mode, "sleep", "team-app").is_err());
        // Policies that do not parse refuse the view: the last good policies stay in force.
        for (authz, normalization) in [("{\"policies\":[{}]}", ""), ("", "\"SOMETIMES\"")] {
            let mut bad = pb_view();
            if let Some(w) = bad.workload.as_mut() {
                w.authorization_json = authz.into();
                w.path_normalization_json = normalization.into();
            }
            assert!(
                from_proto(bad, "sleep", "team-app").is_err(),
                "{authz} {normalization}"
            );
        }
        // Telemetry strings are bounded, identities and addresses checked.
        let mut long = pb_view();
        long.workloads[0].app = "a".repeat(MAX_LABEL + 1);
        assert!(from_proto(long, "sleep", "team-app").is_err());
        let mut bad_peer = pb_view();
        bad_peer.workloads[0].identity = "not-spiffe".into();
        assert!(from_proto(bad_peer, "sleep", "team-app").is_err());
        let mut newline = pb_view();
        if let Some(w) = newline.workload.as_mut() {
            w.meta.as_mut().unwrap().name = "a\nb".into();
        }
        assert!(from_proto(newline, "sleep", "team-app").is_err());
        let mut bad_log = pb_view();
        if let Some(w) = bad_log.workload.as_mut() {
            w.access_log = 9;
        }
        assert!(from_proto(bad_log, "sleep", "team-app").is_err());
    }
}
