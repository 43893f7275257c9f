//! AuthorizationPolicy enforced by real sidecars: `meshward up examples/zero-trust` (seed 004's
//! policies) and requests made as its workloads. Each case names the Istio rule it checks;
//! denied HTTP gets 403 `RBAC: access denied` (gRPC: status 7) and denied TCP a closed
//! connection, with nothing reaching the app.

// A test that cannot unwrap has failed: panicking is the point.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use support::{Down, run_up as run, stderr, stdout};

fn example() -> String {
    format!("{}/../../examples/zero-trust", env!("CARGO_MANIFEST_DIR"))
}

/// `curl` as `workload` (through its sidecar when it has one): status code and body.
fn curl(home: &Path, workload: &str, extra: &[&str], url: &str) -> (String, String) {
    let mut args = vec![
        "exec",
        workload,
        "--",
        "curl",
        "-s",
        "--max-time",
        "5",
        "-w",
        "\n%{http_code}",
    ];
    args.extend_from_slice(extra);
    args.push(url);
    let out = run(home, &args);
    let text = stdout(&out);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.to_owned(), body.to_owned())
}

/// The sidecar outbound address of `workload` (its `HTTP_PROXY`).
fn outbound(home: &Path, workload: &str) -> String {
    let out = run(
        home,
        &["exec", workload, "--", "sh", "-c", "echo $HTTP_PROXY"],
    );
    let proxy = stdout(&out);
    proxy
        .trim()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

/// A CONNECT tunnel through a sidecar's outbound port to `target`.
fn tunnel(sidecar: &str, target: &str) -> TcpStream {
    let mut stream = TcpStream::connect(sidecar).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "tunnel closed early");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream
}

