//! The explicit outbound proxy on port 15001: HTTP/1.1 absolute-form requests
//! (`GET http://host:port/path`) and `CONNECT host:port`, so `HTTP_PROXY=` works.
//!
//! Names resolve against the view only (see [`View::resolve`](crate::view::View::resolve)); a
//! host that is not a mesh service gets 502 and nothing is sent anywhere: the proxy never
//! passes traffic to an address it cannot vouch for.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Body as _, Incoming};
use hyper::client::conn::http1 as client1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

use super::MeshStream;
use super::cluster::{Cluster, Outcome, fast_unit};
use super::pool::{Conn, PoolKey, PooledBody, UpBody};
use super::{ConnectError, Outbound};
use crate::access_log::Direction;
use crate::io::accept_until;
use crate::metrics::istio::NO_FLAGS;
use crate::telemetry::{Exchange, Metered, Started, TcpRecord};
use crate::tls::{ALPN_HTTP1, ALPN_TCP};
use crate::view::policy::{Balance, HashOn};
use crate::view::routes::{
    HttpRoute, LocalReply, RequestFacts, Retries, Weighted, draw, query_param, select_http,
};
use crate::view::{Address, Policy, ResolveError, Route, Service, View};
use crate::web::{Body, full, http1_server, reply, serve_until};

/// Hop-by-hop headers meant for this proxy, never forwarded (the upstream connection has its
/// own lifecycle: it is reused when the protocol allows).
const HOP_HEADERS: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
];
/// The largest request body kept for retries (Envoy's default buffer limit is 1 MiB; a mesh
/// request that retries is small, and every kept byte is memory per request in flight).
const RETRY_BODY_LIMIT: u64 = 64 * 1024;
/// Istio's retry policy, for requests to a service without a VirtualService.
static DEFAULT_RETRIES: LazyLock<Retries> = LazyLock::new(Retries::istio_default);
/// Envoy's default retry back-off base interval.
const RETRY_BACKOFF_BASE: Duration = Duration::from_millis(25);
/// How long a kept request body may take to arrive.
const BODY_READ: Duration = Duration::from_secs(10);
/// How long an idle pooled connection may take to be ready for the next request.
const POOL_READY: Duration = Duration::from_secs(1);
/// How often a request queued for a connection looks for a free one.
const PENDING_POLL: Duration = Duration::from_millis(5);
/// Where a request goes: a service of the view (by index), its port and a subset.
type Target = (usize, u16, Option<String>);
/// Envoy's details for a response the upstream never started.
const CONNECT_FAILED: &str = "upstream_reset_before_response_started{connection_failure}";
const CONNECTION_ENDED: &str = "upstream_reset_before_response_started{connection_termination}";

/// Why a request was answered by the proxy itself: status, text, Envoy's flags and details.
struct Refused {
    status: StatusCode,
    reason: String,
    flags: &'static str,
    details: &'static str,
}

impl Refused {
    fn bad_request(reason: &str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            reason: reason.to_owned(),
            flags: NO_FLAGS,
            details: "invalid_request",
        }
    }

    fn resolve(err: &ResolveError) -> Self {
        let (flags, details) = match err {
            ResolveError::UnknownService(_) | ResolveError::UnknownPort { .. } => {
                ("NR", "route_not_found")
            }
            ResolveError::NoEndpoints => ("UH", "no_healthy_upstream"),
            _ => ("UF", CONNECT_FAILED),
        };
        Self {
            status: StatusCode::BAD_GATEWAY,
            reason: err.to_string(),
            flags,
            details,
        }
    }

    fn connect(err: &ConnectError) -> Self {
        Self {
            status: err.status(),
            reason: err.to_string(),
            flags: "UF",
            details: CONNECT_FAILED,
        }
    }

    /// No route: Envoy's 404 with response flag `NR`.
    fn no_route(reason: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            reason: reason.to_owned(),
            flags: "NR",
            details: "route_not_found",
        }
    }

    /// The route's timeout fired: Envoy's 504 with response flag `UT`.
    fn timeout() -> Self {
        Self {
            status: StatusCode::GATEWAY_TIMEOUT,
            reason: "upstream request timeout".to_owned(),
            flags: "UT",
            details: "upstream_response_timeout",
        }
    }

    /// A connectionPool limit is reached: Envoy's 503 with response flag `UO`.
    fn overflow(what: &str) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            reason: format!(
                "upstream connect error or disconnect/reset before headers. reset reason: overflow ({what})"
            ),
            flags: "UO",
            details: "upstream_reset_before_response_started{overflow}",
        }
    }

    fn upstream(reason: String) -> Self {
        Self {
            status: StatusCode::BAD_GATEWAY,
            reason,
            flags: "UC",
            details: CONNECTION_ENDED,
        }
    }
}

