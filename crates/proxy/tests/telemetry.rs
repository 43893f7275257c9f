//! Telemetry of live proxies: Istio's request and TCP metrics on both sides of mTLS traffic
//! (client `reporter="source"`, server `reporter="destination"`), plaintext on a PERMISSIVE
//! port, the stats port, and access log lines (text and JSON) for HTTP, TCP and denials.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

#[path = "support/apps.rs"]
mod apps;
#[path = "support/pki.rs"]
mod pki;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};
use std::time::Duration;

use meshward_proxy::MtlsMode;
use meshward_proxy::Proxy;
use meshward_proxy::access_log::{AccessLog, AccessLogFormat, AccessLogSink};
use meshward_proxy::config::Timeouts;
use meshward_proxy::creds::{CredsStore, load_files};
use meshward_proxy::drain::Drain;
use meshward_proxy::inbound::Inbound;
use meshward_proxy::metrics::Metrics;
use meshward_proxy::metrics::labels::{Peers, WorkloadLabels};
use meshward_proxy::outbound::Outbound;
use meshward_proxy::telemetry::Telemetry;
use meshward_proxy::view::{Endpoint, Service, ServicePort, TelemetryView, TlsMode, View};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use apps::{echo_app, http_app, raw_http};
use pki::{Pki, proxy_config};

const CLIENT_ID: &str = "spiffe://cluster.local/ns/test/sa/client";
const SERVER_ID: &str = "spiffe://cluster.local/ns/test/sa/server";

/// One request on a new connection; the whole response.
async fn get(addr: &str, path: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tcp.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The sample of `name` whose labels contain every one of `parts`.
fn sample<'a>(text: &'a str, name: &str, parts: &[&str]) -> Option<&'a str> {
    text.lines().find(|l| {
        l.strip_prefix(name).is_some_and(|r| r.starts_with('{'))
            && parts.iter().all(|p| l.contains(p))
    })
}

