//! Inbound: the workload's service ports on the workload address.
//!
//! Each connection's first bytes are sniffed ([`detect`]). A ClientHello with a mesh ALPN on a
//! STRICT or PERMISSIVE port is terminated as mTLS with a required client SVID; on a DISABLE
//! port it is forwarded as bytes. Anything else is closed on STRICT and forwarded on
//! PERMISSIVE and DISABLE. HTTP is forwarded through [`http`] (XFCC set or stripped), other
//! bytes are spliced raw, both to `app_address:port`. AuthorizationPolicies decide each
//! connection or request before anything is forwarded ([`authorize`]).
//!
//! The mode is read from the current view for every new connection, and open connections are
//! closed when a new view stops admitting them; no credentials means no mTLS (fail closed). Listeners follow the view: ports are bound when they appear and closed
//! when they go.

pub mod authorize;
pub mod detect;
pub mod http;
pub mod redirect;

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ::http::HeaderValue;
use meshward_identity::SpiffeId;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use meshward_config::authz::RequestAttrs;

use self::authorize::{Authorizer, deciding_policy};
use self::detect::{Protocol, Transport};
use self::http::AppTarget;
use crate::access_log::Direction;
use crate::config::{MtlsMode, Timeouts};
use crate::creds::{CredsReceiver, peer_id};
use crate::drain::Drain;
use crate::io::{Prefixed, accept_until, splice_idle};
use crate::metrics::inbound::PortStats;
use crate::metrics::istio::NO_FLAGS;
use crate::metrics::labels::{
    ConnLabels, Reporter, SecurityPolicy, WorkloadLabels, principal, unknown,
};
use crate::telemetry::{Link, LinkLog, Metered, Started, TcpRecord, Telemetry};
use crate::tls::{failure_reason, session_names};
use crate::view::View;
use crate::view::policy::DEFAULT_TCP_IDLE;

/// Whether a port in `mode` admits a terminated mesh mTLS connection.
fn admits_mtls(mode: MtlsMode) -> bool {
    matches!(mode, MtlsMode::Strict | MtlsMode::Permissive)
}

/// Whether a port in `mode` admits a connection forwarded without termination.
fn admits_plain(mode: MtlsMode) -> bool {
    matches!(mode, MtlsMode::Permissive | MtlsMode::Disable)
}

/// Shared state of every inbound listener.
#[derive(Debug)]
pub struct Inbound {
    address: IpAddr,
    app_address: IpAddr,
    creds: CredsReceiver,
    view: watch::Receiver<Arc<View>>,
    timeouts: Timeouts,
    drain: Drain,
    listening: watch::Sender<BTreeSet<u16>>,
    telemetry: Telemetry,
}

/// An accepted connection, as telemetry describes it.
#[derive(Debug, Clone)]
struct Accepted {
    port: u16,
    peer: SocketAddr,
    local: SocketAddr,
    started: Started,
    tls: Option<MeshSession>,
}

/// A terminated mesh mTLS session.
#[derive(Debug, Clone)]
struct MeshSession {
    peer_id: SpiffeId,
    own_id: SpiffeId,
    sni: Option<String>,
    version: Option<&'static str>,
    cipher: Option<&'static str>,
}

impl Inbound {
    /// Inbound for the workload at `address` whose app listens on `app_address`; decisions,
    /// requests and connections are recorded in `telemetry`.
    pub fn new(
        address: IpAddr,
        app_address: IpAddr,
        creds: CredsReceiver,
        view: watch::Receiver<Arc<View>>,
        timeouts: Timeouts,
        drain: Drain,
        telemetry: Telemetry,
    ) -> Arc<Self> {
        Arc::new(Self {
            address,
            app_address,
            creds,
            view,
            timeouts,
            drain,
            listening: watch::Sender::new(BTreeSet::new()),
            telemetry,
        })
    }

    /// The ports with a listener, updated as views come and go (readiness compares them with
    /// the view's ports).
    pub fn listening(&self) -> watch::Receiver<BTreeSet<u16>> {
        self.listening.subscribe()
    }

    /// Binds every port of the current view and keeps the listeners in step with later views.
    /// Fails if a port of the current view cannot be bound.
    pub async fn start(self: &Arc<Self>) -> io::Result<Vec<SocketAddr>> {
        let mut listeners = BTreeMap::new();
        let ports: Vec<u16> = self.view.borrow().inbound.keys().copied().collect();
        let mut bound = Vec::new();
        for port in ports {
            let (addr, stop) = self.bind(port).await?;
            bound.push(addr);
            listeners.insert(port, stop);
        }
        self.listening
            .send_replace(listeners.keys().copied().collect());
        let me = Arc::clone(self);
        tokio::spawn(me.follow_view(listeners));
        Ok(bound)
    }

