//! Trust operations end to end, with real processes: a control plane, sidecars that enroll with
//! join tokens, an httpbin behind one of them. Revocation cuts one identity off within seconds
//! while the others keep working; a staged root rotation under continuous traffic fails no
//! request; a rotation waits for a missing proxy, names it, and resumes after a control-plane
//! restart; a corrupt CA file changes nothing.

// A test that cannot unwrap has failed: panicking is the point.
#![allow(clippy::unwrap_used)]

mod support;

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use support::{ControlPlane, Running, meshward, stderr, stdout, wait_for};

/// A STRICT server `srv.t`, and two clients with their own identities, `cli.t` and `other.t`.
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
apiVersion: meshward.io/v1alpha1
kind: Workload
metadata: {{name: other, namespace: t, labels: {{app: other}}}}
spec: {{serviceAccount: other, address: "{net}.1.3"}}
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

/// The workloads: (name, last octet).
const WORKLOADS: [(&str, &str); 3] = [("srv", "2"), ("cli", "1"), ("other", "3")];

/// The sidecar of workload `name` at `{net}.1.{host}`, enrolled with a fresh join token; its
/// log goes to `log` when given.
fn sidecar(cp: &ControlPlane, net: &str, name: &str, host: &str, log: Option<&Path>) -> Running {
    let mut command = cp.sidecar(
        &format!("{name}.t"),
        name,
        &format!("{net}.1.{host}"),
        &format!("{net}.2.{host}"),
    );
    if let Some(log) = log {
        command.stderr(std::fs::File::create(log).unwrap());
    }
    Running(command.spawn().unwrap())
}

/// The server app and the three sidecars, each ready.
fn start_workloads(cp: &ControlPlane, net: &str) -> Vec<Running> {
    let mut running = vec![Running(
        meshward()
            .args(["demo", "httpbin", "--listen", &format!("{net}.2.2:8080")])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    )];
    for (name, host) in WORKLOADS {
        running.push(sidecar(cp, net, name, host, None));
    }
    for (_, host) in WORKLOADS {
        wait_ready(net, host);
    }
    running
}

fn wait_ready(net: &str, host: &str) {
    wait_for(
        || curl(&[&format!("http://{net}.1.{host}:15021/healthz/ready")]).0 == 0,
        "sidecar ready",
    );
}

/// `curl -s -f ARGS`: exit code and body.
fn curl(args: &[&str]) -> (i32, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5", "-f"])
        .args(args)
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), stdout(&out))
}

/// One request from the workload at `{net}.1.{host}` to `srv`, through its sidecar.
fn request(net: &str, host: &str) -> (i32, String) {
    curl(&[
        "-x",
        &format!("http://{net}.1.{host}:15001"),
        "http://srv:8080/get",
    ])
}

/// A tunnel through the sidecar at `{net}.1.{host}` to `srv:8080`, kept open.
struct Tunnel(TcpStream);

impl Tunnel {
    fn open(net: &str, host: &str) -> Self {
        let mut tcp = TcpStream::connect(format!("{net}.1.{host}:15001")).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(tcp, "CONNECT srv:8080 HTTP/1.1\r\nHost: srv:8080\r\n\r\n").unwrap();
        let head = read_head(&mut tcp).unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        Self(tcp)
    }

    /// One GET over the tunnel: the status line and the body, or why there were none.
    fn get(&mut self) -> Result<String, String> {
        write!(self.0, "GET /get HTTP/1.1\r\nHost: srv\r\n\r\n").map_err(|e| e.to_string())?;
        let head = read_head(&mut self.0)?;
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap_or(0))
            })
            .unwrap_or(0);
        let mut body = vec![0; length];
        self.0.read_exact(&mut body).map_err(|e| e.to_string())?;
        let status = head.lines().next().unwrap_or_default();
        Ok(format!("{status}\n{}", String::from_utf8_lossy(&body)))
    }

    /// Whether the other end closed the tunnel within `within`.
    fn closed_within(&mut self, within: Duration) -> Option<Duration> {
        let start = Instant::now();
        self.0
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut byte = [0u8; 1];
        while start.elapsed() < within {
            match self.0.read(&mut byte) {
                Ok(0) => return Some(start.elapsed()),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return Some(start.elapsed()),
            }
        }
        None
    }
}

