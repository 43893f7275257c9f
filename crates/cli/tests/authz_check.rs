//! `meshward x authz check` on a deny-by-default policy set (`fixtures/authz`: deny-all, gateway
//! to backends, reporting to the AI service on two path prefixes, read-only analytics, health
//! checks for anyone): the real binary, offline and against a control plane, in text and JSON,
//! with its exit codes.

// A test that cannot unwrap has failed: panicking is the point.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::Output;

use serde_json::{Value, json};
use support::{ControlPlane, in_fixtures, stderr, stdout};

const GATEWAY: &str = "spiffe://cluster.local/ns/default/sa/teei-api-gateway";
const REPORTING: &str = "spiffe://cluster.local/ns/default/sa/teei-reporting";

/// The reporting service posting to the AI service, which allows it two path prefixes.
const REPORTING_POSTS_TO_AI: [&str; 6] = [
    "--workload",
    "teei-q2q-ai.default",
    "--from",
    REPORTING,
    "--method",
    "POST",
];

/// `REPORTING_POSTS_TO_AI --path PATH`.
fn post_to_ai(path: &str) -> Vec<&str> {
    let mut args = REPORTING_POSTS_TO_AI.to_vec();
    args.extend_from_slice(&["--path", path]);
    args
}

/// `x authz check -f authz ARGS`.
fn check(args: &[&str]) -> Output {
    let mut all = vec!["x", "authz", "check", "-f", "authz"];
    all.extend_from_slice(args);
    in_fixtures(&all)
}

/// The JSON report of a check that ran.
fn check_json(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend_from_slice(&["-o", "json"]);
    let out = check(&all);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

/// The text report of a check that ran.
fn check_text(args: &[&str]) -> String {
    let out = check(args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    stdout(&out)
}

/// The words of the trace row of `policy` (its first rule).
fn row<'a>(text: &'a str, policy: &str) -> Vec<&'a str> {
    text.lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|words| words[..words.len().min(3)].contains(&policy))
        .unwrap_or_else(|| panic!("no row for {policy} in\n{text}"))
}

#[test]
fn the_gateway_reaches_a_backend_by_its_allow_rule() {
    let args = [
        "--workload",
        "teei-analytics.default",
        "--from",
        GATEWAY,
        "--path",
        "/api/v1/metrics",
    ];
    let text = check_text(&args);
    assert_eq!(
        text.lines().next(),
        Some("ALLOW by ALLOW policy default/allow-api-gateway-to-backends rule 0"),
        "{text}"
    );
    assert_eq!(
        row(&text, "default/allow-api-gateway-to-backends"),
        [
            "ALLOW",
            "default/allow-api-gateway-to-backends",
            "0",
            "matched:",
            "decides"
        ]
    );
    // The seed's `spec: {}` is an ALLOW policy without rules: it matches nothing, and its
    // presence is what makes everything else denied.
    assert_eq!(
        row(&text, "default/deny-all-default")[2..],
        ["-", "no", "rules:", "matches", "nothing"]
    );
    assert!(
        text.contains("port 8080 is HTTP: port name http of Workload default/teei-analytics"),
        "{text}"
    );

    let json = check_json(&args);
    assert_eq!(json["decision"], "ALLOW");
    assert_eq!(json["policy"], "default/allow-api-gateway-to-backends");
    assert_eq!(json["rule"], 0);
    assert_eq!(json["protocol"], "HTTP");
    assert_eq!(json["clientSees"], Value::Null);
    assert_eq!(
        json["request"]["sourcePrincipal"],
        "cluster.local/ns/default/sa/teei-api-gateway"
    );
    assert_eq!(json["request"]["destinationIp"], "10.10.0.5");
    assert_eq!(json["request"]["destinationPort"], 8080);
    assert_eq!(
        json["request"]["http"]["host"],
        "teei-analytics.default.svc.cluster.local"
    );
    assert_eq!(json["request"]["http"]["method"], "GET");
    let policies: Vec<&str> = json["trace"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["policy"].as_str().unwrap())
        .collect();
    assert_eq!(
        policies,
        [
            "default/allow-api-gateway-to-backends",
            "default/allow-health-checks",
            "default/deny-all-default",
            "default/readonly-analytics",
        ]
    );
    assert_eq!(
        json["trace"][0]["rules"],
        json!([{"rule": 0, "matched": true, "why": null}])
    );
}

