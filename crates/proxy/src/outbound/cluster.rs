//! What a DestinationRule's traffic policy needs at run time, per destination port (Istio's
//! cluster `outbound|port||host`): endpoint choice by the port's load balancer among the
//! endpoints not ejected, the connection and request counts its `connectionPool` limits, and
//! the consecutive failures its `outlierDetection` ejects on. The state outlives view updates,
//! so a new configuration does not forgive a failing endpoint.

use std::collections::HashMap;
use std::hash::Hasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::metrics::Metrics;
use crate::view::policy::{Balance, Limits, Outlier};
use crate::view::{Address, ResolveError, ServicePort};

/// Clusters whose state is kept at once; beyond, clusters nobody holds are forgotten.
const MAX_CLUSTERS: usize = 4096;
/// Envoy's cap on one ejection (`max_ejection_time`).
const MAX_EJECTION: Duration = Duration::from_secs(300);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section replaces whole values; a poisoned lock holds no torn state.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The state of every cluster this proxy sends to.
#[derive(Debug, Default)]
pub(crate) struct Clusters {
    map: Mutex<HashMap<String, Arc<Cluster>>>,
}

impl Clusters {
    /// The state of cluster `name`.
    pub(crate) fn get(&self, name: &str) -> Arc<Cluster> {
        let mut map = lock(&self.map);
        if let Some(cluster) = map.get(name) {
            return Arc::clone(cluster);
        }
        if map.len() >= MAX_CLUSTERS {
            map.retain(|_, c| Arc::strong_count(c) > 1);
        }
        let cluster = Arc::new(Cluster::new(name.to_owned()));
        map.insert(name.to_owned(), Arc::clone(&cluster));
        cluster
    }

    /// What every cluster holds now, for the admin's `/clusters`: connections, queued and
    /// in-flight requests, and the ejected endpoints with the time left.
    pub(crate) fn report(&self) -> serde_json::Value {
        let clusters: Vec<Arc<Cluster>> = lock(&self.map).values().cloned().collect();
        let mut rows: Vec<serde_json::Value> = clusters
            .iter()
            .map(|c| {
                let ejected: Vec<serde_json::Value> = c
                    .ejected()
                    .into_iter()
                    .map(|(address, left)| {
                        serde_json::json!({
                            "endpoint": address.to_string(),
                            "ejectedForMs": u64::try_from(left.as_millis()).unwrap_or(u64::MAX),
                        })
                    })
                    .collect();
                serde_json::json!({
                    "name": c.name,
                    "connections": c.connections.load(Ordering::Relaxed),
                    "pendingRequests": c.pending.load(Ordering::Relaxed),
                    "activeRequests": c.requests.load(Ordering::Relaxed),
                    "ejected": ejected,
                })
            })
            .collect();
        rows.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        serde_json::Value::Array(rows)
    }
}

/// How an exchange with an endpoint ended, for outlier detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// An HTTP answer with this status (a TCP connection that opened counts as 200).
    Status(u16),
    /// No answer: connect failure, reset, timeout. Envoy maps these to 503.
    Failure,
}

/// One endpoint's record.
#[derive(Debug, Default)]
struct Health {
    active: usize,
    consecutive_5xx: u32,
    consecutive_gateway: u32,
    ejected_until: Option<Instant>,
    ejections: u32,
}

impl Health {
    fn ejected(&self, now: Instant) -> bool {
        self.ejected_until.is_some_and(|until| now < until)
    }
}

/// One destination port's state.
#[derive(Debug)]
pub(crate) struct Cluster {
    name: String,
    connections: AtomicUsize,
    pending: AtomicUsize,
    requests: AtomicUsize,
    retries: AtomicUsize,
    health: Mutex<HashMap<Address, Health>>,
}

/// A connection or request counted against a limit, released on drop.
#[derive(Debug)]
pub(crate) struct Slot {
    cluster: Arc<Cluster>,
    kind: SlotKind,
}

#[derive(Debug, Clone, Copy)]
enum SlotKind {
    Connection,
    Pending,
    Request,
    Retry,
}

