//! Two proxies in standalone mode (static identity, `--inbound`, `--upstream`) in front of
//! real apps on loopback addresses: PeerAuthentication modes, caller identity, server identity.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

#[path = "support/apps.rs"]
mod apps;
#[path = "support/pki.rs"]
mod pki;

use std::net::SocketAddr;
use std::time::Duration;

use meshward_proxy::Proxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use apps::{echo_app, http_app, raw_http};
use pki::{Pki, start_proxy};

const CLIENT_ID: &str = "spiffe://cluster.local/ns/test/sa/client";
const SERVER_ID: &str = "spiffe://cluster.local/ns/test/sa/server";

fn sock(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Server proxy on `<net>.2` (inbound 8080 with `mode`, app on `<net>.12`), client proxy on
/// `<net>.1` with an upstream `<net>.1:9000` → `<net>.2:8080` expecting `expect`.
async fn pair(net: &str, pki: &Pki, server_sa: &str, mode: &str, expect: &str) -> (Proxy, Proxy) {
    let server_svid = pki.issue("test", server_sa, &format!("{net}-server"));
    let client_svid = pki.issue("test", "client", &format!("{net}-client"));
    let server = start_proxy(
        &format!("{net}.2"),
        &format!("{net}.12"),
        &server_svid,
        &[&format!("8080={mode}")],
        &[],
    )
    .await;
    let client = start_proxy(
        &format!("{net}.1"),
        &format!("{net}.11"),
        &client_svid,
        &[],
        &[format!("{net}.1:9000={net}.2:8080,{expect}")],
    )
    .await;
    (server, client)
}

#[tokio::test]
async fn mtls_request_carries_caller_identity_and_forged_xfcc_is_stripped() {
    let pki = Pki::new();
    let app = http_app(sock("127.0.60.12:8080")).await;
    let _p = pair("127.0.60", &pki, "server", "strict", SERVER_ID).await;
    let resp = raw_http(
        sock("127.0.60.1:9000"),
        "X-Forwarded-Client-Cert: By=x;URI=spiffe://cluster.local/ns/test/sa/admin\r\n",
    )
    .await
    .unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(
        resp.ends_with(&format!("xfcc=By={SERVER_ID};URI={CLIENT_ID}")),
        "{resp}"
    );
    assert_eq!(
        app.requests(),
        vec![vec![format!("By={SERVER_ID};URI={CLIENT_ID}")]]
    );
}

#[tokio::test]
async fn strict_port_closes_plaintext_and_the_app_sees_nothing() {
    let pki = Pki::new();
    let app = http_app(sock("127.0.61.12:8080")).await;
    let _p = pair("127.0.61", &pki, "server", "strict", SERVER_ID).await;
    let resp = raw_http(sock("127.0.61.2:8080"), "").await;
    assert!(resp.as_ref().map_or(true, String::is_empty), "{resp:?}");
    // A silent client (server-first protocol) is closed too.
    let mut silent = TcpStream::connect("127.0.61.2:8080").await.unwrap();
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
        .await
        .unwrap();
    assert!(n.map_or(true, |n| n == 0));
    assert_eq!(app.connections(), 0);
    // mTLS still works on the same port.
    let ok = raw_http(sock("127.0.61.1:9000"), "").await.unwrap();
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
}

#[tokio::test]
async fn permissive_accepts_plaintext_and_mtls() {
    let pki = Pki::new();
    let app = http_app(sock("127.0.62.12:8080")).await;
    let _p = pair("127.0.62", &pki, "server", "permissive", SERVER_ID).await;
    let plain = raw_http(
        sock("127.0.62.2:8080"),
        "X-Forwarded-Client-Cert: URI=spiffe://cluster.local/ns/test/sa/admin\r\n",
    )
    .await
    .unwrap();
    assert!(plain.starts_with("HTTP/1.1 200"), "{plain}");
    // Plaintext has no verified caller: a forged XFCC is removed, none is added.
    assert!(plain.ends_with("xfcc="), "{plain}");
    let mtls = raw_http(sock("127.0.62.1:9000"), "").await.unwrap();
    assert!(mtls.ends_with(&format!("URI={CLIENT_ID}")), "{mtls}");
    assert_eq!(app.requests().len(), 2);
}

#[tokio::test]
async fn disable_forwards_plaintext_and_never_terminates_mesh_tls() {
    let pki = Pki::new();
    let app = echo_app(sock("127.0.63.12:8080")).await;
    let _p = pair("127.0.63", &pki, "server", "disable", SERVER_ID).await;
    let mut plain = TcpStream::connect("127.0.63.2:8080").await.unwrap();
    plain.write_all(b"hello").await.unwrap();
    plain.shutdown().await.unwrap();
    let mut out = Vec::new();
    plain.read_to_end(&mut out).await.unwrap();
    assert_eq!(out, b"hellodone");
    // The client sidecar's ClientHello reaches the app as bytes; no handshake completes, so
    // nothing of the client's payload is ever sent.
    let mut through = TcpStream::connect("127.0.63.1:9000").await.unwrap();
    through.write_all(b"secret").await.unwrap();
    let mut buf = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), through.read_to_end(&mut buf))
        .await
        .unwrap();
    assert!(
        r.is_err() || !buf.windows(6).any(|w| w == b"secret"),
        "{buf:?}"
    );
    assert_eq!(app.connections(), 2);
}

