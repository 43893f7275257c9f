//! `meshward proxy` end to end: a real control plane, two sidecars that get their certificates
//! with join tokens, an app behind one of them, and curl through the other's forward proxy.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{ControlPlane, Running, meshward, stdout, wait_for};

const MESH: &str = r#"
apiVersion: meshward.io/v1alpha1
kind: Workload
metadata: {name: sleep, namespace: team-app, labels: {app: sleep}}
spec: {serviceAccount: sleep, sidecar: true, address: 127.0.70.2}
---
apiVersion: meshward.io/v1alpha1
kind: Workload
metadata: {name: httpbin, namespace: team-app, labels: {app: httpbin}}
spec:
  serviceAccount: httpbin
  sidecar: true
  address: 127.0.70.3
  ports: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: v1
kind: Service
metadata: {name: httpbin-svc, namespace: team-app}
spec:
  selector: {app: httpbin}
  ports: [{name: http, port: 8000, targetPort: 8080}]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict, namespace: team-app}
spec: {mtls: {mode: STRICT}}
"#;

/// What the app saw: its accepted connections, and each request's XFCC headers.
#[derive(Default)]
struct Seen {
    connections: usize,
    requests: Vec<String>,
}

/// A keep-alive HTTP/1 app on `addr` whose body is the request's XFCC headers, one per line.
fn app(addr: &str) -> Arc<Mutex<Seen>> {
    let listener = TcpListener::bind(addr).unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s = Arc::clone(&seen);
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(mut tcp) = tcp else { continue };
            s.lock().unwrap().connections += 1;
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(tcp.try_clone().unwrap());
                loop {
                    let mut xfcc = Vec::new();
                    let mut lines = 0;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        lines += 1;
                        if let Some(v) = line
                            .to_ascii_lowercase()
                            .strip_prefix("x-forwarded-client-cert:")
                        {
                            xfcc.push(v.trim().to_owned());
                        }
                    }
                    if lines == 0 {
                        return;
                    }
                    let body = xfcc.join("\n");
                    s.lock().unwrap().requests.push(body.clone());
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if tcp.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    seen
}

fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut tcp = TcpStream::connect(addr).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    tcp.read_to_string(&mut out).ok()?;
    Some(out)
}

/// The mesh manifests with workload addresses in `net` (`127.0.N`).
fn mesh(net: &str) -> String {
    MESH.replace("127.0.70.", &format!("{net}."))
}

/// Applies the mesh, starts the app and both sidecars; returns (app log, server, client).
fn start_mesh(
    cp: &ControlPlane,
    dir: &std::path::Path,
    net: &str,
) -> (Arc<Mutex<Seen>>, Running, Running) {
    cp.apply(dir, &mesh(net));
    let token = |sa: &str| cp.token("team-app", sa, "10m");
    let seen = app(&format!("{net}.13:8080"));
    let server = proxy(
        "httpbin.team-app",
        &format!("{net}.3"),
        &format!("{net}.13"),
        cp,
        &token("httpbin"),
    );
    let client = proxy(
        "sleep.team-app",
        &format!("{net}.2"),
        &format!("{net}.12"),
        cp,
        &token("sleep"),
    );
    (seen, server, client)
}

/// One request through the forward proxy at `proxy`; the status line's code, or 0 on failure.
fn via_proxy(proxy: &str, url: &str) -> u16 {
    http_get(proxy, url)
        .and_then(|r| r.get(9..12).and_then(|c| c.parse().ok()))
        .unwrap_or(0)
}