impl Slot {
    fn counter(&self) -> &AtomicUsize {
        match self.kind {
            SlotKind::Connection => &self.cluster.connections,
            SlotKind::Pending => &self.cluster.pending,
            SlotKind::Request => &self.cluster.requests,
            SlotKind::Retry => &self.cluster.retries,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.counter().fetch_sub(1, Ordering::AcqRel);
    }
}

/// An endpoint's request in flight (for LEAST_REQUEST), released on drop.
#[derive(Debug)]
pub(crate) struct Active {
    cluster: Arc<Cluster>,
    address: Address,
}

impl Drop for Active {
    fn drop(&mut self) {
        if let Some(h) = lock(&self.cluster.health).get_mut(&self.address) {
            h.active = h.active.saturating_sub(1);
        }
    }
}

impl Cluster {
    fn new(name: String) -> Self {
        Self {
            name,
            connections: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            retries: AtomicUsize::new(0),
            health: Mutex::default(),
        }
    }

    /// Istio's cluster name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Picks an endpoint of `port` that is not ejected, by the port's load balancer; `key` is
    /// what a consistent hash hashes (a header's value or the client's address). Endpoints in
    /// `avoid` (those a retry already tried) are left out while others are up, except under a
    /// consistent hash, whose point is to keep the same endpoint.
    pub(crate) fn pick(
        &self,
        port: &ServicePort,
        key: Option<&[u8]>,
        avoid: &[Address],
    ) -> Result<usize, ResolveError> {
        let endpoints = &port.endpoints;
        if endpoints.is_empty() {
            return Err(ResolveError::NoEndpoints);
        }
        let now = Instant::now();
        let health = lock(&self.health);
        let mut up: Vec<usize> = (0..endpoints.len())
            .filter(|i| {
                !health
                    .get(&endpoints[*i].address)
                    .is_some_and(|h| h.ejected(now))
            })
            .collect();
        if up.is_empty() {
            return Err(ResolveError::NoEndpoints);
        }
        let hashed = matches!(port.policy.balance, Balance::Hash(_));
        if !avoid.is_empty() && !hashed {
            let fresh: Vec<usize> = up
                .iter()
                .copied()
                .filter(|i| !avoid.contains(&endpoints[*i].address))
                .collect();
            if !fresh.is_empty() {
                up = fresh;
            }
        }
        let active = |i: usize| health.get(&endpoints[i].address).map_or(0, |h| h.active);
        let chosen = match &port.policy.balance {
            Balance::RoundRobin => up[port.next_index(up.len())],
            Balance::Random => up[random_below(up.len())],
            Balance::LeastRequest => {
                // Envoy's power of two choices.
                let (a, b) = (up[random_below(up.len())], up[random_below(up.len())]);
                if active(b) < active(a) { b } else { a }
            }
            Balance::Hash(_) => match key {
                Some(key) => *up
                    .iter()
                    .max_by_key(|i| rendezvous(key, &endpoints[**i].address))
                    .unwrap_or(&up[0]),
                None => up[port.next_index(up.len())],
            },
        };
        Ok(chosen)
    }

    /// Marks a request in flight to `address` until the returned value is dropped.
    pub(crate) fn start(self: &Arc<Self>, address: &Address) -> Active {
        lock(&self.health)
            .entry(address.clone())
            .or_default()
            .active += 1;
        Active {
            cluster: Arc::clone(self),
            address: address.clone(),
        }
    }

    fn take(self: &Arc<Self>, kind: SlotKind, limit: Option<usize>) -> Option<Slot> {
        let slot = Slot {
            cluster: Arc::clone(self),
            kind,
        };
        let before = slot.counter().fetch_add(1, Ordering::AcqRel);
        // Over the limit: the slot is dropped, which gives the count back.
        (limit.is_none_or(|max| before < max)).then_some(slot)
    }

    /// A request slot (`http2MaxRequests`), `None` when the limit is reached.
    pub(crate) fn request(self: &Arc<Self>, limits: &Limits) -> Option<Slot> {
        self.take(SlotKind::Request, limits.max_requests)
    }

    /// A connection slot (`maxConnections`), `None` when the limit is reached.
    pub(crate) fn connection(self: &Arc<Self>, limits: &Limits) -> Option<Slot> {
        self.take(SlotKind::Connection, limits.max_connections)
    }

    /// A retry slot (`maxRetries`), `None` when that many retries are in flight.
    pub(crate) fn retry(self: &Arc<Self>, limits: &Limits) -> Option<Slot> {
        self.take(SlotKind::Retry, limits.max_retries)
    }

    /// A place in the queue of requests waiting for a connection (`http1MaxPendingRequests`),
    /// `None` when the queue is full.
    pub(crate) fn pending(self: &Arc<Self>, limits: &Limits) -> Option<Slot> {
        self.take(SlotKind::Pending, limits.max_pending)
    }

