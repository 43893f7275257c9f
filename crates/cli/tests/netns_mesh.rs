//! Transparent capture across real hosts: seed 003's lab with every workload in a network
//! namespace of its own on a bridge, the control plane on the bridge's "node", `meshward
//! iptables` and a `--transparent` sidecar in `client` and `httpbin`, none in `naked`. Plain
//! `curl http://httpbin-svc:8080/get` — no proxy variables — goes through the capture; the
//! STRICT/PERMISSIVE/DISABLE matrix, authorization by real source address, passthrough and
//! REGISTRY_ONLY are checked with real packets. Root only (skipped, saying why, otherwise).
//!
//! Addresses are in 10.253.1.0/24 on a bridge without uplink, inside namespaces this test
//! owns (so several runs never meet): Linux cannot route 127.0.0.0/8 between namespaces (see
//! `meshward_local::netns`).

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

mod support;

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Stdio;

use meshward_local::netns::{Netns, Network, owned_name};
use support::netns::can_run;
use support::{Down, Running, run_up, stderr, stdout, wait_for};

const VIP: &str = "10.96.0.10";
/// The gid the sidecars run with, exempt from capture (`meshward iptables -g`).
const PROXY_GID: u32 = 1337;

fn manifests(mode: &str, extra: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: team-app, labels: {{istio-injection: enabled}}}}
---
apiVersion: meshward.io/v1alpha1
kind: Workload
metadata: {{name: client, namespace: team-app, labels: {{app: client}}}}
spec: {{serviceAccount: client, address: 10.253.1.2}}
---
apiVersion: meshward.io/v1alpha1
kind: Workload
metadata: {{name: httpbin, namespace: team-app, labels: {{app: httpbin}}}}
spec: {{serviceAccount: httpbin, address: 10.253.1.3, ports: [{{name: http, port: 8080, protocol: HTTP}}]}}
---
apiVersion: meshward.io/v1alpha1
kind: Workload
metadata: {{name: naked, namespace: team-app, labels: {{app: naked, sidecar.istio.io/inject: "false"}}}}
spec: {{serviceAccount: naked, address: 10.253.1.4}}
---
apiVersion: v1
kind: Service
metadata: {{name: httpbin-svc, namespace: team-app}}
spec: {{clusterIP: {VIP}, selector: {{app: httpbin}}, ports: [{{name: http, port: 8080, targetPort: 8080}}]}}
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {{name: mutual-tls-auth, namespace: team-app}}
spec: {{mtls: {{mode: {mode}}}}}
{extra}"#
    )
}

/// Everything the lab runs; dropped processes first, then the namespaces.
struct Lab {
    processes: Vec<Running>,
    hosts: Vec<Netns>,
    network: Network,
    dir: tempfile::TempDir,
}

impl Lab {
    fn bridge(&self) -> &Netns {
        self.network.bridge()
    }

    fn host(&self, name: &str) -> &Netns {
        let full = owned_name(name);
        self.hosts.iter().find(|h| h.name() == full).unwrap()
    }

    /// `meshward ARGS` against the control plane, from the node.
    fn cli(&self, args: &[&str]) -> std::process::Output {
        self.bridge()
            .command(env!("CARGO_BIN_EXE_meshward"))
            .args(args)
            .env("MESHWARD_CONTEXT", self.dir.path().join("context.json"))
            .output()
            .unwrap()
    }