fn read_head(tcp: &mut TcpStream) -> Result<String, String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tcp.read(&mut byte) {
            Ok(0) => return Err("connection closed".to_owned()),
            Ok(_) => head.push(byte[0]),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

fn cli_ok(cp: &ControlPlane, args: &[&str]) -> String {
    let out = cp.cli(args);
    assert!(
        out.status.success(),
        "meshward {args:?}: {}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

#[test]
fn a_revoked_identity_is_cut_off_within_seconds_and_others_are_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let net = "127.81";
    let cp = ControlPlane::start(dir.path(), &format!("{net}.0.1"), &[]);
    cp.apply(dir.path(), &manifests(net));
    let _workloads = start_workloads(&cp, net);
    assert_eq!(request(net, "1").0, 0);
    assert_eq!(request(net, "3").0, 0);

    // Connections open before the revocation, one per client.
    let mut revoked = Tunnel::open(net, "1");
    let mut untouched = Tunnel::open(net, "3");
    assert!(revoked.get().unwrap().starts_with("HTTP/1.1 200"));
    assert!(untouched.get().unwrap().starts_with("HTTP/1.1 200"));

    let start = Instant::now();
    let out = cli_ok(
        &cp,
        &[
            "ca",
            "revoke",
            "spiffe://cluster.local/ns/t/sa/cli",
            "--reason",
            "key leaked",
        ],
    );
    assert!(
        out.contains("revoked spiffe://cluster.local/ns/t/sa/cli"),
        "{out}"
    );

    // The open connection is closed within seconds...
    let closed = revoked.closed_within(Duration::from_secs(5));
    assert!(
        closed.is_some(),
        "the revoked client's open connection is still open after 5 s"
    );
    println!(
        "revoked connection closed {:?} after the revoke command",
        start.elapsed()
    );
    // ...new ones are refused...
    let (code, body) = request(net, "1");
    assert_ne!(code, 0, "the revoked client still gets through: {body}");
    // ...and the other client is untouched, on its open connection and on new ones.
    assert!(untouched.get().unwrap().starts_with("HTTP/1.1 200"));
    for _ in 0..5 {
        assert_eq!(request(net, "3").0, 0);
    }

    let listed = cli_ok(&cp, &["ca", "revocations"]);
    assert!(
        listed.contains("spiffe://cluster.local/ns/t/sa/cli") && listed.contains("key leaked"),
        "{listed}"
    );

    // A revoked identity holding a valid join token cannot enroll again.
    let log = dir.path().join("reenroll.log");
    let mut again = sidecar(&cp, net, "cli", "9", Some(&log));
    wait_for(
        || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("is revoked")
        },
        "the control plane to refuse the revoked identity's join token",
    );
    assert!(
        curl(&[&format!("http://{net}.1.9:15021/healthz/ready")]).0 != 0,
        "a revoked identity enrolled"
    );
    let _ = again.0.kill();

    // Once an administrator lifts the revocation, the client gets through again.
    let out = cli_ok(
        &cp,
        &["ca", "unrevoke", "spiffe://cluster.local/ns/t/sa/cli"],
    );
    assert!(out.contains("lifted"), "{out}");
    wait_for(
        || request(net, "1").0 == 0,
        "the client to get through again",
    );
    assert!(cli_ok(&cp, &["ca", "revocations"]).contains("nothing is revoked"));
}

#[test]
fn clients_close_their_open_connections_to_a_revoked_server() {
    let dir = tempfile::tempdir().unwrap();
    let net = "127.45";
    let cp = ControlPlane::start(dir.path(), &format!("{net}.0.1"), &[]);
    cp.apply(dir.path(), &manifests(net));
    let _workloads = start_workloads(&cp, net);
    assert_eq!(request(net, "1").0, 0);
    // A tunnel and a pooled HTTP connection from the client to the server, both open.
    let mut tunnel = Tunnel::open(net, "1");
    assert!(tunnel.get().unwrap().starts_with("HTTP/1.1 200"));

    // The server's identity is revoked: only the client sidecar can tell (the server's own
    // sidecar still trusts its client), and it closes what it holds open to the server.
    cli_ok(&cp, &["ca", "revoke", "spiffe://cluster.local/ns/t/sa/srv"]);
    assert!(
        tunnel.closed_within(Duration::from_secs(5)).is_some(),
        "the tunnel to the revoked server is still open after 5 s"
    );
    // Neither a pooled connection nor a new handshake reaches the revoked server.
    let (code, body) = request(net, "1");
    assert_ne!(code, 0, "a request reached the revoked server: {body}");
}

#[test]
fn a_revoked_certificate_serial_is_refused_and_its_connections_closed() {
    let dir = tempfile::tempdir().unwrap();
    let net = "127.85";
    let cp = ControlPlane::start(dir.path(), &format!("{net}.0.1"), &[]);
    cp.apply(dir.path(), &manifests(net));
    let _workloads = start_workloads(&cp, net);
    let mut open = Tunnel::open(net, "1");
    assert!(open.get().unwrap().starts_with("HTTP/1.1 200"));
    let certs = curl(&[&format!("http://{net}.1.1:15000/certs")]).1;
    // `"serial": "4a0b…"`, whatever the spacing.
    let serial = certs
        .split("\"serial\"")
        .nth(1)
        .and_then(|rest| rest.split('"').nth(1))
        .map(str::to_owned);
    let serial = serial.expect("/certs shows the serial");
    cli_ok(&cp, &["ca", "revoke", "--serial", &serial]);
    assert!(open.closed_within(Duration::from_secs(5)).is_some());
    assert_eq!(request(net, "3").0, 0);
}

#[test]
fn a_trust_domain_migration_under_traffic_renames_every_identity_and_fails_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let net = "127.46";
    let cp = ControlPlane::start(
        dir.path(),
        &format!("{net}.0.1"),
        &["--workload-cert-ttl", "20s"],
    );
    cp.apply(dir.path(), &manifests(net));
    let _workloads = start_workloads(&cp, net);
    assert!(
        request(net, "1")
            .1
            .contains("spiffe://cluster.local/ns/t/sa/cli")
    );

    let stop = Arc::new(AtomicBool::new(false));
    let load = traffic(net, Arc::clone(&stop));
    // Istio's migration: the new trust domain, the old one as an alias.
    let file = dir.path().join("trust-domain.yaml");
    std::fs::write(
        &file,
        "apiVersion: meshward.io/v1alpha1\nkind: MeshConfig\nmetadata: {name: mesh}\n\
         spec: {trustDomain: new.local, trustDomainAliases: [cluster.local]}\n",
    )
    .unwrap();
    cli_ok(&cp, &["apply", "-f", file.to_str().unwrap()]);
    // Each sidecar moves over at its next renewal (20 s certificates renew within ~10 s).
    for (name, host) in WORKLOADS {
        wait_for(
            || {
                curl(&[&format!("http://{net}.1.{host}:15000/certs")])
                    .1
                    .contains(&format!("spiffe://new.local/ns/t/sa/{name}"))
            },
            "a certificate in the new trust domain",
        );
    }
    std::thread::sleep(Duration::from_secs(1));
    no_failed_request(&stop, load, "the migration");
    // On a new connection, the server's sidecar vouches for the caller under the new name
    // (pooled connections keep the certificate they were opened with).
    let fresh = Tunnel::open(net, "1").get().unwrap();
    assert!(fresh.starts_with("HTTP/1.1 200"), "{fresh}");
    assert!(fresh.contains("spiffe://new.local/ns/t/sa/cli"), "{fresh}");
}

