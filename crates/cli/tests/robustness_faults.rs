//! Faults around real processes: the control plane killed (proxies keep serving and deciding
//! the same), unreachable or untrustworthy when a proxy starts (not ready, no plaintext
//! fallback), its CA files damaged or unreadable (it refuses to start, naming the file, and
//! never mints a new root), a sidecar killed under load and restarted, and SIGTERM with requests
//! in flight. `docs/robustness.md` lists each case with the existing tests it builds on.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

mod robustness;
mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use robustness::{
    MESH, Mesh, eventually, http_get, is_ready, recording_app, sidecar, signal, spawn_sidecar,
    status_via, token, wait_exit,
};
use support::{ControlPlane, Running, meshward, stderr};

/// ALLOW `sleep` to GET `/get` and `/delay`; DENY `/admin`.
const POLICIES: &str = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-sleep, namespace: team-app}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: ALLOW
  rules:
  - from: [{source: {principals: [cluster.local/ns/team-app/sa/sleep]}}]
    to: [{operation: {methods: [GET], paths: [/get, /delay, /admin]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: team-app}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: DENY
  rules:
  - to: [{operation: {paths: [/admin]}}]
";

/// The decisions the mesh makes: `/get` allowed, `/admin` denied, plaintext to the STRICT port
/// refused.
fn decisions(mesh: &Mesh) -> (u16, u16, bool) {
    let plaintext = http_get(&mesh.inbound(), "/get").is_some_and(|r| !r.is_empty());
    (mesh.get("/get"), mesh.get("/admin"), plaintext)
}

#[test]
fn a_killed_control_plane_changes_no_decision() {
    let mut mesh = Mesh::start("127.0.190", POLICIES);
    assert!(eventually(Duration::from_secs(10), || mesh.get("/get") == 200));
    let before = decisions(&mesh);
    assert_eq!(before, (200, 403, false));
    signal(&mesh.cp.process, "KILL");
    wait_exit(&mut mesh.cp.process, Duration::from_secs(10)).unwrap();
    // Two seconds of the same answers, on new connections each time.
    for _ in 0..10 {
        assert_eq!(decisions(&mesh), before);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(is_ready(&format!("{}.3:15021", mesh.net)));
    let seen = mesh.app.lock().unwrap();
    assert!(seen.requests.iter().all(|r| !r.contains("/admin")));
    assert_eq!(
        seen.with_xfcc,
        seen.requests.len(),
        "a request reached the app without mTLS"
    );
}

#[test]
fn a_control_plane_unreachable_at_start_means_not_ready_and_nothing_served() {
    let dir = tempfile::tempdir().unwrap();
    let net = "127.0.191";
    let cp = ControlPlane::start(dir.path(), &format!("{net}.1"), &[]);
    cp.apply(dir.path(), &MESH.replace("NET", net));
    let tok = token(&cp, "httpbin");
    let app = recording_app(&format!("{net}.13:8080"));
    let mut cp = cp;
    signal(&cp.process, "KILL");
    wait_exit(&mut cp.process, Duration::from_secs(10)).unwrap();

    let _proxy = spawn_sidecar(
        &cp,
        "httpbin",
        &format!("{net}.3"),
        &format!("{net}.13"),
        &tok,
    );
    let ready = format!("{net}.3:15021");
    assert!(eventually(Duration::from_secs(10), || http_get(
        &ready,
        "/healthz/ready"
    )
    .is_some()));
    std::thread::sleep(Duration::from_secs(2));
    let answer = http_get(&ready, "/healthz/ready").unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    // No certificate, no view: the service port serves nothing at all, in plaintext least of all.
    let plain = http_get(&format!("{net}.3:8080"), "/get").unwrap_or_default();
    assert!(!plain.contains("200"), "{plain}");
    let outbound = status_via(&format!("{net}.3:15001"), "http://httpbin-svc:8000/get");
    assert_ne!(outbound, 200);
    assert_eq!(app.lock().unwrap().connections, 0);

    // The control plane comes back: the proxy gets its certificate and view with its token.
    let cp = ControlPlane::start(dir.path(), &format!("{net}.1"), &[]);
    assert!(
        eventually(Duration::from_secs(30), || is_ready(&ready)),
        "{}",
        http_get(&ready, "/healthz/ready").unwrap_or_default()
    );
    let plain = http_get(&format!("{net}.3:8080"), "/get").unwrap_or_default();
    assert!(plain.is_empty(), "STRICT answered plaintext: {plain}");
    assert_eq!(app.lock().unwrap().connections, 0);
    drop(cp);
}

#[test]
fn a_control_plane_that_cannot_prove_itself_is_never_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let net = "127.0.195";
    let cp = ControlPlane::start(dir.path(), &format!("{net}.1"), &[]);
    cp.apply(dir.path(), &MESH.replace("NET", net));
    // A root from another CA given as the control plane's root.
    let other = dir.path().join("other-ca");
    let out = meshward()
        .args(["ca", "init", "--trust-domain", "cluster.local", "--dir"])
        .arg(&other)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let wrong_root = Running(
        meshward()
            .args(["proxy", "--workload", "httpbin.team-app"])
            .args([
                "--address",
                &format!("{net}.3"),
                "--app-address",
                &format!("{net}.13"),
            ])
            .args(["--control-plane", &cp.grpc, "--control-plane-root"])
            .arg(other.join("root-cert.pem"))
            .env("MESHWARD_JOIN_TOKEN", token(&cp, "httpbin"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    // A "control plane" that accepts connections and never says a word.
    let silent = TcpListener::bind(format!("{net}.5:15012")).unwrap();
    let held = Arc::new(std::sync::Mutex::new(Vec::new()));
    let h = Arc::clone(&held);
    std::thread::spawn(move || {
        for tcp in silent.incoming().flatten() {
            h.lock().unwrap().push(tcp);
        }
    });
    let mute = Running(
        meshward()
            .args(["proxy", "--workload", "sleep.team-app"])
            .args([
                "--address",
                &format!("{net}.2"),
                "--app-address",
                &format!("{net}.12"),
            ])
            .args([
                "--control-plane",
                &format!("{net}.5:15012"),
                "--control-plane-root",
            ])
            .arg(meshward_control_plane::root_cert_path(&cp.data_dir))
            .env("MESHWARD_JOIN_TOKEN", token(&cp, "sleep"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_secs(7));
    for ip in [format!("{net}.3"), format!("{net}.2")] {
        let ready = http_get(&format!("{ip}:15021"), "/healthz/ready").unwrap_or_default();
        assert!(ready.starts_with("HTTP/1.1 503"), "{ip}: {ready}");
    }
    // Neither sent its token (nor a CSR) to a control plane it could not verify.
    let metrics = http_get(&format!("{net}.1:15014"), "/metrics").unwrap();
    assert!(
        metrics.lines().any(|l| l == "citadel_server_csr_count 0"),
        "{metrics}"
    );
    assert!(
        !held.lock().unwrap().is_empty(),
        "the mute control plane was never dialled"
    );
    drop((wrong_root, mute));
}

#[test]
fn damaged_or_unreadable_ca_files_stop_the_control_plane_and_no_new_root_is_minted() {
    let dir = tempfile::tempdir().unwrap();
    let net = "127.0.192";
    let root_before = {
        let cp = ControlPlane::start(dir.path(), &format!("{net}.1"), &[]);
        std::fs::read(meshward_control_plane::root_cert_path(&cp.data_dir)).unwrap()
    };
    let ca = dir.path().join("data/ca");
    let start = || {
        meshward()
            .args(["control-plane", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--grpc-addr", &format!("{net}.1:15012")])
            .args(["--http-addr", &format!("{net}.1:15014")])
            .env("MESHWARD_CONTEXT", dir.path().join("context.json"))
            .output()
            .unwrap()
    };
    for (file, damage) in [
        ("ca-key.pem", "a directory"),
        ("ca-cert.pem", "a directory"),
        ("ca-key.pem", "garbage"),
        ("ca-cert.pem", "cut in half"),
        ("root-cert.pem", "empty"),
        ("ca-key.pem", "missing"),
        ("ca-cert.pem", "missing"),
        ("ca-key.pem", "another key"),
    ] {
        let path = ca.join(file);
        let saved = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        match damage {
            "a directory" => std::fs::create_dir(&path).unwrap(),
            "garbage" => std::fs::write(
                &path,
                "-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----\n",
            )
            .unwrap(),
            "cut in half" => std::fs::write(&path, &saved[..saved.len() / 2]).unwrap(),
            "empty" => std::fs::write(&path, "").unwrap(),
            "another key" => {
                let other = dir.path().join("other.key");
                let out = std::process::Command::new("openssl")
                    .args([
                        "genpkey",
                        "-algorithm",
                        "EC",
                        "-pkeyopt",
                        "ec_paramgen_curve:P-256",
                        "-out",
                    ])
                    .arg(&other)
                    .output()
                    .unwrap();
                assert!(out.status.success());
                std::fs::copy(&other, &path).unwrap();
            }
            _ => {}
        }
        let out = start();
        let err = stderr(&out);
        assert!(!out.status.success(), "{file} {damage}: started anyway");
        assert!(
            err.contains(file) || err.contains(ca.to_str().unwrap()),
            "{file} {damage}: the file is not named: {err}"
        );
        if path.is_dir() {
            std::fs::remove_dir(&path).unwrap();
        } else if path.exists() {
            std::fs::remove_file(&path).unwrap();
        }
        std::fs::write(&path, &saved).unwrap();
    }
    // Repaired, the control plane starts with the root it always had.
    let cp = ControlPlane::start(dir.path(), &format!("{net}.1"), &[]);
    let root_after = std::fs::read(meshward_control_plane::root_cert_path(&cp.data_dir)).unwrap();
    assert_eq!(root_before, root_after, "a new root was minted");
}

#[test]
fn a_sidecar_killed_under_load_and_restarted_serves_again_over_mtls_only() {
    let mut mesh = Mesh::start("127.0.193", POLICIES);
    assert!(eventually(Duration::from_secs(10), || mesh.get("/get") == 200));
    let stop = Arc::new(AtomicBool::new(false));
    let outbound = mesh.outbound();
    let load = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut codes = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                codes.push(status_via(&outbound, "http://httpbin-svc:8000/get"));
            }
            codes
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    signal(&mesh.server, "KILL");
    wait_exit(&mut mesh.server, Duration::from_secs(10)).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let net = mesh.net.clone();
    mesh.server = sidecar(
        &mesh.cp,
        "httpbin",
        &format!("{net}.3"),
        &format!("{net}.13"),
    );
    assert!(eventually(Duration::from_secs(20), || mesh.get("/get") == 200));
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let codes = load.join().unwrap();
    let ok = codes.iter().filter(|c| **c == 200).count();
    let failed: Vec<_> = codes.iter().filter(|c| **c != 200).collect();
    assert!(ok > 10, "{codes:?}");
    // While it was down, the client sidecar answered with a gateway error; nothing else.
    assert!(failed.iter().all(|c| matches!(c, 502 | 503)), "{failed:?}");
    // The last requests succeeded again.
    assert_eq!(codes.last(), Some(&200));
    let seen = mesh.app.lock().unwrap();
    assert_eq!(
        seen.with_xfcc,
        seen.requests.len(),
        "a request reached the app without mTLS"
    );
    // Every 200 was the app's answer (the rest are the test's own probes).
    assert!(seen.requests.len() >= ok);
}

#[test]
fn sigterm_with_requests_in_flight_lets_them_finish() {
    let mut mesh = Mesh::start("127.0.194", POLICIES);
    assert!(eventually(Duration::from_secs(10), || mesh.get("/get") == 200));
    let outbound = mesh.outbound();
    // Eight slow requests, each on its own connection, all in the app when SIGTERM arrives.
    let slow: Vec<_> = (0..8)
        .map(|_| {
            let outbound = outbound.clone();
            std::thread::spawn(move || status_via(&outbound, "http://httpbin-svc:8000/delay"))
        })
        .collect();
    assert!(eventually(Duration::from_secs(10), || {
        mesh.app
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|r| r.contains("/delay"))
            .count()
            == 8
    }));
    signal(&mesh.server, "TERM");
    // New connections are refused at once; the eight in flight are answered.
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        TcpStream::connect(mesh.inbound()).is_err(),
        "still accepting after SIGTERM"
    );
    let codes: Vec<u16> = slow.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(codes, vec![200; 8]);
    // It exits 0 once they are done, well before the 3 s drain timeout runs out.
    let status = wait_exit(&mut mesh.server, Duration::from_secs(10)).expect("still running");
    assert!(status.success(), "{status:?}");
    // The client sidecar says why the next request fails; the app sees nothing more.
    let before = mesh.app.lock().unwrap().requests.len();
    assert!(matches!(mesh.get("/get"), 502 | 503));
    assert_eq!(mesh.app.lock().unwrap().requests.len(), before);
    let mut probe = TcpStream::connect(mesh.outbound()).unwrap();
    probe
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = probe.write_all(b"GET http://httpbin-svc:8000/get HTTP/1.1\r\nHost: httpbin-svc\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    let _ = probe.read_to_string(&mut text);
    assert!(text.starts_with("HTTP/1.1 50"), "{text}");
}
