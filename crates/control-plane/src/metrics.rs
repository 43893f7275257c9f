//! The control plane's Prometheus metrics, under Istio's names so that existing dashboards and
//! alerts on `citadel_server_*` and `pilot_*` keep working.
//!
//! Istio exports its counters without the `_total` suffix (its exporter is built with
//! `WithoutCounterSuffixes`, so the series is `citadel_server_csr_count`, typed `counter`) in the
//! Prometheus text format 0.0.4. prometheus-client writes OpenMetrics, where a counter's sample
//! must end in `_total`, and appends it to every [`Counter`]. So Istio's counters here are
//! [`IstioCounter`]s, which keep their name, and `/metrics` is served as Prometheus text 0.0.4
//! (see [`render`]), the format in which a counter sample named like its family is valid.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder},
    metrics::{MetricType, TypedMetric, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// Buckets of `pilot_proxy_convergence_time`, seconds (Istio's).
const CONVERGENCE_BUCKETS: [f64; 8] = [0.1, 0.5, 1.0, 3.0, 5.0, 10.0, 20.0, 30.0];

/// The content type of [`render`]'s output.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A monotonic counter exported under exactly its registered name, as Istio's are. Clones
/// share the value.
#[derive(Debug, Clone, Default)]
pub(crate) struct IstioCounter(Arc<AtomicU64>);

impl IstioCounter {
    /// Adds one.
    pub(crate) fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// The current value.
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl TypedMetric for IstioCounter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for IstioCounter {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        // The gauge encoding writes the bare name and the value: the sample of a counter in
        // the Prometheus text format. The family is still declared `counter` (above).
        encoder.encode_gauge(&self.get())
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Label `type` (`pilot_xds_pushes`, `pilot_total_xds_rejects`): the xDS type, `lds`, `cds`,
/// `eds` or `sds`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TypeLabel {
    pub(crate) r#type: &'static str,
}

/// Label `version` (`pilot_xds`): the version of the connected proxies.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct VersionLabel {
    pub(crate) version: &'static str,
}

/// Label `error` (`citadel_server_csr_sign_err_count`): Istio's error types, `CSR_ERROR`,
/// `TTL_ERROR`, `CERT_GEN_ERROR`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ErrorLabel {
    pub(crate) error: &'static str,
}

/// Counters of the CA and of the push machinery.
#[derive(Debug)]
pub(crate) struct Metrics {
    pub(crate) csr_count: IstioCounter,
    pub(crate) success_cert_issuance_count: IstioCounter,
    pub(crate) csr_parsing_err_count: IstioCounter,
    pub(crate) csr_sign_err_count: Family<ErrorLabel, IstioCounter>,
    pub(crate) authentication_failure_count: IstioCounter,
    pub(crate) root_cert_expiry_timestamp: Gauge,
    pub(crate) config_revision: Gauge,
    pub(crate) connected_proxies: Gauge,
    /// `pilot_xds`: connected proxies by version.
    pub(crate) xds_clients: Family<VersionLabel, Gauge>,
    /// `pilot_xds_pushes`: pushes by xDS type.
    pub(crate) xds_pushes: Family<TypeLabel, IstioCounter>,
    /// `pilot_total_xds_rejects`: NACKs by xDS type.
    pub(crate) xds_rejects: Family<TypeLabel, IstioCounter>,
    /// `pilot_proxy_convergence_time`: seconds from a configuration change until the proxy
    /// acknowledged the view it produced.
    pub(crate) convergence_time: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            csr_count: IstioCounter::default(),
            success_cert_issuance_count: IstioCounter::default(),
            csr_parsing_err_count: IstioCounter::default(),
            csr_sign_err_count: Family::default(),
            authentication_failure_count: IstioCounter::default(),
            root_cert_expiry_timestamp: Gauge::default(),
            config_revision: Gauge::default(),
            connected_proxies: Gauge::default(),
            xds_clients: Family::default(),
            xds_pushes: Family::default(),
            xds_rejects: Family::default(),
            convergence_time: Histogram::new(CONVERGENCE_BUCKETS),
        }
    }
}

