//! Hostile HTTP toward a proxy whose workload has AuthorizationPolicies: request smuggling
//! shapes, oversized and malformed heads, NUL and `%00` in paths, path traversal spellings
//! against path rules, slowloris and slow readers, HTTP/2 rapid reset and CONTINUATION floods,
//! and forged identity headers. The app behind the proxy records every request head it gets; a
//! request the proxy refuses, and any request a policy denies, never shows up there.
//! `docs/robustness.md` lists each case.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

#[path = "support/apps.rs"]
mod apps;
#[path = "support/fake_cp.rs"]
mod fake_cp;
#[path = "support/forge.rs"]
mod forge;
#[path = "support/pki.rs"]
mod pki;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meshward_api::v1::MtlsMode;
use meshward_proxy::Proxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use apps::{Seen, http_app};
use fake_cp::{FakeCp, view, workload};
use forge::{Ca, Leaf, client_config};

/// ALLOW `/`, `/get`, `/post`, `/big` and `/public/*`; DENY `/admin`, `/admin/*` and
/// `/smuggled` (to anyone, plaintext included).
const POLICIES: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-listed, namespace: test}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: ALLOW
  rules:
  - to: [{operation: {paths: ["/", "/get", "/post", "/big", "/public/*"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: test}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: DENY
  rules:
  - to: [{operation: {paths: ["/admin", "/admin/*", "/smuggled"]}}]
"#;

/// Request heads an HTTP/1 app received, raw.
#[derive(Debug, Default, Clone)]
struct Heads(Arc<Mutex<Vec<String>>>);

impl Heads {
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    fn lines(&self) -> Vec<String> {
        self.all()
            .iter()
            .map(|h| h.lines().next().unwrap_or_default().to_owned())
            .collect()
    }
}

/// An HTTP/1.1 app on `addr` that frames requests itself (Content-Length or chunked), records
/// each head as received, and answers `ok` (1 MiB of `x` for `/big`).
fn recording_app(addr: &str) -> Heads {
    let listener = std::net::TcpListener::bind(addr).unwrap();
    let heads = Heads::default();
    let h = heads.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(mut tcp) = tcp else { continue };
            let h = h.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(tcp.try_clone().unwrap());
                loop {
                    let mut head = String::new();
                    loop {
                        let mut line = String::new();
                        match reader.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        if line == "\r\n" {
                            break;
                        }
                        head.push_str(&line);
                    }
                    let lower = head.to_ascii_lowercase();
                    if lower.contains("transfer-encoding: chunked") {
                        loop {
                            let mut size = String::new();
                            if reader.read_line(&mut size).unwrap_or(0) == 0 {
                                return;
                            }
                            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                            let mut chunk = vec![0u8; n + 2];
                            if reader.read_exact(&mut chunk).is_err() {
                                return;
                            }
                            if n == 0 {
                                break;
                            }
                        }
                    } else if let Some(n) = lower
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                    {
                        let mut body = vec![0u8; n];
                        if reader.read_exact(&mut body).is_err() {
                            return;
                        }
                    }
                    let big = head.starts_with("GET /big ");
                    h.0.lock().unwrap().push(head);
                    let body = if big {
                        vec![b'x'; 1 << 20]
                    } else {
                        b"ok".to_vec()
                    };
                    let reply =
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                    if tcp.write_all(reply.as_bytes()).is_err() || tcp.write_all(&body).is_err() {
                        return;
                    }
                }
            });
        }
    });
    heads
}

/// The proxy of `httpbin.test` on `<net>.2` (views from a fake control plane on `<net>.1`):
/// 8080 STRICT and 8081 PERMISSIVE in front of the recording app (`<net>.12`), 8082 STRICT in
/// front of an HTTP/1 and HTTP/2 app that echoes the XFCC it got.
struct Setup {
    _cp: FakeCp,
    _proxy: Proxy,
    heads: Heads,
    h2_app: Seen,
    client: Leaf,
    net: String,
}

