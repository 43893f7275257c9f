use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Metrics;
use super::istio::{HttpKey, NO_FLAGS, TcpKey};
use super::labels::{
    ConnLabels, Reporter, RequestProtocol, SecurityPolicy, ServiceLabels, WorkloadLabels, unknown,
};

fn server_side() -> Arc<ConnLabels> {
    Arc::new(ConnLabels::new(
        Reporter::Destination,
        Arc::new(WorkloadLabels::new(
            "sleep", "shop", "sleep", "v1", "sleep", "v1",
        )),
        Arc::from("spiffe://cluster.local/ns/shop/sa/sleep"),
        Arc::new(WorkloadLabels::new(
            "httpbin-1",
            "shop",
            "httpbin",
            "",
            "httpbin",
            "latest",
        )),
        Arc::from("spiffe://cluster.local/ns/shop/sa/httpbin"),
        SecurityPolicy::MutualTls,
    ))
}

fn service() -> Arc<ServiceLabels> {
    Arc::new(ServiceLabels::new(
        "httpbin.shop.svc.cluster.local",
        "httpbin",
        "shop",
    ))
}

/// The sample lines of `name` (any labels).
fn samples<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .collect()
}

#[test]
fn istio_names_types_and_labels() {
    let metrics = Metrics::default();
    let http = metrics.istio.http(&HttpKey {
        conn: server_side(),
        service: service(),
        protocol: RequestProtocol::Http,
        code: 200,
        grpc: None,
        flags: NO_FLAGS,
    });
    http.duration.observe(3_000); // 3 ms
    http.request_bytes.observe(120);
    http.response_bytes.observe(2_000);
    let tcp = metrics.istio.tcp(&TcpKey {
        conn: server_side(),
        service: service(),
        flags: NO_FLAGS,
    });
    tcp.opened.fetch_add(1, Ordering::Relaxed);
    tcp.closed.fetch_add(1, Ordering::Relaxed);
    tcp.received.fetch_add(5, Ordering::Relaxed);
    tcp.sent.fetch_add(9, Ordering::Relaxed);
    let text = metrics.render();

    for (name, kind) in [
        ("istio_requests", "counter"),
        ("istio_request_duration_milliseconds", "histogram"),
        ("istio_request_bytes", "histogram"),
        ("istio_response_bytes", "histogram"),
        ("istio_tcp_connections_opened", "counter"),
        ("istio_tcp_connections_closed", "counter"),
        ("istio_tcp_sent_bytes", "counter"),
        ("istio_tcp_received_bytes", "counter"),
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "{name} {kind}\n{text}"
        );
    }
    // Counters come out with exactly one `_total`.
    assert!(!text.contains("_total_total"), "{text}");
    let requests = samples(&text, "istio_requests_total");
    assert_eq!(requests.len(), 1, "{text}");
    let expected = concat!(
        r#"istio_requests_total{reporter="destination",source_workload="sleep","#,
        r#"source_canonical_service="sleep",source_canonical_revision="v1","#,
        r#"source_workload_namespace="shop","#,
        r#"source_principal="spiffe://cluster.local/ns/shop/sa/sleep",source_app="sleep","#,
        r#"source_version="v1",source_cluster="unknown",destination_workload="httpbin-1","#,
        r#"destination_workload_namespace="shop","#,
        r#"destination_principal="spiffe://cluster.local/ns/shop/sa/httpbin","#,
        r#"destination_app="httpbin",destination_version="unknown","#,
        r#"destination_service="httpbin.shop.svc.cluster.local","#,
        r#"destination_canonical_service="httpbin",destination_canonical_revision="latest","#,
        r#"destination_service_name="httpbin",destination_service_namespace="shop","#,
        r#"destination_cluster="unknown",request_protocol="http",response_code="200","#,
        r#"grpc_response_status="",response_flags="-","#,
        r#"connection_security_policy="mutual_tls"} 1"#,
    );
    assert_eq!(requests[0], expected);

    // Istio's buckets, cumulative, with the count and sum.
    let buckets = samples(&text, "istio_request_duration_milliseconds_bucket");
    assert_eq!(buckets.len(), 20, "19 bounds and +Inf");
    assert!(buckets[0].contains(r#"le="0.5""#) && buckets[0].ends_with(" 0"));
    assert!(buckets[2].contains(r#"le="5.0""#) && buckets[2].ends_with(" 1"));
    assert!(buckets[19].contains(r#"le="+Inf""#) && buckets[19].ends_with(" 1"));
    assert!(samples(&text, "istio_request_duration_milliseconds_sum")[0].ends_with(" 3.0"));
    assert!(samples(&text, "istio_request_duration_milliseconds_count")[0].ends_with(" 1"));
    let sizes = samples(&text, "istio_request_bytes_bucket");
    assert_eq!(sizes.len(), 11, "1..10^9 and +Inf");
    assert!(sizes[9].contains(r#"le="1000000000.0""#));

    // TCP series: no response code, request_protocol tcp.
    let sent = samples(&text, "istio_tcp_sent_bytes_total");
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].contains(r#"request_protocol="tcp",response_flags="-",connection_security_policy="mutual_tls"} 9"#),
        "{}",
        sent[0]
    );
    assert!(!sent[0].contains("response_code"));
    assert!(samples(&text, "istio_tcp_received_bytes_total")[0].ends_with(" 5"));
    assert!(samples(&text, "istio_tcp_connections_opened_total")[0].ends_with(" 1"));
    assert!(samples(&text, "istio_tcp_connections_closed_total")[0].ends_with(" 1"));
}

#[test]
fn equal_label_sets_share_one_series() {
    let metrics = Metrics::default();
    let key = |code| HttpKey {
        conn: server_side(),
        service: service(),
        protocol: RequestProtocol::Grpc,
        code,
        grpc: Some(7),
        flags: NO_FLAGS,
    };
    metrics.istio.http(&key(200)).duration.observe(1);
    metrics.istio.http(&key(200)).duration.observe(1);
    metrics.istio.http(&key(503)).duration.observe(1);
    let text = metrics.render();
    let requests = samples(&text, "istio_requests_total");
    assert_eq!(requests.len(), 2, "{text}");
    assert!(requests.iter().any(|l| l.contains(r#"response_code="200""#)
        && l.contains(r#"request_protocol="grpc""#)
        && l.contains(r#"grpc_response_status="7""#)
        && l.ends_with(" 2")));
}

#[test]
fn client_side_reports_unknown_security_policy() {
    let metrics = Metrics::default();
    let conn = Arc::new(ConnLabels::new(
        Reporter::Source,
        WorkloadLabels::unknown(),
        unknown(),
        WorkloadLabels::unknown(),
        unknown(),
        SecurityPolicy::Unknown,
    ));
    metrics
        .istio
        .http(&HttpKey {
            conn,
            service: ServiceLabels::unknown(),
            protocol: RequestProtocol::Http,
            code: 502,
            grpc: None,
            flags: "NR",
        })
        .duration
        .observe(10);
    let text = metrics.render();
    let line = samples(&text, "istio_requests_total")[0];
    assert!(
        line.starts_with(r#"istio_requests_total{reporter="source",source_workload="unknown""#)
    );
    assert!(line.contains(r#"destination_service="unknown""#));
    assert!(line.contains(r#"response_flags="NR",connection_security_policy="unknown"}"#));
}

#[test]
fn meshward_metrics_have_their_names() {
    let metrics = Metrics::default();
    metrics.record_tls_failure(false, "unknown_ca");
    metrics.record_tls_failure(true, "certificate_rejected");
    metrics.record_renewal_failure();
    metrics.record_access_log_drop();
    let text = metrics.render();
    for line in [
        r#"meshward_tls_handshake_failures_total{direction="inbound",reason="unknown_ca"} 1"#,
        r#"meshward_tls_handshake_failures_total{direction="outbound",reason="certificate_rejected"} 1"#,
        "meshward_cert_renewal_failures_total 1",
        "meshward_access_log_dropped_total 1",
        "meshward_metrics_series_overflow_total 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from\n{text}"
        );
    }
    // No certificate watched: no expiry gauge.
    assert!(!text.contains("istio_agent_cert_expiry_seconds{"));
}