    fn apply(&self, yaml: &str) {
        let file = self.dir.path().join("mesh.yaml");
        std::fs::write(&file, yaml).unwrap();
        let out = self.cli(&["apply", "-f", file.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
    }

    fn spawn(&mut self, host: &str, args: &[&str], gid: Option<u32>, env: &[(&str, &str)]) {
        let ns = match host {
            "node" => self.bridge(),
            other => self.host(other),
        };
        let mut cmd = ns.command(env!("CARGO_BIN_EXE_meshward"));
        cmd.args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(gid) = gid {
            cmd.gid(gid);
        }
        let child = cmd.spawn().unwrap();
        self.processes.push(Running(child));
    }

    /// Installs the capture in `host` and starts its transparent sidecar.
    fn sidecar(&mut self, host: &str, address: &str, policy: &str) {
        let out = self
            .host(host)
            .command(env!("CARGO_BIN_EXE_meshward"))
            .args(["iptables", "-d", "15090,15021,15020", "-u", ""])
            .args(["-g", &PROXY_GID.to_string()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let token = self.cli(&[
            "token",
            "create",
            "-n",
            "team-app",
            "--service-account",
            host,
            "--ttl",
            "5m",
        ]);
        assert!(token.status.success(), "{}", stderr(&token));
        let token = stdout(&token).trim().to_owned();
        let root = self.dir.path().join("data/admin/root-cert.pem");
        let grpc = format!("{}:15012", self.network.gateway());
        self.spawn(
            host,
            &[
                "proxy",
                "--workload",
                &format!("{host}.team-app"),
                "--address",
                address,
                "--app-address",
                "127.0.0.1",
                "--control-plane",
                &grpc,
                "--control-plane-root",
                root.to_str().unwrap(),
                "--transparent",
                "--outbound-traffic-policy",
                policy,
            ],
            Some(PROXY_GID),
            &[("MESHWARD_JOIN_TOKEN", &token)],
        );
        let ready = format!("http://{address}:15021/healthz/ready");
        let ns = self.host(host);
        wait_for(
            || {
                ns.command("curl")
                    .args(["-sf", "-m", "2", &ready])
                    .output()
                    .is_ok_and(|o| o.status.success())
            },
            "transparent sidecar ready",
        );
    }

    /// `curl URL` inside `host` with no proxy variables at all: (exit code, body).
    fn curl(&self, host: &str, url: &str) -> (i32, String) {
        let out = self
            .host(host)
            .command("curl")
            .args(["-s", "-m", "5", url])
            .env_remove("http_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("https_proxy")
            .env_remove("all_proxy")
            .output()
            .unwrap();
        (out.status.code().unwrap_or(-1), stdout(&out))
    }
}

/// The network, the control plane on the node, httpbin's app, `/etc/hosts` for the service
/// name in every host, and kube-proxy's rule for the Service address in `naked` (Kubernetes
/// rewrites a ClusterIP on the node; a sidecar captures it before).
fn lab(client_policy: &str) -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let mut network = Network::create([10, 253, 1]).unwrap();
    let mut hosts = Vec::new();
    for (name, n) in [("client", 2), ("httpbin", 3), ("naked", 4)] {
        let addr = network.host_addr(n);
        let ns = network.host(name, addr).unwrap();
        let vip = VIP.parse().unwrap();
        let names = [
            "httpbin-svc",
            "httpbin-svc.team-app",
            "httpbin-svc.team-app.svc.cluster.local",
        ];
        ns.set_hosts(&[(vip, names.map(str::to_owned).to_vec())])
            .unwrap();
        hosts.push(ns);
    }
    let mut lab = Lab {
        processes: Vec::new(),
        hosts,
        network,
        dir,
    };
    let gateway = lab.network.gateway();
    let data = lab.dir.path().join("data");
    let context = lab.dir.path().join("context.json");
    lab.spawn(
        "node",
        &[
            "control-plane",
            "--data-dir",
            data.to_str().unwrap(),
            "--grpc-addr",
            &format!("{gateway}:15012"),
            "--http-addr",
            &format!("{gateway}:15014"),
        ],
        None,
        &[("MESHWARD_CONTEXT", context.to_str().unwrap())],
    );
    let healthz = format!("http://{gateway}:15014/healthz");
    wait_for(
        || {
            context.exists()
                && lab
                    .bridge()
                    .command("curl")
                    .args(["-sf", "-m", "2", &healthz])
                    .output()
                    .is_ok_and(|o| o.status.success())
        },
        "control plane",
    );
    lab.apply(&manifests("STRICT", ""));
    lab.spawn(
        "httpbin",
        &["demo", "httpbin", "--listen", "0.0.0.0:8080"],
        None,
        &[],
    );
    let kube_proxy = format!(
        "-t nat -A OUTPUT -d {VIP} -p tcp --dport 8080 -j DNAT --to-destination 10.253.1.3:8080"
    );
    lab.host("naked")
        .run("iptables", &kube_proxy.split(' ').collect::<Vec<_>>())
        .unwrap();
    lab.sidecar("httpbin", "10.253.1.3", "ALLOW_ANY");
    lab.sidecar("client", "10.253.1.2", client_policy);
    lab
}

/// Polls until `host`'s request to `url` gives what `expect` accepts (views take a moment to
/// reach the sidecars), then returns it.
fn eventually(lab: &Lab, host: &str, url: &str, expect: impl Fn(i32, &str) -> bool, what: &str) {
    let mut last = (0, String::new());
    let found = (0..100).any(|_| {
        last = lab.curl(host, url);
        let ok = expect(last.0, &last.1);
        if !ok {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        ok
    });
    assert!(found, "{what}: last answer: exit {} {}", last.0, last.1);
}

const CLIENT_ID: &str = "spiffe://cluster.local/ns/team-app/sa/client";
const HTTPBIN_ID: &str = "spiffe://cluster.local/ns/team-app/sa/httpbin";
const URL: &str = "http://httpbin-svc:8080/get";

#[test]
fn seed_003_matrix_with_unmodified_clients() {
    if !can_run("seed_003_matrix_with_unmodified_clients") {
        return;
    }
    let lab = lab("ALLOW_ANY");

    // (PeerAuthentication mode, client reaches httpbin over mTLS?, naked is served?)
    let matrix = [
        ("STRICT", true, false),
        ("PERMISSIVE", true, true),
        ("DISABLE", false, true),
    ];
    for (mode, mtls, naked_served) in matrix {
        lab.apply(&manifests(mode, ""));
        eventually(
            &lab,
            "client",
            URL,
            |code, body| code == 0 && body.contains(CLIENT_ID) == mtls,
            &format!("{mode}: client → httpbin-svc (mTLS: {mtls})"),
        );
        eventually(
            &lab,
            "naked",
            URL,
            |code, body| (code == 0 && body.contains("\"caller\": null")) == naked_served,
            &format!("{mode}: naked → httpbin-svc (served: {naked_served})"),
        );
        // A workload calling its own Service goes out through its sidecar and back in.
        eventually(
            &lab,
            "httpbin",
            URL,
            |code, body| code == 0 && body.contains(HTTPBIN_ID) == mtls,
            &format!("{mode}: httpbin → its own Service"),
        );
        // The workload address is a mesh destination too.
        let (code, body) = lab.curl("client", "http://10.253.1.3:8080/get");
        assert_eq!(
            (code, body.contains(CLIENT_ID)),
            (0, mtls),
            "{mode}: {body}"
        );
    }

    // A DestinationRule applies to captured connections as to explicit ones: TLS off for the
    // Service, so the client's sidecar sends plaintext (PERMISSIVE lets it in, with no caller).
    let tls_off = r#"---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin-plain, namespace: team-app}
spec: {host: httpbin-svc.team-app.svc.cluster.local, trafficPolicy: {tls: {mode: DISABLE}}}
"#;
    lab.apply(&manifests("PERMISSIVE", tls_off));
    eventually(
        &lab,
        "client",
        URL,
        |code, body| code == 0 && body.contains("\"caller\": null"),
        "DestinationRule tls DISABLE through the capture",
    );
    let out = lab.cli(&[
        "delete",
        "destinationrule",
        "httpbin-plain",
        "-n",
        "team-app",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Authorization by the caller's real address: naked's is denied, client's is not.
    let deny_naked = r#"---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-naked, namespace: team-app}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: DENY
  rules: [{from: [{source: {ipBlocks: ["10.253.1.4/32"]}}]}]
"#;
    lab.apply(&manifests("PERMISSIVE", deny_naked));
    eventually(
        &lab,
        "naked",
        "http://httpbin-svc:8080/status/200",
        |code, body| code == 0 && body.contains("RBAC: access denied"),
        "naked denied by ipBlocks",
    );
    eventually(
        &lab,
        "client",
        URL,
        |code, body| code == 0 && body.contains(CLIENT_ID),
        "client still allowed, over mTLS again",
    );

    // Outside the mesh: passed through (ALLOW_ANY), from the client's own address.
    let mut lab = lab;
    lab.spawn(
        "node",
        &["demo", "httpbin", "--listen", "10.253.1.1:9000"],
        None,
        &[],
    );
    eventually(
        &lab,
        "client",
        "http://10.253.1.1:9000/ip",
        |code, body| code == 0 && body.contains("\"origin\": \"10.253.1.2\""),
        "passthrough to an address outside the mesh",
    );
    assert!(Path::new(&format!("/run/netns/{}", lab.host("client").name())).exists());
}

#[test]
fn registry_only_refuses_what_is_not_in_the_mesh() {
    if !can_run("registry_only_refuses_what_is_not_in_the_mesh") {
        return;
    }
    let mut lab = lab("REGISTRY_ONLY");
    lab.spawn(
        "node",
        &["demo", "httpbin", "--listen", "10.253.1.1:9000"],
        None,
        &[],
    );
    let node = format!("http://{}:9000/get", lab.network.gateway());
    // Reachable from a host without capture, so the refusal is the sidecar's.
    eventually(
        &lab,
        "naked",
        &node,
        |code, _| code == 0,
        "node's server up",
    );
    let (code, _) = lab.curl("client", &node);
    assert_ne!(
        code, 0,
        "REGISTRY_ONLY must refuse an address outside the mesh"
    );
    eventually(
        &lab,
        "client",
        URL,
        |code, body| code == 0 && body.contains(CLIENT_ID),
        "mesh services still reachable under REGISTRY_ONLY",
    );
}

/// The namespaces `meshward up --netns` runs as pid `pid`.
fn namespaces_of(pid: u32) -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    stdout(&out)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("mw-{pid}-")))
        .map(str::to_owned)
        .collect()
}

#[test]
fn up_netns_reproduces_the_seed_lab_and_down_cleans_up_after_a_crash() {
    if !can_run("up_netns_reproduces_the_seed_lab_and_down_cleans_up_after_a_crash") {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let example = format!("{}/../../examples/team-app", env!("CARGO_MANIFEST_DIR"));
    let out = run_up(home, &["up", "--netns", &example, "--detach"]);
    let _down = Down(home);
    let report = stdout(&out);
    assert!(out.status.success(), "{report}{}", stderr(&out));
    // (row, what it must say)
    for (from, says) in [
        ("team-app    httpbin", "8080/STRICT"),
        ("client.team-app", "allowed (HTTP/1.1 200 OK)"),
        ("httpbin.team-app", "allowed (HTTP/1.1 200 OK)"),
        ("naked.team-app", "refused"),
    ] {
        let line = report
            .lines()
            .find(|l| l.starts_with(from))
            .unwrap_or_default();
        assert!(line.contains(says), "{from}: {says}\n{report}");
    }

    // The seed's commands, unchanged: no proxy variables, names from the namespace's hosts.
    let exec = |workload: &str| {
        run_up(
            home,
            &[
                "exec",
                workload,
                "--",
                "sh",
                "-c",
                "env | grep -ci proxy; curl -s -m 5 http://httpbin-svc:8080/get",
            ],
        )
    };
    let out = exec("client.team-app");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("0\n"), "proxy variables set: {text}");
    assert!(
        text.contains("spiffe://cluster.local/ns/team-app/sa/default"),
        "{text}"
    );
    let out = exec("naked.team-app");
    assert!(
        !out.status.success(),
        "naked must be refused: {}",
        stdout(&out)
    );

    // The CLI on the host reaches the control plane in the node's namespace (forwarded).
    let file = home.join("permissive.yaml");
    let permissive = "apiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata: {name: mutual-tls-auth, namespace: team-app}\nspec: {mtls: {mode: PERMISSIVE}}\n";
    std::fs::write(&file, permissive).unwrap();
    let out = run_up(home, &["apply", "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run_up(home, &["get", "peerauthentication", "-n", "team-app"]);
    assert!(stdout(&out).contains("PERMISSIVE"), "{}", stdout(&out));
    wait_for(
        || exec("naked.team-app").status.success(),
        "naked served once PERMISSIVE",
    );
    // Debugging verbs reach into the namespaces: proxy-config reads the admin port inside,
    // `mtls debug` walks to a live request from inside the client, `mtls verify` probes every
    // port from the node, as from another host of the cluster.
    // (verb, what it prints)
    let verbs: [(&[&str], &str); 3] = [
        (
            &["proxy-config", "listeners", "httpbin.team-app"],
            "10.253.1.3   8080",
        ),
        (
            &["mtls", "debug", "team-app", "client", "httpbin-svc:8080"],
            "path works",
        ),
        (
            &["mtls", "verify", "team-app"],
            "every port behaves as its policy says",
        ),
    ];
    for (verb, says) in verbs {
        let out = run_up(home, verb);
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert!(
            out.status.success() && text.contains(says),
            "{verb:?}: {text}"
        );
    }

    // A killed `up` leaves its namespaces; `down` finds and removes them.
    let mesh: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(home.join("up/mesh.json")).unwrap()).unwrap();
    let pid = u32::try_from(mesh["pid"].as_u64().unwrap()).unwrap();
    assert_eq!(namespaces_of(pid).len(), 4, "{:?}", namespaces_of(pid));
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    wait_for(
        || !Path::new(&format!("/proc/{pid}")).exists(),
        "meshward up killed",
    );
    // (Another test starting now may reap them first: the same clean-up, so only the end
    // state is asserted.)
    let out = run_up(home, &["down"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(namespaces_of(pid).is_empty(), "{:?}", namespaces_of(pid));
    assert!(!Path::new(&format!("/etc/netns/mw-{pid}-client.team-app")).exists());
}

#[test]
fn throughput_through_the_capture_under_strict() {
    if !can_run("throughput_through_the_capture_under_strict") {
        return;
    }
    let Some(wrk) = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("wrk"))
            .find(|p| p.is_file())
    }) else {
        eprintln!("skipping throughput_through_the_capture_under_strict: `wrk` is not installed");
        return;
    };
    let lab = lab("ALLOW_ANY");
    eventually(
        &lab,
        "client",
        URL,
        |code, body| code == 0 && body.contains(CLIENT_ID),
        "mTLS through the capture",
    );
    // Unmodified load generator in the client's namespace, keep-alive connections captured
    // into the sidecar, mTLS to httpbin's.
    let out = lab
        .host("client")
        .command(wrk)
        .args(["-t", "2", "-c", "8", "-d", "3s", URL])
        .output()
        .unwrap();
    let report = stdout(&out);
    eprintln!("{report}");
    assert!(out.status.success(), "{report}{}", stderr(&out));
    let requests: u64 = report
        .lines()
        .find_map(|l| {
            l.split_once(" requests in ")
                .map(|(n, _)| n.trim().to_owned())
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(requests > 0, "{report}");
    for failure in ["Non-2xx or 3xx responses", "Socket errors"] {
        assert!(!report.contains(failure), "{failure}: {report}");
    }
}
