//! Outbound: how the app reaches the mesh. An HTTP/1.1 forward proxy with `CONNECT`
//! ([`http_proxy`]) and static upstream listeners ([`upstream`]), both over [`connect`], which
//! originates mTLS with this proxy's SVID and refuses any server whose SPIFFE ID is not the
//! expected one before a byte of the request is sent, or TLS to a server outside the mesh as a
//! DestinationRule says ([`origination`]).

mod cluster;
pub mod http_proxy;
mod origination;
mod pool;
pub mod transparent;
pub mod upstream;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use rustls_pki_types::ServerName;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::either::Either;

use self::cluster::Clusters;
use self::origination::Originations;
use self::pool::Pool;
use crate::config::Timeouts;
use crate::creds::{CredsError, CredsReceiver, peer_id};
use crate::drain::Drain;
use crate::metrics::labels::{
    ConnLabels, Reporter, SecurityPolicy, ServiceLabels, WorkloadLabels, principal,
};
use crate::telemetry::{Link, LinkLog, Telemetry};
use crate::tls::{ALPN_HTTP1, failure_reason, session_names};
use crate::view::policy::Limits;
use crate::view::{Address, Route, Service, View};

/// A connection to an upstream: plaintext or mTLS.
pub type MeshStream = Either<TcpStream, TlsStream<TcpStream>>;

/// Why an upstream connection was not made. Each maps to the status the client sees.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// No certificate yet: mTLS cannot be originated.
    #[error("no workload certificate yet")]
    NoCredentials,
    /// The client config cannot be built.
    #[error("TLS configuration: {0}")]
    Creds(#[from] CredsError),
    /// The DestinationRule's origination files cannot be used.
    #[error("TLS origination settings: {0}")]
    Origination(String),
    /// An endpoint's DNS name does not resolve.
    #[error("cannot resolve {address}: {reason}")]
    Resolve {
        /// The endpoint.
        address: Address,
        /// Why.
        reason: String,
    },
    /// TCP connect failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// Upstream address.
        addr: SocketAddr,
        /// The I/O error.
        source: io::Error,
    },
    /// Name resolution, TCP connect or TLS handshake took too long.
    #[error("timed out connecting to {0}")]
    Timeout(Address),
    /// The TLS handshake failed, e.g. the server is not the expected identity.
    #[error("TLS handshake with {addr} failed: {reason}")]
    Handshake {
        /// Upstream address.
        addr: SocketAddr,
        /// Why, naming the rejected identity when that is the reason.
        reason: String,
    },
}

impl ConnectError {
    /// The HTTP status a forward-proxy client gets: 502 when the upstream answered wrongly
    /// (bad identity, failed handshake), 503 when it could not be reached or we are not ready.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Handshake { .. } => StatusCode::BAD_GATEWAY,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// Shared state of the outbound side.
#[derive(Debug)]
pub struct Outbound {
    /// The workload address connections are made from, so servers see the caller's own
    /// address as `source.ip` (as a pod IP), not the machine's.
    source: IpAddr,
    creds: CredsReceiver,
    view: watch::Receiver<Arc<View>>,
    timeouts: Timeouts,
    drain: Drain,
    pool: Arc<Pool>,
    originations: Originations,
    clusters: Clusters,
    telemetry: Telemetry,
}

impl Outbound {
    /// Outbound for the workload at `source`, with the given credentials and view; requests
    /// and connections are recorded in `telemetry`.
    pub fn new(
        source: IpAddr,
        creds: CredsReceiver,
        view: watch::Receiver<Arc<View>>,
        timeouts: Timeouts,
        drain: Drain,
        telemetry: Telemetry,
    ) -> Arc<Self> {
        Arc::new(Self {
            source,
            creds,
            view,
            timeouts,
            drain,
            pool: Arc::default(),
            originations: Originations::default(),
            clusters: Clusters::default(),
            telemetry,
        })
    }

