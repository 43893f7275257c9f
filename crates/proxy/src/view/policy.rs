//! A service port's traffic policy (DestinationRule `loadBalancer`, `connectionPool`,
//! `outlierDetection`), as the control plane compiled it.

use std::time::Duration;

use meshward_api::v1 as pb;
use serde::Serialize;

/// How an endpoint is picked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Balance {
    /// In turn (also when no rule says).
    RoundRobin,
    /// The one of two random endpoints with fewer requests in flight.
    LeastRequest,
    /// At random.
    Random,
    /// Rendezvous hashing of a key of the request: a key keeps its endpoint while that
    /// endpoint stays.
    Hash(HashOn),
}

/// What a consistent hash hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HashOn {
    /// A request header (lower case).
    Header(String),
    /// The first value of a query parameter.
    QueryParameter(String),
    /// The client's address.
    SourceIp,
}

/// Limits on connections and requests to all endpoints of the port (`None`: no limit).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Upstream connections open at once.
    pub max_connections: Option<usize>,
    /// Requests waiting for a connection when `max_connections` are busy.
    pub max_pending: Option<usize>,
    /// Requests in flight.
    pub max_requests: Option<usize>,
    /// Requests sent on one connection before it is closed.
    pub max_requests_per_connection: Option<usize>,
    /// Retries in flight (`maxRetries`): beyond, a failed try is not retried.
    pub max_retries: Option<usize>,
    /// TCP connect timeout (the proxy's own when unset).
    pub connect_timeout: Option<Duration>,
    /// Idle time after which a pooled connection is not reused.
    pub idle_timeout: Option<Duration>,
    /// TCP keepalive: idle time, interval, probes.
    pub keepalive: Option<(Option<Duration>, Option<Duration>, Option<u32>)>,
    /// `connectionPool.tcp.idleTimeout` as the DestinationRule sets it (zero: never); see
    /// [`Limits::tcp_idle`].
    pub tcp_idle_timeout: Option<Duration>,
}

/// Istio's idle timeout of a TCP stream when no DestinationRule sets one (Envoy's `tcp_proxy`
/// default, which Istio keeps on inbound and outbound listeners).
pub const DEFAULT_TCP_IDLE: Duration = Duration::from_secs(3600);

impl Limits {
    /// How long a TCP stream may carry no byte either way before it is closed; `None`: never.
    pub fn tcp_idle(&self) -> Option<Duration> {
        match self.tcp_idle_timeout {
            None => Some(DEFAULT_TCP_IDLE),
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d),
        }
    }
}

/// Ejection of endpoints that keep failing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outlier {
    /// 5xx answers (and connection failures) in a row that eject; 0: never.
    pub consecutive_5xx: u32,
    /// 502/503/504 answers (and connection failures) in a row that eject; 0: never.
    pub consecutive_gateway: u32,
    /// How often ejections are reconsidered.
    pub interval: Duration,
    /// Ejection time, times the number of ejections of the endpoint.
    pub base_ejection: Duration,
    /// Most endpoints ejected at once, in percent (at least one may always be).
    pub max_ejection_percent: u32,
    /// Below this share of endpoints not ejected, nothing more is ejected.
    pub min_health_percent: u32,
}

/// One port's traffic policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// Endpoint choice.
    pub balance: Balance,
    /// Limits.
    pub limits: Limits,
    /// Outlier detection, when configured.
    pub outlier: Option<Outlier>,
    /// The DestinationRule it comes from (`ns/name`), empty when none.
    pub source: String,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            balance: Balance::RoundRobin,
            limits: Limits::default(),
            outlier: None,
            source: String::new(),
        }
    }
}

impl Policy {
    /// The policy on the wire; unknown load balancer values fall back to round robin.
    pub fn from_proto(p: &pb::TrafficPolicy) -> Self {
        let limit = |n: u32| (n > 0).then(|| usize::try_from(n).unwrap_or(usize::MAX));
        let ms = |n: u32| (n > 0).then(|| Duration::from_millis(u64::from(n)));
        let balance = match pb::LoadBalancer::try_from(p.load_balancer) {
            Ok(pb::LoadBalancer::LeastRequest) => Balance::LeastRequest,
            Ok(pb::LoadBalancer::Random) => Balance::Random,
            Ok(pb::LoadBalancer::ConsistentHash) => Balance::Hash(
                match (p.hash_header.as_str(), p.hash_query_parameter.as_str()) {
                    ("", "") => HashOn::SourceIp,
                    ("", query) => HashOn::QueryParameter(query.to_owned()),
                    (header, _) => HashOn::Header(header.to_ascii_lowercase()),
                },
            ),
            _ => Balance::RoundRobin,
        };
        let keepalive =
            (p.keepalive_time_ms > 0 || p.keepalive_interval_ms > 0 || p.keepalive_probes > 0)
                .then(|| {
                    (
                        ms(p.keepalive_time_ms),
                        ms(p.keepalive_interval_ms),
                        (p.keepalive_probes > 0).then_some(p.keepalive_probes),
                    )
                });
        Self {
            balance,
            limits: Limits {
                max_connections: limit(p.max_connections),
                max_pending: limit(p.max_pending_requests),
                max_requests: limit(p.max_requests),
                max_requests_per_connection: limit(p.max_requests_per_connection),
                max_retries: limit(p.max_retries),
                connect_timeout: ms(p.connect_timeout_ms),
                idle_timeout: ms(p.idle_timeout_ms),
                keepalive,
                tcp_idle_timeout: p
                    .tcp_idle_timeout_ms
                    .map(|n| Duration::from_millis(u64::from(n))),
            },
            outlier: p.outlier_detection.then(|| Outlier {
                consecutive_5xx: p.consecutive_5xx_errors,
                consecutive_gateway: p.consecutive_gateway_errors,
                interval: Duration::from_millis(u64::from(p.interval_ms.max(1))),
                base_ejection: Duration::from_millis(u64::from(p.base_ejection_time_ms.max(1))),
                max_ejection_percent: p.max_ejection_percent.min(100),
                min_health_percent: p.min_health_percent.min(100),
            }),
            source: p.source.clone(),
        }
    }
}
