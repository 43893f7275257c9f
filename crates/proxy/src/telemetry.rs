//! The data path's side of metrics and access logs.
//!
//! A [`Link`] is what is fixed for a connection (inbound) or an upstream connection
//! (outbound): its labels, computed once, and what access logs say about it. An [`Exchange`]
//! follows one HTTP request: it is recorded when the response body ends or is dropped (a
//! client gone before the end is `DC`), so the duration runs to the last byte. A
//! [`TcpRecord`] follows one TCP connection, counted when it opens and when it closes, with the
//! bytes both ways counted outside the copy loop.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, Version, header};
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::access_log::{AccessLog, Direction, Entry, bounded};
use crate::metrics::Metrics;
use crate::metrics::istio::{HttpKey, HttpSeries, NO_FLAGS, TcpKey, TcpSeries};
use crate::metrics::labels::{ConnLabels, RequestProtocol, ServiceLabels, Value};
use crate::web::Body;

/// Metrics and the access log, shared by every connection of one proxy.
#[derive(Debug, Clone, Default)]
pub struct Telemetry(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    metrics: Arc<Metrics>,
    access_log: AccessLog,
}

impl Telemetry {
    /// Telemetry recording into `metrics` and writing `access_log`.
    pub fn new(metrics: Arc<Metrics>, access_log: AccessLog) -> Self {
        Self(Arc::new(Inner {
            metrics,
            access_log,
        }))
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.0.metrics
    }

    /// The access log.
    pub fn access_log(&self) -> &AccessLog {
        &self.0.access_log
    }

    fn log(&self, entry: &Entry<'_>) {
        if !self.0.access_log.write(entry) {
            self.0.metrics.record_access_log_drop();
        }
    }
}

/// When something started: a monotonic instant for durations, the wall clock for logs.
#[derive(Debug, Clone, Copy)]
pub struct Started {
    at: Instant,
    wall: SystemTime,
}

impl Started {
    /// Now.
    pub fn now() -> Self {
        Self {
            at: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    fn elapsed(&self) -> Duration {
        self.at.elapsed()
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// What access logs say about a connection besides its labels.
#[derive(Debug, Clone, Default)]
pub struct LinkLog {
    /// The upstream address (the app inbound, the endpoint outbound).
    pub upstream_host: Option<SocketAddr>,
    /// The local address of the upstream connection.
    pub upstream_local: Option<SocketAddr>,
    /// Istio's cluster name.
    pub upstream_cluster: Option<String>,
    /// Istio's route name.
    pub route_name: Option<&'static str>,
    /// SNI of the mesh connection.
    pub sni: Option<String>,
    /// TLS version of the mesh connection.
    pub tls_version: Option<&'static str>,
    /// Its cipher suite.
    pub tls_cipher: Option<&'static str>,
    /// The verified peer sidecar.
    pub peer_principal: Option<Value>,
}

/// The part of an HTTP series key that changes per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tail {
    protocol: RequestProtocol,
    code: u16,
    grpc: Option<u8>,
    flags: &'static str,
}

/// What is fixed for one connection: labels (hashed once) and log details; it also remembers
/// the last HTTP series it used, so requests with the same outcome find it without a lookup.
#[derive(Debug)]
pub struct Link {
    /// Reporter, workloads, principals, security policy.
    pub labels: Arc<ConnLabels>,
    /// `destination_service*`.
    pub service: Arc<ServiceLabels>,
    /// For access logs.
    pub log: LinkLog,
    last: Mutex<Option<(Tail, Arc<HttpSeries>)>>,
}

impl Link {
    /// A link with these labels and log details.
    pub fn new(labels: Arc<ConnLabels>, service: Arc<ServiceLabels>, log: LinkLog) -> Arc<Self> {
        Arc::new(Self {
            labels,
            service,
            log,
            last: Mutex::new(None),
        })
    }

    /// The same connection serving another service (outbound reuse across services).
    pub fn for_service(self: &Arc<Self>, service: Arc<ServiceLabels>) -> Arc<Self> {
        if Arc::ptr_eq(&self.service, &service) || self.service == service {
            return Arc::clone(self);
        }
        Self::new(Arc::clone(&self.labels), service, self.log.clone())
    }

    fn http_series(&self, telemetry: &Telemetry, tail: Tail) -> Arc<HttpSeries> {
        // Held for a comparison and, on a miss, one map lookup: never across an await.
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, series)) = last.as_ref()
            && *seen == tail
        {
            return Arc::clone(series);
        }
        let series = telemetry.metrics().istio.http(&HttpKey {
            conn: Arc::clone(&self.labels),
            service: Arc::clone(&self.service),
            protocol: tail.protocol,
            code: tail.code,
            grpc: tail.grpc,
            flags: tail.flags,
        });
        *last = Some((tail, Arc::clone(&series)));
        series
    }

    fn tcp_series(&self, telemetry: &Telemetry, flags: &'static str) -> Arc<TcpSeries> {
        telemetry.metrics().istio.tcp(&TcpKey {
            conn: Arc::clone(&self.labels),
            service: Arc::clone(&self.service),
            flags,
        })
    }
}

/// What an access log line says about a request, captured only when logs are on.
#[derive(Debug, Default)]
struct RequestLog {
    method: String,
    path: String,
    version: &'static str,
    authority: Option<String>,
    user_agent: Option<String>,
    request_id: Option<String>,
    forwarded_for: Option<String>,
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| bounded(&String::from_utf8_lossy(v.as_bytes())).to_owned())
}