impl Metrics {
    /// Registers every metric into `registry`.
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "citadel_server_csr_count",
            "Certificate signing requests received",
            self.csr_count.clone(),
        );
        registry.register(
            "citadel_server_success_cert_issuance_count",
            "Certificates issued",
            self.success_cert_issuance_count.clone(),
        );
        registry.register(
            "citadel_server_csr_parsing_err_count",
            "Signing requests refused for a malformed CSR or an unacceptable key",
            self.csr_parsing_err_count.clone(),
        );
        registry.register(
            "citadel_server_csr_sign_err_count",
            "Signing requests the CA could not sign, by error type",
            self.csr_sign_err_count.clone(),
        );
        registry.register(
            "citadel_server_authentication_failure_count",
            "Signing requests whose credential was refused",
            self.authentication_failure_count.clone(),
        );
        registry.register(
            "citadel_server_root_cert_expiry_timestamp",
            "Expiry of the root certificate, Unix seconds",
            self.root_cert_expiry_timestamp.clone(),
        );
        registry.register(
            "pilot_xds",
            "Proxies with an open discovery stream, by version",
            self.xds_clients.clone(),
        );
        registry.register(
            "pilot_xds_pushes",
            "Views pushed to proxies, by the xDS type of what changed (lds, cds, eds, sds)",
            self.xds_pushes.clone(),
        );
        registry.register(
            "pilot_total_xds_rejects",
            "Views refused by proxies (NACK), by the xDS type of what the refused view changed",
            self.xds_rejects.clone(),
        );
        registry.register(
            "pilot_proxy_convergence_time",
            "Seconds from a configuration change until a proxy acknowledged the view it produced",
            self.convergence_time.clone(),
        );
        registry.register(
            "meshward_config_revision",
            "Revision of the applied configuration",
            self.config_revision.clone(),
        );
        registry.register(
            "meshward_connected_proxies",
            "Proxies with an open discovery stream",
            self.connected_proxies.clone(),
        );
    }
}

/// The registry in the Prometheus text format 0.0.4 (what istiod serves): OpenMetrics text
/// without its `# EOF` marker, which 0.0.4 would read as a comment anyway.
pub(crate) fn render(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut body = String::new();
    prometheus_client::encoding::text::encode_registry(&mut body, registry)?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(metrics: &Metrics) -> String {
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        render(&registry).unwrap_or_default()
    }

    #[test]
    fn istio_counters_keep_their_names() {
        let metrics = Metrics::default();
        metrics.csr_count.inc();
        metrics.csr_count.inc();
        metrics
            .csr_sign_err_count
            .get_or_create(&ErrorLabel { error: "TTL_ERROR" })
            .inc();
        metrics
            .xds_pushes
            .get_or_create(&TypeLabel { r#type: "lds" })
            .inc();
        metrics
            .xds_clients
            .get_or_create(&VersionLabel { version: "1.0" })
            .inc();
        metrics.convergence_time.observe(0.2);
        let text = scrape(&metrics);
        for line in [
            "# TYPE citadel_server_csr_count counter",
            "citadel_server_csr_count 2",
            "citadel_server_success_cert_issuance_count 0",
            "citadel_server_csr_parsing_err_count 0",
            "citadel_server_authentication_failure_count 0",
            "# TYPE citadel_server_csr_sign_err_count counter",
            "citadel_server_csr_sign_err_count{error=\"TTL_ERROR\"} 1",
            "# TYPE pilot_xds_pushes counter",
            "pilot_xds_pushes{type=\"lds\"} 1",
            "# TYPE pilot_xds gauge",
            "pilot_xds{version=\"1.0\"} 1",
            "# TYPE pilot_proxy_convergence_time histogram",
            "pilot_proxy_convergence_time_bucket{le=\"0.5\"} 1",
            "pilot_proxy_convergence_time_count 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert!(!text.contains("_total"), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
        // Families without a series yet are left out, as Istio's are.
        assert!(!text.contains("pilot_total_xds_rejects"), "{text}");
    }
}