    /// What is fixed for one upstream connection toward `route` (for `service`, when it is one
    /// of the view's): this workload as the source, the endpoint and the server's verified
    /// identity as the destination, and log details. `http` names Istio's default route.
    fn link(
        &self,
        service: Option<(&Service, u16)>,
        route: &Route,
        stream: &MeshStream,
        http: bool,
    ) -> Arc<Link> {
        let view = Arc::clone(&self.view.borrow());
        let t = &view.telemetry;
        let (tcp, session) = match stream {
            Either::Right(tls) => {
                let (tcp, session) = tls.get_ref();
                (tcp, Some(session))
            }
            Either::Left(tcp) => (tcp, None),
        };
        // Only mesh mTLS presents this workload's SVID and verifies a SPIFFE ID.
        let (server, own) = match (route, session) {
            (Route::Mtls { .. }, Some(session)) => (
                peer_id(session.peer_certificates()),
                self.creds.borrow().as_ref().map(|c| c.id().clone()),
            ),
            _ => (None, None),
        };
        let (version, cipher) = session.map_or((None, None), |s| session_names(s));
        let remote = tcp.peer_addr().ok();
        let labels = ConnLabels::new(
            Reporter::Source,
            Arc::clone(&t.workload),
            principal(own.as_ref()),
            remote.map_or_else(WorkloadLabels::unknown, |a| {
                t.peers.endpoint(a.ip(), server.as_ref())
            }),
            principal(server.as_ref()),
            SecurityPolicy::Unknown,
        );
        let sni = match route {
            Route::Originate { tls, .. } => Some(tls.server_name.clone()),
            Route::Mtls { .. } | Route::Plain { .. } => None,
        };
        let log = LinkLog {
            upstream_host: remote,
            upstream_local: tcp.local_addr().ok(),
            upstream_cluster: service.map(|(s, port)| format!("outbound|{port}||{}", s.host)),
            route_name: http.then_some("default"),
            sni,
            tls_version: version,
            tls_cipher: cipher,
            peer_principal: server.as_ref().map(|id| principal(Some(id))),
        };
        Link::new(
            Arc::new(labels),
            service.map_or_else(ServiceLabels::unknown, |(s, _)| s.labels()),
            log,
        )
    }

    /// The run-time state of every destination's traffic policy (admin `/clusters`).
    pub fn clusters_report(&self) -> serde_json::Value {
        self.clusters.report()
    }

    /// Resolves once the trust in force revokes the mesh server of `stream` (then the
    /// connection must close); never for plaintext or TLS to a server outside the mesh.
    fn until_server_revoked(
        &self,
        route: &Route,
        stream: &MeshStream,
    ) -> impl Future<Output = ()> + use<> {
        let chain = match (route, stream) {
            (Route::Mtls { .. }, Either::Right(tls)) => tls.get_ref().1.peer_certificates(),
            _ => None,
        };
        crate::revocation::until_revoked(self.creds.clone(), chain)
    }

    /// Carries bytes both ways between `client` and the upstream `server` reached along
    /// `route`, until either side ends, no byte moves for `idle`, or the server is revoked.
    async fn carry_to<C>(
        &self,
        client: &mut C,
        server: &mut MeshStream,
        route: &Route,
        idle: Option<Duration>,
    ) where
        C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let revoked = self.until_server_revoked(route, server);
        tokio::select! {
            result = crate::io::splice_idle(client, server, idle) => {
                if let Err(err) = result {
                    tracing::debug!(%err, "outbound stream ended");
                }
            }
            () = revoked => tracing::info!(
                upstream = %route.address(),
                "connection closed: the server's certificate or identity was revoked"
            ),
        }
    }

    /// The link of a request that never reached an upstream.
    fn unreached(&self, service: Option<&Service>) -> Arc<Link> {
        let workload = Arc::clone(&self.view.borrow().telemetry.workload);
        let labels = ConnLabels::new(
            Reporter::Source,
            workload,
            principal(None),
            WorkloadLabels::unknown(),
            principal(None),
            SecurityPolicy::Unknown,
        );
        Link::new(
            Arc::new(labels),
            service.map_or_else(ServiceLabels::unknown, Service::labels),
            LinkLog::default(),
        )
    }

    /// Connects along `route`, offering `alpn` when it is mesh mTLS (and its plain form,
    /// `http/1.1` or none, when originating TLS to a server outside the mesh).
    pub async fn connect(&self, route: &Route, alpn: &[u8]) -> Result<MeshStream, ConnectError> {
        self.connect_with(route, alpn, &Limits::default()).await
    }