impl Setup {
    async fn start(net: &str) -> Self {
        let ca = Arc::new(Ca::root("robustness root"));
        let ports = [
            (8080, MtlsMode::Strict),
            (8081, MtlsMode::Permissive),
            (8082, MtlsMode::Strict),
        ];
        let cp = FakeCp::start(
            &format!("{net}.1:15012"),
            Arc::clone(&ca),
            Some(view(1, &ports, POLICIES, "")),
        )
        .await;
        let heads = recording_app(&format!("{net}.12:8080"));
        // The PERMISSIVE port's app is the same recorder on another port.
        let heads_plain = recording_app(&format!("{net}.12:8081"));
        let h2_app = http_app(format!("{net}.12:8082").parse().unwrap()).await;
        let unused = pki::SvidFiles {
            cert: "unused".into(),
            key: "unused".into(),
            bundle: "unused".into(),
        };
        let mut config =
            pki::proxy_config(&format!("{net}.2"), &format!("{net}.12"), &unused, &[], &[]);
        config.workload = Some(workload());
        config.identity = cp.identity();
        config.ready_port = 15021;
        let proxy = Proxy::start(config, None).await.unwrap();
        let ready = format!("{net}.2:15021");
        for _ in 0..200 {
            if get_plain(&ready, "/healthz/ready")
                .await
                .starts_with("HTTP/1.1 200")
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            get_plain(&ready, "/healthz/ready")
                .await
                .starts_with("HTTP/1.1 200")
        );
        // Both recorders feed one list: a test asserts on everything the app saw.
        let merged = heads.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let moved: Vec<String> = heads_plain.0.lock().unwrap().drain(..).collect();
                merged.0.lock().unwrap().extend(moved);
            }
        });
        Self {
            _cp: cp,
            _proxy: proxy,
            heads,
            h2_app,
            client: ca.svid("test", "sleep"),
            net: net.to_owned(),
        }
    }

    fn addr(&self, port: u16) -> SocketAddr {
        format!("{}.2:{port}", self.net).parse().unwrap()
    }

    /// Sends `bytes` over mTLS to `port` and reads until the proxy closes (10 s at most).
    async fn mtls(&self, port: u16, bytes: &[u8]) -> String {
        let out = forge::tls_exchange(
            self.addr(port),
            client_config(Some(&self.client), b"istio"),
            bytes,
        )
        .await;
        String::from_utf8_lossy(&out.unwrap_or_default()).into_owned()
    }

    /// Sends `bytes` in plaintext to the PERMISSIVE port and reads until the proxy closes.
    async fn plain(&self, bytes: &[u8]) -> String {
        let out = forge::raw_exchange(self.addr(8081), bytes, Duration::from_secs(5)).await;
        String::from_utf8_lossy(&out.unwrap_or_default()).into_owned()
    }

    /// Both ways: the mTLS answer and the plaintext one.
    async fn both(&self, bytes: &[u8]) -> [String; 2] {
        [self.mtls(8080, bytes).await, self.plain(bytes).await]
    }

    /// Waits for the recorders to settle, then returns the request lines the app saw.
    async fn seen(&self) -> Vec<String> {
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.heads.lines()
    }
}