fn version_text(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP",
    }
}

/// Header bytes as Envoy counts them: names and values.
fn head_size(headers: &HeaderMap) -> u64 {
    headers
        .iter()
        .map(|(n, v)| (n.as_str().len() + v.len()) as u64)
        .sum()
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

fn grpc_status(headers: &HeaderMap) -> Option<u8> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u8>().ok())
        .filter(|s| *s <= 16)
}

/// One HTTP request, from its head to the end of its response; recorded when dropped.
#[derive(Debug)]
pub struct Exchange {
    telemetry: Telemetry,
    link: Option<Arc<Link>>,
    direction: Direction,
    started: Started,
    downstream_local: Option<SocketAddr>,
    downstream_remote: Option<SocketAddr>,
    protocol: RequestProtocol,
    request_head: u64,
    request_body: Arc<AtomicU64>,
    code: u16,
    grpc: Option<u8>,
    flags: &'static str,
    details: Option<String>,
    transport_failure: Option<String>,
    upstream_time: Option<Duration>,
    response_head: u64,
    response_body: u64,
    authz: Option<(String, Option<usize>)>,
    log: Option<Box<RequestLog>>,
    /// Whether the request went (or tried to go) upstream.
    upstream: bool,
    recorded: bool,
}

impl Exchange {
    /// Starts following `req`, which arrived on a connection from `remote` to `local`.
    pub fn begin<B>(
        telemetry: &Telemetry,
        direction: Direction,
        req: &Request<B>,
        local: Option<SocketAddr>,
        remote: Option<SocketAddr>,
    ) -> Self {
        let headers = req.headers();
        let target = req.uri().path_and_query().map_or("", |pq| pq.as_str());
        let log = telemetry.access_log().enabled().then(|| {
            Box::new(RequestLog {
                method: req.method().as_str().to_owned(),
                path: bounded(target).to_owned(),
                version: version_text(req.version()),
                authority: req
                    .uri()
                    .authority()
                    .map(|a| bounded(a.as_str()).to_owned())
                    .or_else(|| header_text(headers, "host")),
                user_agent: header_text(headers, "user-agent"),
                request_id: header_text(headers, "x-request-id"),
                forwarded_for: header_text(headers, "x-forwarded-for"),
            })
        });
        Self {
            telemetry: telemetry.clone(),
            link: None,
            direction,
            started: Started::now(),
            downstream_local: local,
            downstream_remote: remote,
            protocol: if is_grpc(headers) {
                RequestProtocol::Grpc
            } else {
                RequestProtocol::Http
            },
            request_head: head_size(headers) + (req.method().as_str().len() + target.len()) as u64,
            request_body: Arc::default(),
            code: 0,
            grpc: None,
            flags: NO_FLAGS,
            details: None,
            transport_failure: None,
            upstream_time: None,
            response_head: 0,
            response_body: 0,
            authz: None,
            log,
            upstream: true,
            recorded: false,
        }
    }

