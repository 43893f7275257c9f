//! Certificates that break the X.509-SVID rules, one rule at a time, presented by a client to a
//! STRICT port and by a server to the proxy's upstream; corrupt entries in a trust bundle; and
//! the proxy's own key and certificate that do not belong together. Each bad certificate is
//! refused, with nothing forwarded either way; `docs/robustness.md` lists each case.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

#[path = "support/apps.rs"]
mod apps;
#[path = "support/forge.rs"]
mod forge;
#[path = "support/pki.rs"]
mod pki;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use meshward_proxy::Proxy;
use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, SanType};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use apps::http_app;
use forge::{Ca, GET, Leaf, leaf_params, leaf_with, raw_chain_config, refused, tls_exchange};
use pki::proxy_config;

const CLIENT_ID: &str = "spiffe://cluster.local/ns/test/sa/client";
const SERVER_ID: &str = "spiffe://cluster.local/ns/test/sa/server";

fn sock(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// How to build one broken SVID from the CA, for an identity.
type Make = Box<dyn Fn(&Ca, &str) -> Leaf>;

/// One broken SVID: its name and how to build it.
type Case = (&'static str, Make);

fn params(f: impl Fn(&mut CertificateParams) + 'static) -> Make {
    Box::new(move |ca, id| ca.leaf(&leaf_with(id, &f)))
}

fn with_uri(uri: &'static str) -> Make {
    Box::new(move |ca, _| ca.leaf(&leaf_params(uri)))
}

/// Every rule of the X.509-SVID profile broken in turn, plus chains that lead nowhere; `eku` is
/// the usage this side needs (`ClientAuth` for a client, `ServerAuth` for a server).
fn broken_svids(eku: ExtendedKeyUsagePurpose) -> Vec<Case> {
    let now = OffsetDateTime::now_utc();
    vec![
        (
            "two URI SANs",
            params(|p| {
                p.subject_alt_names.push(SanType::URI(
                    "spiffe://cluster.local/ns/test/sa/other"
                        .try_into()
                        .unwrap(),
                ));
            }),
        ),
        (
            "no URI SAN (a DNS name only)",
            params(|p| {
                p.subject_alt_names = vec![SanType::DnsName("client.test".try_into().unwrap())];
            }),
        ),
        (
            "a CA certificate as the leaf",
            params(|p| p.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained)),
        ),
        (
            "keyCertSign on the leaf",
            params(|p| p.key_usages.push(KeyUsagePurpose::KeyCertSign)),
        ),
        (
            "cRLSign on the leaf",
            params(|p| p.key_usages.push(KeyUsagePurpose::CrlSign)),
        ),
        (
            "no digitalSignature",
            params(|p| p.key_usages = vec![KeyUsagePurpose::KeyEncipherment]),
        ),
        (
            "without the extended key usage this side needs",
            params(move |p| p.extended_key_usages.retain(|u| *u != eku)),
        ),
        (
            "another trust domain",
            with_uri("spiffe://evil.example/ns/test/sa/client"),
        ),
        (
            "expired",
            params(move |p| {
                p.not_before = now - time::Duration::days(2);
                p.not_after = now - time::Duration::minutes(1);
            }),
        ),
        (
            "not yet valid",
            params(move |p| {
                p.not_before = now + time::Duration::hours(1);
                p.not_after = now + time::Duration::days(2);
            }),
        ),
        (
            "upper-case trust domain",
            with_uri("spiffe://Cluster.Local/ns/test/sa/client"),
        ),
        (
            "a query in the SPIFFE ID",
            with_uri("spiffe://cluster.local/ns/test/sa/client?x=1"),
        ),
        (
            "a fragment in the SPIFFE ID",
            with_uri("spiffe://cluster.local/ns/test/sa/client#x"),
        ),
        (
            "a port in the trust domain",
            with_uri("spiffe://cluster.local:443/ns/test/sa/client"),
        ),
        (
            "user info in the trust domain",
            with_uri("spiffe://admin@cluster.local/ns/test/sa/client"),
        ),
        (
            "a dot segment in the path",
            with_uri("spiffe://cluster.local/ns/test/sa/../sa/client"),
        ),
        (
            "a percent-encoded path",
            with_uri("spiffe://cluster.local/ns/test/sa/cli%65nt"),
        ),
        (
            "an empty path segment",
            with_uri("spiffe://cluster.local/ns//sa/client"),
        ),
        (
            "a trailing slash",
            with_uri("spiffe://cluster.local/ns/test/sa/client/"),
        ),
        ("no path", with_uri("spiffe://cluster.local")),
        (
            "another scheme",
            with_uri("https://cluster.local/ns/test/sa/client"),
        ),
        (
            "signed by an intermediate without keyCertSign",
            Box::new(|ca: &Ca, id: &str| {
                let mut weak = forge::ca_params("weak intermediate");
                weak.key_usages = vec![KeyUsagePurpose::CrlSign];
                ca.intermediate(weak).leaf(&leaf_params(id))
            }),
        ),
        (
            "signed by a leaf (an intermediate that is not a CA)",
            Box::new(|ca: &Ca, id: &str| {
                let mut not_ca = forge::ca_params("not a CA");
                not_ca.is_ca = IsCa::ExplicitNoCa;
                ca.intermediate(not_ca).leaf(&leaf_params(id))
            }),
        ),
        (
            "signed by another root",
            Box::new(|_: &Ca, id: &str| Ca::root("another root").leaf(&leaf_params(id))),
        ),
    ]
}

#[tokio::test]
async fn clients_with_broken_svids_are_refused_at_a_strict_port() {
    let ca = Ca::root("robustness root");
    let dir = tempfile::tempdir().unwrap();
    let app = http_app(sock("127.0.150.12:8080")).await;
    let files = ca.write(dir.path(), "server", &ca.leaf(&leaf_params(SERVER_ID)));
    let mut config = proxy_config("127.0.150.2", "127.0.150.12", &files, &["8080=strict"], &[]);
    config.admin_port = 15000;
    let _server = Proxy::start(config, None).await.unwrap();
    let addr = sock("127.0.150.2:8080");
    let before = inbound_tls_failures().await;
    let cases = broken_svids(ExtendedKeyUsagePurpose::ClientAuth);
    let count = u64::try_from(cases.len()).unwrap();
    for (case, make) in cases {
        let leaf = make(&ca, CLIENT_ID);
        let out = tls_exchange(addr, raw_chain_config(leaf.chain, &leaf.key, b"istio"), GET).await;
        assert!(refused(&out), "{case}: {out:?}");
    }
    assert_eq!(app.connections(), 0, "a broken SVID reached the app");
    let after = inbound_tls_failures().await;
    assert!(
        after >= before + count,
        "handshake failures {before} → {after}"
    );
    // A valid SVID from the same CA is served.
    let good = ca.leaf(&leaf_params(CLIENT_ID));
    let out = tls_exchange(addr, raw_chain_config(good.chain, &good.key, b"istio"), GET)
        .await
        .unwrap();
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );
}

