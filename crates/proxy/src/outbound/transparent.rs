//! Transparent outbound: the outbound port when `meshward iptables` redirects the app's
//! connections to it. A connection whose original destination (`SO_ORIGINAL_DST`) is its
//! local address came to the port itself and is served as the explicit forward proxy; any
//! other was captured on its way to that destination:
//!
//! - a Service's virtual address and port, or a workload's address and port, is carried as
//!   CONNECT would carry it: an endpoint of the view, the port's TLS mode, mTLS with the
//!   server's SPIFFE ID checked before a byte of the client is sent (ALPN `istio`, so the
//!   server sidecar still sees HTTP and authorizes each request);
//! - anything else is passed through to where it was going (`ALLOW_ANY`, Istio's default) or
//!   closed (`REGISTRY_ONLY`);
//! - a destination that is one of this proxy's own capture ports is closed: the proxy's own
//!   connections are never captured (the rules exempt its uid/gid), so this can only be a loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use super::Outbound;
use crate::access_log::Direction;
use crate::capture::original_dst::original_dst;
use crate::config::{OutboundPolicy, Transparent};
use crate::io::accept_until;
use crate::telemetry::{Metered, Started, TcpRecord};
use crate::tls::ALPN_TCP;
use crate::view::policy::DEFAULT_TCP_IDLE;
use crate::view::{Address, ResolveError, Route, ServicePort, View};

/// Where a captured connection goes.
#[derive(Debug, PartialEq, Eq)]
enum Destination {
    /// A Service's virtual address on one of its ports: as CONNECT to it.
    Service,
    /// A workload's address: that endpoint of a mesh service port (by index in the view's
    /// services), along this route.
    Workload {
        service: usize,
        port: u16,
        route: Route,
        idle: Option<Duration>,
    },
    /// Not in the mesh.
    External,
    /// In the mesh but unreachable now (no endpoints, an identity nobody stated, a TLS mode
    /// this proxy cannot originate).
    Unreachable(ResolveError),
}

/// Finds `dst` in `view`: a Service's virtual address first, then a workload's address among
/// the endpoints (that very endpoint, with the port's TLS mode and expected identities).
fn destination(view: &View, dst: SocketAddr) -> Destination {
    if view.services.iter().any(|s| s.address == Some(dst.ip())) {
        return match view.resolve_service(&dst.ip().to_string(), dst.port()) {
            Ok(_) => Destination::Service,
            // A Service address on a port it does not declare: not a mesh destination.
            Err(_) => Destination::External,
        };
    }
    for (index, service) in view.services.iter().enumerate() {
        for port in &service.ports {
            let Some(i) = port
                .endpoints
                .iter()
                .position(|e| e.address == Address::Ip(dst))
            else {
                continue;
            };
            let mut one = ServicePort::new(
                port.port,
                port.subject_alt_names.clone(),
                port.endpoints.get(i).cloned().into_iter().collect(),
            );
            one.origination.clone_from(&port.origination);
            return match one.route() {
                Ok(route) => Destination::Workload {
                    service: index,
                    port: port.port,
                    route,
                    idle: port.policy.limits.tcp_idle(),
                },
                Err(err) => Destination::Unreachable(err),
            };
        }
    }
    Destination::External
}

impl Outbound {
    /// Accepts on the outbound port in transparent mode until the drain: captured connections
    /// go to their original destination, the others to the explicit forward proxy.
    pub async fn serve_captured(self: Arc<Self>, listener: TcpListener, mode: Transparent) {
        let me = Arc::clone(&self);
        let own_ports = listener
            .local_addr()
            .map(|a| [a.port(), mode.inbound_capture_port])
            .unwrap_or([0, mode.inbound_capture_port]);
        accept_until(
            listener,
            self.drain.token().clone(),
            "outbound",
            move |tcp, peer| {
                let me2 = Arc::clone(&me);
                let captured = match (original_dst(&tcp), tcp.local_addr()) {
                    (Ok(dst), Ok(local)) if dst != local => Some(dst),
                    _ => None,
                };
                match captured {
                    Some(dst) if own_ports.contains(&dst.port()) && is_local(dst) => {
                        tracing::warn!(%peer, %dst, "refused: a captured connection to the proxy's own capture port (the proxy's traffic must be exempt from capture)");
                    }
                    Some(dst) => me.drain.spawn(me2.captured(tcp, peer, dst, mode.outbound_policy)),
                    None => me.drain.spawn(me2.serve_conn(tcp, peer)),
                }
            },
        )
        .await;
    }