    /// The connection(s) the request went over.
    pub fn set_link(&mut self, link: Arc<Link>) {
        self.link = Some(link);
    }

    /// Whether a link is set.
    pub fn has_link(&self) -> bool {
        self.link.is_some()
    }

    /// The request target for the access log: inbound after normalization, outbound before a
    /// VirtualService rewrite.
    pub fn set_path(&mut self, uri: &http::Uri) {
        if let Some(log) = self.log.as_mut() {
            let target = uri.path_and_query().map_or("", |pq| pq.as_str());
            if log.path != target {
                log.path = bounded(target).to_owned();
            }
        }
    }

    /// Counts the request body as it is forwarded.
    pub fn count_request<B>(&self, req: Request<B>) -> Request<CountedBody<B>> {
        let count = Arc::clone(&self.request_body);
        req.map(|inner| CountedBody { inner, count })
    }

    /// A request body of `bytes` was read whole before it was forwarded (kept for retries).
    pub fn received_body(&self, bytes: u64) {
        self.request_body.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The response comes from the proxy, not the upstream: `flags` and `details` say why.
    /// Without flags, the proxy decided on its own and never tried the upstream.
    pub fn local(&mut self, flags: &'static str, details: impl Into<String>) {
        self.flags = flags;
        self.details = Some(details.into());
        self.upstream = flags != NO_FLAGS;
    }

    /// Why the upstream connection failed.
    pub fn transport_failure(&mut self, reason: impl Into<String>) {
        self.transport_failure = Some(reason.into());
    }

    /// An AuthorizationPolicy denied the request.
    pub fn denied(&mut self, policy: String, rule: Option<usize>, details: Option<String>) {
        self.authz = Some((policy, rule));
        self.details = Some(details.unwrap_or_else(|| "rbac_access_denied".to_owned()));
        self.upstream = false;
    }

    /// The upstream's response head arrived now.
    pub fn upstream_responded(&mut self) {
        self.upstream_time = Some(self.started.elapsed());
        self.details
            .get_or_insert_with(|| "via_upstream".to_owned());
    }

    /// Not a request to record (a CONNECT that became a tunnel, recorded as TCP).
    pub fn skip(mut self) {
        self.recorded = true;
    }

    /// Wraps the response so the exchange is recorded when its body ends.
    pub fn respond<B>(mut self, resp: Response<B>) -> Response<Body>
    where
        B: HttpBody<Data = Bytes, Error = hyper::Error> + Send + Sync + Unpin + 'static,
    {
        self.code = resp.status().as_u16();
        self.response_head = head_size(resp.headers()) + 3;
        if self.protocol == RequestProtocol::Grpc {
            self.grpc = grpc_status(resp.headers());
        }
        resp.map(|inner| {
            ResponseBody {
                inner,
                exchange: self,
                done: false,
            }
            .boxed()
        })
    }

    fn record(&mut self) {
        if self.recorded {
            return;
        }
        self.recorded = true;
        let elapsed = self.started.elapsed();
        let request_body = self.request_body.load(Ordering::Relaxed);
        if let Some(link) = &self.link {
            let series = link.http_series(
                &self.telemetry,
                Tail {
                    protocol: self.protocol,
                    code: self.code,
                    grpc: self.grpc,
                    flags: self.flags,
                },
            );
            series.duration.observe(micros(elapsed));
            series
                .request_bytes
                .observe(self.request_head + request_body);
            series
                .response_bytes
                .observe(self.response_head + self.response_body);
        }
        let Some(log) = self.log.as_deref() else {
            return;
        };
        let link = self.link.as_deref();
        let link_log = link.map(|l| &l.log);
        let mut entry = Entry::new(self.started.wall, self.direction);
        entry.method = Some(&log.method);
        entry.path = Some(&log.path);
        entry.protocol = Some(log.version);
        entry.response_code = self.code;
        entry.response_flags = self.flags;
        entry.response_code_details = self.details.as_deref();
        entry.upstream_transport_failure_reason = self.transport_failure.as_deref();
        entry.bytes_received = request_body;
        entry.bytes_sent = self.response_body;
        entry.duration_ms = millis(elapsed);
        entry.upstream_service_time_ms = self.upstream_time.map(millis);
        entry.x_forwarded_for = log.forwarded_for.as_deref();
        entry.user_agent = log.user_agent.as_deref();
        entry.request_id = log.request_id.as_deref();
        entry.authority = log.authority.as_deref();
        entry.downstream_local_address = self.downstream_local;
        entry.downstream_remote_address = self.downstream_remote;
        if let (Some(link), Some(l)) = (link, link_log) {
            fill_link(&mut entry, link, l);
            if !self.upstream {
                entry.upstream_host = None;
                entry.upstream_local_address = None;
            }
        }
        if let Some((policy, rule)) = &self.authz {
            entry.authz_policy = Some(policy);
            entry.authz_rule = *rule;
        }
        self.telemetry.log(&entry);
    }
}

fn fill_link<'a>(entry: &mut Entry<'a>, link: &'a Link, l: &'a LinkLog) {
    entry.upstream_host = l.upstream_host;
    entry.upstream_local_address = l.upstream_local;
    entry.upstream_cluster = l.upstream_cluster.as_deref();
    entry.route_name = l.route_name;
    entry.requested_server_name = l.sni.as_deref();
    entry.tls_version = l.tls_version;
    entry.tls_cipher_suite = l.tls_cipher;
    entry.peer_principal = l.peer_principal.as_deref();
    if &*link.service.host != crate::metrics::labels::UNKNOWN {
        entry.upstream_service = Some(&link.service.host);
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        // Dropped before a response was even chosen: the client went away (Envoy's 0 `DC`).
        if !self.recorded && self.code == 0 && self.flags == NO_FLAGS {
            self.flags = "DC";
        }
        self.record();
    }
}