/// Presents one chain, unchecked.
#[derive(Debug)]
struct Fixed(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for Fixed {
    fn resolve(
        &self,
        _: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

/// Inbound handshake failures on the admin port of the proxy at 127.0.150.2 (all reasons).
async fn inbound_tls_failures() -> u64 {
    let mut tcp = TcpStream::connect("127.0.150.2:15000").await.unwrap();
    tcp.write_all(b"GET /stats/prometheus HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_string(&mut text)).await;
    text.lines()
        .filter(|l| {
            l.starts_with("meshward_tls_handshake_failures")
                && l.contains('{')
                && l.contains("direction=\"inbound\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A TLS server presenting `leaf` on `addr` that counts the application bytes it receives.
async fn fake_server(addr: SocketAddr, leaf: Leaf) -> Arc<AtomicUsize> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let signer = provider
        .key_provider
        .load_private_key(leaf.key.clone_key())
        .unwrap();
    let certified = Arc::new(rustls::sign::CertifiedKey::new(leaf.chain, signer));
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Fixed(certified)));
    config.alpn_protocols = vec![b"istio".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(addr).await.unwrap();
    let received = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&received);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, r) = (acceptor.clone(), Arc::clone(&r));
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                while let Ok(n) = tls.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    r.fetch_add(n, Ordering::SeqCst);
                    let _ = tls
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                        )
                        .await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    received
}

/// One request through the plaintext upstream listener at `addr`; the response.
async fn through(addr: SocketAddr) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let _ = tcp.write_all(GET).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out)).await;
    out
}

