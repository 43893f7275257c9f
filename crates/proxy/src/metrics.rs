//! The proxy's Prometheus metrics, served on the stats port (`:15090/stats/prometheus`, Istio's)
//! and on the admin port at `/stats/prometheus` (Envoy's path).
//!
//! - Istio's standard metrics ([`istio`]), labelled from the view ([`labels`]);
//! - what Istio lacks: authorization denials and audits by policy, TLS handshake failures by
//!   reason, inbound connections by port, transport and result (STRICT readiness, [`inbound`]),
//!   certificate expiry (`istio_agent_cert_expiry_seconds`, the name Istio's agent uses) and
//!   renewal failures;
//! - the standard process metrics (memory, CPU, file descriptors) for resource panels.
//!
//! Label values come from configuration and verified identities, never from requests, so the
//! number of series is bounded by the mesh (and capped at [`istio::MAX_SERIES`] per kind).

mod histogram;
pub mod inbound;
pub mod istio;
pub mod labels;
mod process;

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use meshward_config::authz::Decision;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

pub use histogram::{BYTES, DURATION_MS, Histogram};

use self::inbound::{InboundLabels, InboundStats};
use self::istio::IstioSeries;
use crate::creds::CredsReceiver;

/// `policy` (`ns/name`, `none` for the default deny), `rule`, and `protocol` (`http`/`tcp`).
type AuthzLabels = Vec<(&'static str, String)>;

/// `direction` (`inbound`/`outbound`) and `reason`.
type TlsLabels = [(&'static str, &'static str); 2];

/// `cluster` (Istio's `outbound|port||host`) and `event`.
type TrafficLabels = [(&'static str, String); 2];

/// Every metric of one proxy.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Istio's standard series.
    pub istio: Arc<IstioSeries>,
    /// STRICT readiness counters per inbound port.
    pub inbound: InboundStats,
    denials: Family<AuthzLabels, Counter>,
    audits: Family<AuthzLabels, Counter>,
    tls_failures: Family<TlsLabels, Counter>,
    renewal_failures: Counter,
    access_log_dropped: Counter,
    traffic: Family<TrafficLabels, Counter>,
    certs: Arc<CertExpiry>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let istio = Arc::new(IstioSeries::default());
        registry.register_collector(Box::new(Arc::clone(&istio)));
        registry.register_collector(Box::new(Overflow(Arc::clone(&istio))));
        let denials = Family::<AuthzLabels, Counter>::default();
        let audits = Family::<AuthzLabels, Counter>::default();
        registry.register(
            "meshward_authz_denials",
            "Connections and requests denied by AuthorizationPolicy, by deciding policy and rule",
            denials.clone(),
        );
        registry.register(
            "meshward_authz_audits",
            "Connections and requests matched by an AUDIT policy rule",
            audits.clone(),
        );
        let tls_failures = Family::<TlsLabels, Counter>::default();
        registry.register(
            "meshward_tls_handshake_failures",
            "Mesh mTLS handshakes that failed, by direction and reason",
            tls_failures.clone(),
        );
        let renewal_failures = Counter::default();
        registry.register(
            "meshward_cert_renewal_failures",
            "Failed attempts to get or renew the workload certificate",
            renewal_failures.clone(),
        );
        let access_log_dropped = Counter::default();
        registry.register(
            "meshward_access_log_dropped",
            "Access log lines dropped because the writer fell behind",
            access_log_dropped.clone(),
        );
        let traffic = Family::<TrafficLabels, Counter>::default();
        registry.register(
            "meshward_upstream_events",
            "DestinationRule and VirtualService policy at work, by cluster and event: overflow \
             (503 UO, a connectionPool limit), ejection and unejection (outlierDetection), retry \
             and retry_overflow (maxRetries reached)",
            traffic.clone(),
        );
        let inbound = Family::<InboundLabels, Counter>::default();
        registry.register(
            "meshward_inbound_connections",
            "Inbound connections by port, transport (mtls, plaintext) and result (accepted, refused)",
            inbound.clone(),
        );
        let certs = Arc::new(CertExpiry::default());
        registry.register_collector(Box::new(Arc::clone(&certs)));
        registry.register_collector(Box::new(process::ProcessCollector));
        Self {
            registry,
            istio,
            inbound: InboundStats::new(inbound),
            denials,
            audits,
            tls_failures,
            renewal_failures,
            access_log_dropped,
            traffic,
            certs,
        }
    }
}

impl Metrics {
    /// Counts one authorization decision.
    pub fn record_authz(&self, decision: &Decision, http: bool) {
        let protocol = if http { "http" } else { "tcp" };
        if !decision.allowed {
            let policy = decision
                .policy
                .as_ref()
                .map_or_else(|| "none".to_owned(), ToString::to_string);
            let rule = decision
                .rule
                .map_or_else(|| "-".to_owned(), |r| r.to_string());
            self.denials
                .get_or_create(&vec![
                    ("policy", policy),
                    ("rule", rule),
                    ("protocol", protocol.to_owned()),
                ])
                .inc();
        }
        for audit in &decision.audit {
            self.audits
                .get_or_create(&vec![
                    ("policy", audit.policy.to_string()),
                    ("rule", audit.rule.to_string()),
                    ("protocol", protocol.to_owned()),
                ])
                .inc();
        }
    }

    /// Counts a failed mesh mTLS handshake; `reason` is one of a few fixed words
    /// ([`crate::tls::failure_reason`]).
    pub fn record_tls_failure(&self, outbound: bool, reason: &'static str) {
        let direction = if outbound { "outbound" } else { "inbound" };
        self.tls_failures
            .get_or_create(&[("direction", direction), ("reason", reason)])
            .inc();
    }

    /// Counts a failed certificate request or renewal.
    pub fn record_renewal_failure(&self) {
        self.renewal_failures.inc();
    }

    /// Counts one traffic-policy event (`overflow`, `ejection`, `unejection`) of `cluster`.
    pub fn record_upstream_event(&self, cluster: &str, event: &'static str) {
        self.traffic
            .get_or_create(&[("cluster", cluster.to_owned()), ("event", event.to_owned())])
            .inc();
    }

    /// Counts an access log line that was dropped.
    pub fn record_access_log_drop(&self) {
        self.access_log_dropped.inc();
    }

    /// Reports `istio_agent_cert_expiry_seconds` from these credentials (set once).
    pub fn watch_certificate(&self, creds: CredsReceiver) {
        let _ = self.certs.0.set(creds);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            // Writing into a String cannot fail; say so rather than serve half a page.
            out.clear();
            let _ = writeln!(out, "# metrics could not be encoded");
        }
        out
    }
}

