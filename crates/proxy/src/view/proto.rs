//! The control plane's `ProxyView` → [`View`], validated: an invalid view is refused as a whole
//! (and NACKed with the error) so the last good view stays in force.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use meshward_api::v1 as pb;
use meshward_config::authz::CompiledAuthz;
use meshward_config::resources::mesh_config::NormalizationType;
use meshward_identity::{SpiffeId, TrustDomain};

use super::{Endpoint, Service, ServicePort, TlsMode, View};
use crate::config::MtlsMode;

/// Most services, ports or endpoints one view may carry (bounds memory and lookups).
const MAX_ITEMS: usize = 10_000;

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

fn field(field: impl Into<String>, reason: impl Into<String>) -> InvalidView {
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
    Ok(Service {
        host: s.host,
        name: s.name,
        namespace: s.namespace,
        address,
        ports,
    })
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
    let endpoints = p
        .endpoints
        .into_iter()
        .map(|e| endpoint(e, &at))
        .collect::<Result<_, _>>()?;
    Ok(ServicePort::new(number, sans, endpoints))
}

fn endpoint(e: pb::Endpoint, port_at: &str) -> Result<Endpoint, InvalidView> {
    let at = format!("{port_at}.endpoints[{}]", e.address);
    let ip: IpAddr = e
        .address
        .parse()
        .map_err(|err| field(&at, format!("address: {err}")))?;
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
        Ok(pb::TlsMode::Simple | pb::TlsMode::Mutual) => TlsMode::Unsupported,
        Err(_) => return Err(field(at, format!("unknown TLS mode {}", e.tls_mode))),
    };
    let tls_source = if e.tls_source.is_empty() {
        format!("{tls:?}")
    } else {
        e.tls_source
    };
    Ok(Endpoint {
        address: SocketAddr::new(ip, port(e.port, &at)?),
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
                }],
                authorization_json: r#"{"policies":[{"namespace":"team-app","name":"deny-all","action":"ALLOW","dryRun":false,"rules":[]}]}"#.into(),
                path_normalization_json: r#""MERGE_SLASHES""#.into(),
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
                }],
            }],
            trust_bundle_pem: String::new(),
            trust_domain: "cluster.local".into(),
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
    }
}