async fn get_plain(addr: &str, path: &str) -> String {
    let Ok(mut tcp) = TcpStream::connect(addr).await else {
        return String::new();
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let _ = tcp.write_all(req.as_bytes()).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn status(response: &str) -> &str {
    response.get(9..12).unwrap_or("---")
}

/// Whether the proxy refused: a 4xx/5xx of its own, or a closed connection.
fn refused(response: &str) -> bool {
    response.is_empty() || matches!(response.as_bytes()[9], b'4' | b'5')
}

#[tokio::test]
async fn request_smuggling_shapes_never_reach_the_app_unframed() {
    let setup = Setup::start("127.0.160").await;
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let cases: Vec<(&str, String)> = vec![
        (
            "Content-Length and Transfer-Encoding (CL.TE)",
            format!(
                "POST /post HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
            ),
        ),
        (
            "Transfer-Encoding then Content-Length (TE.CL)",
            format!(
                "POST /post HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n{:x}\r\n{smuggled}\r\n0\r\n\r\n",
                smuggled.len()
            ),
        ),
        (
            "two different Content-Lengths",
            format!(
                "POST /post HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{smuggled}",
                smuggled.len()
            ),
        ),
        (
            "a Content-Length list",
            format!(
                "POST /post HTTP/1.1\r\nHost: x\r\nContent-Length: 0, {}\r\n\r\n{smuggled}",
                smuggled.len()
            ),
        ),
        (
            "an obfuscated Transfer-Encoding",
            format!(
                "POST /post HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{smuggled}"
            ),
        ),
        (
            "Transfer-Encoding with a space before the colon",
            format!(
                "POST /post HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n{smuggled}"
            ),
        ),
        (
            "chunked, then identity",
            format!(
                "POST /post HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{smuggled}"
            ),
        ),
        (
            "a chunk size that overflows",
            format!(
                "POST /post HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff1\r\nx\r\n0\r\n\r\n{smuggled}"
            ),
        ),
        (
            "a negative Content-Length",
            format!("POST /post HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n{smuggled}"),
        ),
        (
            "a Content-Length with a plus sign",
            format!("POST /post HTTP/1.1\r\nHost: x\r\nContent-Length: +0\r\n\r\n{smuggled}"),
        ),
        (
            "a header folded onto the next line",
            format!(
                "POST /post HTTP/1.1\r\nHost: x\r\nX-Fold: a\r\n Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n{smuggled}"
            ),
        ),
        (
            "bare LF line ends",
            format!("POST /post HTTP/1.1\nHost: x\nContent-Length: 0\n\n{smuggled}"),
        ),
        (
            "HTTP/1.0 with chunked",
            format!(
                "POST /post HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
            ),
        ),
    ];
    for (case, bytes) in &cases {
        for answer in setup.both(bytes.as_bytes()).await {
            // The first request is answered by the app or refused by the proxy; nothing else.
            assert!(
                answer.is_empty() || answer.starts_with("HTTP/1.1 "),
                "{case}: {answer}"
            );
        }
    }
    // The honest pipeline: the second request gets the policy's answer.
    let pipeline: &[u8] = b"GET /get HTTP/1.1\r\nHost: x\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    for answer in setup.both(pipeline).await {
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("HTTP/1.1 403"), "{answer}");
    }
    let seen = setup.seen().await;
    assert!(
        seen.iter().all(|l| !l.contains("/smuggled")),
        "a smuggled request reached the app: {seen:?}"
    );
    // Re-framed by the proxy: never both a length and a transfer coding (RFC 9112 §6.1).
    for head in setup.heads.all() {
        let head = head.to_ascii_lowercase();
        assert!(
            !(head.contains("\r\ncontent-length:") && head.contains("\r\ntransfer-encoding:")),
            "the app got both framings: {head}"
        );
    }
    // What did reach the app was framed by the proxy: only the listed paths.
    assert!(
        seen.iter()
            .all(|l| l == "POST /post HTTP/1.1" || l == "GET /get HTTP/1.1"),
        "{seen:?}"
    );
}