/// Stops the traffic of `load` and asserts that no request failed `during` what it measured;
/// returns how many succeeded.
fn no_failed_request(
    stop: &AtomicBool,
    load: std::thread::JoinHandle<(usize, Vec<String>)>,
    during: &str,
) -> usize {
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = load.join().unwrap();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during {during}: {failed:?}",
        failed.len(),
        ok + failed.len()
    );
    ok
}

/// Requests from both clients, four at a time, until `stop`; returns (ok, failures).
fn traffic(
    net: &'static str,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(usize, Vec<String>)> {
    std::thread::spawn(move || {
        let workers: Vec<_> = ["1", "3", "1", "3"]
            .into_iter()
            .map(|host| traffic_from(net, host, Arc::clone(&stop)))
            .collect();
        let (mut ok, mut failed) = (0, Vec::new());
        for worker in workers {
            let (o, f) = worker.join().unwrap();
            ok += o;
            failed.extend(f);
        }
        (ok, failed)
    })
}

#[test]
fn a_root_rotation_under_continuous_traffic_fails_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let net = "127.82";
    let cp = ControlPlane::start(dir.path(), &format!("{net}.0.1"), &[]);
    cp.apply(dir.path(), &manifests(net));
    let _workloads = start_workloads(&cp, net);
    let old_root = std::fs::read_to_string(cp.data_dir.join("ca/root-cert.pem")).unwrap();
    let plan = cli_ok(&cp, &["ca", "rotate", "--plan", "--generate"]);
    assert!(
        plan.contains("stage 1") && plan.contains("stage 4"),
        "{plan}"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let load = traffic(net, Arc::clone(&stop));
    std::thread::sleep(Duration::from_secs(1));
    let start = Instant::now();
    let out = cli_ok(
        &cp,
        &["ca", "rotate", "--apply", "--generate", "--timeout", "2m"],
    );
    let took = start.elapsed();
    println!("{out}");
    println!("ROTATION_SECONDS {:.2}", took.as_secs_f64());
    assert!(out.contains("rotation completed (complete)"), "{out}");
    for stage in ["stage 1/4", "stage 2/4", "stage 3/4", "stage 4/4"] {
        assert!(out.contains(stage), "{stage} missing: {out}");
    }
    // More traffic on the new root alone, then stop.
    std::thread::sleep(Duration::from_secs(1));
    let ok = no_failed_request(&stop, load, "the rotation");
    assert!(ok > 10, "too little traffic: {ok}");
    println!("ROTATION_REQUESTS {ok}");

    // The new CA is the CA, on disk and live; every proxy holds a certificate under it.
    let new_root = std::fs::read_to_string(cp.data_dir.join("ca/root-cert.pem")).unwrap();
    assert_ne!(new_root, old_root);
    let status = cli_ok(&cp, &["ca", "status"]);
    assert!(status.contains("Meshward intermediate CA"), "{status}");
    let rotation = cli_ok(&cp, &["ca", "rotate", "--status"]);
    assert!(rotation.contains("complete"), "{rotation}");

    // A restarted control plane serves a certificate under the new root; the proxies, started
    // with the old root file, follow it through the bundle they hold.
    drop(cp);
    let cp = ControlPlane::start(dir.path(), &format!("{net}.0.1"), &[]);
    wait_for(
        || stdout(&cp.cli(&["proxy-status"])).matches("SYNCED").count() == 3,
        "every proxy to resync with the restarted control plane",
    );
    assert_eq!(request(net, "1").0, 0);
}

