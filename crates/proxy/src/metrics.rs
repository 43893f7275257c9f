//! The proxy's Prometheus metrics, served on the admin port at `/stats/prometheus` (Envoy's
//! path). Label values come from configuration (policy names), never from requests, so the
//! number of series is bounded by the policies applied.

use std::fmt::Write as _;

use meshward_config::authz::Decision;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// `policy` (`ns/name`, `none` for the default deny), `rule`, and `protocol` (`http`/`tcp`).
type AuthzLabels = Vec<(&'static str, String)>;

/// Every metric of one proxy.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    denials: Family<AuthzLabels, Counter>,
    audits: Family<AuthzLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
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
        Self {
            registry,
            denials,
            audits,
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