#[tokio::test]
async fn oversized_and_malformed_heads_are_refused() {
    let setup = Setup::start("127.0.161").await;
    let long_header = format!(
        "GET /get HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let many_headers = format!(
        "GET /get HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..2_000)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    let long_target = format!(
        "GET /get?{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "q".repeat(70 * 1024)
    );
    let long_name = format!(
        "GET /get HTTP/1.1\r\nHost: x\r\n{}: v\r\n\r\n",
        "n".repeat(70 * 1024)
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("a 70 KiB header", long_header.into_bytes()),
        ("2 000 headers", many_headers.into_bytes()),
        ("a 70 KiB request target", long_target.into_bytes()),
        ("a 70 KiB header name", long_name.into_bytes()),
        (
            "a header without a colon",
            b"GET /get HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n".to_vec(),
        ),
        (
            "a space before the colon",
            b"GET /get HTTP/1.1\r\nHost : x\r\n\r\n".to_vec(),
        ),
        (
            "a control character in a header name",
            b"GET /get HTTP/1.1\r\nHost: x\r\nX\x01Y: v\r\n\r\n".to_vec(),
        ),
        (
            "NUL in a header value",
            b"GET /get HTTP/1.1\r\nHost: x\r\nX-N: a\x00b\r\n\r\n".to_vec(),
        ),
        (
            "a bare CR in a header value",
            b"GET /get HTTP/1.1\r\nHost: x\r\nX-N: a\rb\r\n\r\n".to_vec(),
        ),
        (
            "a method with a slash",
            b"GE/T /get HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "an unknown HTTP version",
            b"GET /get HTTP/1.7\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "HTTP/2.0 in an HTTP/1 request line",
            b"GET /get HTTP/2.0\r\nHost: x\r\n\r\n".to_vec(),
        ),
        ("no version", b"GET /get\r\nHost: x\r\n\r\n".to_vec()),
        (
            "two spaces in the request line",
            b"GET  /get HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "a space in the target",
            b"GET /g et HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "binary bytes in the target",
            b"GET /g\xff\xfeet HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
    ];
    for (case, bytes) in &cases {
        for answer in setup.both(bytes).await {
            assert!(refused(&answer), "{case}: {answer}");
        }
    }
    let seen = setup.seen().await;
    assert!(
        seen.is_empty(),
        "refused requests reached the app: {seen:?}"
    );
    // Just under the bounds is fine.
    let near = format!(
        "GET /get HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
        "a".repeat(60 * 1024)
    );
    for answer in setup.both(near.as_bytes()).await {
        assert_eq!(status(&answer), "200", "{answer}");
    }
}

#[tokio::test]
async fn nul_and_traversal_spellings_are_refused_or_decided_on_the_normalized_path() {
    let setup = Setup::start("127.0.162").await;
    // (target, expected status): 400 where the path cannot be normalized safely, 403 where
    // its normalized form is denied (or not allowed), 200 where it is allowed.
    let cases: &[(&str, &str)] = &[
        ("/admin", "403"),
        ("/admin/users", "403"),
        ("/public/../admin", "403"),
        ("/public/%2e%2e/admin", "403"),
        ("/public/%2E%2E/admin", "403"),
        ("/public/.%2e/admin", "403"),
        ("/./admin", "403"),
        ("/public/./../admin/x", "403"),
        ("/%61dmin", "403"),
        ("/ad%6Din/users", "403"),
        ("/public\\..\\admin", "403"),
        ("/public/..\\admin", "403"),
        ("//admin", "403"),
        ("/ADMIN", "403"),
        ("/admin;x=1", "403"),
        ("/public/..%2fadmin", "400"),
        ("/public/..%2Fadmin", "400"),
        ("/public/..%5cadmin", "400"),
        ("/public/%2e%2e%2fadmin", "400"),
        ("/admin%00", "400"),
        ("/public/a%00b", "400"),
        ("/public/%0a", "400"),
        ("/public/%0D%0AX-Injected:%20yes", "400"),
        ("/public/%7f", "400"),
        ("/public/%zz", "400"),
        ("/public/%4", "400"),
        ("/public/a", "200"),
        ("/public/../public/a", "200"),
        ("/public/%61", "200"),
        ("/public/x?path=/admin", "200"),
        ("/public/%252e%252e/admin", "200"),
        ("http://evil/admin", "403"),
        ("http://x/public/a", "200"),
    ];
    for (target, want) in cases {
        let request = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        for answer in setup.both(request.as_bytes()).await {
            assert_eq!(status(&answer), *want, "{target}: {answer}");
        }
    }
    // A raw NUL never gets a path at all.
    for answer in setup
        .both(b"GET /pub\x00lic/a HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
    {
        assert!(refused(&answer), "raw NUL: {answer}");
    }
    // The app saw only allowed requests, with the path the policy matched (normalized).
    let seen = setup.seen().await;
    for line in &seen {
        let target = line.split(' ').nth(1).unwrap_or_default();
        let path = target
            .strip_prefix("http://x")
            .unwrap_or(target)
            .split('?')
            .next()
            .unwrap_or_default();
        assert!(
            path.starts_with("/public/") && !path.contains("/../") && !path.contains("/./"),
            "the app saw {line:?}"
        );
    }
    let allowed = cases.iter().filter(|(_, want)| *want == "200").count();
    assert_eq!(seen.len(), 2 * allowed, "{seen:?}");
    assert!(
        seen.iter().any(|l| l == "GET /public/a HTTP/1.1"),
        "{seen:?}"
    );
}

#[tokio::test]
async fn slowloris_and_slow_readers_do_not_starve_others() {
    let setup = Setup::start("127.0.163").await;
    // 150 plaintext and 50 mTLS clients that start a request and trickle it.
    let mut slow = Vec::new();
    for _ in 0..150 {
        let mut tcp = TcpStream::connect(setup.addr(8081)).await.unwrap();
        tcp.write_all(b"GET /get HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(tcp);
    }
    let mut slow_tls = Vec::new();
    for _ in 0..50 {
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(
            Some(&setup.client),
            b"istio",
        )));
        let tcp = TcpStream::connect(setup.addr(8080)).await.unwrap();
        let mut tls = connector
            .connect(
                rustls::pki_types::ServerName::IpAddress(setup.addr(8080).ip().into()),
                tcp,
            )
            .await
            .unwrap();
        tls.write_all(b"GET /get HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        slow_tls.push(tls);
    }
    for _ in 0..3 {
        for tcp in &mut slow {
            let _ = tcp.write_all(b"a").await;
        }
        for tls in &mut slow_tls {
            let _ = tls.write_all(b"a").await;
        }
        // Meanwhile, a well-behaved client is served, both ways.
        let ok = b"GET /get HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        for answer in setup.both(ok).await {
            assert_eq!(status(&answer), "200", "{answer}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // A slow reader: 100 pipelined requests for 1 MiB each, never read. The proxy stops reading
    // its requests once the responses back up, so the app is not asked for all of them.
    let mut reader = TcpStream::connect(setup.addr(8081)).await.unwrap();
    let pipeline = b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n".repeat(100);
    let _ = tokio::time::timeout(Duration::from_secs(5), reader.write_all(&pipeline)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let big = setup
        .heads
        .lines()
        .iter()
        .filter(|l| l.starts_with("GET /big"))
        .count();
    assert!(
        big < 100,
        "all {big} requests were forwarded to a client that reads nothing"
    );
    let ok = b"GET /get HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    for answer in setup.both(ok).await {
        assert_eq!(status(&answer), "200", "{answer}");
    }
    // None of the trickled requests was ever forwarded.
    let gets = setup
        .seen()
        .await
        .iter()
        .filter(|l| l.starts_with("GET /get"))
        .count();
    assert_eq!(gets, 8, "only the well-behaved requests reach the app");
    drop((slow, slow_tls, reader));
}

/// An HTTP/2 frame.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// HPACK for `GET http://x{path}` (static table entries and literals, no Huffman).
fn get_block(path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x86, 0x44, u8::try_from(path.len()).unwrap()];
    block.extend_from_slice(path.as_bytes());
    block.extend_from_slice(&[0x41, 1, b'x']);
    block
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// Writes `bytes` over mTLS to the HTTP/2 port, then reads until the proxy closes (15 s at
/// most); what came back and whether the proxy closed the connection.
async fn h2_raw(setup: &Setup, bytes: &[u8]) -> (Vec<u8>, bool) {
    let connector =
        tokio_rustls::TlsConnector::from(Arc::new(client_config(Some(&setup.client), b"istio-h2")));
    let tcp = TcpStream::connect(setup.addr(8082)).await.unwrap();
    let tls = connector
        .connect(
            rustls::pki_types::ServerName::IpAddress(setup.addr(8082).ip().into()),
            tcp,
        )
        .await
        .unwrap();
    let (mut r, mut w) = tokio::io::split(tls);
    let reader = tokio::spawn(async move {
        let mut out = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(15), r.read_to_end(&mut out))
            .await
            .is_ok();
        (out, closed)
    });
    for piece in bytes.chunks(16 * 1024) {
        if w.write_all(piece).await.is_err() {
            break;
        }
    }
    let _ = w.flush().await;
    reader.await.unwrap()
}

/// The GOAWAY frames in `bytes`: their error codes.
fn goaways(bytes: &[u8]) -> Vec<u32> {
    let mut codes = Vec::new();
    let mut at = 0;
    while at + 9 <= bytes.len() {
        let len = usize::from(bytes[at]) << 16
            | usize::from(bytes[at + 1]) << 8
            | usize::from(bytes[at + 2]);
        if bytes[at + 3] == 7 && at + 9 + 8 <= bytes.len() {
            let p = &bytes[at + 9..];
            codes.push(u32::from_be_bytes([p[4], p[5], p[6], p[7]]));
        }
        at += 9 + len;
    }
    codes
}

#[tokio::test]
async fn http2_rapid_reset_and_continuation_floods_are_cut_off() {
    let setup = Setup::start("127.0.164").await;
    let settings = frame(4, 0, 0, &[]);
    // Rapid reset: 5 000 requests, each cancelled right after it is sent.
    let mut flood = [PREFACE, &settings].concat();
    for i in 0..5_000u32 {
        let stream = 2 * i + 1;
        flood.extend(frame(
            1,
            END_HEADERS | END_STREAM,
            stream,
            &get_block("/get"),
        ));
        flood.extend(frame(3, 0, stream, &8u32.to_be_bytes()));
    }
    let (back, closed) = h2_raw(&setup, &flood).await;
    assert!(
        closed,
        "the connection stayed open after a rapid-reset flood"
    );
    let codes = goaways(&back);
    // ENHANCE_YOUR_CALM (0xb), or at least a GOAWAY that ends the connection.
    assert!(
        !codes.is_empty(),
        "no GOAWAY after a rapid-reset flood ({} bytes back)",
        back.len()
    );
    let forwarded = setup.h2_app.requests().len();
    assert!(
        forwarded < 1_000,
        "{forwarded} of 5 000 reset requests reached the app"
    );

    // CONTINUATION flood: one header block that never ends, far past the 64 KiB head bound.
    let before = setup.h2_app.requests().len();
    let mut flood = [PREFACE, &settings].concat();
    flood.extend(frame(1, 0, 1, &get_block("/get")));
    let mut literal = Vec::new();
    for i in 0..400 {
        // Literal header field without indexing, new name: `x-fNNN: <32 bytes>`.
        let name = format!("x-f{i:03}");
        literal.extend_from_slice(&[0x00, u8::try_from(name.len()).unwrap()]);
        literal.extend_from_slice(name.as_bytes());
        literal.extend_from_slice(&[32]);
        literal.extend_from_slice(&[b'v'; 32]);
    }
    for _ in 0..200 {
        flood.extend(frame(9, 0, 1, &literal));
    }
    let (_, closed) = h2_raw(&setup, &flood).await;
    assert!(
        closed,
        "the connection stayed open during a CONTINUATION flood"
    );
    assert_eq!(
        setup.h2_app.requests().len(),
        before,
        "a never-ending head reached the app"
    );

    // The proxy is still there, for HTTP/2 too.
    let mut ok = [PREFACE, &settings].concat();
    ok.extend(frame(1, END_HEADERS | END_STREAM, 1, &get_block("/get")));
    ok.extend(frame(7, 0, 0, &[0, 0, 0, 1, 0, 0, 0, 0]));
    let (back, _) = h2_raw(&setup, &ok).await;
    assert!(
        back.windows(5).any(|w| w == b"xfcc="),
        "no answer after the floods: {back:?}"
    );
    assert_eq!(setup.h2_app.requests().len(), before + 1);
}

#[tokio::test]
async fn forged_identity_headers_never_reach_the_app() {
    let setup = Setup::start("127.0.165").await;
    let ours =
        "By=spiffe://cluster.local/ns/test/sa/httpbin;URI=spiffe://cluster.local/ns/test/sa/sleep";
    let forged = [
        "X-Forwarded-Client-Cert: By=x;URI=spiffe://cluster.local/ns/test/sa/admin\r\n",
        "x-forwarded-client-cert: URI=spiffe://cluster.local/ns/test/sa/admin\r\nX-FORWARDED-CLIENT-CERT: Hash=00\r\n",
        "X-Forwarded-Client-Cert: a\r\n\tURI=spiffe://cluster.local/ns/test/sa/admin\r\n",
    ];
    for header in forged {
        let request = format!("GET /get HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{header}\r\n");
        let answers = [
            setup.mtls(8082, request.as_bytes()).await,
            setup.plain(request.as_bytes()).await,
        ];
        // mTLS: exactly our XFCC; plaintext: none at all (or refused for a folded header).
        assert!(
            answers[0].ends_with(&format!("xfcc={ours}")) || refused(&answers[0]),
            "{header}: {}",
            answers[0]
        );
        assert!(!answers[0].contains("sa/admin"), "{}", answers[0]);
        assert!(!answers[1].contains("sa/admin"), "{}", answers[1]);
    }
    let heads = setup.heads.all();
    assert!(
        heads
            .iter()
            .all(|h| !h.to_ascii_lowercase().contains("x-forwarded-client-cert")),
        "a plaintext request reached the app with an identity header: {heads:?}"
    );
    // The same over HTTP/2, with the forged header twice.
    let settings = frame(4, 0, 0, &[]);
    let mut block = get_block("/get");
    for value in ["URI=spiffe://cluster.local/ns/test/sa/admin", "By=x"] {
        let name = b"x-forwarded-client-cert";
        block.extend_from_slice(&[0x00, u8::try_from(name.len()).unwrap()]);
        block.extend_from_slice(name);
        block.push(u8::try_from(value.len()).unwrap());
        block.extend_from_slice(value.as_bytes());
    }
    let mut request = [PREFACE, &settings].concat();
    request.extend(frame(1, END_HEADERS | END_STREAM, 1, &block));
    request.extend(frame(7, 0, 0, &[0, 0, 0, 1, 0, 0, 0, 0]));
    let (back, _) = h2_raw(&setup, &request).await;
    let text = String::from_utf8_lossy(&back);
    assert!(text.contains(&format!("xfcc={ours}")), "{text}");
    assert!(!text.contains("sa/admin"), "{text}");
    for xfcc in setup.h2_app.requests() {
        assert_eq!(xfcc, vec![ours.to_owned()]);
    }
}