/// Why a try got no answer, and whether another try may help.
struct Failed {
    refused: Refused,
    /// Another try may help (a reset, a failed connection, a per-try timeout).
    retriable: bool,
    /// The connection was made (`connect-failure` retries only those that were not).
    connected: bool,
    timed_out: bool,
}

impl Failed {
    /// A limit or a local decision: trying again changes nothing.
    fn final_(refused: Refused) -> Self {
        Self {
            refused,
            retriable: false,
            connected: false,
            timed_out: false,
        }
    }

    fn connect(refused: Refused) -> Self {
        Self {
            refused,
            retriable: true,
            connected: false,
            timed_out: false,
        }
    }

    fn reset(refused: Refused) -> Self {
        Self {
            refused,
            retriable: true,
            connected: true,
            timed_out: false,
        }
    }

    fn timeout() -> Self {
        Self {
            refused: Refused::timeout(),
            retriable: true,
            connected: true,
            timed_out: true,
        }
    }
}

/// Whether a fault applies to this request, `percent` out of 100.
fn roll(percent: f64) -> bool {
    fast_unit() * 100.0 < percent
}

/// A resolved destination: the view it came from, the service, the chosen endpoint, and the
/// state of its cluster with the port's traffic policy.
struct Resolved {
    view: Arc<View>,
    service: usize,
    port: u16,
    route: Route,
    cluster: Arc<Cluster>,
    policy: Arc<Policy>,
    endpoints: usize,
}

impl Resolved {
    fn service(&self) -> Option<&Service> {
        self.view.services.get(self.service)
    }

    /// The service with the port asked for (Istio's cluster names carry the service port).
    fn service_port(&self) -> Option<(&Service, u16)> {
        self.service().map(|s| (s, self.port))
    }
}

impl Outbound {
    /// Accepts on `listener` until the drain.
    pub async fn serve_http_proxy(self: Arc<Self>, listener: TcpListener) {
        let me = Arc::clone(&self);
        accept_until(
            listener,
            self.drain.token().clone(),
            "outbound",
            move |tcp, peer| {
                let me2 = Arc::clone(&me);
                me.drain.spawn(me2.serve_conn(tcp, peer));
            },
        )
        .await;
    }

