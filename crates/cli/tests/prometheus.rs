//! The shipped observability artefacts against a real Prometheus: the alert rules pass
//! `promtool check rules` and their unit tests, and a Prometheus scraping a `meshward up` mesh
//! (with the scrape configuration `up` writes) answers every dashboard panel's expression with
//! the series an operator expects — mutual_tls and plaintext traffic, 403s by policy,
//! certificate expiry.

// A test that cannot unwrap has failed: panicking is the point.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Down, Running, run_up as run, stderr, stdout};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const PROMETHEUS: &str = "127.52.0.9:9090";

/// An instant query; the `result` array of the answer.
fn query(expr: &str) -> Vec<serde_json::Value> {
    try_query(expr).unwrap_or_else(|| panic!("Prometheus did not answer {expr}"))
}

/// An instant query; `None` while Prometheus does not answer yet.
fn try_query(expr: &str) -> Option<Vec<serde_json::Value>> {
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "5",
            "--data-urlencode",
            &format!("query={expr}"),
            &format!("http://{PROMETHEUS}/api/v1/query"),
        ])
        .output()
        .unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    assert_eq!(answer["status"], "success", "{expr}: {answer}");
    Some(
        answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
    )
}

/// Waits (bounded) until `expr` returns a series satisfying `ok`.
fn eventually(expr: &str, ok: impl Fn(&[serde_json::Value]) -> bool) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let result = try_query(expr).unwrap_or_default();
        if ok(&result) {
            return result;
        }
        assert!(
            Instant::now() < deadline,
            "{expr} never satisfied: {result:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn has_label(result: &[serde_json::Value], key: &str, value: &str) -> bool {
    result.iter().any(|s| s["metric"][key] == value)
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    let rules = repo().join("observability/prometheus");
    for args in [
        vec!["check", "rules", "alerts.yaml"],
        vec!["test", "rules", "alerts_test.yaml"],
    ] {
        let out = Command::new("promtool")
            .args(&args)
            .current_dir(&rules)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
    }
}

#[test]
fn dashboard_panels_answer_from_a_scraped_mesh() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let example = repo().join("examples/zero-trust");
    let out = run(
        home,
        &[
            "up",
            example.to_str().unwrap(),
            "--detach",
            "--subnet",
            "127.52",
        ],
    );
    let _down = Down(home);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    let config = home.join("up/prometheus.yml");
    let out = Command::new("promtool")
        .args(["check", "config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let rules = repo().join("observability/prometheus/alerts.yaml");
    let with_rules = home.join("prometheus.yml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &with_rules,
        format!("rule_files: ['{}']\n{text}", rules.display()),
    )
    .unwrap();
    // A Prometheus server of this test's own, killed on drop.
    let _prometheus = Running(
        Command::new("prometheus")
            .args([
                &format!("--config.file={}", with_rules.display()),
                &format!("--storage.tsdb.path={}", home.join("tsdb").display()),
                &format!("--web.listen-address={PROMETHEUS}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // A little traffic, before and between scrapes so that rates have two samples: allowed
    // mTLS, denied mTLS, and plaintext from the pod without a sidecar.
    let traffic = || {
        for (who, url) in [
            ("teei-api-gateway.default", "http://teei-orders:8080/get"),
            ("teei-reporting.default", "http://teei-orders:8080/get"),
            ("teei-reporting.default", "http://teei-analytics:8080/get"),
        ] {
            run(
                home,
                &["exec", who, "--", "curl", "-s", "--max-time", "5", url],
            );
        }
        run(
            home,
            &[
                "exec",
                "legacy.default",
                "--",
                "sh",
                "-c",
                "curl -s --max-time 5 http://$TEEI_ANALYTICS_SERVICE_HOST:8080/get",
            ],
        );
    };
    traffic();
    eventually(r#"count(up{job="envoy-stats"} == 1)"#, |r| {
        r.first().is_some_and(|s| s["value"][1] == "6")
    });
    eventually(r#"up{job="istiod"}"#, |r| {
        r.iter().any(|s| s["value"][1] == "1")
    });
    std::thread::sleep(Duration::from_secs(6));
    traffic();
    std::thread::sleep(Duration::from_secs(6));

    // Every panel's every expression is valid PromQL on this data and returns series.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("observability/grafana/mtls-security.json")).unwrap(),
    )
    .unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert_eq!(panels.len(), 10);
    for panel in panels {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            eventually(expr, |r| !r.is_empty());
        }
    }

    // The series an operator looks for.
    let traffic = query(
        r#"sum by (source_workload, destination_service_name, connection_security_policy) (rate(istio_requests_total{reporter="destination"}[5m]))"#,
    );
    assert!(
        has_label(&traffic, "connection_security_policy", "mutual_tls"),
        "{traffic:?}"
    );
    assert!(
        has_label(&traffic, "connection_security_policy", "none"),
        "{traffic:?}"
    );
    let denials = query(r#"sum by (policy) (meshward_authz_denials_total)"#);
    assert!(has_label(&denials, "policy", "none"), "{denials:?}");
    let forbidden =
        query(r#"sum(istio_requests_total{reporter="destination",response_code="403"})"#);
    assert!(!forbidden.is_empty(), "no 403 counted");
    let expiry = query("min by (workload) (istio_agent_cert_expiry_seconds)");
    assert!(has_label(&expiry, "workload", "teei-orders"), "{expiry:?}");
    for series in &expiry {
        let seconds: f64 = series["value"][1].as_str().unwrap().parse().unwrap();
        assert!(seconds > 3600.0 && seconds <= 86_400.0, "{series}");
    }
    // A fresh mesh raises no alert.
    let firing = query(r#"ALERTS{alertstate="firing"}"#);
    assert!(firing.is_empty(), "{firing:?}");
}