#[test]
fn analytics_is_read_only_for_reporting() {
    let get = check_json(&[
        "--workload",
        "teei-analytics.default",
        "--from",
        REPORTING,
        "--path",
        "/api/v1/metrics",
    ]);
    assert_eq!(get["decision"], "ALLOW");
    assert_eq!(get["policy"], "default/readonly-analytics");

    let args = [
        "--workload",
        "teei-analytics.default",
        "--from",
        REPORTING,
        "--method",
        "POST",
        "--path",
        "/api/v1/metrics",
    ];
    let post = check_json(&args);
    assert_eq!(post["decision"], "DENY");
    assert_eq!(post["policy"], Value::Null);
    assert_eq!(post["rule"], Value::Null);
    assert_eq!(post["reason"], "allow policies exist, but none allowed");
    assert_eq!(
        post["clientSees"],
        "HTTP 403 `RBAC: access denied` (rbac_access_denied_matched_policy[none])"
    );
    let text = check_text(&args);
    assert_eq!(
        text.lines().next(),
        Some("DENY: allow policies exist, but none allowed"),
        "{text}"
    );
    assert_eq!(
        row(&text, "default/readonly-analytics")[2..],
        [
            "0", "no", "match:", "to[0]", "methods:", "no", "value", "matched"
        ]
    );
}

#[test]
fn a_plaintext_caller_reaches_only_the_health_checks() {
    let health = check_json(&[
        "--workload",
        "teei-analytics.default",
        "--plaintext",
        "--path",
        "/healthz?full=1",
    ]);
    assert_eq!(health["decision"], "ALLOW");
    assert_eq!(health["policy"], "default/allow-health-checks");
    assert_eq!(health["request"]["sourcePrincipal"], Value::Null);
    assert_eq!(health["request"]["http"]["path"], "/healthz");

    // Plaintext is the default without --from.
    let args = [
        "--workload",
        "teei-analytics.default",
        "--path",
        "/api/v1/metrics",
    ];
    let api = check_json(&args);
    assert_eq!(api["decision"], "DENY");
    assert!(
        api["reason"].as_str().unwrap().contains("plaintext"),
        "{api}"
    );
    let text = check_text(&args);
    assert!(text.contains(", plaintext (127.0.0.1)"), "{text}");
    assert!(
        row(&text, "default/allow-api-gateway-to-backends")[3..]
            .join(" ")
            .starts_with("no match: from[0] principals: plaintext"),
        "{text}"
    );
}

#[test]
fn on_a_tcp_port_allow_rules_with_http_fields_never_match() {
    let args = [
        "--workload",
        "teei-analytics.default",
        "--from",
        GATEWAY,
        "--port",
        "9000",
    ];
    let json = check_json(&args);
    assert_eq!(json["decision"], "DENY");
    assert_eq!(json["protocol"], "TCP");
    assert_eq!(json["request"]["http"], Value::Null);
    assert_eq!(json["request"]["destinationPort"], 9000);
    let why = json["trace"][0]["rules"][0]["why"].as_str().unwrap();
    assert!(
        why.starts_with("to[0] methods:") && why.contains("TCP"),
        "{why}"
    );

    let text = check_text(&args);
    assert!(
        text.contains(
            "port 9000 is opaque TCP: port name tcp-export of Workload default/teei-analytics"
        ),
        "{text}"
    );
    assert!(
        text.contains("the client sees: the connection is closed"),
        "{text}"
    );
}