    /// Records how an exchange with `address` ended; ejects it when `outlier` says so, within
    /// `maxEjectionPercent` (at least one endpoint may always be ejected, as Envoy does) and
    /// while at least `minHealthPercent` of the `total` endpoints are up.
    pub(crate) fn record(
        &self,
        address: &Address,
        outcome: Outcome,
        outlier: Option<&Outlier>,
        total: usize,
        metrics: &Metrics,
    ) {
        let Some(outlier) = outlier else {
            return;
        };
        let now = Instant::now();
        let mut health = lock(&self.health);
        let ejected_now = health.values().filter(|h| h.ejected(now)).count();
        let h = health.entry(address.clone()).or_default();
        if h.ejected_until.is_some_and(|until| now >= until) {
            h.ejected_until = None;
            metrics.record_upstream_event(&self.name, "unejection");
        }
        let (server_error, gateway_error) = match outcome {
            Outcome::Status(code) => (code >= 500, matches!(code, 502..=504)),
            Outcome::Failure => (true, true),
        };
        h.consecutive_5xx = if server_error {
            h.consecutive_5xx + 1
        } else {
            0
        };
        h.consecutive_gateway = if gateway_error {
            h.consecutive_gateway + 1
        } else {
            0
        };
        let tripped = (outlier.consecutive_5xx > 0 && h.consecutive_5xx >= outlier.consecutive_5xx)
            || (outlier.consecutive_gateway > 0
                && h.consecutive_gateway >= outlier.consecutive_gateway);
        if !tripped || h.ejected(now) {
            return;
        }
        let max = (total * outlier.max_ejection_percent as usize / 100).max(1);
        let up_after = total.saturating_sub(ejected_now + 1);
        let healthy_enough = up_after * 100 >= total * outlier.min_health_percent as usize;
        if ejected_now >= max || !healthy_enough {
            return;
        }
        h.ejections += 1;
        let time = outlier
            .base_ejection
            .saturating_mul(h.ejections)
            .min(MAX_EJECTION.max(outlier.base_ejection));
        h.ejected_until = Some(now + time);
        h.consecutive_5xx = 0;
        h.consecutive_gateway = 0;
        tracing::info!(cluster = %self.name, endpoint = %address, ?time, "endpoint ejected by outlier detection");
        metrics.record_upstream_event(&self.name, "ejection");
    }

    /// Endpoints ejected now, with the time left.
    pub(crate) fn ejected(&self) -> Vec<(Address, Duration)> {
        let now = Instant::now();
        lock(&self.health)
            .iter()
            .filter_map(|(a, h)| Some((a.clone(), h.ejected_until?.checked_duration_since(now)?)))
            .collect()
    }
}

/// Highest-random-weight hashing: the endpoint with the largest hash of (key, endpoint) wins,
/// so a key keeps its endpoint while that endpoint is up, and only its keys move when it goes.
fn rendezvous(key: &[u8], address: &Address) -> u64 {
    // Fixed keys: the same key must map to the same endpoint in every proxy and after restarts.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    hasher.write(key);
    hasher.write(address.to_string().as_bytes());
    hasher.finish()
}

/// A uniform number in [0, 1) for load balancing, weights and faults: xorshift64* per thread,
/// seeded once from the system's secure generator. Nothing secret depends on it, and a
/// cryptographic draw per request would cost more than the choice it makes.
pub(crate) fn fast_unit() -> f64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(
            // Never zero: xorshift would stay at zero.
            (crate::xds::random_unit() * u64::MAX as f64) as u64 | 1,
        );
    }
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        // The top 53 bits, as f64 in [0, 1).
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    })
}

