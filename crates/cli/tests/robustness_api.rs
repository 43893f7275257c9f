//! Hostile clients of the control plane's gRPC port (15012): CSRs with bad signatures, weak or
//! unsupported keys, CA requests, oversized bodies and names of other identities; join tokens
//! replayed, guessed or expired; malformed gRPC frames; calls without the right certificate; a
//! proxy that never acknowledges. Each is refused with a status that says why (and counted),
//! the control plane keeps serving, and nothing it already issued or stored changes.
//! `docs/robustness.md` lists each case.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

mod robustness;
mod support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt as _;

use meshward_api::v1::admin_client::AdminClient;
use meshward_api::v1::certificates_client::CertificatesClient;
use meshward_api::v1::discovery_client::DiscoveryClient;
use meshward_api::v1::discovery_request::Kind;
use meshward_api::v1::{
    ApplyRequest, DiscoveryRequest, Hello, ListRequest, SignRequest, SignResponse, SourceFile,
};
use meshward_identity::{
    AllowedPeers, Side, SpiffeId, TrustBundle, TrustBundleSet, TrustDomain, verify_svid_chain,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tonic::Code;
use tonic::transport::Channel;

use robustness::eventually;
use support::{ControlPlane, stderr, stdout};

/// The control plane's view of the mesh: one workload with a sidecar.
const MESH: &str = "apiVersion: meshward.io/v1alpha1
kind: Workload
metadata: {name: httpbin, namespace: team-app, labels: {app: httpbin}}
spec: {serviceAccount: httpbin, sidecar: true, address: 127.0.171.9}
";

fn bundles(cp: &ControlPlane) -> Arc<TrustBundleSet> {
    let pem = std::fs::read(meshward_control_plane::root_cert_path(&cp.data_dir)).unwrap();
    let (bundle, _) =
        TrustBundle::from_pem(TrustDomain::new("cluster.local").unwrap(), &pem).unwrap();
    Arc::new(TrustBundleSet::from(bundle))
}

/// A TLS client config for `cp` that checks its identity and presents `cert` (chain, key PEM).
fn tls(cp: &ControlPlane, cert: Option<(&str, &str)>) -> rustls::ClientConfig {
    let expected: SpiffeId = "spiffe://cluster.local/ns/istio-system/sa/meshward-control-plane"
        .parse()
        .unwrap();
    let verifier = meshward_identity::SpiffeServerVerifier::new(
        bundles(cp),
        AllowedPeers::default().with_id(expected),
    );
    let builder = rustls::ClientConfig::builder_with_provider(meshward_identity::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    match cert {
        Some((chain, key)) => {
            let chain = CertificateDer::pem_slice_iter(chain.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    }
}

async fn channel(cp: &ControlPlane, cert: Option<(&str, &str)>) -> Channel {
    meshward_api::connect(cp.grpc.parse().unwrap(), tls(cp, cert))
        .await
        .unwrap()
}

/// The administrator's certificate and key, PEM.
fn admin(cp: &ControlPlane) -> (String, String) {
    let context = meshward_control_plane::Context::load(&cp.context).unwrap();
    (
        std::fs::read_to_string(context.admin_cert).unwrap(),
        std::fs::read_to_string(context.admin_key).unwrap(),
    )
}

/// A CSR made by `openssl req` with `args` (key choice, extensions): (DER, key PEM).
fn openssl_csr(dir: &Path, name: &str, args: &[&str]) -> (Vec<u8>, String) {
    let key = dir.join(format!("{name}.key"));
    let csr = dir.join(format!("{name}.csr"));
    let out = std::process::Command::new("openssl")
        .args(["req", "-new", "-nodes", "-subj", &format!("/CN={name}")])
        .args(args)
        .arg("-keyout")
        .arg(&key)
        .args(["-outform", "DER", "-out"])
        .arg(&csr)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        std::fs::read(csr).unwrap(),
        std::fs::read_to_string(key).unwrap(),
    )
}

const P256: &[&str] = &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];

fn token(cp: &ControlPlane, ttl: &str) -> String {
    cp.token("team-app", "httpbin", ttl)
}

async fn sign(channel: Channel, csr: &[u8], token: &str) -> Result<SignResponse, tonic::Status> {
    CertificatesClient::new(channel)
        .sign(SignRequest {
            csr_der: csr.to_vec(),
            join_token: token.to_owned(),
            ttl_seconds: 0,
        })
        .await
        .map(tonic::Response::into_inner)
}

/// The value of an unlabelled sample in the control plane's `/metrics`.
fn metric(cp: &ControlPlane, name: &str) -> f64 {
    let http = cp.grpc.replace(":15012", ":15014");
    let mut tcp = std::net::TcpStream::connect(&http).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        tcp,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    tcp.read_to_string(&mut text).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The control plane's resident memory, KiB.
fn rss_kib(cp: &ControlPlane) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", cp.process.0.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_csrs_are_refused_and_counted_without_spending_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(dir.path(), "127.0.170.1", &[]);
    let d = dir.path();
    let token = token(&cp, "10m");
    let (good, _) = openssl_csr(d, "good", P256);
    let mut bad_signature = good.clone();
    let last = bad_signature.len() - 3;
    bad_signature[last] ^= 0x55;
    let mut bad_subject = good.clone();
    let at = bad_subject.windows(4).position(|w| w == b"good").unwrap();
    bad_subject[at] = b'G';
    let (rsa1024, _) = openssl_csr(d, "rsa1024", &["-newkey", "rsa:1024"]);
    let (ed25519, _) = openssl_csr(d, "ed25519", &["-newkey", "ed25519"]);
    let (dsa, _) = openssl_csr(
        d,
        "p521",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-521"],
    );
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("a signature with flipped bits", bad_signature, "signature"),
        ("a subject changed after signing", bad_subject, "signature"),
        ("an RSA key of 1024 bits", rsa1024, "1024"),
        ("an Ed25519 key", ed25519, "unsupported"),
        ("a P-521 key", dsa, "unsupported"),
        ("not DER at all", b"-----BEGIN NONSENSE-----".to_vec(), ""),
        ("nothing", Vec::new(), ""),
        ("a truncated CSR", good[..good.len() / 2].to_vec(), ""),
        (
            "a CSR of 100 KiB",
            [good.clone(), vec![0u8; 100 * 1024]].concat(),
            "limit",
        ),
    ];
    let ch = channel(&cp, None).await;
    let parsing_before = metric(&cp, "citadel_server_csr_parsing_err_count");
    for (case, csr, word) in &cases {
        let status = sign(ch.clone(), csr, &token).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{case}: {status:?}");
        assert!(
            status.message().to_lowercase().contains(word),
            "{case}: `{word}` not in {status:?}"
        );
    }
    // Over the request bound: refused before the body is buffered.
    let huge = vec![0x30u8; 1024 * 1024];
    let status = sign(ch.clone(), &huge, &token).await.unwrap_err();
    assert!(
        matches!(
            status.code(),
            Code::OutOfRange | Code::ResourceExhausted | Code::InvalidArgument
        ),
        "{status:?}"
    );
    let parsing_after = metric(&cp, "citadel_server_csr_parsing_err_count");
    assert!(
        parsing_after >= parsing_before + 8.0,
        "{parsing_before} → {parsing_after}"
    );
    // None of it spent the token: a good CSR still gets its certificate.
    let issued = sign(ch.clone(), &good, &token).await.unwrap();
    assert_eq!(
        issued.identity,
        "spiffe://cluster.local/ns/team-app/sa/httpbin"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csr_asking_for_more_gets_exactly_what_the_token_proves() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(dir.path(), "127.0.170.2", &[]);
    let greedy: Vec<&str> = [
        P256,
        &[
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
            "-addext",
            "subjectAltName=URI:spiffe://cluster.local/ns/istio-system/sa/meshward-admin,URI:spiffe://evil.example/ns/a/sa/b,DNS:kubernetes.default",
        ][..],
    ]
    .concat();
    let (csr, _) = openssl_csr(dir.path(), "greedy", &greedy);
    let ch = channel(&cp, None).await;
    let issued = sign(ch, &csr, &token(&cp, "10m")).await.unwrap();
    let chain = CertificateDer::pem_slice_iter(issued.cert_chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    // A leaf SVID (no CA, no keyCertSign, one URI SAN) for the token's identity, nothing else.
    let id = verify_svid_chain(
        &chain,
        Side::Client,
        &bundles(&cp),
        &AllowedPeers::any(),
        UnixTime::now(),
    )
    .unwrap();
    assert_eq!(
        id.to_string(),
        "spiffe://cluster.local/ns/team-app/sa/httpbin"
    );
    let text = String::from_utf8_lossy(chain[0].as_ref()).into_owned();
    assert!(
        !text.contains("meshward-admin")
            && !text.contains("evil.example")
            && !text.contains("kubernetes")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_tokens_cannot_be_replayed_guessed_raced_or_used_after_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(dir.path(), "127.0.170.3", &[]);
    let (csr, _) = openssl_csr(dir.path(), "w", P256);
    let ch = channel(&cp, None).await;
    let failures_before = metric(&cp, "citadel_server_authentication_failure_count");

    let once = token(&cp, "10m");
    sign(ch.clone(), &csr, &once).await.unwrap();
    let replayed = sign(ch.clone(), &csr, &once).await.unwrap_err();
    assert_eq!(replayed.code(), Code::Unauthenticated);
    assert!(replayed.message().contains("already used"), "{replayed:?}");

    let short = token(&cp, "1s");
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let expired = sign(ch.clone(), &csr, &short).await.unwrap_err();
    assert_eq!(expired.code(), Code::Unauthenticated);
    assert!(expired.message().contains("expired"), "{expired:?}");

    for guess in [
        "mwjt_guess",
        "",
        "x".repeat(10_000).as_str(),
        "mwjt_\u{0}\u{1}",
    ] {
        let status = sign(ch.clone(), &csr, guess).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "{guess:.20}: {status:?}"
        );
    }
    // A token whose hash matches nothing, made from a real one with one character changed.
    let real = token(&cp, "10m");
    let mut forged = real.clone().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'a' { b'b' } else { b'a' };
    let status = sign(ch.clone(), &csr, &String::from_utf8(forged).unwrap())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    // Eight concurrent uses of one token: exactly one certificate.
    let race = token(&cp, "10m");
    let attempts: Vec<_> = (0..8)
        .map(|_| {
            let (ch, csr, race) = (ch.clone(), csr.clone(), race.clone());
            tokio::spawn(async move { sign(ch, &csr, &race).await.is_ok() })
        })
        .collect();
    let mut won = 0;
    for a in attempts {
        won += usize::from(a.await.unwrap());
    }
    assert_eq!(won, 1, "{won} certificates from one single-use token");
    let failures_after = metric(&cp, "citadel_server_authentication_failure_count");
    assert!(
        failures_after >= failures_before + 7.0,
        "{failures_before} → {failures_after}"
    );
    // The real token from above is still good: nothing here spent it.
    sign(ch, &csr, &real).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_without_the_right_certificate_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(dir.path(), "127.0.171.1", &[]);
    cp.apply(dir.path(), MESH);
    let (csr, key) = openssl_csr(dir.path(), "w", P256);
    let svid = sign(channel(&cp, None).await, &csr, &token(&cp, "10m"))
        .await
        .unwrap();
    let workload = Some((svid.cert_chain_pem.as_str(), key.as_str()));
    let hello = |name: &str| {
        tonic::codegen::tokio_stream::iter(vec![DiscoveryRequest {
            kind: Some(Kind::Hello(Hello {
                workload: name.to_owned(),
                version: 0,
            })),
        }])
    };
    let discover = |ch: Channel, name: &'static str| async move {
        DiscoveryClient::new(ch)
            .stream(hello(name))
            .await
            .map(|_| ())
    };

    // Discovery: no certificate, another workload's name, an unregistered one, not name.ns.
    let status = discover(channel(&cp, None).await, "httpbin.team-app")
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    for name in [
        "sleep.team-app",
        "ghost.team-app",
        "httpbin",
        "httpbin.other",
    ] {
        let status = discover(channel(&cp, workload).await, name)
            .await
            .unwrap_err();
        assert!(
            matches!(
                status.code(),
                Code::PermissionDenied | Code::InvalidArgument
            ),
            "{name}: {status:?}"
        );
    }
    assert!(
        discover(channel(&cp, workload).await, "httpbin.team-app")
            .await
            .is_ok()
    );

    // Admin: no certificate, a workload's certificate.
    let apply_request = || ApplyRequest {
        files: vec![SourceFile {
            name: "x.yaml".into(),
            content: "apiVersion: v1\nkind: Namespace\nmetadata: {name: evil}\n".into(),
        }],
    };
    let status = AdminClient::new(channel(&cp, None).await)
        .apply(apply_request())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let status = AdminClient::new(channel(&cp, workload).await)
        .apply(apply_request())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    // …not even a large apply is read from a stranger.
    let mut big = apply_request();
    big.files[0]
        .content
        .push_str(&format!("# {}\n", "x".repeat(6 * 1024 * 1024)));
    let status = AdminClient::new(channel(&cp, None).await)
        .apply(big)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let (admin_cert, admin_key) = admin(&cp);
    let list =
        AdminClient::new(channel(&cp, Some((admin_cert.as_str(), admin_key.as_str()))).await)
            .list(ListRequest {
                kind: "namespace".into(),
                ..Default::default()
            })
            .await;
    let listed = format!("{list:?}");
    assert!(!listed.contains("evil"), "{listed}");

    // A certificate from another CA does not even get through the handshake.
    let other = tempfile::tempdir().unwrap();
    let ca = other.path().join("ca");
    let out = support::meshward()
        .args([
            "ca",
            "init",
            "--dir",
            ca.to_str().unwrap(),
            "--trust-domain",
            "cluster.local",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let csr_file = dir.path().join("w.csr");
    let foreign_pem = other.path().join("foreign.pem");
    let out = support::meshward()
        .args(["cert", "sign", "--ca-dir", ca.to_str().unwrap(), "--csr"])
        .arg(&csr_file)
        .args([
            "--identity",
            "spiffe://cluster.local/ns/team-app/sa/httpbin",
            "--out",
        ])
        .arg(&foreign_pem)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let foreign = std::fs::read_to_string(&foreign_pem).unwrap();
    let connected = meshward_api::connect(
        cp.grpc.parse().unwrap(),
        tls(&cp, Some((foreign.as_str(), key.as_str()))),
    )
    .await;
    match connected {
        Err(_) => {}
        Ok(ch) => {
            // TLS 1.3: the client learns of the refusal on its first call, whatever its code.
            let status = discover(ch, "httpbin.team-app").await.unwrap_err();
            assert_ne!(status.code(), Code::Ok, "{status:?}");
        }
    }
}

/// One HTTP/2 frame.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// HPACK literals (no indexing, no Huffman) for a gRPC request to `path`.
fn grpc_headers(path: &str, content_type: &str) -> Vec<u8> {
    let mut block = vec![0x83, 0x87]; // :method POST, :scheme https
    for (name, value) in [
        (":path", path),
        (":authority", "x"),
        ("content-type", content_type),
        ("te", "trailers"),
    ] {
        block.push(0x00);
        block.push(u8::try_from(name.len()).unwrap());
        block.extend_from_slice(name.as_bytes());
        block.push(u8::try_from(value.len()).unwrap());
        block.extend_from_slice(value.as_bytes());
    }
    block
}

/// Sends `bytes` on a new TLS connection to `addr` (ALPN `alpn`, no client certificate) and
/// reads what comes back within a second of quiet: (bytes back, whether it closed).
fn raw_tls(cp: &ControlPlane, addr: SocketAddr, alpn: &[u8], bytes: &[u8]) -> (usize, bool) {
    let mut config = tls(cp, None);
    config.alpn_protocols = vec![alpn.to_vec()];
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    // Answers come at once; a connection still open after that is waiting for more.
    tcp.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    if tls.write_all(bytes).is_err() {
        return (0, true);
    }
    let mut back = Vec::new();
    let start = Instant::now();
    let closed = loop {
        let mut buf = [0u8; 4096];
        match tls.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => back.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                break false;
            }
            Err(_) => break true,
        }
        if start.elapsed() > Duration::from_secs(5) {
            break false;
        }
    };
    (back.len(), closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_grpc_frames_are_refused_and_the_control_plane_lives_on() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(dir.path(), "127.0.172.1", &[]);
    let addr: SocketAddr = cp.grpc.parse().unwrap();
    let rss_before = rss_kib(&cp);
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    let settings = frame(4, 0, 0, &[]);
    let sign_path = "/meshward.v1.Certificates/Sign";
    let request = |headers: Vec<u8>, body: Vec<u8>| {
        let mut out = [preface.clone(), settings.clone()].concat();
        out.extend(frame(1, 0x4, 1, &headers));
        out.extend(frame(0, 0x1, 1, &body));
        out
    };
    let grpc = |compressed: u8, claimed: u32, payload: &[u8]| {
        let mut out = vec![compressed];
        out.extend_from_slice(&claimed.to_be_bytes());
        out.extend_from_slice(payload);
        out
    };
    let h = |ct: &str| grpc_headers(sign_path, ct);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "a length prefix longer than the body",
            request(h("application/grpc"), grpc(0, 100, b"abcde")),
        ),
        (
            "a length prefix of 4 GiB",
            request(h("application/grpc"), grpc(0, u32::MAX, b"abcde")),
        ),
        (
            "a compressed flag without an encoding",
            request(h("application/grpc"), grpc(1, 5, b"abcde")),
        ),
        (
            "a compressed flag of 7",
            request(h("application/grpc"), grpc(7, 5, b"abcde")),
        ),
        (
            "random bytes as the message",
            request(h("application/grpc"), grpc(0, 64, &[0xff; 64])),
        ),
        (
            "a message cut inside its prefix",
            request(h("application/grpc"), vec![0, 0, 0]),
        ),
        (
            "a JSON body",
            request(h("application/json"), b"{\"csr_der\": \"\"}".to_vec()),
        ),
        (
            "an unknown method",
            request(
                grpc_headers("/meshward.v1.Certificates/Nope", "application/grpc"),
                grpc(0, 0, b""),
            ),
        ),
        (
            "an unknown service",
            request(
                grpc_headers("/grpc.health.v1.Health/Check", "application/grpc"),
                grpc(0, 0, b""),
            ),
        ),
        (
            "a path of 200 bytes",
            request(
                grpc_headers(&format!("/{}", "a".repeat(200)), "application/grpc"),
                grpc(0, 0, b""),
            ),
        ),
        (
            "DATA before HEADERS",
            [preface.clone(), settings.clone(), frame(0, 1, 1, b"hello")].concat(),
        ),
        (
            "a frame on stream 0 that needs a stream",
            [
                preface.clone(),
                settings.clone(),
                frame(1, 0x5, 0, &h("application/grpc")),
            ]
            .concat(),
        ),
        (
            "garbage after the preface",
            [preface.clone(), vec![0xff; 64]].concat(),
        ),
        (
            "no preface at all",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
    ];
    for (case, bytes) in &cases {
        // Answered (a status, RST_STREAM or GOAWAY) or closed, never silence.
        let (back, closed) = raw_tls(&cp, addr, b"h2", bytes);
        assert!(back > 0 || closed, "{case}: no answer");
    }
    // HTTP/1.1 in place of h2.
    let (_, _) = raw_tls(&cp, addr, b"http/1.1", b"POST /meshward.v1.Certificates/Sign HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
    // Plaintext and random bytes where TLS is expected.
    // The stalled record is closed by the 10 s handshake bound.
    for bytes in [
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        vec![0x16, 3, 1, 0xff, 0xff, 0, 0],
        vec![0u8; 4096],
    ] {
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let _ = tcp.write_all(&bytes);
        let mut back = Vec::new();
        let closed = tcp.read_to_end(&mut back);
        assert!(
            !matches!(&closed, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "{bytes:?}: still open"
        );
    }
    // The control plane still signs, and the 4 GiB claim cost it nothing.
    let (csr, _) = openssl_csr(dir.path(), "w", P256);
    let issued = sign(channel(&cp, None).await, &csr, &token(&cp, "10m"))
        .await
        .unwrap();
    assert!(issued.cert_chain_pem.contains("BEGIN CERTIFICATE"));
    let rss_after = rss_kib(&cp);
    assert!(
        rss_after < rss_before + 64 * 1024,
        "resident memory grew from {rss_before} KiB to {rss_after} KiB"
    );
    assert!(cp.process.0.id() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_never_acknowledges_is_reported_and_costs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(dir.path(), "127.0.173.1", &[]);
    // With a port, every PeerAuthentication change below is a new view for the workload.
    let mesh = MESH.replace("127.0.171.9", "127.0.173.9").replace(
        "sidecar: true,",
        "sidecar: true, ports: [{name: http, port: 8080}],",
    );
    cp.apply(dir.path(), &mesh);
    let (csr, key) = openssl_csr(dir.path(), "w", P256);
    let svid = sign(channel(&cp, None).await, &csr, &token(&cp, "10m"))
        .await
        .unwrap();
    let ch = channel(&cp, Some((svid.cert_chain_pem.as_str(), key.as_str()))).await;
    // Hello, then silence: never an ACK, and the views it is sent are never even read.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(DiscoveryRequest {
        kind: Some(Kind::Hello(Hello {
            workload: "httpbin.team-app".into(),
            version: 0,
        })),
    })
    .await
    .unwrap();
    let response = DiscoveryClient::new(ch.clone())
        .stream(tonic::codegen::tokio_stream::wrappers::ReceiverStream::new(
            rx,
        ))
        .await
        .unwrap();
    let rss_before = rss_kib(&cp);
    // Fifty configuration changes, each a new view for the silent proxy.
    for i in 0..50 {
        let policy = format!(
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: p, namespace: team-app}}\nspec: {{mtls: {{mode: {}}}}}\n",
            if i % 2 == 0 { "STRICT" } else { "PERMISSIVE" }
        );
        cp.apply(dir.path(), &policy);
    }
    // proxy-status says so, and the control plane answers everyone else as before.
    assert!(
        eventually(Duration::from_secs(10), || {
            let out = cp.cli(&["proxy-status"]);
            let text = stdout(&out);
            text.lines()
                .any(|l| l.starts_with("httpbin ") && l.contains("STALE"))
        }),
        "{}",
        stdout(&cp.cli(&["proxy-status"]))
    );
    let issued = sign(channel(&cp, None).await, &csr, &token(&cp, "10m")).await;
    assert!(issued.is_ok(), "{issued:?}");
    let rss_after = rss_kib(&cp);
    assert!(
        rss_after < rss_before + 64 * 1024,
        "resident memory grew from {rss_before} KiB to {rss_after} KiB"
    );
    drop((response, tx));

    // A stream that never says hello is closed by the control plane (after 10 s).
    let (_silent_tx, silent_rx) = tokio::sync::mpsc::channel::<DiscoveryRequest>(1);
    let started = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        DiscoveryClient::new(ch).stream(
            tonic::codegen::tokio_stream::wrappers::ReceiverStream::new(silent_rx),
        ),
    )
    .await;
    let status = result.expect("a silent stream was kept open").unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_from_one_address_cannot_take_every_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(dir.path(), "127.0.174.1", &[]);
    // 300 connections from one address that never say a word: more than the 256 handshakes
    // the control plane runs at once.
    let mut silent = Vec::new();
    for _ in 0..300 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.174.9:0".parse().unwrap()).unwrap();
        silent.push(socket.connect(cp.grpc.parse().unwrap()).await.unwrap());
    }
    // At most 32 of them get a handshake; the others are closed at once (the handshake
    // timeout, 10 s, is far off: a held one times out this read instead).
    let reads: Vec<_> = silent
        .into_iter()
        .map(|mut conn| {
            tokio::spawn(async move {
                let mut byte = [0u8; 1];
                let read = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut byte));
                (matches!(read.await, Ok(Ok(0) | Err(_))), conn)
            })
        })
        .collect();
    let mut held = Vec::new();
    for read in reads {
        let (closed, conn) = read.await.unwrap();
        if !closed {
            held.push(conn);
        }
    }
    assert_eq!(
        held.len(),
        32,
        "connections left to handshake from one address"
    );
    // Everyone else still gets their handshake while the 32 wait.
    let out = cp.cli(&["proxy-status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    drop(held);
}