    async fn captured(
        self: Arc<Self>,
        client: TcpStream,
        peer: SocketAddr,
        dst: SocketAddr,
        policy: OutboundPolicy,
    ) {
        let started = Started::now();
        let view = Arc::clone(&self.view.borrow());
        // MeshConfig, when the control plane says; else the proxy's flag.
        let policy = view.outbound_policy.unwrap_or(policy);
        let (service, route, idle) = match destination(&view, dst) {
            Destination::Service => {
                if let Err(reason) = self.tunnel_captured(client, peer, dst).await {
                    tracing::info!(%peer, %dst, %reason, "captured connection refused");
                }
                return;
            }
            Destination::Workload {
                service,
                port,
                route,
                idle,
            } => (view.services.get(service).map(|s| (s, port)), route, idle),
            Destination::Unreachable(err) => {
                tracing::info!(%peer, %dst, %err, "captured connection refused");
                return;
            }
            Destination::External if policy == OutboundPolicy::RegistryOnly => {
                tracing::info!(%peer, %dst, "captured connection refused: not a mesh destination (outbound traffic policy REGISTRY_ONLY)");
                return;
            }
            // Passed through as it was going, from the workload address.
            Destination::External => (
                None,
                Route::Plain {
                    address: Address::Ip(dst),
                },
                Some(DEFAULT_TCP_IDLE),
            ),
        };
        let mut server = match self.connect(&route, ALPN_TCP).await {
            Ok(server) => server,
            Err(err) => {
                tracing::info!(%peer, %dst, %err, "captured connection refused: upstream not reached");
                return;
            }
        };
        let link = self.link(service, &route, &server, false);
        let record = TcpRecord::open(
            &self.telemetry,
            link,
            Direction::Outbound,
            started,
            Some(dst),
            Some(peer),
        );
        let mut client = Metered::new(client, record);
        self.carry_to(&mut client, &mut server, &route, idle).await;
    }
}

/// Whether `addr` can be this host's own: loopback or unspecified (REDIRECT from OUTPUT sends
/// to 127.0.0.1).
fn is_local(addr: SocketAddr) -> bool {
    addr.ip().is_loopback() || addr.ip().is_unspecified()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::view::{Endpoint, Service, TlsMode};

    fn view() -> View {
        let ep = |addr: &str, sidecar: bool| Endpoint {
            address: addr.parse().unwrap(),
            identity: sidecar.then(|| {
                "spiffe://cluster.local/ns/team-app/sa/httpbin"
                    .parse()
                    .unwrap()
            }),
            has_sidecar: sidecar,
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
            services: vec![
                Service::new(
                    "httpbin-svc.team-app.svc.cluster.local".into(),
                    "httpbin-svc".into(),
                    "team-app".into(),
                    Some("10.96.0.10".parse().unwrap()),
                    vec![ServicePort::new(
                        8080,
                        vec![],
                        vec![
                            ep("10.1.0.2:8080", true),
                            ep("10.1.0.3:8080", false),
                            Endpoint {
                                identity: None,
                                tls: TlsMode::IstioMutual,
                                ..ep("10.1.0.4:8080", true)
                            },
                        ],
                    )],
                ),
                Service::new(
                    "empty.team-app.svc.cluster.local".into(),
                    "empty".into(),
                    "team-app".into(),
                    Some("10.96.0.11".parse().unwrap()),
                    vec![ServicePort::new(80, vec![], vec![])],
                ),
            ],
        }
    }

    #[test]
    fn original_destinations() {
        let v = view();
        let mtls = |addr: &str| Route::Mtls {
            address: addr.parse().unwrap(),
            expected: vec![
                "spiffe://cluster.local/ns/team-app/sa/httpbin"
                    .parse()
                    .unwrap(),
            ],
        };
        // (original destination, where it goes)
        let cases = [
            ("10.96.0.10:8080", Destination::Service),
            ("10.96.0.10:9999", Destination::External),
            // No endpoints: refused as CONNECT would refuse it.
            ("10.96.0.11:80", Destination::Service),
            (
                "10.1.0.2:8080",
                Destination::Workload {
                    service: 0,
                    port: 8080,
                    route: mtls("10.1.0.2:8080"),
                    idle: Some(DEFAULT_TCP_IDLE),
                },
            ),
            // A workload without a sidecar under auto-mTLS: plaintext to that very workload.
            (
                "10.1.0.3:8080",
                Destination::Workload {
                    service: 0,
                    port: 8080,
                    route: Route::Plain {
                        address: "10.1.0.3:8080".parse().unwrap(),
                    },
                    idle: Some(DEFAULT_TCP_IDLE),
                },
            ),
            ("10.1.0.2:9090", Destination::External),
            ("93.184.216.34:443", Destination::External),
            // mTLS required, but nobody said who the server is: deny when in doubt.
            (
                "10.1.0.4:8080",
                Destination::Unreachable(ResolveError::NoExpectedIdentity(
                    "10.1.0.4:8080".parse().unwrap(),
                )),
            ),
        ];
        for (dst, want) in cases {
            assert_eq!(destination(&v, dst.parse().unwrap()), want, "{dst}");
        }
    }
}