#[tokio::test]
async fn servers_with_broken_svids_are_refused_before_a_request_byte() {
    let ca = Ca::root("robustness root");
    let dir = tempfile::tempdir().unwrap();
    let mut cases = broken_svids(ExtendedKeyUsagePurpose::ServerAuth);
    cases.push((
        "a valid SVID of another identity",
        Box::new(|ca: &Ca, _: &str| {
            ca.leaf(&leaf_params("spiffe://cluster.local/ns/test/sa/impostor"))
        }),
    ));
    let mut upstreams = Vec::new();
    let mut received = Vec::new();
    for (i, (_, make)) in cases.iter().enumerate() {
        let port = 8443 + u16::try_from(i).unwrap();
        received
            .push(fake_server(sock(&format!("127.0.151.5:{port}")), make(&ca, SERVER_ID)).await);
        upstreams.push(format!(
            "127.0.151.1:{}=127.0.151.5:{port},{SERVER_ID}",
            9000 + i
        ));
    }
    // The positive control, last: a valid server SVID gets the request.
    let good_port = 8443 + u16::try_from(cases.len()).unwrap();
    let good = fake_server(
        sock(&format!("127.0.151.5:{good_port}")),
        ca.leaf(&leaf_params(SERVER_ID)),
    )
    .await;
    upstreams.push(format!(
        "127.0.151.1:{}=127.0.151.5:{good_port},{SERVER_ID}",
        9000 + cases.len()
    ));
    let files = ca.write(dir.path(), "client", &ca.leaf(&leaf_params(CLIENT_ID)));
    let _client = Proxy::start(
        proxy_config("127.0.151.1", "127.0.151.11", &files, &[], &upstreams),
        None,
    )
    .await
    .unwrap();
    for (i, (case, _)) in cases.iter().enumerate() {
        let out = through(sock(&format!("127.0.151.1:{}", 9000 + i))).await;
        assert!(out.is_empty(), "{case}: {}", String::from_utf8_lossy(&out));
        assert_eq!(
            received[i].load(Ordering::SeqCst),
            0,
            "{case}: request bytes reached a server with a broken SVID"
        );
    }
    let out = through(sock(&format!("127.0.151.1:{}", 9000 + cases.len()))).await;
    assert!(out.ends_with(b"ok"), "{}", String::from_utf8_lossy(&out));
    assert_eq!(good.load(Ordering::SeqCst), GET.len());
}

/// Starts a standalone proxy on `ip` from `files`, or says why it cannot.
async fn start(ip: &str, files: &pki::SvidFiles) -> Result<Proxy, String> {
    Proxy::start(
        proxy_config(ip, "127.0.152.12", files, &["8080=strict"], &[]),
        None,
    )
    .await
    .map_err(|e| e.to_string())
}

