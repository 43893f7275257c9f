//! Host name → service, as Kubernetes DNS resolves names for a pod in the caller's namespace:
//! `name`, `name.ns`, `name.ns.svc`, `name.ns.svc.<domain>` and the service's virtual address.

use std::net::IpAddr;

use super::{Address, Service, ServicePort, View};

/// Why a destination cannot be reached through the mesh.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// No mesh service has this name or address.
    #[error("unknown service `{0}`: not a mesh service this proxy knows")]
    UnknownService(String),
    /// The service exists but not on this port.
    #[error("service `{host}` has no port {port}")]
    UnknownPort {
        /// The service's FQDN.
        host: String,
        /// The requested port.
        port: u16,
    },
    /// The port has no endpoints.
    #[error("no healthy endpoints")]
    NoEndpoints,
    /// TLS origination without its settings (never in a validated view).
    #[error("TLS origination without settings ({0})")]
    NoOrigination(String),
    /// mTLS without any expected server identity.
    #[error("endpoint {0} has no known identity to verify")]
    NoExpectedIdentity(Address),
}

impl View {
    /// The service port for `host:port`, with short names resolved in this view's namespace.
    pub fn resolve(&self, host: &str, port: u16) -> Result<&ServicePort, ResolveError> {
        self.resolve_service(host, port).map(|(_, p)| p)
    }

    /// The index of the service in [`View::services`] and its port for `host:port`.
    pub fn resolve_service(
        &self,
        host: &str,
        port: u16,
    ) -> Result<(usize, &ServicePort), ResolveError> {
        let (index, service) = self
            .find_service(host)
            .ok_or_else(|| ResolveError::UnknownService(host.to_owned()))?;
        service
            .ports
            .iter()
            .find(|p| p.port == port)
            .map(|p| (index, p))
            .ok_or_else(|| ResolveError::UnknownPort {
                host: service.host.clone(),
                port,
            })
    }

    fn find_service(&self, host: &str) -> Option<(usize, &Service)> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&host);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return self
                .services
                .iter()
                .enumerate()
                .find(|(_, s)| s.address == Some(ip));
        }
        self.services
            .iter()
            .enumerate()
            .find(|(_, s)| self.names(s).any(|n| n == host))
    }

    /// Every name `service` answers to from this view's namespace: a ServiceEntry host only
    /// by itself, a Service by the names Kubernetes DNS gives it.
    fn names<'a>(&'a self, service: &'a Service) -> impl Iterator<Item = String> + 'a {
        let fq = service.host.to_ascii_lowercase();
        let kube = (!service.exact_name).then(|| {
            let ns_form = format!("{}.{}", service.name, service.namespace).to_ascii_lowercase();
            let svc_form = format!("{ns_form}.svc");
            let local =
                (service.namespace == self.namespace).then(|| service.name.to_ascii_lowercase());
            [Some(ns_form), Some(svc_form), local]
        });
        std::iter::once(fq).chain(kube.into_iter().flatten().flatten())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::view::{Endpoint, Route, TlsMode};

    fn view() -> View {
        let ep = |ip: &str, sa: &str| Endpoint {
            address: Address::Ip(format!("{ip}:8080").parse().unwrap()),
            identity: Some(
                format!("spiffe://cluster.local/ns/team-app/sa/{sa}")
                    .parse()
                    .unwrap(),
            ),
            has_sidecar: true,
            tls: TlsMode::Auto,
            tls_source: "auto-mTLS".into(),
        };
        View {
            authz: Default::default(),
            path_normalization: Default::default(),
            outbound_policy: None,
            opaque: Default::default(),
            telemetry: Default::default(),
            version: 1,
            namespace: "team-app".into(),
            trust_domain: "cluster.local".parse().unwrap(),
            inbound: BTreeMap::new(),
            services: vec![Service::new(
                "httpbin-svc.team-app.svc.cluster.local".into(),
                "httpbin-svc".into(),
                "team-app".into(),
                Some("10.96.0.10".parse().unwrap()),
                vec![ServicePort::new(
                    8080,
                    vec![],
                    vec![ep("127.0.10.2", "httpbin"), ep("127.0.10.3", "httpbin")],
                )],
            )],
        }
    }

    #[test]
    fn resolves_kubernetes_name_forms() {
        let v = view();
        for host in [
            "httpbin-svc",
            "httpbin-svc.team-app",
            "httpbin-svc.team-app.svc",
            "httpbin-svc.team-app.svc.cluster.local",
            "HTTPBIN-SVC.team-app.svc.cluster.local.",
            "10.96.0.10",
        ] {
            assert!(v.resolve(host, 8080).is_ok(), "{host}");
        }
        assert!(matches!(
            v.resolve("httpbin-svc", 9),
            Err(ResolveError::UnknownPort { .. })
        ));
        assert!(matches!(
            v.resolve("other", 8080),
            Err(ResolveError::UnknownService(_))
        ));
    }

    #[test]
    fn short_names_only_in_own_namespace() {
        let mut v = view();
        v.namespace = "elsewhere".into();
        assert!(v.resolve("httpbin-svc", 8080).is_err());
        assert!(v.resolve("httpbin-svc.team-app", 8080).is_ok());
    }

    #[test]
    fn round_robin_and_expected_identity() {
        let v = view();
        let port = v.resolve("httpbin-svc", 8080).unwrap();
        let a = port.route().unwrap();
        let b = port.route().unwrap();
        assert_ne!(a.address(), b.address());
        match a {
            Route::Mtls { expected, .. } => assert_eq!(
                expected[0].to_string(),
                "spiffe://cluster.local/ns/team-app/sa/httpbin"
            ),
            other => panic!("auto-mTLS to a sidecar must be mTLS, not {other:?}"),
        }
    }

    #[test]
    fn service_entry_hosts_answer_to_their_exact_name_only() {
        let mut v = view();
        let mut api = Service::new(
            "api.example.com".into(),
            "api.example.com".into(),
            "team-app".into(),
            None,
            vec![ServicePort::new(443, vec![], vec![])],
        );
        api.exact_name = true;
        v.services.push(api);
        assert!(v.resolve("API.example.com.", 443).is_ok());
        for other in [
            "api",
            "api.example.com.team-app",
            "api.example.com.team-app.svc",
        ] {
            assert!(v.resolve(other, 443).is_err(), "{other}");
        }
    }

    #[test]
    fn mtls_without_identity_is_refused() {
        let p = ServicePort::new(
            80,
            vec![],
            vec![Endpoint {
                address: Address::Ip("127.0.0.1:80".parse().unwrap()),
                identity: None,
                has_sidecar: true,
                tls: TlsMode::IstioMutual,
                tls_source: "DestinationRule a/b".into(),
            }],
        );
        assert!(matches!(
            p.route(),
            Err(ResolveError::NoExpectedIdentity(_))
        ));
    }
}
