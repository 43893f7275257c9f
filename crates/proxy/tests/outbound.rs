//! The forward proxy on its own, with a view in hand: names resolve to endpoints, mTLS checks
//! the server's identity before any request byte leaves (502 with the reason otherwise),
//! CONNECT tunnels, and TLS_DISABLE endpoints get plaintext.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

#[path = "support/apps.rs"]
mod apps;
#[path = "support/pki.rs"]
mod pki;

use std::collections::BTreeMap;
use std::sync::Arc;

use meshward_proxy::config::Timeouts;
use meshward_proxy::creds::{CredsStore, load_files};
use meshward_proxy::drain::Drain;
use meshward_proxy::outbound::Outbound;
use meshward_proxy::view::{Endpoint, Service, ServicePort, TlsMode, View};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use apps::http_app;
use pki::{Pki, start_proxy};

fn service(name: &str, endpoint: &str, identity: &str, tls: TlsMode) -> Service {
    Service::new(
        format!("{name}.test.svc.cluster.local"),
        name.into(),
        "test".into(),
        None,
        vec![ServicePort::new(
            8000,
            vec![],
            vec![Endpoint {
                address: endpoint.parse().unwrap(),
                identity: Some(identity.parse().unwrap()),
                has_sidecar: tls == TlsMode::IstioMutual,
                tls,
                tls_source: "test".into(),
            }],
        )],
    )
}

/// Sends `head` on a new connection to `addr` and reads until the peer closes.
async fn exchange(addr: &str, head: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tcp.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn forward_proxy_resolves_and_verifies_the_server() {
    let pki = Pki::new();
    let app = http_app("127.0.75.12:8080".parse().unwrap()).await;
    let plain_app = http_app("127.0.75.13:8080".parse().unwrap()).await;
    let server_svid = pki.issue("test", "server", "server");
    let _server = start_proxy(
        "127.0.75.2",
        "127.0.75.12",
        &server_svid,
        &["8080=strict"],
        &[],
    )
    .await;

    let client = pki.issue("test", "client", "client");
    let store = CredsStore::new();
    let td = "cluster.local".parse().unwrap();
    store.publish(
        load_files(&client.cert, &client.key, &client.bundle, &td)
            .await
            .unwrap(),
    );
    let server_id = "spiffe://cluster.local/ns/test/sa/server";
    let view = View {
        authz: Default::default(),
        path_normalization: Default::default(),
        outbound_policy: None,
        opaque: Default::default(),
        telemetry: Default::default(),
        version: 1,
        namespace: "test".into(),
        trust_domain: td,
        inbound: BTreeMap::new(),
        services: vec![
            service("good", "127.0.75.2:8080", server_id, TlsMode::IstioMutual),
            service(
                "bad",
                "127.0.75.2:8080",
                "spiffe://cluster.local/ns/test/sa/other",
                TlsMode::IstioMutual,
            ),
            service("plain", "127.0.75.13:8080", server_id, TlsMode::Disable),
        ],
    };
    let (_views, view_rx) = watch::channel(Arc::new(view));
    let outbound = Outbound::new(
        "127.0.75.1".parse().unwrap(),
        store.subscribe(),
        view_rx,
        Timeouts::default(),
        Drain::new(),
        Default::default(),
    );
    let listener = TcpListener::bind("127.0.75.1:15001").await.unwrap();
    tokio::spawn(outbound.serve_http_proxy(listener));
    let proxy = "127.0.75.1:15001";
    let get = |url: &str| format!("GET {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");

    let ok = exchange(proxy, &get("http://good:8000/get")).await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(
        ok.ends_with("URI=spiffe://cluster.local/ns/test/sa/client"),
        "{ok}"
    );

    // The server is `sa/server`, the view expects `sa/other`: refused before any request byte.
    let bad = exchange(proxy, &get("http://bad.test.svc:8000/get")).await;
    assert!(bad.starts_with("HTTP/1.1 502"), "{bad}");
    assert!(
        bad.contains("sa/server"),
        "the reason names the identity: {bad}"
    );
    assert_eq!(app.requests().len(), 1);

    let unknown = exchange(proxy, &get("http://10.1.2.3:8000/get")).await;
    assert!(
        unknown.starts_with("HTTP/1.1 502") && unknown.contains("unknown service"),
        "{unknown}"
    );

    let plain = exchange(proxy, &get("http://plain:8000/get")).await;
    assert!(
        plain.starts_with("HTTP/1.1 200") && plain.ends_with("xfcc="),
        "{plain}"
    );
    assert_eq!(plain_app.requests().len(), 1);

    // CONNECT, then a request through the tunnel.
    let tunnel = exchange(
        proxy,
        "CONNECT good:8000 HTTP/1.1\r\nHost: good:8000\r\n\r\nGET /get HTTP/1.1\r\nHost: good\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(tunnel.starts_with("HTTP/1.1 200"), "{tunnel}");
    assert!(
        tunnel.ends_with("URI=spiffe://cluster.local/ns/test/sa/client"),
        "{tunnel}"
    );
    assert_eq!(app.requests().len(), 2);
}
