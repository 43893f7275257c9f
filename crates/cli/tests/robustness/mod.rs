//! A small mesh for the robustness tests: a control plane, a client workload `sleep` and a server
//! workload `httpbin` (STRICT, HTTP on 8080) with real sidecar processes, and an app behind
//! `httpbin` that records every byte it receives, so a test can say "the app saw nothing".

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{ControlPlane, Running, meshward, wait_for};

/// The mesh: `sleep` on `<net>.2` (app `<net>.12`), `httpbin` on `<net>.3` (app `<net>.13`),
/// Service `httpbin-svc:8000` → 8080, namespace `team-app` STRICT. `{extra}` is appended.
pub const MESH: &str = r#"
apiVersion: meshward.io/v1alpha1
kind: Workload
metadata: {name: sleep, namespace: team-app, labels: {app: sleep}}
spec: {serviceAccount: sleep, sidecar: true, address: NET.2}
---
apiVersion: meshward.io/v1alpha1
kind: Workload
metadata: {name: httpbin, namespace: team-app, labels: {app: httpbin}}
spec:
  serviceAccount: httpbin
  sidecar: true
  address: NET.3
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

/// What the recording app received.
#[derive(Debug, Default)]
pub struct Seen {
    /// Accepted connections.
    pub connections: usize,
    /// Every byte received, all connections.
    pub bytes: usize,
    /// Request lines, in order.
    pub requests: Vec<String>,
    /// Requests that carried an `X-Forwarded-Client-Cert` (set by the proxy on mTLS only).
    pub with_xfcc: usize,
}

/// An HTTP/1 keep-alive app on `addr` that answers every request `200` with its request line
/// as the body (after a second for paths under `/delay`), and records what it received.
pub fn recording_app(addr: &str) -> Arc<Mutex<Seen>> {
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
                    let mut request_line = String::new();
                    let mut length = 0usize;
                    let mut xfcc = false;
                    loop {
                        let mut line = String::new();
                        match reader.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => s.lock().unwrap().bytes += n,
                        }
                        if line == "\r\n" || line == "\n" {
                            break;
                        }
                        let lower = line.to_ascii_lowercase();
                        if request_line.is_empty() {
                            request_line = line.trim_end().to_owned();
                        } else if let Some(v) = lower.strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        } else if lower.starts_with("x-forwarded-client-cert:") {
                            xfcc = true;
                        }
                    }
                    let mut body = vec![0u8; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let mut seen = s.lock().unwrap();
                    seen.bytes += length;
                    seen.requests.push(request_line.clone());
                    seen.with_xfcc += usize::from(xfcc);
                    drop(seen);
                    if request_line.starts_with("GET /delay") {
                        std::thread::sleep(Duration::from_secs(1));
                    }
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{request_line}",
                        request_line.len()
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

/// One request on a new connection; the whole response, or `None` if the connection failed.
pub fn http_get(addr: &str, target: &str) -> Option<String> {
    let mut tcp = TcpStream::connect(addr).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        tcp,
        "GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).ok()?;
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// The status code of one request through the forward proxy at `proxy` (0: no answer).
pub fn status_via(proxy: &str, url: &str) -> u16 {
    http_get(proxy, url)
        .and_then(|r| r.get(9..12).and_then(|c| c.parse().ok()))
        .unwrap_or(0)
}

/// Whether the proxy whose readiness port is `ready` answers 200.
pub fn is_ready(ready: &str) -> bool {
    http_get(ready, "/healthz/ready").is_some_and(|r| r.starts_with("HTTP/1.1 200"))
}

/// A running mesh; everything stops when it is dropped.
pub struct Mesh {
    pub dir: tempfile::TempDir,
    pub cp: ControlPlane,
    pub net: String,
    pub app: Arc<Mutex<Seen>>,
    pub server: Running,
    pub client: Running,
}

impl Mesh {
    /// Starts the control plane on `<net>.1`, applies [`MESH`] and `extra`, starts the app and
    /// both sidecars and waits until both are ready.
    pub fn start(net: &str, extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cp = ControlPlane::start(dir.path(), &format!("{net}.1"), &[]);
        cp.apply(
            dir.path(),
            &format!("{}---\n{extra}", MESH.replace("NET", net)),
        );
        let app = recording_app(&format!("{net}.13:8080"));
        let server = sidecar(&cp, "httpbin", &format!("{net}.3"), &format!("{net}.13"));
        let client = sidecar(&cp, "sleep", &format!("{net}.2"), &format!("{net}.12"));
        Self {
            dir,
            cp,
            net: net.to_owned(),
            app,
            server,
            client,
        }
    }

    /// The client sidecar's forward proxy.
    pub fn outbound(&self) -> String {
        format!("{}.2:15001", self.net)
    }

    /// The server sidecar's STRICT port.
    pub fn inbound(&self) -> String {
        format!("{}.3:8080", self.net)
    }

    /// The status of `GET path` from `sleep` to `httpbin-svc`.
    pub fn get(&self, path: &str) -> u16 {
        status_via(&self.outbound(), &format!("http://httpbin-svc:8000{path}"))
    }

    /// Applies `yaml`, which must succeed.
    pub fn apply(&self, yaml: &str) {
        self.cp.apply(self.dir.path(), yaml);
    }
}

/// A fresh join token for `team-app/<sa>`.
pub fn token(cp: &ControlPlane, sa: &str) -> String {
    cp.token("team-app", sa, "10m")
}

/// The roots file proxies of `cp` trust.
pub fn cp_root(cp: &ControlPlane) -> PathBuf {
    meshward_control_plane::root_cert_path(&cp.data_dir)
}

/// Starts the sidecar of `team-app/<sa>` (workload named like its service account) on `ip` and
/// waits until it is ready.
pub fn sidecar(cp: &ControlPlane, sa: &str, ip: &str, app_ip: &str) -> Running {
    let p = spawn_sidecar(cp, sa, ip, app_ip, &token(cp, sa));
    let ready = format!("{ip}:15021");
    wait_for(|| is_ready(&ready), sa);
    p
}

/// Starts the sidecar of `team-app/<sa>` without waiting.
pub fn spawn_sidecar(cp: &ControlPlane, sa: &str, ip: &str, app_ip: &str, token: &str) -> Running {
    let child = meshward()
        .args(["proxy", "--workload", &format!("{sa}.team-app")])
        .args(["--address", ip, "--app-address", app_ip])
        .args(["--control-plane", &cp.grpc, "--control-plane-root"])
        .arg(cp_root(cp))
        .env("MESHWARD_JOIN_TOKEN", token)
        .args(["--drain-timeout", "3s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Running(child)
}

/// Waits up to `limit` for `done`; whether it happened.
pub fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

/// Sends `signal` (`TERM`, `KILL`, …) to `process`.
pub fn signal(process: &Running, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &process.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits up to `limit` for `process` to exit; its status.
pub fn wait_exit(process: &mut Running, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(status) = process.0.try_wait().unwrap() {
            return Some(status);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
