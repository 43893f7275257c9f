//! Hostile TLS toward a STRICT port: plaintext and random bytes, no or foreign client
//! certificates, old protocol versions and weak suites (`openssl s_client`), a ClientHello sent
//! one byte at a time then silence, oversized and malformed ClientHellos, oversized and deep
//! certificate chains, renegotiation, 0-RTT, and idle connections. Every one is refused or
//! closed, the app behind the proxy sees nothing, and a well-behaved client is served right
//! after. `docs/robustness.md` lists each case.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

#[path = "support/apps.rs"]
mod apps;
#[path = "support/forge.rs"]
mod forge;
#[path = "support/pki.rs"]
mod pki;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use meshward_proxy::Proxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use apps::{Seen, echo_app, http_app};
use forge::{
    Ca, GET, Leaf, client_config, client_hello, leaf_with, raw_chain_config, raw_exchange, record,
    refused, rustls_client_hello, small_hello_config, tls_exchange,
};
use pki::{SvidFiles, path_str, proxy_config};

/// A proxy on `<net>.2` with port 8080 STRICT (HTTP app on `<net>.12:8080`) and 8081 STRICT (echo
/// app on `<net>.12:8081`), admin on 15000, and the given handshake timeout.
struct Server {
    _proxy: Proxy,
    ca: Ca,
    dir: tempfile::TempDir,
    http: Seen,
    echo: Seen,
    net: String,
    client: Leaf,
}

impl Server {
    async fn start(net: &str, handshake: Duration) -> Self {
        let ca = Ca::root("robustness root");
        let dir = tempfile::tempdir().unwrap();
        let files = ca.write(dir.path(), "server", &ca.svid("test", "server"));
        let http = http_app(sock(&format!("{net}.12:8080"))).await;
        let echo = echo_app(sock(&format!("{net}.12:8081"))).await;
        let mut config = proxy_config(
            &format!("{net}.2"),
            &format!("{net}.12"),
            &files,
            &["8080=strict", "8081=strict"],
            &[],
        );
        config.admin_port = 15000;
        config.timeouts.handshake = handshake;
        let proxy = Proxy::start(config, None).await.unwrap();
        Self {
            _proxy: proxy,
            client: ca.svid("test", "client"),
            ca,
            dir,
            http,
            echo,
            net: net.to_owned(),
        }
    }

    fn addr(&self, port: u16) -> SocketAddr {
        sock(&format!("{}.2:{port}", self.net))
    }

    /// A well-behaved mTLS client gets its answer (the proxy is alive and serving).
    async fn still_serves(&self) {
        let before = self.http.requests().len();
        let out = tls_exchange(
            self.addr(8080),
            client_config(Some(&self.client), b"istio"),
            GET,
        )
        .await
        .unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(
            text.contains("URI=spiffe://cluster.local/ns/test/sa/client"),
            "{text}"
        );
        assert_eq!(self.http.requests().len(), before + 1);
    }

    /// The client's files (certificate, key, the root) for `openssl s_client`.
    fn client_files(&self) -> SvidFiles {
        self.ca.write(self.dir.path(), "client", &self.client)
    }