    /// Serves one connection as the forward proxy.
    pub(super) async fn serve_conn(self: Arc<Self>, tcp: TcpStream, peer: SocketAddr) {
        let me = Arc::clone(&self);
        let local = tcp.local_addr().ok();
        let svc = service_fn(move |req| Arc::clone(&me).handle(req, local, peer));
        let conn = http1_server()
            .serve_connection(TokioIo::new(tcp), svc)
            .with_upgrades();
        serve_until(
            conn,
            self.drain.signaled(),
            |c| c.graceful_shutdown(),
            "outbound",
        )
        .await;
    }

    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        local: Option<SocketAddr>,
        peer: SocketAddr,
    ) -> Result<Response<Body>, Infallible> {
        let ex = Exchange::begin(
            &self.telemetry,
            Direction::Outbound,
            &req,
            local,
            Some(peer),
        );
        Ok(if req.method() == Method::CONNECT {
            self.tunnel(req, ex, local, peer).await
        } else {
            self.forward(req, ex, peer).await
        })
    }

    /// The proxy's own answer, recorded with its flags.
    fn refuse(
        &self,
        mut ex: Exchange,
        service: Option<&Service>,
        refused: Refused,
    ) -> Response<Body> {
        tracing::info!(status = %refused.status, reason = %refused.reason, "outbound request refused");
        if !ex.has_link() {
            ex.set_link(self.unreached(service));
        }
        ex.local(refused.flags, refused.details);
        if refused.flags == "UF" {
            ex.transport_failure(refused.reason.clone());
        }
        ex.respond(reply(refused.status, refused.reason))
    }

    /// The service `authority` names, with the port asked for.
    fn service_of(
        &self,
        authority: &Authority,
        default_port: u16,
    ) -> Result<(Arc<View>, usize, u16), Refused> {
        let port = authority.port_u16().unwrap_or(default_port);
        let view = Arc::clone(&self.view.borrow());
        let (index, _) = view
            .resolve_service(authority.host(), port)
            .map_err(|e| Refused::resolve(&e))?;
        Ok((view, index, port))
    }

    /// The destination a VirtualService route draws (by weight) for a request to `port`: a
    /// service of the view, its port (the one asked for, else the service's only one) and
    /// subset.
    fn routed<'d>(
        view: &View,
        destinations: &'d [Weighted],
        port: u16,
    ) -> Result<(Target, &'d Weighted), Refused> {
        let d = draw(destinations, fast_unit())
            .ok_or_else(|| Refused::no_route("the route has no destination"))?;
        Ok((Self::target(view, d, port)?, d))
    }

    /// The service, port and subset of the destination `d` for a request to `port`.
    fn target(
        view: &View,
        d: &Weighted,
        port: u16,
    ) -> Result<(usize, u16, Option<String>), Refused> {
        let index = view
            .services
            .iter()
            .position(|s| s.host == d.host)
            .ok_or_else(|| {
                Refused::no_route(&format!("route destination {} is not a service", d.host))
            })?;
        let ports = &view.services[index].ports;
        let port = match d.port {
            Some(p) => p,
            None if ports.iter().any(|p| p.port == port) => port,
            None if ports.len() == 1 => ports[0].port,
            None => port,
        };
        Ok((index, port, d.subset.clone()))
    }

    /// Picks an endpoint of `service:port` (of `subset`) by the load balancer among those not
    /// ejected, other than `tried` ones while there are others; `headers`, `query` and `peer`
    /// give a consistent hash its key.
    #[allow(clippy::too_many_arguments)] // Each is one input of the pick.
    fn destination(
        &self,
        view: Arc<View>,
        (index, port, subset): (usize, u16, Option<String>),
        headers: &HeaderMap,
        query: Option<&str>,
        peer: SocketAddr,
        tried: &[Address],
    ) -> Result<Resolved, Refused> {
        let service = &view.services[index];
        let whole = service
            .ports
            .iter()
            .find(|p| p.port == port)
            .ok_or_else(|| {
                Refused::resolve(&ResolveError::UnknownPort {
                    host: service.host.clone(),
                    port,
                })
            })?;
        let service_port = match &subset {
            None => whole,
            Some(name) => whole.subsets.get(name).ok_or_else(|| Refused {
                status: StatusCode::SERVICE_UNAVAILABLE,
                reason: format!(
                    "no subset {name} of {}:{port} (no DestinationRule defines it)",
                    service.host
                ),
                flags: "UH",
                details: "no_healthy_upstream",
            })?,
        };
        let cluster = self.clusters.get(&format!(
            "outbound|{port}|{}|{}",
            subset.as_deref().unwrap_or_default(),
            service.host
        ));
        let ip = peer.ip().to_string();
        let key = match &service_port.policy.balance {
            Balance::Hash(HashOn::Header(header)) => {
                headers.get(header.as_str()).map(HeaderValue::as_bytes)
            }
            Balance::Hash(HashOn::QueryParameter(name)) => {
                query_param(query, name).map(str::as_bytes)
            }
            Balance::Hash(HashOn::SourceIp) => Some(ip.as_bytes()),
            _ => None,
        };
        let chosen = cluster
            .pick(service_port, key, tried)
            .map_err(|e| Refused::resolve(&e))?;
        let route = service_port
            .route_to(chosen)
            .map_err(|e| Refused::resolve(&e))?;
        let policy = Arc::clone(&service_port.policy);
        let endpoints = service_port.endpoints.len();
        Ok(Resolved {
            view: Arc::clone(&view),
            service: index,
            port,
            route,
            cluster,
            policy,
            endpoints,
        })
    }

    /// The destination of a TCP stream to `authority` (a CONNECT tunnel or a captured
    /// connection): the first VirtualService TCP route its port selects, else the service
    /// itself.
    fn tcp_destination(
        &self,
        authority: &Authority,
        headers: &HeaderMap,
        peer: SocketAddr,
    ) -> Result<Resolved, Refused> {
        let (view, index, port) = self.service_of(authority, 0)?;
        let routes = &view.services[index].tcp_routes;
        let target = if routes.is_empty() {
            (index, port, None)
        } else {
            let route = routes
                .iter()
                .find(|r| r.ports.is_empty() || r.ports.contains(&port))
                .ok_or_else(|| Refused::no_route("no TCP route of the VirtualService matches"))?;
            Self::routed(&view, &route.destinations, port)?.0
        };
        self.destination(Arc::clone(&view), target, headers, None, peer, &[])
    }

    /// Records how an exchange with the chosen endpoint ended (outlier detection).
    fn outcome(&self, resolved: &Resolved, outcome: Outcome) {
        resolved.cluster.record(
            resolved.route.address(),
            outcome,
            resolved.policy.outlier.as_ref(),
            resolved.endpoints,
            self.telemetry.metrics(),
        );
    }

    /// The refusal of a request over a connectionPool limit, counted.
    fn overflow(&self, resolved: &Resolved, what: &str) -> Refused {
        self.telemetry
            .metrics()
            .record_upstream_event(resolved.cluster.name(), "overflow");
        Refused::overflow(what)
    }

    /// Connects to the chosen endpoint with the port's connect timeout and keepalive.
    async fn connect_resolved(
        &self,
        resolved: &Resolved,
        alpn: &[u8],
    ) -> Result<MeshStream, ConnectError> {
        let connected = self
            .connect_with(&resolved.route, alpn, &resolved.policy.limits)
            .await;
        match &connected {
            Ok(_) => {}
            Err(_) => self.outcome(resolved, Outcome::Failure),
        }
        connected
    }

    async fn tunnel(
        self: &Arc<Self>,
        mut req: Request<Incoming>,
        ex: Exchange,
        local: Option<SocketAddr>,
        peer: SocketAddr,
    ) -> Response<Body> {
        let authority = match req.uri().authority().cloned() {
            Some(a) if a.port_u16().is_some() => a,
            _ => return self.refuse(ex, None, Refused::bad_request("CONNECT needs host:port")),
        };
        let resolved = match self.tcp_destination(&authority, req.headers(), peer) {
            Ok(r) => r,
            Err(refused) => return self.refuse(ex, None, refused),
        };
        // The tunnel holds its connection slot for as long as it is open.
        let Some(slot) = resolved.cluster.connection(&resolved.policy.limits) else {
            let refused = self.overflow(&resolved, "maxConnections");
            return self.refuse(ex, resolved.service(), refused);
        };
        let mut server = match self.connect_resolved(&resolved, ALPN_TCP).await {
            Ok(s) => s,
            Err(e) => return self.refuse(ex, resolved.service(), Refused::connect(&e)),
        };
        self.outcome(&resolved, Outcome::Status(200));
        let link = self.link(resolved.service_port(), &resolved.route, &server, false);
        // Recorded as a TCP connection from here on.
        ex.skip();
        let upgrade = hyper::upgrade::on(&mut req);
        let me = Arc::clone(self);
        self.drain.spawn(async move {
            match upgrade.await {
                Ok(upgraded) => {
                    let record = TcpRecord::open(
                        &me.telemetry,
                        link,
                        Direction::Outbound,
                        Started::now(),
                        local,
                        Some(peer),
                    );
                    let mut client = Metered::new(TokioIo::new(upgraded), record);
                    let idle = resolved.policy.limits.tcp_idle();
                    me.carry_to(&mut client, &mut server, &resolved.route, idle)
                        .await;
                    drop(slot);
                }
                Err(err) => tracing::debug!(%err, "CONNECT upgrade failed"),
            }
        });
        Response::new(full(""))
    }

    /// A connection captured on its way to a Service's virtual address `dst` (transparent
    /// mode), carried exactly as a CONNECT to that address would be: the port's load balancer,
    /// connection limit, outlier detection, TLS mode and expected identity. Returns why it was
    /// refused, if it was.
    pub(super) async fn tunnel_captured(
        &self,
        client: TcpStream,
        peer: SocketAddr,
        dst: SocketAddr,
    ) -> Result<(), String> {
        let authority = Authority::try_from(dst.to_string()).map_err(|e| e.to_string())?;
        let resolved = self
            .tcp_destination(&authority, &HeaderMap::new(), peer)
            .map_err(|refused| refused.reason)?;
        let Some(_slot) = resolved.cluster.connection(&resolved.policy.limits) else {
            return Err(self.overflow(&resolved, "maxConnections").reason);
        };
        let mut server = self
            .connect_resolved(&resolved, ALPN_TCP)
            .await
            .map_err(|e| e.to_string())?;
        self.outcome(&resolved, Outcome::Status(200));
        let link = self.link(resolved.service_port(), &resolved.route, &server, false);
        let record = TcpRecord::open(
            &self.telemetry,
            link,
            Direction::Outbound,
            Started::now(),
            Some(dst),
            Some(peer),
        );
        let mut client = Metered::new(client, record);
        let idle = resolved.policy.limits.tcp_idle();
        self.carry_to(&mut client, &mut server, &resolved.route, idle)
            .await;
        Ok(())
    }

    async fn forward(
        &self,
        req: Request<Incoming>,
        mut ex: Exchange,
        peer: SocketAddr,
    ) -> Response<Body> {
        let (mut parts, body) = req.into_parts();
        let authority = match (parts.uri.scheme(), parts.uri.authority()) {
            (Some(s), Some(a)) if *s == Scheme::HTTP => a.clone(),
            (Some(_), Some(_)) => {
                return self.refuse(
                    ex,
                    None,
                    Refused::bad_request("only http:// URLs are forwarded; use CONNECT for TLS"),
                );
            }
            _ => {
                return self.refuse(
                    ex,
                    None,
                    Refused::bad_request(
                        "this is a forward proxy: send an absolute URL (http://host:port/path) or CONNECT",
                    ),
                );
            }
        };
        let (view, index, port) = match self.service_of(&authority, 80) {
            Ok(found) => found,
            Err(refused) => return self.refuse(ex, None, refused),
        };
        // A VirtualService: the first route the request selects, or 404 NR.
        let routes = &view.services[index].http_routes;
        let (route, rewritten) = if routes.is_empty() {
            (None, None)
        } else {
            let facts = RequestFacts {
                path: parts.uri.path(),
                query: parts.uri.query(),
                scheme: "http",
                authority: client_host(&parts, &authority),
                headers: &parts.headers,
                method: &parts.method,
                port,
            };
            match select_http(routes, &facts) {
                Some(route) => (Some(route), route.rewrite_path(&facts)),
                None => {
                    let refused = Refused::no_route("no route of the VirtualService matches");
                    return self.refuse(ex, view.services.get(index), refused);
                }
            }
        };
        if let Some(route) = &route {
            // Fault injection: an abort answers here, a delay holds the request first.
            if let Some((status, percent)) = route.abort
                && roll(percent)
            {
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                ex.local("FI", "fault_filter_abort");
                ex.set_link(self.unreached(view.services.get(index)));
                return ex.respond(reply(status, "fault filter abort".to_owned()));
            }
            if let Some((delay, percent)) = route.delay
                && roll(percent)
            {
                tokio::time::sleep(delay).await;
            }
            if let Some(local) = &route.local {
                let host = client_host(&parts, &authority);
                let mut resp = local_response(local, host, parts.uri.path(), parts.uri.query());
                route.response_headers.apply(resp.headers_mut());
                ex.local(NO_FLAGS, "direct_response");
                ex.set_link(self.unreached(view.services.get(index)));
                return ex.respond(resp);
            }
        }
        // The destination drawn by weight (its header changes apply with the route's).
        let (target, drawn) = match &route {
            Some(route) => match Self::routed(&view, &route.destinations, port) {
                Ok((target, d)) => (target, Some(d)),
                Err(refused) => return self.refuse(ex, view.services.get(index), refused),
            },
            None => ((index, port, None), None),
        };

        // Origin form upstream; Host keeps the name the client used.
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        parts.uri = Uri::from(path);
        // Logged as the client sent it, before any rewrite (Envoy's X-ENVOY-ORIGINAL-PATH).
        ex.set_path(&parts.uri);
        for name in HOP_HEADERS {
            parts.headers.remove(name);
        }
        if !parts.headers.contains_key(header::HOST)
            && let Ok(host) = HeaderValue::from_str(authority.as_str())
        {
            parts.headers.insert(header::HOST, host);
        }
        if let Some(route) = &route
            && let Err(refused) = apply_route(&mut parts, route, drawn, rewritten)
        {
            return self.refuse(ex, view.services.get(index), refused);
        }
        // The route's retries; without a VirtualService, Istio's default policy.
        let retries = match &route {
            Some(route) => route.retries.as_ref(),
            None => Some(&*DEFAULT_RETRIES),
        };
        let kept = match body_for_tries(body, retries.is_some()).await {
            Ok(Ok(bytes)) => {
                ex.received_body(bytes.len() as u64);
                Ok(bytes)
            }
            Ok(Err(streamed)) => Err(streamed),
            Err(reason) => {
                let refused = Refused::bad_request(&reason);
                return self.refuse(ex, view.services.get(index), refused);
            }
        };
        // Tries are built from the head; what the server side attached is not sent on.
        parts.extensions.clear();
        let (first, kept) = match kept {
            Ok(bytes) => {
                let body = UpBody::Right(Full::new(bytes.clone()));
                (Request::from_parts(parts.clone(), body), Some(bytes))
            }
            Err(body) => {
                let first = ex.count_request(Request::from_parts(parts.clone(), body));
                (first.map(UpBody::Left), None)
            }
        };
        let retries = retries.filter(|_| kept.is_some());
        let timeout = route.as_ref().and_then(|r| r.timeout);
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut request = Some(first);
        let mut tries = 0;
        let mut retry_slot = None;
        // Endpoints already tried: a retry goes elsewhere when it can (Envoy's
        // `previous_hosts` predicate, which Istio sets on every retry policy).
        let mut tried = Vec::new();
        loop {
            let req = match request.take() {
                Some(req) => req,
                None => {
                    let body = Full::new(kept.clone().unwrap_or_default());
                    Request::from_parts(parts.clone(), UpBody::Right(body))
                }
            };
            tries += 1;
            let resolved = match self.destination(
                Arc::clone(&view),
                target.clone(),
                req.headers(),
                req.uri().query(),
                peer,
                &tried,
            ) {
                Ok(r) => r,
                Err(refused) => return self.refuse(ex, view.services.get(index), refused),
            };
            let per_try = retries.and_then(|r| r.per_try_timeout);
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let limit = match (per_try, left) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let attempt = self.attempt(&resolved, req, &mut ex);
            let outcome = match limit {
                Some(limit) => match tokio::time::timeout(limit, attempt).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(Failed::timeout()),
                },
                None => attempt.await,
            };
            let more = retries.is_some_and(|r| tries <= r.attempts)
                && deadline.is_none_or(|d| Instant::now() < d);
            let wanted = match &outcome {
                Ok(resp) => retries.is_some_and(|r| r.on.status(resp.status().as_u16())),
                Err(failed) => {
                    failed.retriable && retries.is_some_and(|r| r.on.failure(failed.connected))
                }
            };
            if more && wanted {
                // `maxRetries`: retries in flight to the destination; beyond, no retry.
                let metrics = self.telemetry.metrics();
                if let Some(slot) = resolved.cluster.retry(&resolved.policy.limits) {
                    retry_slot = Some(slot);
                    tried.push(resolved.route.address().clone());
                    tracing::debug!(tries, "retrying");
                    metrics.record_upstream_event(resolved.cluster.name(), "retry");
                    tokio::time::sleep(retry_backoff(tries)).await;
                    continue;
                }
                metrics.record_upstream_event(resolved.cluster.name(), "retry_overflow");
            }
            drop(retry_slot.take());
            match outcome {
                Ok(mut resp) => {
                    ex.upstream_responded();
                    if let Some(d) = drawn {
                        d.response_headers.apply(resp.headers_mut());
                    }
                    if let Some(route) = &route {
                        route.response_headers.apply(resp.headers_mut());
                    }
                    return ex.respond(resp);
                }
                Err(failed) => {
                    let refused =
                        if failed.timed_out && deadline.is_some_and(|d| Instant::now() >= d) {
                            Refused::timeout()
                        } else {
                            failed.refused
                        };
                    return self.refuse(ex, resolved.service(), refused);
                }
            }
        }
    }

    /// One try of a request on `resolved`: an idle pooled connection first (a request it could
    /// not even send moves on to the next), else a new one within `maxConnections`, else a wait
    /// in the `http1MaxPendingRequests` queue for either, up to the connect timeout.
    async fn attempt(
        &self,
        resolved: &Resolved,
        mut req: Request<UpBody>,
        ex: &mut Exchange,
    ) -> Result<Response<PooledBody>, Failed> {
        let service = resolved.service();
        let service_labels = service.map(Service::labels);
        let route = resolved.route.clone();
        let limits = &resolved.policy.limits;
        // `http2MaxRequests`: requests in flight to the whole destination.
        let Some(_request) = resolved.cluster.request(limits) else {
            return Err(Failed::final_(self.overflow(resolved, "http2MaxRequests")));
        };
        let _active = resolved.cluster.start(route.address());
        let deadline = Instant::now() + limits.connect_timeout.unwrap_or(self.timeouts.connect);
        let key: PoolKey = (Arc::from(resolved.cluster.name()), route.clone());
        let mut queued = None;
        let slot = loop {
            while let Some(mut conn) = self.pool.take(&key, limits.idle_timeout) {
                if !matches!(
                    tokio::time::timeout(POOL_READY, conn.sender.ready()).await,
                    Ok(Ok(()))
                ) {
                    continue;
                }
                let link = match &service_labels {
                    Some(labels) => conn.link.for_service(Arc::clone(labels)),
                    None => Arc::clone(&conn.link),
                };
                ex.set_link(link);
                match conn.sender.try_send_request(req).await {
                    Ok(resp) => {
                        self.outcome(resolved, Outcome::Status(resp.status().as_u16()));
                        return Ok(self.pooled(resp, key, conn));
                    }
                    Err(mut err) => match err.take_message() {
                        Some(unsent) => req = unsent,
                        None => {
                            self.outcome(resolved, Outcome::Failure);
                            let reason = format!("upstream request failed: {}", err.into_error());
                            return Err(Failed::reset(Refused::upstream(reason)));
                        }
                    },
                }
            }
            if let Some(slot) = resolved.cluster.connection(limits) {
                break slot;
            }
            if queued.is_none() {
                queued = resolved.cluster.pending(limits);
                if queued.is_none() {
                    return Err(Failed::final_(
                        self.overflow(resolved, "http1MaxPendingRequests"),
                    ));
                }
            }
            if Instant::now() >= deadline {
                let refused = self.overflow(resolved, "no connection within the connect timeout");
                return Err(Failed::final_(refused));
            }
            tokio::time::sleep(PENDING_POLL).await;
        };
        drop(queued);

        let server = self
            .connect_resolved(resolved, ALPN_HTTP1)
            .await
            .map_err(|e| Failed::connect(Refused::connect(&e)))?;
        let link = self.link(resolved.service_port(), &route, &server, true);
        ex.set_link(Arc::clone(&link));
        // The connection (pooled between requests) closes when its server is revoked.
        let revoked = self.until_server_revoked(&route, &server);
        let (mut sender, conn) = client1::handshake(TokioIo::new(server))
            .await
            .map_err(|e| {
                Failed::reset(Refused::upstream(format!("upstream HTTP handshake: {e}")))
            })?;
        // The connection's slot is held for as long as the connection lives.
        tokio::spawn(async move {
            tokio::select! {
                result = conn => if let Err(err) = result {
                    tracing::debug!(%err, "upstream HTTP connection ended");
                },
                () = revoked => tracing::info!(
                    "pooled connection closed: the server's certificate or identity was revoked"
                ),
            }
            drop(slot);
        });
        match sender.send_request(req).await {
            Ok(resp) => {
                self.outcome(resolved, Outcome::Status(resp.status().as_u16()));
                let conn = Conn::new(sender, link, limits.max_requests_per_connection);
                Ok(self.pooled(resp, key, conn))
            }
            Err(e) => {
                self.outcome(resolved, Outcome::Failure);
                Err(Failed::reset(Refused::upstream(format!(
                    "upstream request failed: {e}"
                ))))
            }
        }
    }

    fn pooled(&self, resp: Response<Incoming>, key: PoolKey, conn: Conn) -> Response<PooledBody> {
        let pool = Arc::clone(&self.pool);
        resp.map(|body| PooledBody::new(body, pool, key, conn))
    }
}