#[test]
fn a_workload_entrys_port_names_set_the_protocol() {
    // Its first port, http-api: HTTP, with the host defaulting to its address (no Service).
    let http = check_json(&["--workload", "teei-ledger-vm.default", "--from", GATEWAY]);
    assert_eq!(http["decision"], "ALLOW");
    assert_eq!(http["policy"], "default/allow-api-gateway-to-backends");
    assert_eq!(http["protocol"], "HTTP");
    assert_eq!(http["request"]["destinationPort"], 8080);
    assert_eq!(http["request"]["http"]["host"], "10.20.0.7");

    let tcp = check_json(&[
        "--workload",
        "teei-ledger-vm.default",
        "--from",
        GATEWAY,
        "--port",
        "7000",
    ]);
    assert_eq!(tcp["decision"], "DENY");
    assert_eq!(tcp["protocol"], "TCP");
    assert_eq!(
        tcp["notes"][0],
        "port 7000 is opaque TCP: port name tcp-sync of WorkloadEntry default/teei-ledger-vm"
    );
}

#[test]
fn a_port_without_protocol_is_what_its_service_declares() {
    // The gateway's port is unnamed, so the sidecar sniffs; its Service calls the port http.
    let json = check_json(&["--workload", "teei-api-gateway.default", "--path", "/ready"]);
    assert_eq!(json["protocol"], "HTTP");
    assert_eq!(json["decision"], "ALLOW");
    assert_eq!(json["policy"], "default/allow-health-checks");
    assert_eq!(
        json["request"]["http"]["host"],
        "teei-api-gateway.default.svc.cluster.local"
    );
    assert_eq!(
        json["notes"][0],
        "port 8080 has no protocol (unnamed port of Workload default/teei-api-gateway): the sidecar detects HTTP from the first bytes; port name http of Service default/teei-api-gateway port 80 says HTTP; checked as HTTP"
    );
}