#[test]
fn a_plug_in_root_made_with_openssl_swaps_in_under_traffic_without_a_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let net = "127.48";
    let cp = ControlPlane::start(dir.path(), &format!("{net}.0.1"), &[]);
    cp.apply(dir.path(), &manifests(net));
    let _workloads = start_workloads(&cp, net);
    // The operator's own root, as a company PKI would hand it over.
    let plug = dir.path().join("plug");
    std::fs::create_dir_all(&plug).unwrap();
    openssl(
        &plug,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "root-key.pem",
            "-out",
            "root-cert.pem",
            "-days",
            "3650",
            "-subj",
            "/O=cluster.local/CN=Plugged root",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );

    let stop = Arc::new(AtomicBool::new(false));
    let load = traffic(net, Arc::clone(&stop));
    std::thread::sleep(Duration::from_secs(1));
    let root = plug.join("root-cert.pem");
    let key = plug.join("root-key.pem");
    let out = cli_ok(
        &cp,
        &[
            "ca",
            "rotate",
            "--apply",
            "--new-root",
            root.to_str().unwrap(),
            "--new-key",
            key.to_str().unwrap(),
            "--timeout",
            "2m",
        ],
    );
    assert!(out.contains("rotation completed (complete)"), "{out}");
    std::thread::sleep(Duration::from_secs(1));
    let ok = no_failed_request(&stop, load, "the swap");
    assert!(ok > 10, "too little traffic: {ok}");
    let status = cli_ok(&cp, &["ca", "status"]);
    assert!(status.contains("Plugged root"), "{status}");
}