/// The Host the client sent, else the authority of its URL.
fn client_host<'a>(parts: &'a http::request::Parts, authority: &'a Authority) -> &'a str {
    parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or(authority.as_str())
}

/// A route's `redirect` or `directResponse` for a request for `path`/`query` sent to `host`.
fn local_response(
    local: &LocalReply,
    host: &str,
    path: &str,
    query: Option<&str>,
) -> Response<Body> {
    match local {
        LocalReply::Direct { status, body } => {
            let mut resp = Response::new(full(body.clone()));
            *resp.status_mut() = StatusCode::from_u16(*status).unwrap_or(StatusCode::OK);
            if !body.is_empty() {
                let text = HeaderValue::from_static("text/plain");
                resp.headers_mut().insert(header::CONTENT_TYPE, text);
            }
            resp
        }
        LocalReply::Redirect { code, .. } => {
            let mut resp = Response::new(full(Bytes::new()));
            *resp.status_mut() =
                StatusCode::from_u16(*code).unwrap_or(StatusCode::MOVED_PERMANENTLY);
            let location = local.location("http", host, path, query);
            if let Some(location) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
                resp.headers_mut().insert(header::LOCATION, location);
            }
            resp
        }
    }
}

/// What a route changes in the request head: the rewritten path and Host, then the drawn
/// destination's header changes, then the route's (Envoy applies the less specific last).
fn apply_route(
    parts: &mut http::request::Parts,
    route: &HttpRoute,
    drawn: Option<&Weighted>,
    rewritten: Option<String>,
) -> Result<(), Refused> {
    if let Some(rewritten) = rewritten {
        parts.uri = Uri::try_from(rewritten)
            .map_err(|err| Refused::bad_request(&format!("rewritten path: {err}")))?;
    }
    if let Some(host) = &route.rewrite_authority {
        parts.headers.insert(header::HOST, host.clone());
    }
    if let Some(d) = drawn {
        d.request_headers.apply(&mut parts.headers);
    }
    route.request_headers.apply(&mut parts.headers);
    Ok(())
}