#[test]
fn a_traversal_is_normalized_before_paths_match() {
    // Raw, it starts with the allowed prefix; normalized, it is /admin.
    let args = post_to_ai("/api/v1/q2q/../../../admin");
    let json = check_json(&args);
    assert_eq!(json["decision"], "DENY");
    assert_eq!(json["request"]["http"]["path"], "/admin");
    let text = check_text(&args);
    assert!(
        text.contains(r#"path "/api/v1/q2q/../../../admin" is "/admin" once normalized"#),
        "{text}"
    );

    // Encoded dots are decoded first, then removed: this one lands inside the allowed prefix.
    let json = check_json(&post_to_ai("/api/v1/insights/%2e%2E/q2q/run"));
    assert_eq!(json["decision"], "ALLOW");
    assert_eq!(json["policy"], "default/allow-reporting-to-ai");
    assert_eq!(json["request"]["http"]["path"], "/api/v1/q2q/run");
}

#[test]
fn a_path_that_cannot_be_normalized_is_refused_before_authorization() {
    let args = post_to_ai("/api/v1/q2q/..%2F..%2Fadmin");
    let json = check_json(&args);
    assert_eq!(json["decision"], "DENY");
    assert_eq!(json["policy"], Value::Null);
    assert_eq!(json["clientSees"], "HTTP 400 Bad Request");
    assert_eq!(json["trace"], json!([]));
    let reason = json["reason"].as_str().unwrap();
    assert!(reason.contains("escaped slash or backslash"), "{reason}");
    let text = check_text(&args);
    assert!(text.contains("authorization not reached"), "{text}");
}

#[test]
fn the_check_cannot_run_on_bad_input_and_says_why() {
    let out = check(&["--workload", "teei-analytic.default"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out).trim(),
        "error: no workload teei-analytic.default in the manifests; workloads in namespace default: teei-analytics, teei-api-gateway, teei-ledger-vm, teei-q2q-ai, teei-reporting"
    );

    let out = check(&["--workload", "teei-analytics.prod"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("namespace prod has none (namespaces with workloads: default)"),
        "{}",
        stderr(&out)
    );

    for args in [
        &["--workload", "teei-analytics"][..],
        &[
            "--workload",
            "teei-analytics.default",
            "--from",
            "teei-api-gateway",
        ],
        &[
            "--workload",
            "teei-analytics.default",
            "--from",
            GATEWAY,
            "--plaintext",
        ],
        &["--workload", "teei-analytics.default", "--header", "x-user"],
        &["--workload", "teei-analytics.default", "--port", "0"],
    ] {
        let out = check(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).is_empty(), "{args:?}");
    }

    let out = in_fixtures(&[
        "x",
        "authz",
        "check",
        "--workload",
        "a.b",
        "-f",
        "no-such-dir",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no-such-dir"), "{}", stderr(&out));
}

#[test]
fn without_files_it_checks_the_running_control_plane() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::start(dir.path(), "127.0.94.1", &[]);
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/authz");
    let out = cp.cli(&["apply", "-f", fixtures]);
    assert!(out.status.success(), "{}", stderr(&out));

    let mut args = vec!["x", "authz", "check", "-o", "json"];
    args.extend(post_to_ai("/api/v1/insights/weekly"));
    let out = cp.cli(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["decision"], "ALLOW");
    assert_eq!(json["policy"], "default/allow-reporting-to-ai");
    assert_eq!(json["rule"], 0);

    let out = cp.cli(&["x", "authz", "check", "--workload", "ghost.default"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no workload ghost.default on the control plane"),
        "{}",
        stderr(&out)
    );
}

/// Policies that never decide, a STRICT workload and one without a sidecar, on top of the
/// fixture.
const EXTRA: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: audit-analytics
  namespace: default
spec:
  selector:
    matchLabels:
      app: teei-analytics
  action: AUDIT
  rules:
  - {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-writes
  namespace: default
  annotations:
    istio.io/dry-run: "true"
spec:
  action: DENY
  rules:
  - to:
    - operation:
        methods: ["POST", "PUT", "DELETE"]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: q2q-strict
  namespace: default
spec:
  selector:
    matchLabels:
      app: teei-q2q-ai
  mtls:
    mode: STRICT
---
apiVersion: meshward.io/v1alpha1
kind: Workload
metadata:
  name: legacy-batch
  namespace: default
  labels:
    app: legacy-batch
    sidecar.istio.io/inject: "false"
spec:
  ports:
  - name: http
    port: 8080
"#;

#[test]
fn audit_dry_run_strict_ports_and_missing_sidecars_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let extra = dir.path().join("extra.yaml");
    std::fs::write(&extra, EXTRA).unwrap();
    let extra = extra.to_str().unwrap();

    let args = [
        "--workload",
        "teei-analytics.default",
        "--from",
        GATEWAY,
        "--method",
        "POST",
        "-f",
        extra,
    ];
    let text = check_text(&args);
    assert_eq!(
        text.lines().next(),
        Some("ALLOW by ALLOW policy default/allow-api-gateway-to-backends rule 0"),
        "{text}"
    );
    assert!(
        text.contains("\naudit: default/audit-analytics rule 0 matched (logged, never enforced)\n"),
        "{text}"
    );
    assert!(
        text.contains("\ndry-run: DENY default/deny-writes would match rule 0 (not enforced)\n"),
        "{text}"
    );
    assert_eq!(
        row(&text, "default/deny-writes"),
        ["DENY", "(dry-run)", "default/deny-writes", "0", "matched"]
    );
    let json = check_json(&args);
    assert_eq!(
        json["audit"],
        json!([{"policy": "default/audit-analytics", "rule": 0}])
    );
    assert_eq!(
        json["dryRun"],
        json!([{"policy": "default/deny-writes", "action": "DENY", "rule": 0}])
    );

    // A plaintext client never reaches authorization on a STRICT port.
    let json = check_json(&["--workload", "teei-q2q-ai.default", "-f", extra]);
    assert_eq!(json["decision"], "DENY");
    assert_eq!(
        json["reason"],
        "port 8080 is STRICT (workload default/q2q-strict): the plaintext connection is refused before authorization"
    );
    assert_eq!(json["trace"], json!([]));

    // Without a sidecar nothing enforces the policies: the trace says what one would do.
    let json = check_json(&["--workload", "legacy-batch.default", "-f", extra]);
    assert_eq!(json["decision"], "ALLOW");
    let reason = json["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(
            "default/legacy-batch has no sidecar: nothing enforces AuthorizationPolicy"
        ) && reason.contains("(with a sidecar: DENY: allow policies exist, but none allowed"),
        "{reason}"
    );
    assert!(!json["trace"].as_array().unwrap().is_empty());
}
