//! Bad configuration input through the real binary: manifests that are not UTF-8, too large or
//! cut short are refused whole and the applied state stays as it was; a store file damaged on
//! disk stops the control plane instead of starting it empty (which would drop every policy);
//! and a policy replaced in place under traffic switches atomically — no request is ever
//! decided by a half-applied policy.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

mod robustness;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use robustness::{Mesh, eventually};
use support::{ControlPlane, meshward, stderr, stdout};

const PA: &str = "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict, namespace: team-app}
spec: {mtls: {mode: STRICT}}
";

/// `meshward get pa -A` against `cp`: the names listed.
fn applied(cp: &ControlPlane) -> String {
    let out = cp.cli(&["get", "pa", "-A", "-o", "yaml"]);
    stdout(&out) + &stderr(&out)
}

#[test]
fn manifests_that_are_not_utf8_too_large_or_cut_short_are_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(dir.path(), "127.0.131.1", &[]);
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, PA).unwrap();
    assert!(
        cp.cli(&["apply", "-f", good.to_str().unwrap()])
            .status
            .success()
    );
    let before = applied(&cp);
    assert!(before.contains("strict"), "{before}");

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "invalid UTF-8",
            [
                PA.as_bytes(),
                b"---\n",
                &PA.replace("strict", "other").into_bytes()[..20],
                &[0xff, 0xfe],
                b"\n",
            ]
            .concat(),
            "not UTF-8 (byte",
        ),
        (
            "a lone continuation byte",
            [b"a: \x80\n".as_slice()].concat(),
            "not UTF-8 (byte 3)",
        ),
        (
            "over the 8 MiB file limit",
            [PA.as_bytes(), b"# ", &vec![b'x'; 8 * 1024 * 1024], b"\n"].concat(),
            "limit",
        ),
        (
            "truncated inside the second document",
            format!(
                "{}---\n{}",
                PA.replace("strict", "first"),
                PA.replace("strict", "second")
            )
            .as_bytes()[..PA.len() + 4 + 70]
                .to_vec(),
            "bad.yaml:",
        ),
        (
            "one valid document and one typo",
            format!(
                "{}---\n{}",
                PA.replace("strict", "first"),
                PA.replace("STRICT", "STRIC")
            )
            .into_bytes(),
            "STRIC",
        ),
    ];
    for (name, bytes, expected) in cases {
        let file = dir.path().join("bad.yaml");
        std::fs::write(&file, &bytes).unwrap();
        for verb in ["validate", "apply"] {
            let out = if verb == "validate" {
                meshward()
                    .args(["validate", "-f", file.to_str().unwrap()])
                    .output()
                    .unwrap()
            } else {
                cp.cli(&["apply", "-f", file.to_str().unwrap()])
            };
            let text = stdout(&out) + &stderr(&out);
            assert!(!out.status.success(), "{name}: {verb} accepted it: {text}");
            assert!(text.contains(expected), "{name}: {verb}: {text}");
        }
        assert_eq!(applied(&cp), before, "{name}: the applied state changed");
    }
}