fn proxy(workload: &str, ip: &str, app_ip: &str, cp: &ControlPlane, token: &str) -> Running {
    let root = meshward_control_plane::root_cert_path(&cp.data_dir);
    let child = meshward()
        .args([
            "proxy",
            "--workload",
            workload,
            "--address",
            ip,
            "--app-address",
            app_ip,
        ])
        .args(["--control-plane", &cp.grpc, "--control-plane-root"])
        .arg(root)
        .env("MESHWARD_JOIN_TOKEN", token)
        .args(["--drain-timeout", "3s"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let ready = format!("{ip}:15021");
    let p = Running(child);
    wait_for(
        || http_get(&ready, "/healthz/ready").is_some_and(|r| r.starts_with("HTTP/1.1 200")),
        workload,
    );
    p
}

fn curl(args: &[&str], env: &[(&str, &str)]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-s", "-m", "10", "-w", "\n%{http_code}"])
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = stdout(&out);
    let (body, code) = text.rsplit_once('\n').unwrap();
    (body.to_owned(), code.to_owned())
}

#[test]
fn sidecars_carry_requests_over_mtls_with_the_callers_identity() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(dir.path(), "127.0.70.1", &[]);
    let (seen, _server, mut client) = start_mesh(&cp, dir.path(), "127.0.70");
    let expected = "by=spiffe://cluster.local/ns/team-app/sa/httpbin;uri=spiffe://cluster.local/ns/team-app/sa/sleep";

    // curl -x, with a forged identity header that must not reach the app.
    let (body, code) = curl(
        &[
            "-x",
            "http://127.0.70.2:15001",
            "-H",
            "X-Forwarded-Client-Cert: URI=spiffe://evil/ns/a/sa/b",
            "http://httpbin-svc:8000/get",
        ],
        &[],
    );
    assert_eq!(code, "200", "{body}");
    assert_eq!(body, expected);
    // http_proxy in the environment (curl reads the lower-case name for http://).
    let (body, code) = curl(
        &["http://httpbin-svc.team-app.svc.cluster.local:8000/get"],
        &[("http_proxy", "http://127.0.70.2:15001")],
    );
    assert_eq!((code.as_str(), body.as_str()), ("200", expected));
    // CONNECT tunnels too.
    let (body, code) = curl(
        &[
            "-p",
            "-x",
            "http://127.0.70.2:15001",
            "http://httpbin-svc.team-app:8000/get",
        ],
        &[],
    );
    assert_eq!((code.as_str(), body.as_str()), ("200", expected));
    // Not a mesh service: refused with a reason, nothing sent anywhere.
    let (body, code) = curl(
        &["-x", "http://127.0.70.2:15001", "http://example.invalid/"],
        &[],
    );
    assert_eq!(code, "502");
    assert!(body.contains("unknown service"), "{body}");
    // Plaintext straight to the STRICT port never reaches the app.
    let before = seen.lock().unwrap().requests.len();
    let (_, code) = curl(&["http://127.0.70.3:8080/get"], &[]);
    assert_eq!(code, "000");
    assert_eq!(seen.lock().unwrap().requests.len(), before);

    // A tunnel open across SIGTERM: the proxy turns not-ready and stops accepting, the tunnel
    // keeps working, and the proxy exits 0 as soon as it closes (before the 3 s drain timeout).
    let mut tunnel = TcpStream::connect("127.0.70.2:15001").unwrap();
    tunnel
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        tunnel,
        "CONNECT httpbin-svc:8000 HTTP/1.1\r\nHost: httpbin-svc:8000\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 19];
    tunnel.read_exact(&mut head).unwrap();
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let mut rest = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tunnel.read_exact(&mut rest).unwrap();
        head.rotate_left(1);
        head[18] = rest[0];
    }

    let pid = client.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    std::thread::sleep(Duration::from_millis(300));
    let ready = http_get("127.0.70.2:15021", "/healthz/ready").unwrap_or_default();
    assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
    assert!(
        TcpStream::connect("127.0.70.2:15001").is_err(),
        "still accepting while draining"
    );
    write!(
        tunnel,
        "GET /get HTTP/1.1\r\nHost: httpbin-svc\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    tunnel.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 200") && response.ends_with(expected),
        "{response}"
    );
    drop(tunnel);
    let closed = Instant::now();
    let status = loop {
        if let Some(status) = client.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            closed.elapsed() < Duration::from_secs(10),
            "proxy did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    assert!(
        closed.elapsed() < Duration::from_secs(2),
        "the drain waited for its timeout"
    );
}

#[test]
fn rotations_and_a_lost_control_plane_cost_no_request() {
    let dir = tempfile::tempdir().unwrap();
    // 6-second certificates: renewed about every 3 seconds.
    let mut cp = ControlPlane::start(dir.path(), "127.0.71.1", &["--workload-cert-ttl", "6s"]);
    let (seen, _server, _client) = start_mesh(&cp, dir.path(), "127.0.71");
    let url = "http://httpbin-svc:8000/get";
    let first = http_get("127.0.71.2:15000", "/certs").unwrap();
    let mut failures = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if via_proxy("127.0.71.2:15001", url) != 200 {
            failures += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(failures, 0, "requests failed across certificate rotations");
    let later = http_get("127.0.71.2:15000", "/certs").unwrap();
    assert_ne!(first, later, "the certificate was never renewed");
    let seen = seen.lock().unwrap();
    assert!(seen.requests.len() > 50);
    // Upstream connections are reused (and survive rotations): far fewer than requests.
    assert!(
        seen.connections < 5,
        "{} connections for {} requests",
        seen.connections,
        seen.requests.len()
    );
    drop(seen);

    // The control plane goes away: traffic keeps flowing on the last certificate and view.
    let _ = cp.process.0.kill();
    let _ = cp.process.0.wait();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        assert_eq!(via_proxy("127.0.71.2:15001", url), 200);
        std::thread::sleep(Duration::from_millis(20));
    }
}
