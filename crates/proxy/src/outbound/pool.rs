//! Upstream HTTP/1 connection reuse for the forward proxy: idle connections are kept per route
//! (endpoint address and accepted server identities, so a connection is only reused toward the
//! identities it was verified for), and handed back when a response body has been read to its
//! end.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;

use crate::telemetry::{CountedBody, Link};
use crate::view::Route;

/// Idle connections kept per route.
const IDLE_PER_ROUTE: usize = 16;
/// Routes with idle connections kept at once.
const ROUTES: usize = 1024;

type Sender = SendRequest<CountedBody>;

/// An idle connection and its telemetry link (labels computed when it opened).
type Idle = (Sender, Arc<Link>);

/// Idle upstream connections.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    idle: Mutex<HashMap<Route, Vec<Idle>>>,
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Route, Vec<Idle>>> {
        // A poisoned lock only means a panic elsewhere mid-update; the map of senders is still
        // usable (a stale sender is detected by `is_closed`/`ready`).
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle connection toward `route` that is still open, if any.
    pub(crate) fn take(&self, route: &Route) -> Option<Idle> {
        let mut idle = self.lock();
        let list = idle.get_mut(route)?;
        while let Some((sender, link)) = list.pop() {
            if !sender.is_closed() {
                return Some((sender, link));
            }
        }
        None
    }

    /// Keeps `sender` for the next request toward `route`.
    fn put(&self, route: Route, sender: Sender, link: Arc<Link>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.lock();
        if idle.len() >= ROUTES && !idle.contains_key(&route) {
            idle.retain(|_, list| list.iter().any(|(s, _)| !s.is_closed()));
            if idle.len() >= ROUTES {
                return;
            }
        }
        let list = idle.entry(route).or_default();
        if list.len() < IDLE_PER_ROUTE {
            list.push((sender, link));
        }
    }
}

/// A response body that returns its connection to the pool once read to the end.
#[derive(Debug)]
pub(crate) struct PooledBody {
    inner: Incoming,
    done: bool,
    release: Option<(Arc<Pool>, Route, Sender, Arc<Link>)>,
}

impl PooledBody {
    pub(crate) fn new(
        inner: Incoming,
        pool: Arc<Pool>,
        route: Route,
        sender: Sender,
        link: Arc<Link>,
    ) -> Self {
        Self {
            inner,
            done: false,
            release: Some((pool, route, sender, link)),
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
            && let Some((pool, route, sender, link)) = self.release.take()
        {
            pool.put(route, sender, link);
        }
    }
}