#[test]
fn a_large_apply_inside_the_documented_limits_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(dir.path(), "127.0.131.2", &[]);
    // 5 MiB in one file: under the 8 MiB stream limit, over gRPC's default 4 MiB message size.
    let file = dir.path().join("big.yaml");
    let body = format!("{PA}# {}\n", "x".repeat(5 * 1024 * 1024));
    std::fs::write(&file, body).unwrap();
    let out = cp.cli(&["apply", "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(applied(&cp).contains("strict"));
}

#[test]
fn a_damaged_store_file_stops_the_control_plane_instead_of_starting_empty() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("pa.yaml");
    std::fs::write(&good, PA).unwrap();
    let state = {
        let cp = ControlPlane::start(dir.path(), "127.0.131.3", &[]);
        assert!(
            cp.cli(&["apply", "-f", good.to_str().unwrap()])
                .status
                .success()
        );
        cp.data_dir.join("store")
    };
    let state_file = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("the store's state file");
    let whole = std::fs::read(&state_file).unwrap();
    for (name, bytes) in [
        ("truncated mid-write", whole[..whole.len() / 2].to_vec()),
        ("empty", Vec::new()),
        (
            "not UTF-8",
            [&whole[..10], &[0xff][..], &whole[11..]].concat(),
        ),
        (
            "a stored document that no longer parses",
            String::from_utf8(whole.clone())
                .unwrap()
                .replace("STRICT", "STRICTT")
                .into_bytes(),
        ),
    ] {
        std::fs::write(&state_file, &bytes).unwrap();
        let out = meshward()
            .args(["control-plane", "--data-dir"])
            .arg(dir.path().join("data"))
            .args([
                "--grpc-addr",
                "127.0.131.3:15012",
                "--http-addr",
                "127.0.131.3:15014",
            ])
            .env("MESHWARD_CONTEXT", dir.path().join("context.json"))
            .output()
            .unwrap();
        let err = stderr(&out);
        assert!(!out.status.success(), "{name}: started anyway");
        assert!(
            err.contains(state_file.file_name().unwrap().to_str().unwrap()),
            "{name}: the file is not named: {err}"
        );
    }
    // Put back, it starts with the state it had.
    std::fs::write(&state_file, &whole).unwrap();
    let cp = ControlPlane::start(dir.path(), "127.0.131.3", &[]);
    assert!(applied(&cp).contains("strict"));
}

/// ALLOW `sleep` to GET `/get` (and, in the second version, `/status/*` too), DENY `/admin*`
/// (and `/secret` in the second version); the two versions decide `/get` and `/admin` alike.
fn policies(version: u8) -> String {
    let (allow_paths, deny_paths) = if version == 0 {
        ("[/get]", "[/admin*]")
    } else {
        ("[/status/*, /get]", "[/secret, /admin*]")
    };
    format!(
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: allow-sleep, namespace: team-app}}
spec:
  selector: {{matchLabels: {{app: httpbin}}}}
  action: ALLOW
  rules:
  - from: [{{source: {{principals: [cluster.local/ns/team-app/sa/sleep]}}}}]
    to: [{{operation: {{methods: [GET], paths: {allow_paths}}}}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: deny-admin, namespace: team-app}}
spec:
  selector: {{matchLabels: {{app: httpbin}}}}
  action: DENY
  rules:
  - to: [{{operation: {{paths: {deny_paths}}}}}]
"
    )
}

#[test]
fn a_policy_replaced_in_place_under_traffic_switches_atomically() {
    let mesh = Arc::new(Mesh::start("127.0.130", &policies(0)));
    assert!(eventually(Duration::from_secs(10), || mesh.get("/get") == 200));
    assert_eq!(mesh.get("/admin"), 403);

    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (mesh, stop) = (Arc::clone(&mesh), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut wrong = Vec::new();
            let mut count = 0;
            while !stop.load(Ordering::Relaxed) {
                for (path, want) in [("/get", 200), ("/admin", 403), ("/admin/users", 403)] {
                    let got = mesh.get(path);
                    count += 1;
                    if got != want {
                        wrong.push(format!("{path}: {got}"));
                    }
                }
            }
            (count, wrong)
        })
    };
    for round in 1..=8u8 {
        mesh.apply(&policies(round % 2));
        std::thread::sleep(Duration::from_millis(300));
    }
    stop.store(true, Ordering::Relaxed);
    let (count, wrong) = traffic.join().unwrap();
    assert!(count > 30, "too little traffic to mean anything: {count}");
    assert!(
        wrong.is_empty(),
        "{} of {count} decided wrongly: {wrong:?}",
        wrong.len()
    );
    let seen = mesh.app.lock().unwrap();
    assert!(
        seen.requests.iter().all(|r| !r.contains("/admin")),
        "a denied request reached the app: {:?}",
        seen.requests
    );
}
