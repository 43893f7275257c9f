//! `meshward up` on the bundled example: the seed lab's matrix, `exec` as a workload, the CLI
//! against the running mesh, `down` — and the ways a directory can be wrong.

// A test that cannot unwrap has failed: panicking is the point.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;

use support::{Down, run_up as run, stderr, stdout};

fn example() -> String {
    format!("{}/../../examples/team-app", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn team_app_lab_strict_refuses_the_pod_without_sidecar() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let out = run(home, &["up", &example(), "--detach", "--subnet", "127.31"]);
    let _down = Down(home);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let report = stdout(&out);
    let line = |from: &str| {
        report
            .lines()
            .find(|l| l.starts_with(from))
            .unwrap_or_else(|| panic!("no row for {from} in\n{report}"))
            .to_owned()
    };
    assert!(
        line("team-app    httpbin").contains("8080/STRICT"),
        "{report}"
    );
    assert!(line("client.team-app").contains("mTLS"), "{report}");
    assert!(
        line("client.team-app").contains("allowed (HTTP/1.1 200 OK)"),
        "{report}"
    );
    assert!(line("naked.team-app").contains("refused"), "{report}");

    // The seed's commands, one line each.
    let out = run(
        home,
        &[
            "exec",
            "client.team-app",
            "--",
            "curl",
            "-s",
            "http://httpbin-svc:8080/get",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let body: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        body["caller"],
        "spiffe://cluster.local/ns/team-app/sa/default"
    );

    let out = run(
        home,
        &[
            "exec",
            "naked.team-app",
            "--",
            "sh",
            "-c",
            "curl -s http://$HTTPBIN_SVC_SERVICE_HOST:8080/get",
        ],
    );
    let code = out.status.code();
    assert!(
        matches!(code, Some(52 | 56)),
        "naked got through: {code:?} {}",
        stdout(&out)
    );

    // The CLI works against the running mesh with no extra flags.
    let out = run(home, &["get", "peerauthentication", "-A"]);
    assert!(stdout(&out).contains("mutual-tls-auth"), "{}", stderr(&out));
    let out = run(home, &["proxy-status"]);
    assert_eq!(
        stdout(&out).matches("SYNCED").count(),
        2,
        "{}",
        stdout(&out)
    );

    // Before switching, tls-check on the live configuration names the client STRICT cuts off.
    let out = run(home, &["authn", "tls-check"]);
    assert!(!out.status.success(), "naked is a conflict under STRICT");
    assert!(
        stdout(&out).contains("team-app/naked"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );

    // istioctl analyze's checks run on the live configuration too.
    let out = run(home, &["analyze", "-o", "json"]);
    let findings: serde_json::Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&out), stderr(&out)));
    assert!(findings.is_array(), "{findings}");

    // The seed's verification script as one command: probes, not configuration.
    let out = run(home, &["mtls", "verify", "team-app"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let row: Vec<String> = stdout(&out)
        .lines()
        .find(|l| l.starts_with("httpbin.team-app"))
        .unwrap()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        row[row.len() - 4..],
        ["STRICT", "refused", "accepted", "OK"]
    );

    // Migrating the namespace updates the policy in force; the probes follow it.
    let out = run(home, &["mtls", "enable", "team-app", "PERMISSIVE"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("mutual-tls-auth configured"),
        "{}",
        stdout(&out)
    );
    support::wait_for(
        || {
            let out = run(home, &["mtls", "verify", "team-app"]);
            let text = stdout(&out);
            let words: Vec<&str> = text.split_whitespace().collect();
            out.status.success()
                && words
                    .windows(4)
                    .any(|w| w == ["PERMISSIVE", "accepted", "accepted", "OK"])
        },
        "PERMISSIVE to take effect",
    );

    // What the sidecars saw answers "is it safe to switch back to STRICT?": the probes above
    // reached httpbin in plaintext, so it is not.
    let out = run(home, &["authn", "readiness", "-n", "team-app"]);
    assert!(!out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let row = stdout(&out)
        .lines()
        .find(|l| l.starts_with("httpbin.team-app"))
        .unwrap_or_default()
        .to_owned();
    assert!(
        row.contains("PERMISSIVE") && row.contains("plaintext client(s)"),
        "{row}"
    );
    let out = run(
        home,
        &["authn", "readiness", "client.team-app", "-o", "json"],
    );
    let rows: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(
        rows.as_array().is_some_and(Vec::is_empty),
        "client serves no port: {rows}"
    );

    // The trust chain and every workload certificate, as the seeds' management script shows.
    let out = run(home, &["ca", "status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("root"), "{}", stdout(&out));
    let out = run(home, &["cert", "monitor"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(stdout(&out).matches(" OK").count(), 2, "{}", stdout(&out));
    let out = run(home, &["cert", "monitor", "--warn", "48h"]);
    assert!(!out.status.success(), "24 h certificates must warn at 48 h");

    // A second up says so clearly.
    let out = run(home, &["up", &example(), "--subnet", "127.32"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already running"), "{}", stderr(&out));

    let out = run(home, &["down"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(home, &["exec", "client.team-app", "--", "true"]);
    assert!(
        stderr(&out).contains("no mesh is running"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn invalid_policy_is_named_and_nothing_starts() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("lab");
    std::fs::create_dir(&dir).unwrap();
    for entry in std::fs::read_dir(example()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    let policy = dir.join("peerauth-strict.yaml");
    let text = std::fs::read_to_string(&policy)
        .unwrap()
        .replace("STRICT", "STRICTT");
    std::fs::write(&policy, text).unwrap();
    let out = run(
        home.path(),
        &["up", dir.to_str().unwrap(), "--subnet", "127.33"],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("peerauth-strict.yaml:"), "{err}");
    assert!(err.contains("STRICTT"), "{err}");
}

#[test]
fn a_workload_whose_command_is_missing_is_named() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("lab");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("w.yaml"),
        r#"
apiVersion: meshward.io/v1alpha1
kind: Workload
metadata: {name: broken, namespace: default}
spec:
  sidecar: false
  ports: [{port: 9000}]
  command: ["/nonexistent/program"]
"#,
    )
    .unwrap();
    let out = run(
        home.path(),
        &["up", dir.to_str().unwrap(), "--subnet", "127.34"],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("broken.default app"), "{err}");
    // Nothing is left running: a new up is possible at once.
    assert!(!home.path().join("up/mesh.json").exists());
}

fn pid_of(home: &Path, file: &str) -> i32 {
    let text = std::fs::read_to_string(home.join("up").join(file)).unwrap();
    text.lines().next().unwrap().trim().parse().unwrap()
}

fn kill(pid: i32) {
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn crashed_apps_restart_and_a_killed_up_leaves_nothing_in_the_way() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let out = run(home, &["up", &example(), "--detach", "--subnet", "127.35"]);
    let _down = Down(home);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let get = |home: &Path| {
        run(
            home,
            &[
                "exec",
                "client.team-app",
                "--",
                "curl",
                "-sf",
                "--max-time",
                "3",
                "http://httpbin-svc:8080/status/200",
            ],
        )
        .status
        .success()
    };
    assert!(get(home));

    // The app dies: the supervisor brings it back.
    kill(pid_of(home, "pids/httpbin.team-app.app"));
    support::wait_for(|| get(home), "httpbin to be restarted");

    // `meshward up` itself dies without stopping its children: the next one cleans up.
    let mesh: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.join("up/mesh.json")).unwrap()).unwrap();
    kill(i32::try_from(mesh["pid"].as_i64().unwrap()).unwrap());
    let out = run(home, &["up", &example(), "--detach", "--subnet", "127.35"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(get(home));
}