/// `istio_agent_cert_expiry_seconds{resource_name="default"}`: seconds until the workload
/// certificate expires (negative once expired), read when rendered; absent without one.
#[derive(Debug, Default)]
struct CertExpiry(OnceLock<CredsReceiver>);

impl Collector for CertExpiry {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let Some(creds) = self.0.get().and_then(|rx| rx.borrow().clone()) else {
            return Ok(());
        };
        let now = SystemTime::now();
        let seconds = match creds.not_after().duration_since(now) {
            Ok(left) => left.as_secs_f64(),
            Err(past) => -past.duration().as_secs_f64(),
        };
        let gauge = ConstGauge::new(seconds);
        let mut family = encoder.encode_descriptor(
            "istio_agent_cert_expiry_seconds",
            "Seconds until the workload certificate expires; negative once expired",
            None,
            MetricType::Gauge,
        )?;
        gauge.encode(family.encode_family(&[("resource_name", "default")])?)
    }
}

impl IstioSeries {
    fn overflow_counter(&self) -> ConstCounter<u64> {
        ConstCounter::new(self.overflow.load(Ordering::Relaxed))
    }
}

/// `meshward_metrics_series_overflow_total`, next to the series it guards.
#[derive(Debug)]
struct Overflow(Arc<IstioSeries>);

impl Collector for Overflow {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let counter = self.0.overflow_counter();
        let family = encoder.encode_descriptor(
            "meshward_metrics_series_overflow",
            "Observations not exported because a metric reached its series limit",
            None,
            MetricType::Counter,
        )?;
        counter.encode(family)
    }
}

#[cfg(test)]
mod tests;