/// Waits (metrics are recorded when responses and connections end) until `render` shows a
/// sample of `name` with `parts` and `value`.
async fn wait_sample<F, Fut>(render: F, name: &str, parts: &[&str], value: &str) -> String
where
    F: Fn() -> Fut,
    Fut: Future<Output = String>,
{
    let mut text = String::new();
    for _ in 0..100 {
        text = render().await;
        if let Some(line) = sample(&text, name, parts)
            && line.ends_with(&format!(" {value}"))
        {
            return line.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {name} {parts:?} = {value} in\n{text}");
}

/// Lines received on `rx` within a short while.
async fn lines(rx: &Receiver<String>, at_least: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..100 {
        out.extend(rx.try_iter());
        if out.len() >= at_least {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    out
}

fn endpoint(address: &str, identity: &str) -> Endpoint {
    Endpoint {
        address: address.parse().unwrap(),
        identity: Some(identity.parse().unwrap()),
        has_sidecar: true,
        tls: TlsMode::IstioMutual,
        tls_source: "test".into(),
    }
}

fn service(name: &str, port: u16, endpoint: Endpoint) -> Service {
    Service::new(
        format!("{name}.test.svc.cluster.local"),
        name.into(),
        "test".into(),
        None,
        vec![ServicePort::new(port, vec![], vec![endpoint])],
    )
}

/// A CONNECT tunnel through the forward proxy at `proxy` to `target`: sends `payload`, closes
/// the write side, returns what came back.
async fn tunnel(proxy: &str, target: &str, payload: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(proxy).await.unwrap();
    let head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !seen.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).await.unwrap();
        seen.push(byte[0]);
    }
    assert!(seen.starts_with(b"HTTP/1.1 200"), "{seen:?}");
    tcp.write_all(payload).await.unwrap();
    tcp.shutdown().await.unwrap();
    let mut back = Vec::new();
    tcp.read_to_end(&mut back).await.unwrap();
    back
}

#[tokio::test]
async fn both_sides_report_istio_metrics_and_access_logs() {
    let pki = Pki::new();
    let _app = http_app("127.0.80.12:8080".parse().unwrap()).await;
    let _plain_app = http_app("127.0.80.12:8081".parse().unwrap()).await;
    let _echo = echo_app("127.0.80.12:9000".parse().unwrap()).await;

    // The server: a standalone proxy with a stats port and text access logs.
    let server_svid = pki.issue("test", "server", "server");
    let mut config = proxy_config(
        "127.0.80.2",
        "127.0.80.12",
        &server_svid,
        &["8080=strict", "8081=permissive", "9000=permissive"],
        &[],
    );
    config.workload = Some("server.test".parse().unwrap());
    config.stats_port = 15090;
    let (server_tx, server_log) = sync_channel(64);
    config.access_log = Some(AccessLogFormat::Text);
    config.access_log_sink = AccessLogSink::Channel(server_tx);
    let server = Proxy::start(config, None).await.unwrap();
    assert_eq!(
        server.bound().stats,
        Some("127.0.80.2:15090".parse().unwrap())
    );
    let server_stats = || get("127.0.80.2:15090", "/stats/prometheus");

    // The client: the forward proxy with a view naming the services and the server workload,
    // JSON access logs.
    let client = pki.issue("test", "client", "client");
    let store = CredsStore::new();
    let td = "cluster.local".parse().unwrap();
    store.publish(
        load_files(&client.cert, &client.key, &client.bundle, &td)
            .await
            .unwrap(),
    );
    let mut peers = Peers::default();
    peers.insert(
        SERVER_ID,
        Some("127.0.80.2".parse().unwrap()),
        WorkloadLabels::new("server-1", "test", "server", "v2", "server", "v2"),
    );
    let view = View {
        authz: Default::default(),
        path_normalization: Default::default(),
        outbound_policy: None,
        opaque: Default::default(),
        version: 1,
        namespace: "test".into(),
        trust_domain: td,
        inbound: BTreeMap::new(),
        services: vec![
            service("web", 8000, endpoint("127.0.80.2:8080", SERVER_ID)),
            service("echo", 9000, endpoint("127.0.80.2:9000", SERVER_ID)),
        ],
        telemetry: TelemetryView {
            workload: Arc::new(WorkloadLabels::new(
                "client-1", "test", "client", "v1", "client", "v1",
            )),
            peers,
            ..TelemetryView::default()
        },
    };
    let (_views, view_rx) = watch::channel(Arc::new(view));
    let client_metrics = Arc::new(Metrics::default());
    let (client_tx, client_log) = sync_channel(64);
    let telemetry = Telemetry::new(
        Arc::clone(&client_metrics),
        AccessLog::new(
            Some(AccessLogFormat::Json),
            AccessLogSink::Channel(client_tx),
        ),
    );
    let outbound = Outbound::new(
        "127.0.80.1".parse().unwrap(),
        store.subscribe(),
        view_rx,
        Timeouts::default(),
        Drain::new(),
        telemetry,
    );
    let listener = TcpListener::bind("127.0.80.1:15001").await.unwrap();
    tokio::spawn(outbound.serve_http_proxy(listener));
    let client_stats = || {
        let m = Arc::clone(&client_metrics);
        async move { m.render() }
    };

    // An mTLS request through both proxies.
    let resp = get("127.0.80.1:15001", "http://web:8000/get").await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let line = wait_sample(
        server_stats,
        "istio_requests_total",
        &[r#"reporter="destination""#, r#"response_code="200""#],
        "1",
    )
    .await;
    for part in [
        r#"source_workload="unknown""#,
        // Standalone: no peer map, so the namespace comes from the verified identity.
        r#"source_workload_namespace="test""#,
        &format!(r#"source_principal="{CLIENT_ID}""#),
        r#"destination_workload="server""#,
        r#"destination_workload_namespace="test""#,
        &format!(r#"destination_principal="{SERVER_ID}""#),
        r#"request_protocol="http""#,
        r#"response_flags="-""#,
        r#"connection_security_policy="mutual_tls""#,
    ] {
        assert!(line.contains(part), "{part} missing from {line}");
    }
    let line = wait_sample(
        client_stats,
        "istio_requests_total",
        &[r#"reporter="source""#, r#"response_code="200""#],
        "1",
    )
    .await;
    for part in [
        r#"source_workload="client-1""#,
        r#"source_app="client""#,
        &format!(r#"source_principal="{CLIENT_ID}""#),
        r#"destination_workload="server-1""#,
        r#"destination_version="v2""#,
        &format!(r#"destination_principal="{SERVER_ID}""#),
        r#"destination_service="web.test.svc.cluster.local""#,
        r#"destination_service_name="web""#,
        r#"destination_service_namespace="test""#,
        r#"connection_security_policy="unknown""#,
    ] {
        assert!(line.contains(part), "{part} missing from {line}");
    }
    let duration = client_metrics.render();
    assert!(
        sample(
            &duration,
            "istio_request_duration_milliseconds_count",
            &[r#"reporter="source""#]
        )
        .is_some_and(|l| l.ends_with(" 1")),
        "{duration}"
    );

    // Plaintext on the PERMISSIVE port: `none`, no principals.
    let plain = raw_http("127.0.80.2:8081".parse().unwrap(), "")
        .await
        .unwrap();
    assert!(plain.starts_with("HTTP/1.1 200"), "{plain}");
    let line = wait_sample(
        server_stats,
        "istio_requests_total",
        &[r#"connection_security_policy="none""#],
        "1",
    )
    .await;
    assert!(
        line.contains(r#"source_principal="unknown""#)
            && line.contains(r#"destination_principal="unknown""#),
        "{line}"
    );

    // TCP through a CONNECT tunnel (mTLS), and plaintext TCP: counted when they close.
    let back = tunnel("127.0.80.1:15001", "echo:9000", b"\x01ping").await;
    assert_eq!(back, b"\x01pingdone");
    for (name, value) in [
        ("istio_tcp_connections_opened_total", "1"),
        ("istio_tcp_connections_closed_total", "1"),
        ("istio_tcp_received_bytes_total", "5"),
        ("istio_tcp_sent_bytes_total", "9"),
    ] {
        let line = wait_sample(
            server_stats,
            name,
            &[
                r#"connection_security_policy="mutual_tls""#,
                r#"request_protocol="tcp""#,
            ],
            value,
        )
        .await;
        assert!(
            line.contains(&format!(r#"source_principal="{CLIENT_ID}""#)),
            "{line}"
        );
        let line = wait_sample(
            client_stats,
            name,
            &[
                r#"reporter="source""#,
                r#"destination_service="echo.test.svc.cluster.local""#,
            ],
            value,
        )
        .await;
        assert!(
            line.contains(r#"destination_workload="server-1""#),
            "{line}"
        );
    }
    let mut tcp = TcpStream::connect("127.0.80.2:9000").await.unwrap();
    tcp.write_all(b"\x02abc").await.unwrap();
    tcp.shutdown().await.unwrap();
    let mut back = Vec::new();
    tcp.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"\x02abcdone");
    wait_sample(
        server_stats,
        "istio_tcp_received_bytes_total",
        &[r#"connection_security_policy="none""#],
        "4",
    )
    .await;

    // Access logs: the server's in Envoy's text format, the client's as JSON.
    let text = lines(&server_log, 4).await;
    let http = text
        .iter()
        .find(|l| l.contains("\"GET /get HTTP/1.1\" 200 - via_upstream") && l.contains(":8080 "))
        .unwrap_or_else(|| panic!("{text:#?}"));
    assert!(http.starts_with('['), "{http}");
    assert!(http.contains(" \"127.0.80.12:8080\" inbound|8080|| - 127.0.80.2:8080 127.0.80.1:"));
    let tcp_line = text
        .iter()
        .find(|l| l.contains("\"- - -\" 0 - - - \"-\" 5 9 "))
        .unwrap_or_else(|| panic!("{text:#?}"));
    assert!(tcp_line.contains("inbound|9000||"), "{tcp_line}");
    assert!(
        text.iter()
            .any(|l| l.contains("\"- - -\" 0 - - - \"-\" 4 8 "))
    );

    let json: Vec<serde_json::Value> = lines(&client_log, 2)
        .await
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let request = json
        .iter()
        .find(|j| j["method"] == "GET")
        .unwrap_or_else(|| panic!("{json:#?}"));
    assert_eq!(request["path"], "/get");
    assert_eq!(request["response_code"], 200);
    assert_eq!(request["response_flags"], "-");
    assert_eq!(request["direction"], "outbound");
    assert_eq!(request["upstream_service"], "web.test.svc.cluster.local");
    assert_eq!(
        request["upstream_cluster"],
        "outbound|8000||web.test.svc.cluster.local"
    );
    assert_eq!(request["upstream_host"], "127.0.80.2:8080");
    assert_eq!(request["peer_principal"], SERVER_ID);
    assert_eq!(request["tls_version"], "TLSv1.3");
    assert!(
        request["tls_cipher_suite"]
            .as_str()
            .unwrap()
            .starts_with("TLS_")
    );
    assert!(request["start_time"].as_str().unwrap().ends_with('Z'));
    let tunnel_line = json
        .iter()
        .find(|j| j["method"].is_null())
        .unwrap_or_else(|| panic!("{json:#?}"));
    assert_eq!(tunnel_line["bytes_received"], 5);
    assert_eq!(tunnel_line["bytes_sent"], 9);
    assert_eq!(
        tunnel_line["upstream_service"],
        "echo.test.svc.cluster.local"
    );

    // A request for an unknown host: NR on the client side, nothing in the labels from the
    // request.
    let nr = get("127.0.80.1:15001", "http://elsewhere.example:80/x").await;
    assert!(nr.starts_with("HTTP/1.1 502"), "{nr}");
    let line = wait_sample(
        client_stats,
        "istio_requests_total",
        &[r#"response_flags="NR""#],
        "1",
    )
    .await;
    assert!(
        line.contains(r#"destination_service="unknown""#) && !line.contains("elsewhere"),
        "{line}"
    );
}

fn denying_view() -> Arc<View> {
    let authz = serde_json::from_str(
        r#"{"policies":[{"namespace":"test","name":"deny-all","action":"DENY","dryRun":false,
            "rules":[{"from":[],"to":[],"when":[]}]}]}"#,
    )
    .unwrap();
    Arc::new(View {
        version: 1,
        namespace: "test".into(),
        trust_domain: "cluster.local".parse().unwrap(),
        inbound: BTreeMap::from([(8080, MtlsMode::Permissive), (9001, MtlsMode::Permissive)]),
        services: Vec::new(),
        authz: Arc::new(authz),
        path_normalization: Default::default(),
        outbound_policy: None,
        opaque: BTreeSet::from([9001]),
        telemetry: Default::default(),
    })
}

#[tokio::test]
async fn denials_are_logged_with_the_deciding_policy() {
    let _app = http_app("127.0.81.12:8080".parse().unwrap()).await;
    let _echo = echo_app("127.0.81.12:9001".parse().unwrap()).await;
    let (_views, view_rx) = watch::channel(denying_view());
    let (tx, rx) = sync_channel(16);
    let metrics = Arc::new(Metrics::default());
    let telemetry = Telemetry::new(
        Arc::clone(&metrics),
        AccessLog::new(Some(AccessLogFormat::Json), AccessLogSink::Channel(tx)),
    );
    let inbound = Inbound::new(
        "127.0.81.2".parse().unwrap(),
        "127.0.81.12".parse().unwrap(),
        CredsStore::new().subscribe(),
        view_rx,
        Timeouts::default(),
        Drain::new(),
        telemetry,
    );
    inbound.start().await.unwrap();

    let resp = raw_http("127.0.81.2:8080".parse().unwrap(), "User-Agent: probe\r\n")
        .await
        .unwrap();
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    let mut tcp = TcpStream::connect("127.0.81.2:9001").await.unwrap();
    tcp.write_all(b"\x01").await.unwrap();
    let mut rest = Vec::new();
    let _ = tcp.read_to_end(&mut rest).await;
    assert!(rest.is_empty());

    let json: Vec<serde_json::Value> = lines(&rx, 2)
        .await
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let http = json
        .iter()
        .find(|j| j["response_code"] == 403)
        .unwrap_or_else(|| panic!("{json:#?}"));
    assert_eq!(http["authz_policy"], "test/deny-all");
    assert_eq!(http["authz_rule"], 0);
    assert_eq!(
        http["response_code_details"],
        "rbac_access_denied_matched_policy[ns[test]-policy[deny-all]-rule[0]]"
    );
    assert_eq!(http["user_agent"], "probe");
    // Denied before any upstream was tried.
    assert!(http["upstream_host"].is_null());
    assert_eq!(http["direction"], "inbound");
    let tcp = json
        .iter()
        .find(|j| j["method"].is_null())
        .unwrap_or_else(|| panic!("{json:#?}"));
    assert_eq!(tcp["authz_policy"], "test/deny-all");
    assert_eq!(
        tcp["connection_termination_details"],
        "rbac_access_denied_matched_policy[ns[test]-policy[deny-all]-rule[0]]"
    );
    // The denied request is still a request in Istio's metrics (403, plaintext).
    let text = metrics.render();
    assert!(
        sample(
            &text,
            "istio_requests_total",
            &[
                r#"response_code="403""#,
                r#"connection_security_policy="none""#
            ]
        )
        .is_some_and(|l| l.ends_with(" 1")),
        "{text}"
    );
}

/// One admin request: the body.
async fn admin_json(addr: &str, path: &str) -> serde_json::Value {
    let resp = get(addr, path).await;
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {resp}"))
}

#[tokio::test]
async fn inbound_counters_tell_mtls_from_plaintext() {
    let pki = Pki::new();
    let _app = http_app("127.0.82.12:8080".parse().unwrap()).await;
    let _strict_app = http_app("127.0.82.12:8081".parse().unwrap()).await;
    let server_svid = pki.issue("test", "server", "readiness-server");
    let mut config = proxy_config(
        "127.0.82.2",
        "127.0.82.12",
        &server_svid,
        &["8080=permissive", "8081=strict"],
        &[],
    );
    config.admin_port = 15000;
    config.stats_port = 15090;
    let _server = Proxy::start(config, None).await.unwrap();
    let client_svid = pki.issue("test", "client", "readiness-client");
    let _client = pki::start_proxy(
        "127.0.82.1",
        "127.0.82.11",
        &client_svid,
        &[],
        &[format!("127.0.82.1:9000=127.0.82.2:8080,{SERVER_ID}")],
    )
    .await;

    // One mTLS connection (through the client's upstream), one plaintext connection accepted
    // on the PERMISSIVE port, one refused on the STRICT port.
    let mtls = raw_http("127.0.82.1:9000".parse().unwrap(), "")
        .await
        .unwrap();
    assert!(mtls.starts_with("HTTP/1.1 200"), "{mtls}");
    let plain = raw_http("127.0.82.2:8080".parse().unwrap(), "")
        .await
        .unwrap();
    assert!(plain.starts_with("HTTP/1.1 200"), "{plain}");
    let refused = raw_http("127.0.82.2:8081".parse().unwrap(), "").await;
    assert!(
        refused.as_ref().map_or(true, String::is_empty),
        "{refused:?}"
    );

    let mut report = serde_json::Value::Null;
    for _ in 0..100 {
        report = admin_json("127.0.82.2:15000", "/stats/inbound").await;
        if report["ports"][1]["plaintext"]["refused"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        report["since"].as_str().unwrap().ends_with('Z'),
        "{report:#}"
    );
    let permissive = &report["ports"][0];
    assert_eq!(permissive["port"], 8080, "{report:#}");
    assert_eq!(permissive["mode"], "PERMISSIVE");
    assert_eq!(permissive["mtls"]["accepted"], 1, "{report:#}");
    assert_eq!(permissive["mtls"]["refused"], 0);
    assert_eq!(permissive["plaintext"]["accepted"], 1);
    let sources = permissive["plaintext_sources"].as_array().unwrap();
    assert_eq!(sources.len(), 1, "only the plaintext caller: {report:#}");
    assert_eq!(sources[0]["address"], "127.0.0.1");
    assert_eq!(sources[0]["accepted"], 1);
    assert!(sources[0]["last_seen_unix_ms"].as_u64().unwrap() > 0);
    let strict = &report["ports"][1];
    assert_eq!(
        (&strict["port"], &strict["mode"]),
        (&8081.into(), &"STRICT".into())
    );
    assert_eq!(strict["plaintext"]["refused"], 1, "{report:#}");
    assert_eq!(strict["plaintext_sources"][0]["refused"], 1);

    let text = get("127.0.82.2:15090", "/stats/prometheus").await;
    for line in [
        r#"meshward_inbound_connections_total{port="8080",transport="mtls",result="accepted"} 1"#,
        r#"meshward_inbound_connections_total{port="8080",transport="plaintext",result="accepted"} 1"#,
        r#"meshward_inbound_connections_total{port="8081",transport="plaintext",result="refused"} 1"#,
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from\n{text}"
        );
    }
    // The stats port serves nothing else, the admin port only loopback clients.
    assert!(
        get("127.0.82.2:15090", "/stats/inbound")
            .await
            .starts_with("HTTP/1.1 404")
    );
}