/// Envoy's default pause before retry `n` (1 for the first): uniformly random up to
/// (2ⁿ − 1) × 25 ms, at most 250 ms.
fn retry_backoff(n: u32) -> Duration {
    let ceiling = RETRY_BACKOFF_BASE
        .saturating_mul((1u32 << n.min(10)) - 1)
        .min(RETRY_BACKOFF_BASE * 10);
    ceiling.mul_f64(fast_unit())
}

/// The request body for the tries: when a retry may send it again and its announced length is
/// at most [`RETRY_BODY_LIMIT`], read whole (as Envoy buffers one); else the stream, tried once.
async fn body_for_tries(body: Incoming, retrying: bool) -> Result<Result<Bytes, Incoming>, String> {
    if !retrying {
        return Ok(Err(body));
    }
    if body.is_end_stream() {
        return Ok(Ok(Bytes::new()));
    }
    match body.size_hint().exact() {
        Some(n) if n <= RETRY_BODY_LIMIT => read_body(body).await.map(Ok),
        _ => Ok(Err(body)),
    }
}

/// Reads a request body of announced length (at most [`RETRY_BODY_LIMIT`]) whole, within
/// [`BODY_READ`].
async fn read_body(body: Incoming) -> Result<Bytes, String> {
    let limited = Limited::new(body, RETRY_BODY_LIMIT as usize);
    match tokio::time::timeout(BODY_READ, limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(err)) => Err(format!("request body: {err}")),
        Err(_) => Err(format!(
            "request body: not received within {} s",
            BODY_READ.as_secs()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_backoff_stays_within_envoys_bounds() {
        // Envoy: "randomly selected from the range [0, (2^N-1)*base_interval] ... max interval
        // is 10 times the base interval".
        for (n, most) in [(1, 25), (2, 75), (3, 175), (4, 250), (30, 250)] {
            for _ in 0..100 {
                assert!(retry_backoff(n) <= Duration::from_millis(most), "retry {n}");
            }
        }
    }
}