    /// Inbound handshake failures counted on the admin port (all reasons).
    async fn tls_failures(&self) -> u64 {
        let text = admin_get(self.addr(15000), "/stats/prometheus").await;
        text.lines()
            .filter(|l| {
                (l.starts_with("meshward_tls_handshake_failures_total{")
                    || l.starts_with("meshward_tls_handshake_failures{"))
                    && l.contains("direction=\"inbound\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// Nothing reached either app.
    fn apps_saw_nothing(&self, case: &str) {
        assert_eq!(
            self.http.connections(),
            0,
            "{case}: the HTTP app was reached"
        );
        assert_eq!(
            self.echo.connections(),
            0,
            "{case}: the TCP app was reached"
        );
    }
}

fn sock(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

async fn admin_get(addr: SocketAddr, path: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A small deterministic byte generator (xorshift), so "random" cases repeat exactly.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

#[tokio::test]
async fn plaintext_and_random_bytes_to_a_strict_port_are_closed() {
    let server = Server::start("127.0.140", Duration::from_secs(2)).await;
    let hello = rustls_client_hello(client_config(Some(&server.client), b"istio"));
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
        ),
        (
            "an HTTP/2 preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        ),
        (
            "a PROXY protocol header",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(),
        ),
        ("an SSLv2 ClientHello", vec![0x80, 0x2e, 0x01, 0x00, 0x02]),
        ("a TLS alert record", record(0x15, [3, 3], &[2, 40])),
        ("application data first", record(0x17, [3, 3], &[0u8; 64])),
        ("a zero-length handshake record", record(0x16, [3, 1], &[])),
        ("a record longer than TLS allows", {
            let mut r = vec![0x16, 3, 1, 0xff, 0xff];
            r.extend_from_slice(&[0u8; 1024]);
            r
        }),
        ("a ClientHello without a mesh ALPN", {
            rustls_client_hello(client_config(Some(&server.client), b"h2"))
        }),
        (
            "a ClientHello cut short, then end of stream",
            hello[..hello.len() / 2].to_vec(),
        ),
        ("64 KiB of zeros", vec![0u8; 64 * 1024]),
    ];
    for seed in 1..=8u64 {
        let len = usize::try_from(seed * 997).unwrap();
        cases.push(("random bytes", noise(seed, len)));
    }
    // Random bytes behind a TLS handshake record header, the shape the sniffer reads furthest.
    for seed in 9..=12u64 {
        let payload = noise(seed, 512);
        cases.push((
            "random bytes in a handshake record",
            record(0x16, [3, 1], &payload),
        ));
    }
    for (case, bytes) in &cases {
        for port in [8080, 8081] {
            let out = raw_exchange(server.addr(port), bytes, Duration::from_secs(15)).await;
            // Closed (or reset) with nothing sent back, apart from a TLS alert for a hello.
            match &out {
                Ok(back) => assert!(
                    back.is_empty() || back[0] == 0x15,
                    "{case} on {port}: got {back:?}"
                ),
                Err(err) => assert!(
                    !err.to_string().contains("still open"),
                    "{case} on {port}: {err}"
                ),
            }
        }
    }
    server.apps_saw_nothing("plaintext and noise");
    server.still_serves().await;
}

#[tokio::test]
async fn clients_without_a_valid_svid_are_refused_and_counted() {
    let server = Server::start("127.0.141", Duration::from_secs(10)).await;
    let before = server.tls_failures().await;
    let other = Ca::root("robustness root");
    let trusted_root_leaf = {
        // A leaf from another CA with the trusted root's name, followed by a leaf of ours:
        // neither a look-alike issuer nor extra certificates build a path.
        let mut leaf = other.svid("test", "client");
        leaf.chain.extend(server.client.chain.iter().cloned());
        leaf
    };
    let self_signed = Ca::root("spiffe://cluster.local/ns/test/sa/client");
    let cases: Vec<(&str, Option<Leaf>)> = vec![
        ("no client certificate", None),
        (
            "a client certificate from another root",
            Some(other.svid("test", "client")),
        ),
        (
            "another root's leaf with one of ours appended",
            Some(trusted_root_leaf),
        ),
        (
            "a self-signed certificate naming a mesh identity",
            Some(self_signed.leaf(&leaf_with(
                "spiffe://cluster.local/ns/test/sa/client",
                |_| {},
            ))),
        ),
    ];
    let count = cases.len();
    for (case, leaf) in cases {
        for alpn in [b"istio".as_slice(), b"istio-http/1.1", b"istio-h2"] {
            let out =
                tls_exchange(server.addr(8080), client_config(leaf.as_ref(), alpn), GET).await;
            assert!(refused(&out), "{case}: {out:?}");
        }
    }
    server.apps_saw_nothing("clients without a valid SVID");
    let after = server.tls_failures().await;
    assert!(
        after >= before + u64::try_from(count * 3).unwrap(),
        "handshake failures {before} → {after}"
    );
    server.still_serves().await;
}

/// Runs `openssl s_client` with `args` against `addr`, sending one request; (stdout, stderr).
async fn s_client(addr: SocketAddr, files: &SvidFiles, args: &[&str]) -> (String, String) {
    let mut all: Vec<String> = [
        "s_client",
        "-connect",
        &addr.to_string(),
        "-alpn",
        "istio",
        "-quiet",
        "-ign_eof",
        "-cert",
        path_str(&files.cert),
        "-key",
        path_str(&files.key),
        "-CAfile",
        path_str(&files.bundle),
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    all.extend(args.iter().map(ToString::to_string));
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = Command::new("timeout")
            .arg("20")
            .arg("openssl")
            .args(&all)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("openssl on PATH");
        let _ = child.stdin.take().unwrap().write_all(GET);
        let out = child.wait_with_output().unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn old_protocol_versions_and_weak_suites_are_refused() {
    let server = Server::start("127.0.142", Duration::from_secs(10)).await;
    let files = server.client_files();
    // The baseline: the same openssl with the same certificate over TLS 1.3 gets through.
    let (ok, err) = s_client(server.addr(8080), &files, &["-tls1_3"]).await;
    assert!(ok.contains("HTTP/1.1 200"), "{ok}\n{err}");
    let before = server.http.requests().len();
    // SECLEVEL=0 makes OpenSSL 3 offer what it would refuse itself, so the proxy decides.
    let cases: &[(&str, &[&str])] = &[
        ("TLS 1.0", &["-tls1", "-cipher", "DEFAULT:@SECLEVEL=0"]),
        ("TLS 1.1", &["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"]),
        ("TLS 1.2", &["-tls1_2"]),
        (
            "TLS 1.2 with a weak suite",
            &["-tls1_2", "-cipher", "AES128-SHA:DES-CBC3-SHA:@SECLEVEL=0"],
        ),
        (
            "TLS 1.2 renegotiation offered",
            &["-tls1_2", "-legacy_renegotiation"],
        ),
        (
            "TLS 1.3 with only the short-tag CCM suite",
            &["-tls1_3", "-ciphersuites", "TLS_AES_128_CCM_8_SHA256"],
        ),
        (
            "TLS 1.3 with only the CCM suite",
            &["-tls1_3", "-ciphersuites", "TLS_AES_128_CCM_SHA256"],
        ),
        (
            "TLS 1.3 with only finite-field groups",
            &["-tls1_3", "-groups", "ffdhe2048"],
        ),
    ];
    for (case, args) in cases {
        let (out, err) = s_client(server.addr(8080), &files, args).await;
        assert!(!out.contains("HTTP/1.1"), "{case}: served:\n{out}");
        // The handshake reached the proxy and was refused there with an alert.
        assert!(
            err.contains("SSL alert number"),
            "{case}: no refusal from the proxy:\n{err}"
        );
    }
    assert_eq!(
        server.http.requests().len(),
        before,
        "a refused client reached the app"
    );
    assert_eq!(server.echo.connections(), 0);
    server.still_serves().await;
}

#[tokio::test]
async fn a_client_hello_trickled_one_byte_at_a_time_then_silence_is_closed() {
    // A 1 s handshake bound keeps the test short; the default is 10 s.
    let server = Server::start("127.0.143", Duration::from_secs(1)).await;
    let hello = rustls_client_hello(small_hello_config(Some(&server.client), b"istio"));
    // Stop after the record header, in the middle, one byte before the end, and after a
    // complete ClientHello (the proxy answers, then waits for a Finished that never comes);
    // and once trickling slower than the bound allows (the proxy closes mid-hello).
    let cases = [
        (3, Duration::from_millis(1)),
        (5, Duration::from_millis(1)),
        (hello.len() / 2, Duration::from_millis(1)),
        (hello.len() - 1, Duration::from_millis(1)),
        (hello.len(), Duration::from_millis(1)),
        (hello.len(), Duration::from_millis(20)),
    ];
    for (stop, pause) in cases {
        let mut tcp = TcpStream::connect(server.addr(8080)).await.unwrap();
        let mut cut = false;
        for byte in &hello[..stop] {
            if tcp.write_all(std::slice::from_ref(byte)).await.is_err() {
                cut = true;
                break;
            }
            tokio::time::sleep(pause).await;
        }
        if !cut {
            let mut out = Vec::new();
            let closed =
                tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut out)).await;
            assert!(closed.is_ok(), "stopped at {stop}: still open");
        }
    }
    // Silence from the first byte: closed too (the first-byte bound).
    let mut silent = TcpStream::connect(server.addr(8081)).await.unwrap();
    let mut out = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(20), silent.read_to_end(&mut out)).await;
    assert!(closed.is_ok(), "a silent connection stayed open");
    assert!(out.is_empty());
    server.apps_saw_nothing("slow ClientHello");
    server.still_serves().await;
}

#[tokio::test]
async fn oversized_and_malformed_client_hellos_are_refused() {
    let server = Server::start("127.0.144", Duration::from_secs(2)).await;
    let istio: &[&[u8]] = &[b"istio"];
    let big = client_hello(istio, [3, 3], 20_000);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "a ClientHello larger than one record, split over two",
            [
                record(0x16, [3, 1], &big[..16 * 1024]),
                record(0x16, [3, 1], &big[16 * 1024..]),
            ]
            .concat(),
        ),
        (
            "a ClientHello that fills one record with padding",
            record(0x16, [3, 1], &client_hello(istio, [3, 3], 16 * 1024 - 80)),
        ),
        ("a ClientHello whose length runs past its record", {
            let mut hello = client_hello(istio, [3, 3], 0);
            hello[3] = hello[3].wrapping_add(40);
            record(0x16, [3, 1], &hello)
        }),
        ("an ALPN list whose length runs past its extension", {
            let mut hello = client_hello(istio, [3, 3], 0);
            let at = hello.windows(5).position(|w| w == b"istio").unwrap() - 1;
            hello[at] = 200;
            record(0x16, [3, 1], &hello)
        }),
        (
            "a mesh ALPN with no TLS 1.3 (a TLS 1.2-only hello)",
            record(0x16, [3, 1], &client_hello(istio, [3, 3], 0)),
        ),
        ("two hundred ALPN values, the mesh one last", {
            let many: Vec<Vec<u8>> = (0..200).map(|i| format!("p{i}").into_bytes()).collect();
            let mut refs: Vec<&[u8]> = many.iter().map(Vec::as_slice).collect();
            refs.push(b"istio");
            record(0x16, [3, 1], &client_hello(&refs, [3, 3], 0))
        }),
        ("a second ClientHello right after the first", {
            let hello = rustls_client_hello(client_config(Some(&server.client), b"istio"));
            [hello.clone(), hello].concat()
        }),
        ("a ClientHello followed by garbage records", {
            let hello = rustls_client_hello(client_config(Some(&server.client), b"istio"));
            [hello, record(0x17, [3, 3], &noise(3, 300))].concat()
        }),
    ];
    for (case, bytes) in &cases {
        let out = raw_exchange(server.addr(8080), bytes, Duration::from_secs(15)).await;
        match &out {
            // Whatever the proxy says before closing is TLS (a ServerHello, an alert).
            Ok(back) => assert!(
                back.is_empty() || matches!(back[0], 0x15 | 0x16),
                "{case}: {back:?}"
            ),
            Err(err) => assert!(!err.to_string().contains("still open"), "{case}: {err}"),
        }
    }
    server.apps_saw_nothing("malformed ClientHellos");
    server.still_serves().await;
}

#[tokio::test]
async fn oversized_and_deep_certificate_chains_are_refused() {
    let server = Server::start("127.0.145", Duration::from_secs(10)).await;
    let id = "spiffe://cluster.local/ns/test/sa/client";
    // 1 800 DNS names: a leaf of about 50 KiB, with a valid signature and a mesh identity.
    let fat = server.ca.leaf(&leaf_with(id, |p| {
        for i in 0..1_800 {
            p.subject_alt_names.push(rcgen::SanType::DnsName(
                format!("name-{i:05}.padding.example").try_into().unwrap(),
            ));
        }
    }));
    // The same leaf twice: a Certificate message over the 64 KiB a handshake message may have.
    let doubled = [fat.chain.clone(), fat.chain.clone()].concat();
    // Twelve intermediates, each properly signed: deeper than any path the verifier builds.
    let mut deep = server.ca.intermediate(forge::ca_params("intermediate 0"));
    for i in 1..12 {
        deep = deep.intermediate(forge::ca_params(&format!("intermediate {i}")));
    }
    let deep_leaf = deep.leaf(&forge::leaf_params(id));
    // Our own valid leaf followed by 300 junk certificates (copies of an intermediate).
    let ok = server.ca.svid("test", "client");
    let junk = deep.chain[0].clone();
    let padded = [ok.chain.clone(), vec![junk; 300]].concat();
    // Within the bounds, a large but valid SVID (DNS names beside the one URI SAN are allowed)
    // is served.
    let out = tls_exchange(
        server.addr(8080),
        raw_chain_config(fat.chain.clone(), &fat.key, b"istio"),
        GET,
    )
    .await
    .unwrap();
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let served = server.http.requests().len();
    let cases = [
        ("a Certificate message over 64 KiB", doubled, &fat.key),
        (
            "twelve intermediates",
            deep_leaf.chain.clone(),
            &deep_leaf.key,
        ),
        ("a valid leaf and 300 junk certificates", padded, &ok.key),
    ];
    for (case, chain, key) in cases {
        let out = tls_exchange(
            server.addr(8080),
            raw_chain_config(chain, key, b"istio"),
            GET,
        )
        .await;
        assert!(refused(&out), "{case}: {out:?}");
    }
    assert_eq!(
        server.http.requests().len(),
        served,
        "a refused chain reached the app"
    );
    assert_eq!(server.echo.connections(), 0);
    server.still_serves().await;
}

#[tokio::test]
async fn zero_rtt_is_never_offered_and_resumption_keeps_the_identity() {
    let server = Server::start("127.0.146", Duration::from_secs(10)).await;
    let mut config = client_config(Some(&server.client), b"istio");
    config.enable_early_data = true;
    config.resumption = rustls::client::Resumption::in_memory_sessions(16);
    let config = Arc::new(config);
    for round in 0..3 {
        // Drive rustls by hand to see whether early data could be sent.
        let mut conn = rustls::ClientConnection::new(
            Arc::clone(&config),
            rustls::pki_types::ServerName::IpAddress(server.addr(8080).ip().into()),
        )
        .unwrap();
        if round > 0 {
            assert!(
                conn.early_data().is_none(),
                "round {round}: the proxy's session tickets allow 0-RTT"
            );
        }
        let mut tcp = std::net::TcpStream::connect(server.addr(8080)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let response = tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
            tls.write_all(GET).unwrap();
            let mut out = Vec::new();
            let _ = tls.read_to_end(&mut out);
            (
                String::from_utf8_lossy(&out).into_owned(),
                conn.is_handshaking(),
            )
        })
        .await
        .unwrap();
        assert!(
            response.0.starts_with("HTTP/1.1 200"),
            "round {round}: {}",
            response.0
        );
        assert!(
            response
                .0
                .contains("URI=spiffe://cluster.local/ns/test/sa/client"),
            "round {round}: a resumed session lost the caller's identity: {}",
            response.0
        );
    }
    // OpenSSL asked to send early data on a resumed session cannot.
    let files = server.client_files();
    let sess = server.dir.path().join("session.pem");
    let early = server.dir.path().join("early.txt");
    std::fs::write(&early, b"GET /early HTTP/1.1\r\nHost: app\r\n\r\n").unwrap();
    let (out, err) = s_client(
        server.addr(8080),
        &files,
        &["-tls1_3", "-sess_out", path_str(&sess)],
    )
    .await;
    assert!(out.contains("HTTP/1.1 200"), "{out}\n{err}");
    let (_, err) = s_client(
        server.addr(8080),
        &files,
        &[
            "-tls1_3",
            "-sess_in",
            path_str(&sess),
            "-early_data",
            path_str(&early),
        ],
    )
    .await;
    let _ = err;
    // The session the proxy handed out says so itself.
    let text = Command::new("openssl")
        .args(["sess_id", "-noout", "-text", "-in", path_str(&sess)])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("Max Early Data: 0"), "{text}");
    // Three rustls rounds and two openssl connections, each one request: the early request
    // was never sent, let alone forwarded.
    assert_eq!(server.http.requests().len(), 5);
    server.still_serves().await;
}