/// A uniformly random index below `n` (> 0).
fn random_below(n: usize) -> usize {
    let unit = fast_unit();
    // `unit` < 1, so the product is below `n`; `min` guards the float edge.
    ((unit * n as f64) as usize).min(n - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::policy::{HashOn, Policy};
    use crate::view::{Endpoint, TlsMode};

    fn port(n: usize, balance: Balance) -> ServicePort {
        let endpoints = (1..=n)
            .map(|i| Endpoint {
                address: format!("127.0.0.{i}:80").parse().unwrap(),
                identity: None,
                has_sidecar: false,
                tls: TlsMode::Disable,
                tls_source: "test".into(),
            })
            .collect();
        let mut port = ServicePort::new(80, vec![], endpoints);
        port.policy = Arc::new(Policy {
            balance,
            ..Policy::default()
        });
        port
    }

    fn outlier(consecutive_5xx: u32, max_percent: u32) -> Outlier {
        Outlier {
            consecutive_5xx,
            consecutive_gateway: 0,
            interval: Duration::from_secs(10),
            base_ejection: Duration::from_secs(30),
            max_ejection_percent: max_percent,
            min_health_percent: 0,
        }
    }

    #[test]
    fn a_hash_key_keeps_its_endpoint() {
        let port = port(5, Balance::Hash(HashOn::Header("x-user".into())));
        let cluster = Cluster::new("c".into());
        for user in ["alice", "bob", "carol"] {
            let first = cluster.pick(&port, Some(user.as_bytes()), &[]).unwrap();
            for _ in 0..20 {
                assert_eq!(
                    cluster.pick(&port, Some(user.as_bytes()), &[]).unwrap(),
                    first
                );
            }
        }
    }

    #[test]
    fn a_retry_goes_to_an_endpoint_not_yet_tried_while_there_is_one() {
        // Istio sets Envoy's `previous_hosts` retry predicate on every retry policy.
        for balance in [Balance::RoundRobin, Balance::Random, Balance::LeastRequest] {
            let port = port(3, balance);
            let cluster = Cluster::new("c".into());
            let tried = [
                port.endpoints[0].address.clone(),
                port.endpoints[2].address.clone(),
            ];
            for _ in 0..20 {
                assert_eq!(cluster.pick(&port, None, &tried).unwrap(), 1);
            }
            // All tried: any endpoint again rather than none.
            let all: Vec<Address> = port.endpoints.iter().map(|e| e.address.clone()).collect();
            assert!(cluster.pick(&port, None, &all).is_ok());
        }
        // A consistent hash keeps its endpoint on a retry.
        let port = port(3, Balance::Hash(HashOn::Header("x-user".into())));
        let cluster = Cluster::new("c".into());
        let first = cluster.pick(&port, Some(b"alice"), &[]).unwrap();
        let tried = [port.endpoints[first].address.clone()];
        assert_eq!(cluster.pick(&port, Some(b"alice"), &tried).unwrap(), first);
    }

    #[test]
    fn consecutive_5xx_eject_and_ejected_endpoints_get_nothing() {
        // Envoy: "consecutive_5xx ... 5xx responses before a consecutive 5xx ejection occurs".
        let port = port(2, Balance::RoundRobin);
        let cluster = Cluster::new("c".into());
        let metrics = Metrics::default();
        let bad = port.endpoints[0].address.clone();
        let rule = outlier(3, 100);
        for _ in 0..2 {
            cluster.record(&bad, Outcome::Status(500), Some(&rule), 2, &metrics);
        }
        assert!(cluster.ejected().is_empty(), "two errors do not eject");
        // A success in between starts the count again.
        cluster.record(&bad, Outcome::Status(200), Some(&rule), 2, &metrics);
        for _ in 0..3 {
            cluster.record(&bad, Outcome::Failure, Some(&rule), 2, &metrics);
        }
        assert_eq!(cluster.ejected().len(), 1);
        for _ in 0..10 {
            assert_eq!(cluster.pick(&port, None, &[]).unwrap(), 1);
        }
    }

    #[test]
    fn max_ejection_percent_still_ejects_one() {
        // Envoy: "defaults to 10% but will eject at least one host regardless of the value".
        let port = port(3, Balance::RoundRobin);
        let cluster = Cluster::new("c".into());
        let metrics = Metrics::default();
        let rule = outlier(1, 10);
        for ep in &port.endpoints {
            cluster.record(&ep.address, Outcome::Status(503), Some(&rule), 3, &metrics);
        }
        assert_eq!(cluster.ejected().len(), 1);
    }

    #[test]
    fn fast_unit_stays_in_the_unit_interval() {
        let draws: Vec<f64> = (0..10_000).map(|_| fast_unit()).collect();
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((0.45..0.55).contains(&mean), "{mean}");
    }

    #[test]
    fn limits_give_slots_back_on_drop() {
        let cluster = Arc::new(Cluster::new("c".into()));
        let limits = Limits {
            max_connections: Some(1),
            ..Limits::default()
        };
        let first = cluster.connection(&limits).unwrap();
        assert!(cluster.connection(&limits).is_none(), "over maxConnections");
        drop(first);
        assert!(cluster.connection(&limits).is_some());
    }
}
