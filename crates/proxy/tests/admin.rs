//! The admin and readiness endpoints of a running proxy: readiness, certificates, config dump,
//! runtime log level, `/quitquitquit`, and readiness turning 503 while draining.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

#[path = "support/apps.rs"]
mod apps;
#[path = "support/pki.rs"]
mod pki;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use meshward_proxy::{LogControl, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use apps::echo_app;
use pki::{Pki, proxy_config};

/// One HTTP/1.1 request; the whole response.
async fn request(addr: &str, method: &str, path: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).await.unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn admin_endpoints_report_and_control_the_proxy() {
    let pki = Pki::new();
    let _app = echo_app("127.0.72.12:8080".parse().unwrap()).await;
    let svid = pki.issue("test", "server", "server");
    let mut config = proxy_config(
        "127.0.72.2",
        "127.0.72.12",
        &svid,
        &["8080=permissive"],
        &[],
    );
    config.admin_port = 15000;
    config.ready_port = 15021;
    let filters = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&filters);
    // As the binary's: an empty spec reads the filter in force.
    let log: LogControl = Arc::new(move |spec: &str| {
        let mut seen = seen.lock().unwrap();
        if !spec.is_empty() {
            seen.push(spec.to_owned());
        }
        Ok(seen.last().cloned().unwrap_or_else(|| "info".to_owned()))
    });
    let proxy = Proxy::start(config, Some(log)).await.unwrap();
    let (admin, ready) = ("127.0.72.2:15000", "127.0.72.2:15021");

    assert!(
        request(ready, "GET", "/healthz/ready")
            .await
            .starts_with("HTTP/1.1 200")
    );
    let certs = request(admin, "GET", "/certs").await;
    assert!(
        certs.contains("spiffe://cluster.local/ns/test/sa/server"),
        "{certs}"
    );
    let dump = request(admin, "GET", "/config_dump").await;
    let json: serde_json::Value =
        serde_json::from_str(dump.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(json["view"]["inbound"]["8080"], "PERMISSIVE");
    assert_eq!(json["ready"], "ready");
    let logging = request(admin, "POST", "/logging?level=debug").await;
    assert!(logging.starts_with("HTTP/1.1 200"), "{logging}");
    assert_eq!(*filters.lock().unwrap(), ["debug"]);
    let now = request(admin, "GET", "/logging").await;
    assert!(now.ends_with("log filter: debug\n"), "{now}");
    assert_eq!(
        *filters.lock().unwrap(),
        ["debug"],
        "reading changes nothing"
    );
    // The readiness port serves nothing else.
    assert!(
        request(ready, "GET", "/certs")
            .await
            .starts_with("HTTP/1.1 404")
    );

    assert!(
        request(admin, "GET", "/quitquitquit")
            .await
            .starts_with("HTTP/1.1 405")
    );
    assert!(
        request(admin, "POST", "/quitquitquit")
            .await
            .starts_with("HTTP/1.1 200")
    );
    tokio::time::timeout(Duration::from_secs(1), proxy.quit_requested())
        .await
        .unwrap();

    // An open connection holds the drain; meanwhile the proxy reports not ready.
    let mut open = TcpStream::connect("127.0.72.2:8080").await.unwrap();
    open.write_all(b"\x01").await.unwrap();
    let mut byte = [0u8; 1];
    open.read_exact(&mut byte).await.unwrap();
    let drained = tokio::spawn(proxy.shutdown(Duration::from_secs(10)));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let status = request(ready, "GET", "/healthz/ready").await;
    assert!(
        status.starts_with("HTTP/1.1 503") && status.contains("draining"),
        "{status}"
    );
    open.shutdown().await.unwrap();
    let mut rest = Vec::new();
    open.read_to_end(&mut rest).await.unwrap();
    assert!(drained.await.unwrap());
}
