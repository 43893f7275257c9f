//! A PeerAuthentication change applies to open connections too: a plaintext connection admitted
//! under PERMISSIVE is closed when the port turns STRICT, and new plaintext is refused.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

#[path = "support/apps.rs"]
mod apps;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use meshward_proxy::MtlsMode;
use meshward_proxy::config::Timeouts;
use meshward_proxy::creds::CredsStore;
use meshward_proxy::drain::Drain;
use meshward_proxy::inbound::Inbound;
use meshward_proxy::view::View;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use apps::echo_app;

fn view(version: u64, mode: MtlsMode) -> Arc<View> {
    Arc::new(View {
        version,
        namespace: "test".into(),
        trust_domain: "cluster.local".parse().unwrap(),
        inbound: BTreeMap::from([(8080, mode)]),
        services: Vec::new(),
        authz: Default::default(),
        path_normalization: Default::default(),
        outbound_policy: None,
        opaque: Default::default(),
        telemetry: Default::default(),
    })
}

#[tokio::test]
async fn open_plaintext_is_closed_when_the_port_turns_strict() {
    let app = echo_app("127.0.73.12:8080".parse().unwrap()).await;
    let (views, view_rx) = watch::channel(view(1, MtlsMode::Permissive));
    let inbound = Inbound::new(
        "127.0.73.2".parse().unwrap(),
        "127.0.73.12".parse().unwrap(),
        CredsStore::new().subscribe(),
        view_rx,
        Timeouts::default(),
        Drain::new(),
        Default::default(),
    );
    inbound.start().await.unwrap();

    let mut open = TcpStream::connect("127.0.73.2:8080").await.unwrap();
    open.write_all(b"\x01").await.unwrap();
    let mut byte = [0u8; 1];
    open.read_exact(&mut byte).await.unwrap();
    assert_eq!(app.connections(), 1);

    views.send_replace(view(2, MtlsMode::Strict));
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), open.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the connection stayed open after the port turned STRICT"
    );
    // Whatever is written now never reaches the app.
    let _ = open.write_all(b"\x02").await;

    let mut fresh = TcpStream::connect("127.0.73.2:8080").await.unwrap();
    fresh.write_all(b"\x03").await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), fresh.read_to_end(&mut out)).await;
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(app.connections(), 1);
}