#[tokio::test]
async fn wrong_server_identity_is_refused_before_any_request_byte() {
    let pki = Pki::new();
    let app = http_app(sock("127.0.64.12:8080")).await;
    // The server runs as `impostor`; the client expects `server`.
    let _p = pair("127.0.64", &pki, "impostor", "strict", SERVER_ID).await;
    let resp = raw_http(sock("127.0.64.1:9000"), "").await;
    assert!(resp.as_ref().map_or(true, String::is_empty), "{resp:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        app.connections(),
        0,
        "no request byte may reach the wrong server's app"
    );
}

#[tokio::test]
async fn half_close_propagates_through_both_proxies() {
    let pki = Pki::new();
    let _app = echo_app(sock("127.0.65.12:8080")).await;
    let _p = pair("127.0.65", &pki, "server", "strict", SERVER_ID).await;
    let mut tcp = TcpStream::connect("127.0.65.1:9000").await.unwrap();
    tcp.write_all(b"ping").await.unwrap();
    tcp.shutdown().await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out, b"pingdone");
}

#[tokio::test]
async fn drain_lets_in_flight_connections_finish_and_stops_accepting() {
    let pki = Pki::new();
    let _app = echo_app(sock("127.0.67.12:8080")).await;
    let (server, client) = pair("127.0.67", &pki, "server", "strict", SERVER_ID).await;
    let mut tcp = TcpStream::connect("127.0.67.1:9000").await.unwrap();
    // Binary bytes: an opaque stream (text that pauses mid-line would be taken as HTTP).
    tcp.write_all(b"\x01").await.unwrap();
    let mut buf = [0u8; 1];
    tcp.read_exact(&mut buf).await.unwrap();

    let drained = tokio::spawn(client.shutdown(Duration::from_secs(10)));
    tokio::time::sleep(Duration::from_millis(200)).await;
    // New connections are refused while draining.
    assert!(TcpStream::connect("127.0.67.1:9000").await.is_err());
    // The open one still works, and the drain finishes when it ends.
    tcp.write_all(b"\x02").await.unwrap();
    tcp.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tcp.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b"\x02done");
    assert!(
        drained.await.unwrap(),
        "drain should finish before its deadline"
    );
    assert!(server.shutdown(Duration::from_secs(1)).await);
}

#[tokio::test]
async fn changed_certificate_files_are_picked_up_without_a_restart() {
    let pki = Pki::new();
    let app = http_app(sock("127.0.66.12:8080")).await;
    let new_id = "spiffe://cluster.local/ns/test/sa/server-v2";
    // The client only accepts the new identity; the server starts with the old one.
    let (_server, _client) = pair("127.0.66", &pki, "server", "strict", new_id).await;
    let refused = raw_http(sock("127.0.66.1:9000"), "").await;
    assert!(
        refused.as_ref().map_or(true, String::is_empty),
        "{refused:?}"
    );

    let next = pki.issue("test", "server-v2", "next");
    // Replace the files the server was started with (`pair` named them `<net>-server`).
    let dir = pki.dir.path();
    std::fs::copy(&next.key, dir.join("127.0.66-server.key")).unwrap();
    std::fs::copy(&next.cert, dir.join("127.0.66-server.crt")).unwrap();
    let mut ok = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Ok(resp) = raw_http(sock("127.0.66.1:9000"), "").await
            && resp.starts_with("HTTP/1.1 200")
        {
            ok = Some(resp);
            break;
        }
    }
    let resp = ok.expect("the new certificate was never served");
    assert!(
        resp.ends_with(&format!("By={new_id};URI={CLIENT_ID}")),
        "{resp}"
    );
    assert_eq!(app.requests().len(), 1);
}

/// An app that answers any request with `101 Switching Protocols` and then echoes bytes.
async fn upgrading_app(addr: &str) {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if tcp.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                tcp.write_all(
                    b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
                )
                .await
                .unwrap();
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
}

#[tokio::test]
async fn upgrades_pass_through_after_101() {
    let pki = Pki::new();
    upgrading_app("127.0.74.12:8080").await;
    let _p = pair("127.0.74", &pki, "server", "strict", SERVER_ID).await;
    let mut tcp = TcpStream::connect("127.0.74.1:9000").await.unwrap();
    tcp.write_all(b"GET /ws HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    tcp.write_all(b"frames").await.unwrap();
    let mut echoed = [0u8; 6];
    tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echoed, b"frames");
}
