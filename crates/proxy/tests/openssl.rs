//! Interoperability: `openssl s_client` with a CA-issued SVID and `-alpn istio` is mesh traffic
//! and reaches the app with its identity; without a certificate, or with one from another CA,
//! it is refused and the app sees nothing.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

#[path = "support/apps.rs"]
mod apps;
#[path = "support/pki.rs"]
mod pki;

use std::process::{Command, Stdio};

use apps::http_app;
use pki::{Pki, SvidFiles, path_str, start_proxy};

/// Runs `openssl s_client` against `addr`, sends one HTTP request, returns stdout.
async fn s_client(addr: &str, ca: &str, client: Option<&SvidFiles>) -> String {
    let mut args: Vec<String> = [
        "s_client", "-connect", addr, "-alpn", "istio", "-CAfile", ca, "-quiet", "-ign_eof",
        "-tls1_3",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(c) = client {
        args.extend([
            "-cert".into(),
            path_str(&c.cert).into(),
            "-key".into(),
            path_str(&c.key).into(),
        ]);
    }
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = Command::new("openssl")
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl on PATH");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"GET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
            .unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn s_client_with_a_valid_svid_reaches_the_app() {
    let pki = Pki::new();
    let app = http_app("127.0.68.12:8080".parse().unwrap()).await;
    let _server = start_proxy(
        "127.0.68.2",
        "127.0.68.12",
        &pki.issue("test", "server", "server"),
        &["8080=strict"],
        &[],
    )
    .await;
    let client = pki.issue("test", "openssl", "openssl");
    let out = s_client("127.0.68.2:8080", path_str(&pki.root_path()), Some(&client)).await;
    assert!(out.contains("HTTP/1.1 200"), "{out}");
    assert!(
        out.contains("URI=spiffe://cluster.local/ns/test/sa/openssl"),
        "{out}"
    );
    assert_eq!(app.requests().len(), 1);
}

#[tokio::test]
async fn s_client_without_or_with_a_foreign_certificate_is_refused() {
    let pki = Pki::new();
    let other = Pki::new();
    let app = http_app("127.0.69.12:8080".parse().unwrap()).await;
    let _server = start_proxy(
        "127.0.69.2",
        "127.0.69.12",
        &pki.issue("test", "server", "server"),
        &["8080=strict"],
        &[],
    )
    .await;
    let root = pki.root_path();
    let none = s_client("127.0.69.2:8080", path_str(&root), None).await;
    assert!(!none.contains("HTTP/1.1"), "{none}");
    let foreign = other.issue("test", "client", "client");
    let out = s_client("127.0.69.2:8080", path_str(&root), Some(&foreign)).await;
    assert!(!out.contains("HTTP/1.1"), "{out}");
    assert_eq!(app.connections(), 0);
}