    async fn bind(self: &Arc<Self>, port: u16) -> io::Result<(SocketAddr, CancellationToken)> {
        let addr = SocketAddr::new(self.address, port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("cannot bind inbound {addr}: {e}")))?;
        let stop = self.drain.token().child_token();
        tracing::info!(%addr, "inbound listening");
        let me = Arc::clone(self);
        let stats = self.telemetry.metrics().inbound.port(port);
        tokio::spawn(accept_until(
            listener,
            stop.clone(),
            "inbound",
            move |tcp, peer| {
                let me2 = Arc::clone(&me);
                me.drain
                    .spawn(me2.handle(port, tcp, peer, Arc::clone(&stats)));
            },
        ));
        Ok((addr, stop))
    }

    async fn follow_view(self: Arc<Self>, mut listeners: BTreeMap<u16, CancellationToken>) {
        let mut view = self.view.clone();
        loop {
            tokio::select! {
                () = self.drain.signaled() => return,
                changed = view.changed() => if changed.is_err() { return },
            }
            let wanted: Vec<u16> = view.borrow_and_update().inbound.keys().copied().collect();
            listeners.retain(|port, stop| {
                let keep = wanted.contains(port);
                if !keep {
                    tracing::info!(port, "inbound port removed");
                    stop.cancel();
                }
                keep
            });
            for port in wanted {
                if listeners.contains_key(&port) {
                    continue;
                }
                match self.bind(port).await {
                    Ok((_, stop)) => {
                        listeners.insert(port, stop);
                    }
                    // Retried on the next view; nothing is served on it meanwhile, and the
                    // proxy is not ready.
                    Err(err) => tracing::error!(%err, "inbound port not served"),
                }
            }
            self.listening
                .send_replace(listeners.keys().copied().collect());
        }
    }

    async fn handle(
        self: Arc<Self>,
        port: u16,
        mut tcp: TcpStream,
        peer: SocketAddr,
        stats: Arc<PortStats>,
    ) {
        if self.view.borrow().inbound_mode(port).is_none() {
            return;
        }
        let started = Started::now();
        let (prefix, transport) = match detect::sniff_transport(
            &mut tcp,
            self.timeouts.first_byte,
            self.timeouts.handshake,
        )
        .await
        {
            Ok(sniffed) => sniffed,
            Err(err) => {
                tracing::debug!(%err, %peer, port, "inbound connection failed while sniffing");
                return;
            }
        };
        // The mode may have changed while sniffing: decide with the newest one.
        let Some(mode) = self.view.borrow().inbound_mode(port) else {
            return;
        };
        let io = Prefixed::new(prefix, tcp);
        let conn = RequestAttrs::new(peer.ip(), self.address, port);
        let accepted = Accepted {
            port,
            peer,
            local: SocketAddr::new(self.address, port),
            started,
            tls: None,
        };
        match (mode, transport) {
            (MtlsMode::Strict | MtlsMode::Permissive, Transport::MeshTls) => {
                self.while_admitted(
                    port,
                    admits_mtls,
                    self.terminate(io, conn, accepted, &stats),
                )
                .await;
            }
            (MtlsMode::Strict, other) => {
                // Dropping the socket with unread bytes resets it: the client sees a reset,
                // as with Istio, and the app sees nothing.
                stats.plaintext(peer.ip(), false);
                tracing::info!(%peer, port, transport = ?other, "refused: STRICT port requires mesh mTLS");
            }
            (MtlsMode::Permissive | MtlsMode::Disable, Transport::Silent) => {
                stats.plaintext(peer.ip(), true);
                let authorizer = Authorizer::new(
                    self.view.clone(),
                    conn,
                    Arc::clone(self.telemetry.metrics()),
                );
                self.while_admitted(
                    port,
                    admits_plain,
                    self.forward_tcp(io, authorizer, &accepted),
                )
                .await;
            }
            (MtlsMode::Permissive | MtlsMode::Disable, other) => {
                // DISABLE forwards mesh TLS as bytes: the client spoke mTLS all the same.
                if other == Transport::MeshTls {
                    stats.mtls(true);
                } else {
                    stats.plaintext(peer.ip(), true);
                }
                self.while_admitted(port, admits_plain, self.forward(io, None, conn, accepted))
                    .await;
            }
        }
    }

    /// What is fixed for this connection: labels (the caller from its verified identity, this
    /// workload, the port's Service) and log details.
    fn link(&self, accepted: &Accepted) -> Arc<Link> {
        let view = Arc::clone(&self.view.borrow());
        let t = &view.telemetry;
        let port = accepted.port;
        let (source, source_principal, destination_principal, security) = match &accepted.tls {
            Some(tls) => (
                t.peers.caller(&tls.peer_id, accepted.peer.ip()),
                principal(Some(&tls.peer_id)),
                principal(Some(&tls.own_id)),
                SecurityPolicy::MutualTls,
            ),
            None => (
                WorkloadLabels::unknown(),
                unknown(),
                unknown(),
                SecurityPolicy::None,
            ),
        };
        let labels = ConnLabels::new(
            Reporter::Destination,
            source,
            Arc::clone(&source_principal),
            Arc::clone(&t.workload),
            destination_principal,
            security,
        );
        let tls = accepted.tls.as_ref();
        let log = LinkLog {
            upstream_host: Some(SocketAddr::new(self.app_address, port)),
            upstream_local: None,
            upstream_cluster: Some(format!("inbound|{port}||")),
            route_name: None,
            sni: tls.and_then(|t| t.sni.clone()),
            tls_version: tls.and_then(|t| t.version),
            tls_cipher: tls.and_then(|t| t.cipher),
            peer_principal: tls.map(|_| source_principal),
        };
        Link::new(Arc::new(labels), t.inbound_service(port), log)
    }

    /// Runs `conn` until it ends or a new view stops admitting it (the port's mode changed to
    /// one that refuses this kind of connection, or the port is gone): then the connection is
    /// dropped, closing both sides, so a policy change also applies to open connections.
    async fn while_admitted(
        &self,
        port: u16,
        admits: fn(MtlsMode) -> bool,
        conn: impl Future<Output = ()>,
    ) {
        let mut view = self.view.clone();
        let revoked = async move {
            loop {
                if !view
                    .borrow_and_update()
                    .inbound_mode(port)
                    .is_some_and(admits)
                {
                    return;
                }
                if view.changed().await.is_err() {
                    // No more views will come: the policy in force is final.
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            () = conn => {}
            () = revoked => tracing::info!(port, "connection closed: the port's mTLS mode no longer admits it"),
        }
    }

    async fn terminate(
        &self,
        io: Prefixed<TcpStream>,
        conn: RequestAttrs,
        accepted: Accepted,
        stats: &PortStats,
    ) {
        let (peer, port) = (conn.source_ip, accepted.port);
        let metrics = self.telemetry.metrics();
        let refused = |reason: &'static str| {
            metrics.record_tls_failure(false, reason);
            stats.mtls(false);
        };
        let Some(creds) = self.creds.borrow().clone() else {
            tracing::warn!(%peer, port, "refused mTLS: no certificate yet");
            refused("no_certificate");
            return;
        };
        let acceptor = TlsAcceptor::from(creds.server_config());
        let tls = match tokio::time::timeout(self.timeouts.handshake, acceptor.accept(io)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(err)) => {
                tracing::info!(%err, %peer, port, "inbound mTLS handshake failed");
                refused(failure_reason(&err));
                return;
            }
            Err(_) => {
                tracing::info!(%peer, port, "inbound mTLS handshake timed out");
                refused("timeout");
                return;
            }
        };
        let session = tls.get_ref().1;
        // The verifier required a client SVID, so a verified peer always has an ID.
        let Some(peer_id) = peer_id(session.peer_certificates()) else {
            tracing::warn!(%peer, port, "mTLS peer without a SPIFFE ID");
            refused("certificate_rejected");
            return;
        };
        stats.mtls(true);
        tracing::debug!(%peer, port, peer_id = %peer_id, "inbound mTLS");
        let mut conn = conn.with_peer(&peer_id.to_string());
        conn.sni = session.server_name().map(str::to_owned);
        let xfcc = HeaderValue::try_from(format!("By={};URI={peer_id}", creds.id())).ok();
        if xfcc.is_none() {
            // Only possible for IDs with bytes a header cannot carry; never forward unlabelled.
            tracing::warn!(%peer, port, "identity cannot be put in a header");
            return;
        }
        let (version, cipher) = session_names(session);
        let accepted = Accepted {
            tls: Some(MeshSession {
                peer_id,
                own_id: creds.id().clone(),
                sni: conn.sni.clone(),
                version,
                cipher,
            }),
            ..accepted
        };
        let revoked = crate::revocation::until_revoked(
            self.creds.clone(),
            tls.get_ref().1.peer_certificates(),
        );
        tokio::select! {
            () = self.forward(tls, xfcc, conn, accepted) => {}
            () = revoked => tracing::info!(%peer, port, "connection closed: the peer's certificate or identity was revoked"),
        }
    }

    /// Forwards a stream whose peer is `xfcc` (verified) or unknown (`None`), described for
    /// authorization by `conn`.
    async fn forward<S>(
        &self,
        mut io: S,
        xfcc: Option<HeaderValue>,
        conn: RequestAttrs,
        accepted: Accepted,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let port = accepted.port;
        let authorizer = Authorizer::new(
            self.view.clone(),
            conn,
            Arc::clone(self.telemetry.metrics()),
        );
        // A port declared TCP is authorized as TCP whatever its bytes look like, as Istio's
        // network RBAC does: HTTP-only DENY fields then match, and cannot be dodged.
        let opaque = self.view.borrow().opaque.contains(&port);
        if opaque {
            return self.forward_tcp(io, authorizer, &accepted).await;
        }
        let sniffed = detect::sniff_protocol(&mut io, Vec::new(), self.timeouts.first_byte).await;
        let (prefix, protocol) = match sniffed {
            Ok(s) => s,
            Err(err) => {
                tracing::debug!(%err, port, "inbound stream failed while sniffing");
                return;
            }
        };
        let io = Prefixed::new(prefix, io);
        let http2 = match protocol {
            Protocol::Opaque => return self.forward_tcp(io, authorizer, &accepted).await,
            Protocol::Http1 => false,
            Protocol::Http2 => true,
        };
        let target = AppTarget {
            address: SocketAddr::new(self.app_address, port),
            connect_timeout: self.timeouts.connect,
            xfcc,
            authorizer,
            telemetry: self.telemetry.clone(),
            link: self.link(&accepted),
            local: accepted.local,
            remote: accepted.peer,
        };
        if http2 {
            http::serve_http2(io, target, self.drain.clone()).await;
        } else {
            http::serve_http1(io, target, self.drain.clone()).await;
        }
    }

    /// Forwards a TCP stream if the policies allow the connection, and closes it as soon as a
    /// new view denies it. Counted open when forwarding starts and closed when it ends.
    async fn forward_tcp<S>(&self, io: S, authorizer: Authorizer, accepted: &Accepted)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let link = self.link(accepted);
        let decision = authorizer.check_connection();
        if !decision.allowed {
            // Dropped unread: the client sees the connection close, the app sees nothing.
            let (policy, rule) = deciding_policy(&decision);
            let details = decision
                .response_code_details()
                .unwrap_or_else(|| "rbac_access_denied".to_owned());
            TcpRecord::denied(
                &self.telemetry,
                &link,
                accepted.started,
                (Some(accepted.local), Some(accepted.peer)),
                (&policy, rule),
                &details,
            );
            return;
        }
        let record = TcpRecord::open(
            &self.telemetry,
            link,
            Direction::Inbound,
            accepted.started,
            Some(accepted.local),
            Some(accepted.peer),
        );
        let mut io = Metered::new(io, record);
        let mut view = self.view.clone();
        let revoked = async move {
            loop {
                if view.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
                if !authorizer.allows_connection(&view.borrow_and_update()) {
                    return;
                }
            }
        };
        let port = accepted.port;
        tokio::select! {
            flags = self.forward_raw(port, &mut io) => io.set_flags(flags),
            () = revoked => tracing::info!(target: "meshward::rbac", port, "connection closed: the authorization policies no longer allow it"),
        }
    }

    /// Splices to the app; the response flags say how it ended (`UF`: the app could not be
    /// reached).
    async fn forward_raw<S>(&self, port: u16, io: &mut S) -> &'static str
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let app = SocketAddr::new(self.app_address, port);
        let mut upstream =
            match tokio::time::timeout(self.timeouts.connect, TcpStream::connect(app)).await {
                Ok(Ok(tcp)) => tcp,
                Ok(Err(err)) => {
                    tracing::warn!(%err, %app, "cannot connect to the app");
                    return "UF";
                }
                Err(_) => {
                    tracing::warn!(%app, "timed out connecting to the app");
                    return "UF";
                }
            };
        let _ = upstream.set_nodelay(true);
        // Istio's inbound TCP streams close after an hour without a byte, as outbound ones.
        if let Err(err) = splice_idle(io, &mut upstream, Some(DEFAULT_TCP_IDLE)).await {
            tracing::debug!(%err, %app, "inbound TCP stream ended");
        }
        NO_FLAGS
    }
}
