//! `meshward control-plane` with the admin verbs: apply, get, delete, token create,
//! proxy-status — the real binary over real mTLS on loopback — and its Prometheus metrics.

// A test that cannot unwrap has failed: panicking is the point.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::Stdio;

use support::{ControlPlane, Running, http_get, meshward, sample, stderr, stdout, wait_for};

const POLICY: &str = r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: mutual-tls-auth
  namespace: team-app
spec:
  mtls:
    mode: STRICT
"#;

#[test]
fn apply_get_delete_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(dir.path(), "127.0.20.1", &[]);
    let file = dir.path().join("pa.yaml");
    std::fs::write(&file, POLICY).unwrap();

    let out = cp.cli(&["apply", "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("mutual-tls-auth"), "{}", stdout(&out));

    let out = cp.cli(&["get", "peerauthentication", "-A"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["NAMESPACE", "NAME", "MODE", "AGE"]);
    assert_eq!(rows[1][..3], ["team-app", "mutual-tls-auth", "STRICT"]);

    let out = cp.cli(&[
        "get",
        "pa",
        "mutual-tls-auth",
        "-n",
        "team-app",
        "-o",
        "json",
    ]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["spec"]["mtls"]["mode"], "STRICT");

    let out = cp.cli(&["delete", "pa", "mutual-tls-auth", "-n", "team-app"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cp.cli(&["get", "pa", "-A"]);
    assert!(
        stderr(&out).contains("No resources found"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn invalid_manifest_is_refused_whole_and_names_the_place() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(dir.path(), "127.0.20.2", &[]);
    let file = dir.path().join("bad.yaml");
    // The first document is fine, the second has a typo: nothing may be applied.
    std::fs::write(
        &file,
        format!(
            "{POLICY}---\n{}",
            POLICY
                .replace("STRICT", "STRICTT")
                .replace("mutual-tls-auth", "other")
        ),
    )
    .unwrap();
    let out = cp.cli(&["apply", "-f", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("bad.yaml:"), "no file:line:column in {err}");
    assert!(err.contains("STRICTT"), "{err}");
    let out = cp.cli(&["get", "pa", "-A"]);
    assert!(
        stderr(&out).contains("No resources found"),
        "partial apply: {}",
        stdout(&out)
    );
}

#[test]
fn state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pa.yaml");
    std::fs::write(&file, POLICY).unwrap();
    {
        let cp = ControlPlane::start(dir.path(), "127.0.20.3", &[]);
        assert!(
            cp.cli(&["apply", "-f", file.to_str().unwrap()])
                .status
                .success()
        );
    }
    let cp = ControlPlane::start(dir.path(), "127.0.20.3", &[]);
    let out = cp.cli(&["get", "pa", "-n", "team-app"]);
    assert!(stdout(&out).contains("mutual-tls-auth"), "{}", stderr(&out));
}

#[test]
fn tokens_and_proxy_status_need_the_admin_credential() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(dir.path(), "127.0.20.4", &[]);
    let out = cp.cli(&[
        "token",
        "create",
        "-n",
        "team-app",
        "--service-account",
        "httpbin",
        "--ttl",
        "10m",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).trim().starts_with("mwjt_"));

    // Reserved identities cannot be minted through tokens.
    let out = cp.cli(&[
        "token",
        "create",
        "-n",
        "istio-system",
        "--service-account",
        "meshward-admin",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("reserved"), "{}", stderr(&out));

    let out = cp.cli(&["proxy-status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("NAME"));

    // Without the admin key the CLI cannot even complete the handshake's authorization.
    let mut context: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cp.context).unwrap()).unwrap();
    let stranger = dir.path().join("stranger.json");
    context["adminKey"] = serde_json::json!(dir.path().join("missing.pem"));
    std::fs::write(&stranger, context.to_string()).unwrap();
    let out = meshward()
        .args(["proxy-status"])
        .env("MESHWARD_CONTEXT", &stranger)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn metrics_keep_istio_names() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(dir.path(), "127.0.20.5", &[]);
    let (head, body) = http_get("127.0.20.5:15014", "/metrics");
    // istiod's exposition: the Prometheus text format, where counters need no `_total`.
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    for counter in [
        "citadel_server_csr_count",
        "citadel_server_success_cert_issuance_count",
        "citadel_server_csr_parsing_err_count",
        "citadel_server_authentication_failure_count",
    ] {
        let declared = format!("# TYPE {counter} counter");
        assert!(body.lines().any(|l| l == declared), "{declared} in\n{body}");
        assert_eq!(sample(&body, counter), Some(0.0), "{counter} in\n{body}");
    }
    assert!(!body.contains("_total"), "a suffixed name in\n{body}");
    assert!(
        body.lines()
            .any(|l| l == "# TYPE citadel_server_root_cert_expiry_timestamp gauge")
    );
    let expiry = sample(&body, "citadel_server_root_cert_expiry_timestamp").unwrap();
    assert!(expiry > 1.7e9, "{body}");
    assert!(
        body.lines()
            .any(|l| l == "# TYPE pilot_proxy_convergence_time histogram"),
        "{body}"
    );

    // A proxy with a forged join token: one CSR, refused for its credential.
    let _proxy = Running(
        meshward()
            .args(["proxy", "--workload", "x.t"])
            .args(["--address", "127.0.20.6", "--app-address", "127.0.20.7"])
            .args(["--control-plane", &cp.grpc])
            .arg("--control-plane-root")
            .arg(cp.data_dir.join("admin/root-cert.pem"))
            .env("MESHWARD_JOIN_TOKEN", "mwjt_forged")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(
        || {
            let body = http_get("127.0.20.5:15014", "/metrics").1;
            sample(&body, "citadel_server_authentication_failure_count").unwrap_or(0.0) >= 1.0
        },
        "an authentication failure",
    );
    let body = http_get("127.0.20.5:15014", "/metrics").1;
    assert!(
        sample(&body, "citadel_server_csr_count").unwrap() >= 1.0,
        "{body}"
    );
    assert_eq!(
        sample(&body, "citadel_server_success_cert_issuance_count"),
        Some(0.0)
    );
}
