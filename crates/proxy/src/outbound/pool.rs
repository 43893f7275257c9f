//! Upstream HTTP/1 connection reuse for the forward proxy: idle connections are kept per cluster
//! and route (a destination's connection pool is its own, as Envoy's; and the endpoint address
//! and accepted server identities, so a connection is only reused toward the identities it was
//! verified for), and handed back when a response body has been read to its
//! end — unless it has carried `maxRequestsPerConnection` requests; one idle for longer than the
//! DestinationRule's `idleTimeout` is not reused.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;

use crate::telemetry::{CountedBody, Link};
use crate::view::Route;

/// Idle connections kept per route.
const IDLE_PER_ROUTE: usize = 16;
/// Routes with idle connections kept at once.
const ROUTES: usize = 1024;

/// A request body toward an upstream: the client's, streamed and counted as it goes, or one
/// read whole beforehand (counted then) so that a retry can send it again.
pub(crate) type UpBody = http_body_util::Either<CountedBody<Incoming>, http_body_util::Full<Bytes>>;

type Sender = SendRequest<UpBody>;

/// An upstream connection between requests.
#[derive(Debug)]
pub(crate) struct Conn {
    /// Sends the next request.
    pub(crate) sender: Sender,
    /// Its telemetry link (labels computed when it opened).
    pub(crate) link: Arc<Link>,
    /// Requests it has carried.
    pub(crate) uses: usize,
    /// Requests it may carry (`maxRequestsPerConnection`).
    pub(crate) max_uses: Option<usize>,
    /// Since when it is idle.
    since: Instant,
}

impl Conn {
    /// A connection that has carried no request yet.
    pub(crate) fn new(sender: Sender, link: Arc<Link>, max_uses: Option<usize>) -> Self {
        Self {
            sender,
            link,
            uses: 0,
            max_uses,
            since: Instant::now(),
        }
    }
}

type Idle = Conn;

/// Cluster name and route.
pub(crate) type PoolKey = (Arc<str>, Route);

/// Idle upstream connections.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    idle: Mutex<HashMap<PoolKey, Vec<Idle>>>,
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PoolKey, Vec<Idle>>> {
        // A poisoned lock only means a panic elsewhere mid-update; the map of senders is still
        // usable (a stale sender is detected by `is_closed`/`ready`).
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle connection toward `route` that is still open and has been idle for less than
    /// `idle_timeout`, if any.
    pub(crate) fn take(&self, key: &PoolKey, idle_timeout: Option<Duration>) -> Option<Idle> {
        let mut idle = self.lock();
        let list = idle.get_mut(key)?;
        while let Some(conn) = list.pop() {
            let stale = idle_timeout.is_some_and(|t| conn.since.elapsed() >= t);
            if !conn.sender.is_closed() && !stale {
                return Some(conn);
            }
        }
        None
    }

    /// Keeps `conn` for the next request toward `route`.
    fn put(&self, key: PoolKey, mut conn: Conn) {
        if conn.sender.is_closed() || conn.max_uses.is_some_and(|max| conn.uses >= max) {
            return;
        }
        conn.since = Instant::now();
        let mut idle = self.lock();
        if idle.len() >= ROUTES && !idle.contains_key(&key) {
            idle.retain(|_, list| list.iter().any(|c| !c.sender.is_closed()));
            if idle.len() >= ROUTES {
                return;
            }
        }
        let list = idle.entry(key).or_default();
        if list.len() < IDLE_PER_ROUTE {
            list.push(conn);
        }
    }
}

/// A response body that returns its connection to the pool once read to the end.
#[derive(Debug)]
pub(crate) struct PooledBody {
    inner: Incoming,
    done: bool,
    release: Option<(Arc<Pool>, PoolKey, Conn)>,
}

impl PooledBody {
    /// `conn` has just carried the request this body answers.
    pub(crate) fn new(inner: Incoming, pool: Arc<Pool>, key: PoolKey, mut conn: Conn) -> Self {
        conn.uses += 1;
        Self {
            inner,
            done: false,
            release: Some((pool, key, conn)),
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.done = true,
            Poll::Ready(Some(Err(_))) => self.release = None,
            _ => {}
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

impl Drop for PooledBody {
    fn drop(&mut self) {
        // Only a fully read response leaves the connection ready for another request; a body
        // dropped half-way would leave bytes on the wire, so that connection is closed instead.
        if (self.done || self.inner.is_end_stream())
            && let Some((pool, key, conn)) = self.release.take()
        {
            pool.put(key, conn);
        }
    }
}