#[tokio::test]
async fn corrupt_bundles_and_mismatched_keys_are_named_and_never_served() {
    let ca = Ca::root("robustness root");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = ca.leaf(&leaf_params(SERVER_ID));
    let good = ca.write(d, "good", &server);
    let other = ca.leaf(&leaf_params(SERVER_ID));
    let write = |name: &str, text: &str| {
        let path = d.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let garbage_cert = forge::pem("CERTIFICATE", b"\x30\x82\x01\x00 not DER at all");
    let bad_base64 = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";

    // (case, files, words the error must contain).
    let cases = vec![
        (
            "a key that belongs to another certificate",
            pki::SvidFiles {
                key: write("other.key", &other.key_pem),
                ..good.clone()
            },
            vec!["good.crt"],
        ),
        (
            "a key file holding a certificate",
            pki::SvidFiles {
                key: good.cert.clone(),
                ..good.clone()
            },
            vec!["good.crt", "private key"],
        ),
        (
            "an empty key file",
            pki::SvidFiles {
                key: write("empty.key", ""),
                ..good.clone()
            },
            vec!["empty.key"],
        ),
        (
            "an empty certificate file",
            pki::SvidFiles {
                cert: write("empty.crt", ""),
                ..good.clone()
            },
            vec!["empty.crt"],
        ),
        (
            "a certificate that is not DER",
            pki::SvidFiles {
                cert: write("garbage.crt", &garbage_cert),
                ..good.clone()
            },
            vec!["garbage.crt"],
        ),
        (
            "a bundle holding only a corrupt certificate",
            pki::SvidFiles {
                bundle: write("corrupt-only.pem", &garbage_cert),
                ..good.clone()
            },
            vec!["corrupt-only.pem"],
        ),
        (
            "a bundle that is not base64",
            pki::SvidFiles {
                bundle: write("base64.pem", bad_base64),
                ..good.clone()
            },
            vec!["base64.pem"],
        ),
        (
            "a bundle holding a leaf instead of a root",
            pki::SvidFiles {
                bundle: write("leaf-bundle.pem", &server.chain_pem()),
                ..good.clone()
            },
            vec!["leaf-bundle.pem"],
        ),
        (
            "a bundle of another CA",
            pki::SvidFiles {
                bundle: write("foreign.pem", &Ca::root("foreign").root_pem),
                ..good.clone()
            },
            vec!["good.crt"],
        ),
        (
            "a missing file",
            pki::SvidFiles {
                bundle: d.join("missing.pem"),
                ..good.clone()
            },
            vec!["missing.pem"],
        ),
        (
            "a directory where a file should be",
            pki::SvidFiles {
                key: d.to_path_buf(),
                ..good.clone()
            },
            vec![d.to_str().unwrap()],
        ),
        (
            "an expired certificate of its own",
            ca.write(
                d,
                "expired",
                &ca.leaf(&leaf_with(SERVER_ID, |p| {
                    p.not_after = OffsetDateTime::now_utc() - time::Duration::minutes(1);
                })),
            ),
            vec!["expired.crt"],
        ),
        (
            "a file over 1 MiB",
            pki::SvidFiles {
                bundle: write("huge.pem", &ca.root_pem.repeat(2_000)),
                ..good.clone()
            },
            vec!["huge.pem"],
        ),
    ];
    for (case, files, words) in &cases {
        let err = start("127.0.152.2", files).await.err().unwrap_or_else(|| {
            panic!("{case}: the proxy started");
        });
        for word in words {
            assert!(err.contains(word), "{case}: `{word}` not in: {err}");
        }
    }

    // A corrupt entry beside a good root is skipped (and logged): the proxy starts and serves.
    let app = http_app(sock("127.0.152.12:8080")).await;
    let client = ca.leaf(&leaf_params(CLIENT_ID));
    let request = |ip: &str| {
        tls_exchange(
            sock(&format!("{ip}:8080")),
            raw_chain_config(client.chain.clone(), &client.key, b"istio"),
            GET,
        )
    };
    let not_base64 = pki::SvidFiles {
        bundle: write("not-base64.pem", &format!("{bad_base64}{}", ca.root_pem)),
        ..good.clone()
    };
    let proxy = start("127.0.152.2", &not_base64).await.unwrap();
    let out = request("127.0.152.2").await.unwrap();
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert!(proxy.shutdown(Duration::from_secs(1)).await);
    let mixed = pki::SvidFiles {
        bundle: write("mixed.pem", &format!("{garbage_cert}{}", ca.root_pem)),
        ..good.clone()
    };
    // (On its own address: the first one's listener closes just after its drain returns.)
    let proxy = start("127.0.152.3", &mixed).await.unwrap();
    let out = request("127.0.152.3").await.unwrap();
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );

    // Swapped in under a running proxy, a mismatched key and a corrupt bundle are refused: the
    // previous certificate keeps serving.
    std::fs::write(&mixed.key, &other.key_pem).unwrap();
    std::fs::write(&mixed.bundle, &garbage_cert).unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let out = request("127.0.152.3").await.unwrap();
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(app.requests().len(), 3);
    assert!(proxy.shutdown(Duration::from_secs(1)).await);
}
