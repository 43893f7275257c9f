//! The traffic settings a client applies to one destination port: `loadBalancer`,
//! `connectionPool` and `outlierDetection` from the DestinationRule that applies, found as for
//! TLS (`resolve::tls`), merged as Istio merges them.

use serde::Serialize;

use super::tls::Client;
use crate::mesh::Mesh;
use crate::meta::{Kind, ResourceKey};
use crate::resources::destination_rule::TrafficPolicy;
use crate::resources::traffic::{ConnectionPool, LoadBalancer, OutlierDetection};

/// The effective settings of one destination port (each `None` when no rule sets it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficSettings {
    /// How an endpoint is picked.
    pub load_balancer: Option<LoadBalancer>,
    /// Limits.
    pub connection_pool: Option<ConnectionPool>,
    /// Ejection of failing endpoints.
    pub outlier_detection: Option<OutlierDetection>,
    /// The DestinationRule they come from.
    pub rule: Option<ResourceKey>,
}

impl Mesh {
    /// The traffic settings `client` applies to `host:port` (subset `subset`).
    ///
    /// Istio (`MergeTrafficPolicy`): "port-level settings override the settings of the policy
    /// they sit in, each of loadBalancer, connectionPool, outlierDetection as a whole"; a
    /// subset's policy is merged over the top-level one the same way; "first top-level
    /// trafficPolicy wins, first subset of a name wins" across rules.
    pub fn traffic_settings(
        &self,
        client: Client<'_>,
        host: &str,
        service_namespace: Option<&str>,
        port: u16,
        subset: Option<&str>,
    ) -> TrafficSettings {
        let (top, sub) = self.applicable_policies(client, host, service_namespace, subset);
        let mut out = TrafficSettings::default();
        for (rule, policy) in [top, sub].into_iter().flatten() {
            merge(&mut out, policy, port);
            out.rule = Some(rule.key(Kind::DestinationRule));
        }
        out
    }
}

/// Puts what `policy` sets for `port` over `out`, field by field.
fn merge(out: &mut TrafficSettings, policy: &TrafficPolicy, port: u16) {
    let at_port = policy
        .port_level_settings
        .iter()
        .find(|s| s.port.is_some_and(|p| p.number.0 == u64::from(port)));
    let lb = at_port.and_then(|s| s.load_balancer.as_ref());
    if let Some(v) = lb.or(policy.load_balancer.as_ref()) {
        out.load_balancer = Some(v.clone());
    }
    let pool = at_port.and_then(|s| s.connection_pool.as_ref());
    if let Some(v) = pool.or(policy.connection_pool.as_ref()) {
        out.connection_pool = Some(v.clone());
    }
    let outlier = at_port.and_then(|s| s.outlier_detection.as_ref());
    if let Some(v) = outlier.or(policy.outlier_detection.as_ref()) {
        out.outlier_detection = Some(v.clone());
    }
}
