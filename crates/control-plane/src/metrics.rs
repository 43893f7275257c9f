//! The control plane's Prometheus metrics, under Istio's names so that existing dashboards and
//! alerts on `citadel_server_*` keep working.

use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};

/// Counters of the CA and gauges of the push machinery.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) csr_count: Counter,
    pub(crate) success_cert_issuance_count: Counter,
    pub(crate) csr_parsing_err_count: Counter,
    pub(crate) authentication_failure_count: Counter,
    pub(crate) root_cert_expiry_timestamp: Gauge,
    pub(crate) config_revision: Gauge,
    pub(crate) connected_proxies: Gauge,
}

impl Metrics {
    /// Registers every metric into `registry`.
    pub(crate) fn register(&self, registry: &mut Registry) {
        // prometheus-client appends `_total` to counters; Istio's names carry no suffix, so the
        // exported series are e.g. `citadel_server_csr_count_total`.
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
            "Certificate signing requests refused as malformed or unacceptable",
            self.csr_parsing_err_count.clone(),
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