/// Sends `line` and reads what comes back: the echo, or nothing when the connection is closed.
fn echo(stream: &mut TcpStream, line: &str) -> String {
    if stream.write_all(line.as_bytes()).is_err() {
        return String::new();
    }
    let mut buf = vec![0u8; line.len()];
    let mut got = 0;
    while got < buf.len() {
        match stream.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    String::from_utf8_lossy(&buf[..got]).into_owned()
}

const DENIED: &str = "RBAC: access denied";

/// `meshward x authz check` for the request `curl EXTRA URL` made as `who`: `ALLOW` or `DENY`.
fn check(home: &Path, who: &str, extra: &[&str], url: &str) -> String {
    let (service, path) = url.trim_start_matches("http://").split_once('/').unwrap();
    let (service, _port) = service.split_once(':').unwrap();
    let method = match extra {
        ["-X", method, ..] => *method,
        ["-I"] => "HEAD",
        _ => "GET",
    };
    let (name, namespace) = who.split_once('.').unwrap();
    let from = format!("spiffe://cluster.local/ns/{namespace}/sa/{name}");
    let workload = format!("{service}.{namespace}");
    let path = format!("/{path}");
    let args = [
        "x",
        "authz",
        "check",
        "--workload",
        &workload,
        "--from",
        &from,
        "--method",
        method,
        "--path",
        &path,
        "-o",
        "json",
    ];
    let out = run(home, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    json["decision"].as_str().unwrap().to_owned()
}

#[test]
fn seed_policies_are_enforced_by_the_sidecars() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let out = run(home, &["up", &example(), "--detach", "--subnet", "127.50"]);
    let _down = Down(home);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    let gateway = "teei-api-gateway.default";
    let reporting = "teei-reporting.default";
    let orders = "http://teei-orders:8080";
    let ai = "http://teei-q2q-ai:8080";
    let analytics = "http://teei-analytics:8080";
    let cases: &[(&str, &str, &[&str], String, &str)] = &[
        (
            "allow-api-gateway-to-backends: the gateway's principal and a listed method",
            gateway,
            &[],
            format!("{orders}/get"),
            "200",
        ),
        (
            "a matching ALLOW policy allows even with a deny-all (`spec: {}`) in the namespace",
            gateway,
            &["-X", "DELETE"],
            format!("{orders}/status/204"),
            "204",
        ),
        (
            "ALLOW policies exist but none matches: HEAD is not among the methods",
            gateway,
            &["-I"],
            format!("{orders}/get"),
            "403",
        ),
        (
            "deny-all-default: a principal no policy names is denied",
            reporting,
            &[],
            format!("{orders}/get"),
            "403",
        ),
        (
            "allow-reporting-to-ai: POST on a listed path prefix passes (the app answers 404)",
            reporting,
            &["-X", "POST"],
            format!("{ai}/api/v1/q2q/ask"),
            "404",
        ),
        (
            "allow-reporting-to-ai: GET is not POST",
            reporting,
            &[],
            format!("{ai}/api/v1/q2q/ask"),
            "403",
        ),
        (
            "paths are matched after normalization: `/api/v1/q2q/../../../get` is `/get`",
            reporting,
            &["-X", "POST", "--path-as-is"],
            format!("{ai}/api/v1/q2q/../../../get"),
            "403",
        ),
        (
            "readonly-analytics: GET from reporting",
            reporting,
            &[],
            format!("{analytics}/get"),
            "200",
        ),
        (
            "readonly-analytics: POST from reporting is not read-only",
            reporting,
            &["-X", "POST"],
            format!("{analytics}/get"),
            "403",
        ),
        (
            "allow-health-checks: no `from`, so any caller, the gateway too",
            gateway,
            &[],
            format!("{analytics}/healthz"),
            "404",
        ),
        (
            "a path that cannot be normalized safely is refused, never matched raw",
            reporting,
            &["--path-as-is"],
            format!("{analytics}/get%00"),
            "400",
        ),
    ];
    for (rule, who, extra, url, want) in cases {
        let (code, body) = curl(home, who, extra, url);
        assert_eq!(code, *want, "{rule}: {who} {extra:?} {url}: {body}");
        if *want == "403" && !extra.contains(&"-I") {
            assert_eq!(body.trim(), DENIED, "{rule}");
        }
        // `x authz check` against the running control plane agrees with the sidecar.
        let verdict = check(home, who, extra, url);
        let sidecar = if matches!(*want, "403" | "400") {
            "DENY"
        } else {
            "ALLOW"
        };
        assert_eq!(verdict, sidecar, "x authz check disagrees on: {rule}");
    }

    // gRPC callers get status 7 PERMISSION_DENIED, Envoy's mapping of 403.
    let out = run(
        home,
        &[
            "exec",
            reporting,
            "--",
            "curl",
            "-s",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "-X",
            "POST",
            "-H",
            "content-type: application/grpc",
            &format!("{orders}/shop.Orders/List"),
        ],
    );
    let head = stdout(&out).to_ascii_lowercase();
    assert!(head.contains("grpc-status: 7"), "{head}");

    // Principals never match a plaintext caller ("principals … require mTLS"): `legacy` has no
    // sidecar and reaches the PERMISSIVE port in plaintext, where only the health check passes.
    let host = |var: &str| format!("http://${var}:8080");
    let plain = |path: &str| {
        let url = format!("{}{path}", host("TEEI_ANALYTICS_SERVICE_HOST"));
        let script = format!("curl -s --max-time 5 -w '\\n%{{http_code}}' {url}");
        let out = run(home, &["exec", "legacy.default", "--", "sh", "-c", &script]);
        stdout(&out).rsplit_once('\n').unwrap().1.to_owned()
    };
    assert_eq!(plain("/get"), "403");
    assert_eq!(plain("/healthz"), "404");

    // HTTP/2 (prior knowledge) is decided per request too; gRPC gets status 7 in a
    // trailers-only answer.
    let h2 = |path: &str, grpc: bool| {
        let url = format!("{}{path}", host("TEEI_ANALYTICS_SERVICE_HOST"));
        let header = if grpc {
            "-H 'content-type: application/grpc' -X POST"
        } else {
            ""
        };
        let script = format!("curl -s -i --max-time 5 --http2-prior-knowledge {header} {url}");
        let out = run(home, &["exec", "legacy.default", "--", "sh", "-c", &script]);
        stdout(&out).to_ascii_lowercase()
    };
    let answer = h2("/get", false);
    assert!(answer.starts_with("http/2 403"), "{answer}");
    assert!(answer.contains("rbac: access denied"), "{answer}");
    // Allowed: forwarded to the app (which speaks only HTTP/1.1, hence the sidecar's 502).
    let answer = h2("/healthz", false);
    assert!(
        answer.starts_with("http/2 ") && !answer.starts_with("http/2 403"),
        "{answer}"
    );
    let answer = h2("/pkg.Analytics/Report", true);
    assert!(answer.starts_with("http/2 200"), "{answer}");
    assert!(answer.contains("grpc-status: 7"), "{answer}");

    // TCP: an ALLOW rule with HTTP-only fields never matches ("the rule is ignored"), so
    // allow-api-gateway-to-backends does not let the gateway reach the TCP ledger; the port
    // rule of allow-api-gateway-to-ledger does. Reporting is refused: closed, nothing echoed.
    let gateway_out = outbound(home, gateway);
    let mut ledger = tunnel(&gateway_out, "teei-ledger:9000");
    assert_eq!(echo(&mut ledger, "ping\n"), "ping\n");
    let mut refused = tunnel(&outbound(home, reporting), "teei-ledger:9000");
    assert_eq!(echo(&mut refused, "ping\n"), "");

    // A new DENY policy closes the open connection it now denies, within seconds.
    let deny = home.join("deny-ledger.yaml");
    std::fs::write(
        &deny,
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: freeze-ledger, namespace: default}\nspec:\n  selector: {matchLabels: {app: teei-ledger}}\n  action: DENY\n  rules: [{}]\n",
    )
    .unwrap();
    let out = run(home, &["apply", "-f", deny.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let start = Instant::now();
    let mut buf = [0u8; 16];
    ledger
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let closed = matches!(ledger.read(&mut buf), Ok(0) | Err(_));
    assert!(closed, "the tunnel stayed open");
    assert!(start.elapsed() < Duration::from_secs(10));
    let mut again = tunnel(&gateway_out, "teei-ledger:9000");
    assert_eq!(echo(&mut again, "ping\n"), "");

    // Every denial is counted by the policy and rule that decided (the default deny is `none`).
    let admin = outbound(home, "teei-ledger.default").replace(":15001", ":15000");
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "5",
            &format!("http://{admin}/stats/prometheus"),
        ])
        .output()
        .unwrap();
    let metrics = stdout(&out);
    for series in [
        r#"meshward_authz_denials_total{policy="none",rule="-",protocol="tcp"}"#,
        r#"meshward_authz_denials_total{policy="default/freeze-ledger",rule="0",protocol="tcp"}"#,
    ] {
        assert!(metrics.contains(series), "{series} missing from\n{metrics}");
    }
}