    /// [`Outbound::connect`] with a DestinationRule's `connectTimeout` and `tcpKeepalive`.
    pub(crate) async fn connect_with(
        &self,
        route: &Route,
        alpn: &[u8],
        limits: &Limits,
    ) -> Result<MeshStream, ConnectError> {
        let metrics = self.telemetry.metrics();
        let address = route.address();
        let (config, name) = match route {
            Route::Plain { .. } => (None, None),
            Route::Mtls { expected, .. } => {
                // Credentials first: without them nothing is sent at all.
                let Some(creds) = self.creds.borrow().clone() else {
                    metrics.record_tls_failure(true, "no_certificate");
                    return Err(ConnectError::NoCredentials);
                };
                (Some(creds.client_config(expected, alpn)?), None)
            }
            Route::Originate { tls, .. } => {
                let app_alpn: Option<&'static [u8]> = (alpn == ALPN_HTTP1).then_some(b"http/1.1");
                let config = self
                    .originations
                    .config(tls, app_alpn)
                    .await
                    .map_err(ConnectError::Origination)?;
                let name = ServerName::try_from(tls.server_name.clone())
                    .map_err(|e| ConnectError::Origination(e.to_string()))?;
                (Some(config), Some(name))
            }
        };
        let timeout = || ConnectError::Timeout(address.clone());
        let connect_timeout = limits.connect_timeout.unwrap_or(self.timeouts.connect);
        let addr = tokio::time::timeout(connect_timeout, self.lookup(address))
            .await
            .map_err(|_| timeout())??;
        let tcp = tokio::time::timeout(connect_timeout, self.dial(addr))
            .await
            .map_err(|_| timeout())?
            .map_err(|source| ConnectError::Connect { addr, source })?;
        let _ = tcp.set_nodelay(true);
        if let Some((time, interval, probes)) = limits.keepalive {
            set_keepalive(&tcp, time, interval, probes);
        }
        let Some(config) = config else {
            return Ok(Either::Left(tcp));
        };
        // Between sidecars the server name is the IP: no SNI is sent, and the SPIFFE verifier
        // checks the identity instead of a name.
        let name = name.unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
        let handshake = TlsConnector::from(config).connect(name, tcp);
        let tls = match tokio::time::timeout(self.timeouts.handshake, handshake).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(err)) => {
                metrics.record_tls_failure(true, failure_reason(&err));
                return Err(ConnectError::Handshake {
                    addr,
                    reason: handshake_reason(&err),
                });
            }
            Err(_) => {
                metrics.record_tls_failure(true, "timeout");
                return Err(timeout());
            }
        };
        Ok(Either::Right(tls))
    }

    /// The socket address of an endpoint: its own, or the first its DNS name resolves to (of
    /// the workload address's family when there is one).
    async fn lookup(&self, address: &Address) -> Result<SocketAddr, ConnectError> {
        let (host, port) = match address {
            Address::Ip(addr) => return Ok(*addr),
            Address::Dns(host, port) => (host.as_str(), *port),
        };
        let failed = |reason: String| ConnectError::Resolve {
            address: address.clone(),
            reason,
        };
        let found: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| failed(e.to_string()))?
            .collect();
        found
            .iter()
            .find(|a| a.is_ipv4() == self.source.is_ipv4())
            .or_else(|| found.first())
            .copied()
            .ok_or_else(|| failed("no addresses".to_owned()))
    }
}

impl Outbound {
    /// A TCP connection to `addr` from the workload address when it can route there (same
    /// family, both loopback or both not), from any address otherwise.
    async fn dial(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        let source = self.source;
        let routable = source.is_ipv4() == addr.is_ipv4()
            && source.is_loopback() == addr.ip().is_loopback()
            && !source.is_unspecified();
        if !routable {
            return TcpStream::connect(addr).await;
        }
        let socket = if source.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.bind(SocketAddr::new(source, 0))?;
        socket.connect(addr).await
    }
}

/// SO_KEEPALIVE with a DestinationRule's `tcpKeepalive` (the system's values where unset).
fn set_keepalive(
    tcp: &TcpStream,
    time: Option<Duration>,
    interval: Option<Duration>,
    probes: Option<u32>,
) {
    let mut keepalive = socket2::TcpKeepalive::new();
    if let Some(time) = time {
        keepalive = keepalive.with_time(time);
    }
    if let Some(interval) = interval {
        keepalive = keepalive.with_interval(interval);
    }
    if let Some(probes) = probes {
        keepalive = keepalive.with_retries(probes);
    }
    if let Err(err) = socket2::SockRef::from(tcp).set_tcp_keepalive(&keepalive) {
        tracing::debug!(%err, "cannot set TCP keepalive");
    }
}

/// The most precise reason of a failed handshake: the SPIFFE verifier's own message (e.g.
/// "`spiffe://…/sa/x` is not among the allowed identities") when it refused the server.
fn handshake_reason(err: &io::Error) -> String {
    let tls = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls {
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))) => {
            format!("server certificate refused: {}", other.0)
        }
        Some(tls) => tls.to_string(),
        None => err.to_string(),
    }
}
