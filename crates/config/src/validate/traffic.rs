//! `loadBalancer`, `connectionPool` and `outlierDetection`: Istio's ranges (istio
//! `pkg/config/validation`: `validateLoadBalancer`, `validateConnectionPool`,
//! `validateOutlierDetection`), and a clear error for each field Meshward does not enforce.

use std::time::Duration;

use super::Issues;
use crate::resources::traffic::{
    ConnectionPool, GoDuration, LoadBalancer, OutlierDetection, SimpleLb,
};

/// The three settings of one `trafficPolicy` or `portLevelSettings` entry at `base`.
pub(super) fn settings(
    lb: Option<&LoadBalancer>,
    pool: Option<&ConnectionPool>,
    outlier: Option<&OutlierDetection>,
    base: &str,
    issues: &mut Issues,
) {
    if let Some(lb) = lb {
        load_balancer(lb, &format!("{base}.loadBalancer"), issues);
    }
    if let Some(pool) = pool {
        connection_pool(pool, &format!("{base}.connectionPool"), issues);
    }
    if let Some(outlier) = outlier {
        outlier_detection(outlier, &format!("{base}.outlierDetection"), issues);
    }
}

fn unsupported(issues: &mut Issues, base: &str, fields: &[(&str, bool)], why: &str) {
    for (field, set) in fields {
        if *set {
            issues.error(
                format!("{base}.{field}"),
                format!("`{field}` is not supported by Meshward: {why}"),
            );
        }
    }
}

fn load_balancer(lb: &LoadBalancer, base: &str, issues: &mut Issues) {
    // istio: "only one of simple or consistentHash can be set".
    if lb.simple.is_some() && lb.consistent_hash.is_some() {
        issues.error(base, "only one of simple or consistentHash can be set");
    }
    if lb.simple == Some(SimpleLb::Passthrough) {
        issues.error(
            format!("{base}.simple"),
            "PASSTHROUGH is not supported: Meshward's service addresses exist only in sidecars, so the sidecar picks the endpoint (a connection to a workload's own address already goes to that workload); use ROUND_ROBIN, LEAST_REQUEST or RANDOM",
        );
    }
    unsupported(
        issues,
        base,
        &[
            ("localityLbSetting", lb.locality_lb_setting.is_some()),
            ("warmupDurationSecs", lb.warmup_duration_secs.is_some()),
            ("warmup", lb.warmup.is_some()),
        ],
        "endpoints have no locality and no warm-up",
    );
    if let Some(hash) = &lb.consistent_hash {
        let base = format!("{base}.consistentHash");
        let keys = [
            hash.http_header_name.is_some(),
            hash.use_source_ip == Some(true),
            hash.http_cookie.is_some(),
            hash.http_query_parameter_name.is_some(),
        ];
        if keys.iter().filter(|k| **k).count() != 1 {
            issues.error(
                &base,
                "exactly one of httpHeaderName, useSourceIp, httpCookie or \
                 httpQueryParameterName must be set",
            );
        }
        if hash.http_header_name.as_deref() == Some("") {
            issues.error(
                format!("{base}.httpHeaderName"),
                "header name must not be empty",
            );
        }
        if hash.http_query_parameter_name.as_deref() == Some("") {
            issues.error(
                format!("{base}.httpQueryParameterName"),
                "query parameter name must not be empty",
            );
        }
        unsupported(
            issues,
            &base,
            &[("httpCookie", hash.http_cookie.is_some())],
            "hash on httpHeaderName, httpQueryParameterName or useSourceIp",
        );
    }
}

/// A count that Istio requires to be non-negative.
fn count(issues: &mut Issues, path: String, value: Option<i64>, min: i64) {
    if let Some(v) = value
        && !(min..=i64::from(u32::MAX)).contains(&v)
    {
        issues.error(
            path,
            format!("must be between {min} and {}, got {v}", u32::MAX),
        );
    }
}

/// Istio: durations must be at least 1 ms.
fn duration(issues: &mut Issues, path: String, value: Option<GoDuration>) {
    if let Some(d) = value
        && d.0 < Duration::from_millis(1)
    {
        issues.error(path, "duration must be at least 1ms");
    }
}

fn connection_pool(pool: &ConnectionPool, base: &str, issues: &mut Issues) {
    if pool.tcp.is_none() && pool.http.is_none() {
        issues.error(base, "must have at least one field (tcp or http)");
    }
    if let Some(tcp) = &pool.tcp {
        let base = format!("{base}.tcp");
        count(
            issues,
            format!("{base}.maxConnections"),
            tcp.max_connections,
            0,
        );
        duration(
            issues,
            format!("{base}.connectTimeout"),
            tcp.connect_timeout,
        );
        if let Some(keepalive) = &tcp.tcp_keepalive {
            duration(issues, format!("{base}.tcpKeepalive.time"), keepalive.time);
            duration(
                issues,
                format!("{base}.tcpKeepalive.interval"),
                keepalive.interval,
            );
        }
        // Istio: "If set to 0s, the timeout will be disabled" — zero is allowed here.
        unsupported(
            issues,
            &base,
            &[(
                "maxConnectionDuration",
                tcp.max_connection_duration.is_some(),
            )],
            "use connectionPool.tcp.idleTimeout",
        );
    }
    if let Some(http) = &pool.http {
        let base = format!("{base}.http");
        count(
            issues,
            format!("{base}.http1MaxPendingRequests"),
            http.http1_max_pending_requests,
            0,
        );
        count(
            issues,
            format!("{base}.http2MaxRequests"),
            http.http2_max_requests,
            0,
        );
        count(
            issues,
            format!("{base}.maxRequestsPerConnection"),
            http.max_requests_per_connection,
            0,
        );
        count(issues, format!("{base}.maxRetries"), http.max_retries, 0);
        duration(issues, format!("{base}.idleTimeout"), http.idle_timeout);
        unsupported(
            issues,
            &base,
            &[
                ("h2UpgradePolicy", http.h2_upgrade_policy.is_some()),
                ("useClientProtocol", http.use_client_protocol.is_some()),
                (
                    "maxConcurrentStreams",
                    http.max_concurrent_streams.is_some(),
                ),
            ],
            "the sidecar speaks HTTP/1.1 to upstreams",
        );
    }
}

fn outlier_detection(outlier: &OutlierDetection, base: &str, issues: &mut Issues) {
    count(
        issues,
        format!("{base}.consecutiveErrors"),
        outlier.consecutive_errors,
        0,
    );
    duration(issues, format!("{base}.interval"), outlier.interval);
    duration(
        issues,
        format!("{base}.baseEjectionTime"),
        outlier.base_ejection_time,
    );
    for (field, value) in [
        ("maxEjectionPercent", outlier.max_ejection_percent),
        ("minHealthPercent", outlier.min_health_percent),
    ] {
        if let Some(v) = value
            && !(0..=100).contains(&v)
        {
            issues.error(
                format!("{base}.{field}"),
                format!("percent must be in [0, 100], got {v}"),
            );
        }
    }
    unsupported(
        issues,
        base,
        &[
            (
                "splitExternalLocalOriginErrors",
                outlier.split_external_local_origin_errors.is_some(),
            ),
            (
                "consecutiveLocalOriginFailures",
                outlier.consecutive_local_origin_failures.is_some(),
            ),
        ],
        "connection failures count as gateway errors",
    );
}