/// A request body that counts its bytes as they are forwarded.
#[derive(Debug)]
pub struct CountedBody<B = Incoming> {
    inner: B,
    count: Arc<AtomicU64>,
}

impl<B> HttpBody for CountedBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.count.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that counts its bytes, reads gRPC trailers, and records its exchange when
/// it ends or is dropped.
#[derive(Debug)]
struct ResponseBody<B: HttpBody> {
    inner: B,
    exchange: Exchange,
    done: bool,
}

impl<B> HttpBody for ResponseBody<B>
where
    B: HttpBody<Data = Bytes, Error = hyper::Error> + Unpin,
{
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.exchange.response_body += data.len() as u64;
                } else if let Some(trailers) = frame.trailers_ref()
                    && self.exchange.protocol == RequestProtocol::Grpc
                {
                    self.exchange.grpc = grpc_status(trailers).or(self.exchange.grpc);
                }
            }
            Poll::Ready(None) => {
                self.done = true;
                self.exchange.record();
            }
            Poll::Ready(Some(Err(_))) => {
                if self.exchange.flags == NO_FLAGS {
                    self.exchange.flags = "UPE";
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: HttpBody> Drop for ResponseBody<B> {
    fn drop(&mut self) {
        // Dropped before its end (hyper stops polling a body that says it is at its end, so
        // that counts as the end): the client went away.
        if !self.done
            && !self.inner.is_end_stream()
            && self.exchange.flags == NO_FLAGS
            && !self.exchange.recorded
        {
            self.exchange.flags = "DC";
        }
    }
}

/// One TCP connection: counted open when created, closed (with bytes) by [`TcpRecord::close`].
#[derive(Debug)]
pub struct TcpRecord {
    telemetry: Telemetry,
    link: Arc<Link>,
    direction: Direction,
    started: Started,
    downstream_local: Option<SocketAddr>,
    downstream_remote: Option<SocketAddr>,
}

impl TcpRecord {
    /// Counts the connection as opened.
    pub fn open(
        telemetry: &Telemetry,
        link: Arc<Link>,
        direction: Direction,
        started: Started,
        local: Option<SocketAddr>,
        remote: Option<SocketAddr>,
    ) -> Self {
        link.tcp_series(telemetry, NO_FLAGS)
            .opened
            .fetch_add(1, Ordering::Relaxed);
        Self {
            telemetry: telemetry.clone(),
            link,
            direction,
            started,
            downstream_local: local,
            downstream_remote: remote,
        }
    }

    /// Counts the connection as closed after `received` bytes from the client and `sent` to
    /// it; `flags` say how it ended (`-`, `UF` when the upstream could not be reached).
    pub fn close(self, received: u64, sent: u64, flags: &'static str) {
        let series = self.link.tcp_series(&self.telemetry, flags);
        series.closed.fetch_add(1, Ordering::Relaxed);
        series.received.fetch_add(received, Ordering::Relaxed);
        series.sent.fetch_add(sent, Ordering::Relaxed);
        if !self.telemetry.access_log().enabled() {
            return;
        }
        let mut entry = Entry::new(self.started.wall, self.direction);
        entry.response_flags = flags;
        entry.bytes_received = received;
        entry.bytes_sent = sent;
        entry.duration_ms = millis(self.started.elapsed());
        entry.downstream_local_address = self.downstream_local;
        entry.downstream_remote_address = self.downstream_remote;
        fill_link(&mut entry, &self.link, &self.link.log);
        self.telemetry.log(&entry);
    }

    /// Logs a connection that AuthorizationPolicy refused (no TCP metrics: it never opened
    /// toward the app; `meshward_authz_denials_total` counts it).
    pub fn denied(
        telemetry: &Telemetry,
        link: &Link,
        started: Started,
        (local, remote): (Option<SocketAddr>, Option<SocketAddr>),
        (policy, rule): (&str, Option<usize>),
        details: &str,
    ) {
        if !telemetry.access_log().enabled() {
            return;
        }
        let mut entry = Entry::new(started.wall, Direction::Inbound);
        entry.connection_termination_details = Some(details);
        entry.duration_ms = millis(started.elapsed());
        entry.downstream_local_address = local;
        entry.downstream_remote_address = remote;
        fill_link(&mut entry, link, &link.log);
        entry.authz_policy = Some(policy);
        entry.authz_rule = rule;
        telemetry.log(&entry);
    }
}

/// The client side of a TCP connection, counting bytes both ways in plain fields (no atomics
/// in the copy loop) and recording the connection as closed when dropped, however the
/// connection ended: done, failed, or cut by a policy change.
#[derive(Debug)]
pub struct Metered<S> {
    io: S,
    received: u64,
    sent: u64,
    flags: &'static str,
    record: Option<TcpRecord>,
}

impl<S> Metered<S> {
    /// Counts `io`, which `record` describes.
    pub fn new(io: S, record: TcpRecord) -> Self {
        Self {
            io,
            received: 0,
            sent: 0,
            flags: NO_FLAGS,
            record: Some(record),
        }
    }

    /// How the connection ended (`UF`: the upstream could not be reached).
    pub fn set_flags(&mut self, flags: &'static str) {
        self.flags = flags;
    }
}

impl<S> Drop for Metered<S> {
    fn drop(&mut self) {
        if let Some(record) = self.record.take() {
            record.close(self.received, self.sent, self.flags);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        self.received += (buf.filled().len() - before) as u64;
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled {
            self.sent += *n as u64;
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &polled {
            self.sent += *n as u64;
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