#[test]
fn a_rotation_waits_for_a_missing_proxy_names_it_and_resumes_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let net = "127.84";
    let cp = ControlPlane::start(dir.path(), &format!("{net}.0.1"), &[]);
    cp.apply(dir.path(), &manifests(net));
    let mut workloads = start_workloads(&cp, net);
    // `other`'s sidecar goes away: nobody can vouch for what it trusts.
    drop(workloads.pop());

    let out = cp.cli(&["ca", "rotate", "--apply", "--generate", "--timeout", "3s"]);
    let text = stdout(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("stage 1/4"), "{text}");
    assert!(
        text.contains("other.t"),
        "the blocking proxy is not named: {text}"
    );
    let status = cli_ok(&cp, &["ca", "rotate", "--status"]);
    assert!(
        status.contains("add-root") && status.contains("waiting"),
        "{status}"
    );

    // The control plane restarts mid-rotation: the stage is kept.
    drop(cp);
    let cp = ControlPlane::start(dir.path(), &format!("{net}.0.1"), &[]);
    let status = cli_ok(&cp, &["ca", "rotate", "--status"]);
    assert!(status.contains("add-root"), "{status}");
    // Traffic still flows between the proxies that stayed.
    wait_for(|| request(net, "1").0 == 0, "traffic after the restart");

    // The missing proxy comes back; the rotation completes.
    workloads.push(sidecar(&cp, net, "other", "3", None));
    let out = cli_ok(&cp, &["ca", "rotate", "--apply", "--timeout", "2m"]);
    assert!(out.contains("already in progress"), "{out}");
    assert!(out.contains("rotation completed"), "{out}");
    assert_eq!(request(net, "1").0, 0);
    assert_eq!(request(net, "3").0, 0);
}

#[test]
fn an_aborted_rotation_returns_to_the_old_root_without_a_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let net = "127.86";
    let cp = ControlPlane::start(dir.path(), &format!("{net}.0.1"), &[]);
    cp.apply(dir.path(), &manifests(net));
    let mut workloads = start_workloads(&cp, net);
    let old_root = std::fs::read_to_string(cp.data_dir.join("ca/root-cert.pem")).unwrap();
    // Hold the rotation at stage 1 with a missing proxy, then abort under traffic. The missing
    // proxy never trusted the new root, so only the two others have to drop it.
    drop(workloads.pop());
    let stop = Arc::new(AtomicBool::new(false));
    let load = traffic_from(net, "1", Arc::clone(&stop));
    let out = cp.cli(&["ca", "rotate", "--apply", "--generate", "--timeout", "2s"]);
    assert!(!out.status.success());
    assert!(stdout(&out).contains("other.t"), "{}", stdout(&out));
    let out = cp.cli(&["ca", "rotate", "--abort", "--timeout", "1m"]);
    let text = stdout(&out);
    assert!(
        text.contains("remove-new") && text.contains("rotation ended (aborted)"),
        "{text}"
    );
    workloads.push(sidecar(&cp, net, "other", "3", None));
    wait_ready(net, "3");
    let ok = no_failed_request(&stop, load, "the abort");
    assert!(ok > 0);
    assert_eq!(
        std::fs::read_to_string(cp.data_dir.join("ca/root-cert.pem")).unwrap(),
        old_root
    );
    assert!(!cp.data_dir.join("ca.next").exists());
    assert_eq!(request(net, "3").0, 0);
}

