//! The control plane and real sidecars as separate processes: certificates issued with join
//! tokens and rotated under traffic, and traffic that survives the control plane's death.

// A test that cannot unwrap has failed: panicking is the point.
#![allow(clippy::unwrap_used)]

mod support;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use support::{ControlPlane, Running, meshward, stdout, wait_for};

/// A server workload `srv.t` (STRICT) and a client `cli.t`, both with sidecars.
fn manifests(net: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: t, labels: {{istio-injection: enabled}}}}
---
apiVersion: meshward.io/v1alpha1
kind: Workload
metadata: {{name: srv, namespace: t, labels: {{app: srv}}}}
spec: {{serviceAccount: srv, address: "{net}.1.2", ports: [{{port: 8080, protocol: HTTP}}]}}
---
apiVersion: meshward.io/v1alpha1
kind: Workload
metadata: {{name: cli, namespace: t, labels: {{app: cli}}}}
spec: {{serviceAccount: cli, address: "{net}.1.1"}}
---
apiVersion: v1
kind: Service
metadata: {{name: srv, namespace: t}}
spec: {{selector: {{app: srv}}, ports: [{{port: 8080, targetPort: 8080}}]}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: strict, namespace: t}}
spec: {{mtls: {{mode: STRICT}}}}
"#
    )
}

/// Starts the two sidecars and the server app; returns them (stopped on drop).
fn start_workloads(cp: &ControlPlane, net: &str) -> Vec<Running> {
    let mut running = Vec::new();
    running.push(Running(
        meshward()
            .args(["demo", "httpbin", "--listen", &format!("{net}.2.2:8080")])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    ));
    for (name, host) in [("srv", "2"), ("cli", "1")] {
        let mut sidecar = cp.sidecar(
            &format!("{name}.t"),
            name,
            &format!("{net}.1.{host}"),
            &format!("{net}.2.{host}"),
        );
        running.push(Running(sidecar.spawn().unwrap()));
    }
    for host in ["1", "2"] {
        wait_for(
            || curl(&[&format!("http://{net}.1.{host}:15021/healthz/ready")]).0 == 0,
            "sidecar ready",
        );
    }
    running
}

/// `curl -s ARGS`: exit code and body.
fn curl(args: &[&str]) -> (i32, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5", "-f"])
        .args(args)
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), stdout(&out))
}

/// A request from the client workload, through its sidecar, to the service.
fn request(net: &str) -> (i32, String) {
    curl(&[
        "-x",
        &format!("http://{net}.1.1:15001"),
        "http://srv:8080/get",
    ])
}

fn cert_serial(net: &str, host: &str) -> String {
    curl(&[&format!("http://{net}.1.{host}:15000/certs")]).1
}

#[test]
fn certificates_rotate_under_traffic_without_a_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let net = "127.41";
    let cp = ControlPlane::start(
        dir.path(),
        &format!("{net}.0.1"),
        &["--workload-cert-ttl", "20s"],
    );
    cp.apply(dir.path(), &manifests(net));
    let _workloads = start_workloads(&cp, net);

    let (code, body) = request(net);
    assert_eq!(code, 0, "{body}");
    assert!(
        body.contains("spiffe://cluster.local/ns/t/sa/cli"),
        "caller identity missing: {body}"
    );

    let first = (cert_serial(net, "1"), cert_serial(net, "2"));
    // 20 s certificates are renewed at half-life: 45 s of traffic spans at least three
    // rotations of each side.
    let deadline = Instant::now() + Duration::from_secs(45);
    let (mut ok, mut failed) = (0, Vec::new());
    while Instant::now() < deadline {
        match request(net) {
            (0, _) => ok += 1,
            (code, body) => failed.push(format!("curl exit {code}: {body}")),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        ok + failed.len()
    );
    assert_ne!(
        cert_serial(net, "1"),
        first.0,
        "client certificate never rotated"
    );
    assert_ne!(
        cert_serial(net, "2"),
        first.1,
        "server certificate never rotated"
    );
}

#[test]
fn traffic_survives_the_control_plane_and_proxies_resync_after_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let net = "127.42";
    let cp = ControlPlane::start(dir.path(), &format!("{net}.0.1"), &[]);
    cp.apply(dir.path(), &manifests(net));
    let _workloads = start_workloads(&cp, net);
    assert_eq!(request(net).0, 0);

    drop(cp);
    for _ in 0..20 {
        let (code, body) = request(net);
        assert_eq!(code, 0, "request failed without the control plane: {body}");
    }
    // Plaintext to the STRICT port is still refused: the last view stays in force.
    assert_ne!(curl(&[&format!("http://{net}.1.2:8080/get")]).0, 0);

    let cp = ControlPlane::start(dir.path(), &format!("{net}.0.1"), &[]);
    wait_for(
        || stdout(&cp.cli(&["proxy-status"])).matches("SYNCED").count() == 2,
        "both proxies to resync",
    );
    assert_eq!(request(net).0, 0);
}