/// Requests from one client, one after the other (10 ms apart), until `stop` (and at most
/// ten minutes).
fn traffic_from(
    net: &'static str,
    host: &'static str,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(usize, Vec<String>)> {
    std::thread::spawn(move || {
        let (mut ok, mut failed) = (0, Vec::new());
        let deadline = Instant::now() + Duration::from_secs(600);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            match request(net, host) {
                (0, _) => ok += 1,
                (code, body) => failed.push(format!("client {host}: curl exit {code}: {body}")),
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        (ok, failed)
    })
}

/// How long a rotation takes with more proxies (for `docs/benchmarks.md`):
/// `cargo test -p meshward --test trust -- --ignored --nocapture rotation_duration`.
#[test]
#[ignore = "a measurement, not a check"]
fn rotation_duration_with_twenty_proxies() {
    const CLIENTS: usize = 19;
    let dir = tempfile::tempdir().unwrap();
    let net = "127.87";
    let cp = ControlPlane::start(dir.path(), &format!("{net}.0.1"), &[]);
    let mut yaml = manifests(net);
    for i in 0..CLIENTS {
        yaml.push_str(&format!(
            "---\napiVersion: meshward.io/v1alpha1\nkind: Workload\n\
             metadata: {{name: c{i}, namespace: t, labels: {{app: c{i}}}}}\n\
             spec: {{serviceAccount: c{i}, address: \"{net}.1.{}\"}}\n",
            10 + i
        ));
    }
    let file = dir.path().join("mesh.yaml");
    std::fs::write(&file, yaml).unwrap();
    cli_ok(&cp, &["apply", "-f", file.to_str().unwrap()]);
    let mut running = start_workloads(&cp, net);
    let hosts: Vec<String> = (0..CLIENTS).map(|i| (10 + i).to_string()).collect();
    for (i, host) in hosts.iter().enumerate() {
        running.push(sidecar(&cp, net, &format!("c{i}"), host, None));
    }
    for host in &hosts {
        wait_ready(net, host);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let load = traffic(net, Arc::clone(&stop));
    let start = Instant::now();
    let out = cli_ok(
        &cp,
        &["ca", "rotate", "--apply", "--generate", "--timeout", "5m"],
    );
    let wall = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = load.join().unwrap();
    println!("{out}");
    println!(
        "proxies {} wall {:.2}s requests {ok} failed {}",
        CLIENTS + 3,
        wall.as_secs_f64(),
        failed.len()
    );
    assert!(failed.is_empty(), "{failed:?}");
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn http_get(addr: &str, path: &str) -> String {
    let Ok(mut tcp) = TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = tcp.read_to_string(&mut out);
    out
}

#[test]
fn a_corrupt_ca_file_changes_nothing_and_a_new_intermediate_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let net = "127.83";
    let ca = dir.path().join("data/ca");
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let out = meshward()
        .args(["ca", "init", "--intermediate", "--dir"])
        .arg(&ca)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let cp = ControlPlane::start(dir.path(), &format!("{net}.0.1"), &[]);
    cp.apply(dir.path(), &manifests(net));
    let mut workloads = start_workloads(&cp, net);
    let monitoring = format!("{net}.0.1:15014");
    assert!(http_get(&monitoring, "/ready").starts_with("HTTP/1.1 200"));
    let before = cli_ok(&cp, &["ca", "status"]);

    // A corrupt key: refused with the file and the reason; the old CA keeps signing.
    let key = ca.join("ca-key.pem");
    let good_key = std::fs::read(&key).unwrap();
    std::fs::write(
        &key,
        b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    wait_for(
        || http_get(&monitoring, "/ready").starts_with("HTTP/1.1 503"),
        "the control plane to turn not ready",
    );
    let ready = http_get(&monitoring, "/ready");
    assert!(ready.contains("ca-key.pem"), "{ready}");
    let metrics = http_get(&monitoring, "/metrics");
    assert!(
        metrics.contains("meshward_ca_not_ready{reason=\"ca_files_not_loaded\"} 1"),
        "{metrics}"
    );
    let status = cp.cli(&["ca", "status"]);
    assert!(!status.status.success());
    let text = stdout(&status);
    assert!(
        text.contains("NOT loaded") && text.contains("ca-key.pem"),
        "{text}"
    );
    // The same chain signs: a new sidecar enrolls, traffic flows.
    let serials = |s: &str| {
        s.split_whitespace()
            .filter(|w| w.len() >= 16 && w.chars().all(|c| c.is_ascii_hexdigit()))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(serials(&text), serials(&before), "{text}\n{before}");
    assert!(text.lines().any(|l| l.starts_with("signing")), "{text}");
    drop(workloads.pop());
    workloads.push(sidecar(&cp, net, "other", "3", None));
    wait_ready(net, "3");
    assert_eq!(request(net, "3").0, 0);

    // Put the key back: ready again.
    std::fs::write(&key, &good_key).unwrap();
    wait_for(
        || http_get(&monitoring, "/ready").starts_with("HTTP/1.1 200"),
        "the control plane to be ready again",
    );

    // A new intermediate under the same root, made with openssl: checked, then it signs, while
    // the client keeps sending requests.
    let stop = Arc::new(AtomicBool::new(false));
    let load = traffic_from(net, "1", Arc::clone(&stop));
    let work = dir.path().join("new");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(
        work.join("ext.cnf"),
        "[v3]\nbasicConstraints=critical,CA:TRUE\n\
         keyUsage=critical,keyCertSign,cRLSign,digitalSignature\n\
         subjectAltName=URI:spiffe://cluster.local\n",
    )
    .unwrap();
    openssl(
        &work,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "key.pem",
        ],
    );
    openssl(
        &work,
        &[
            "req",
            "-new",
            "-key",
            "key.pem",
            "-subj",
            "/O=cluster.local/CN=Plugged intermediate",
            "-out",
            "req.csr",
        ],
    );
    let root = ca.join("root-cert.pem");
    let root_key = ca.join("root-key.pem");
    openssl(
        &work,
        &[
            "x509",
            "-req",
            "-in",
            "req.csr",
            "-CA",
            root.to_str().unwrap(),
            "-CAkey",
            root_key.to_str().unwrap(),
            "-set_serial",
            "4242",
            "-days",
            "365",
            "-extfile",
            "ext.cnf",
            "-extensions",
            "v3",
            "-out",
            "cert.pem",
        ],
    );
    let cert = std::fs::read_to_string(work.join("cert.pem")).unwrap();
    let root_pem = std::fs::read_to_string(&root).unwrap();
    std::fs::write(ca.join("cert-chain.pem"), format!("{cert}{root_pem}")).unwrap();
    std::fs::copy(work.join("key.pem"), &key).unwrap();
    std::fs::write(ca.join("ca-cert.pem"), &cert).unwrap();
    wait_for(
        || stdout(&cp.cli(&["ca", "status"])).contains("Plugged intermediate"),
        "the new intermediate to sign",
    );
    assert!(http_get(&monitoring, "/ready").starts_with("HTTP/1.1 200"));
    // A certificate from the new intermediate works with the others.
    drop(workloads.pop());
    workloads.push(sidecar(&cp, net, "other", "3", None));
    wait_ready(net, "3");
    assert_eq!(request(net, "3").0, 0);
    let ok = no_failed_request(&stop, load, "the intermediate swap");
    assert!(ok > 0, "no traffic during the intermediate swap");
}

/// One HTTP request over mesh mTLS straight to `addr`, made by openssl with `cert`/`key`
/// (another trust domain's SVID): the response, or what openssl said.
fn foreign_request(dir: &Path, addr: &str) -> String {
    let mut child = Command::new("timeout")
        .args([
            "10", "openssl", "s_client", "-connect", addr, "-alpn", "istio", "-quiet",
        ])
        .args(["-cert", "eu.pem", "-key", "eu.key"])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"GET /headers HTTP/1.1\r\nHost: srv\r\nConnection: close\r\n\r\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    format!("{}{}", stdout(&out), stderr(&out))
}

#[test]
fn a_foreign_trust_domain_is_accepted_only_while_its_trust_bundle_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let net = "127.88";
    let cp = ControlPlane::start(dir.path(), &format!("{net}.0.1"), &[]);
    cp.apply(dir.path(), &manifests(net));
    let _workloads = start_workloads(&cp, net);

    // Another mesh's CA (seed 004's EU region) and one of its workloads' certificates.
    let eu_ca = dir.path().join("eu-ca");
    let out = meshward()
        .args(["ca", "init", "--trust-domain", "eu.cluster.local", "--dir"])
        .arg(&eu_ca)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    openssl(
        dir.path(),
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "eu.key",
            "-subj",
            "/CN=analytics",
            "-out",
            "eu.csr",
        ],
    );
    let out = meshward()
        .args(["cert", "sign", "--ca-dir", "eu-ca", "--csr", "eu.csr"])
        .args([
            "--identity",
            "spiffe://eu.cluster.local/ns/default/sa/teei-analytics",
        ])
        .args(["--out", "eu.pem"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let server = format!("{net}.1.2:8080");

    // Unknown trust domain: refused.
    let refused = foreign_request(dir.path(), &server);
    assert!(!refused.contains("HTTP/1.1 200"), "{refused}");

    // Declared: accepted, and the app sees who called.
    let root = std::fs::read_to_string(eu_ca.join("root-cert.pem")).unwrap();
    let indented: String = root.lines().map(|l| format!("    {l}\n")).collect();
    let bundle = dir.path().join("eu-bundle.yaml");
    std::fs::write(
        &bundle,
        format!(
            "apiVersion: meshward.io/v1alpha1\nkind: TrustBundle\n\
             metadata: {{name: eu, namespace: istio-system}}\n\
             spec:\n  trustDomain: eu.cluster.local\n  roots: |\n{indented}"
        ),
    )
    .unwrap();
    cli_ok(&cp, &["apply", "-f", bundle.to_str().unwrap()]);
    let mut accepted = String::new();
    wait_for(
        || {
            accepted = foreign_request(dir.path(), &server);
            accepted.contains("HTTP/1.1 200")
        },
        "the EU workload to be accepted",
    );
    assert!(
        accepted.contains("spiffe://eu.cluster.local/ns/default/sa/teei-analytics"),
        "{accepted}"
    );
    // This mesh's own clients are untouched.
    assert_eq!(request(net, "1").0, 0);

    // Removed: refused again.
    cli_ok(&cp, &["delete", "trustbundle", "eu", "-n", "istio-system"]);
    wait_for(
        || !foreign_request(dir.path(), &server).contains("HTTP/1.1 200"),
        "the EU workload to be refused again",
    );

    // This mesh's own bundle, in the SPIFFE bundle format.
    let served = http_get(&format!("{net}.0.1:15014"), "/bundle");
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
    assert!(
        served.contains("\"use\":\"x509-svid\"") && served.contains("\"spiffe_sequence\":"),
        "{served}"
    );
    let own_root: String = std::fs::read_to_string(cp.data_dir.join("ca/root-cert.pem"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert!(served.contains(&own_root), "{served}");
}
