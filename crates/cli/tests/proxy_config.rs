//! `meshward proxy-config` against a mesh started with `meshward up`: istioctl's columns for
//! listeners, clusters, endpoints and secrets, log levels changed at runtime, `-o json`, the
//! errors a user meets — and the control plane's push metrics and `proxy-status` timestamps
//! on the same mesh.

// A test that cannot unwrap has failed: panicking is the point.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;

use support::{Down, http_get, run_up as run, sample, stderr, stdout, wait_for};

const SUBNET: &str = "127.63";

fn example() -> String {
    format!("{}/../../examples/team-app", env!("CARGO_MANIFEST_DIR"))
}

/// Runs `meshward ARGS`, which must succeed, and returns its standard output.
fn ok(home: &Path, args: &[&str]) -> String {
    let out = run(home, args);
    assert!(
        out.status.success(),
        "meshward {args:?} failed: {}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// Runs `meshward ARGS`, which must fail, and returns its standard error.
fn fails(home: &Path, args: &[&str]) -> String {
    let out = run(home, args);
    assert!(!out.status.success(), "meshward {args:?} succeeded");
    stderr(&out)
}

/// A table's rows, cells split where two or more spaces separate them (headers such as
/// `SERVICE FQDN` keep their single space).
fn table(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

/// The row whose first cells are `start`.
fn row<'a>(rows: &'a [Vec<String>], start: &[&str]) -> &'a [String] {
    rows.iter()
        .find(|r| r.len() >= start.len() && r.iter().zip(start).all(|(a, b)| a == b))
        .unwrap_or_else(|| panic!("no row starting {start:?} in {rows:?}"))
}

/// The serial number of the first certificate `openssl` reads from `input` (a file, or `-`
/// for standard input of `sh -c`), in lower-case hex without leading zeros.
fn openssl_serial(script: &str) -> String {
    let out = std::process::Command::new("sh")
        .args(["-c", script])
        .output()
        .unwrap();
    let text = stdout(&out);
    let serial = text
        .trim()
        .strip_prefix("serial=")
        .unwrap_or_else(|| panic!("no serial from {script}: {text}{}", stderr(&out)));
    serial
        .to_ascii_lowercase()
        .trim_start_matches('0')
        .to_owned()
}

/// `GET /metrics` of the control plane in `home`'s context.
fn metrics(home: &Path) -> String {
    let context: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.join("context.json")).unwrap()).unwrap();
    let addr = context["monitoring"].as_str().unwrap();
    http_get(addr, "/metrics").1
}

#[test]
fn proxy_config_shows_what_each_sidecar_runs() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let out = run(home, &["up", &example(), "--detach", "--subnet", SUBNET]);
    let _down = Down(home);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let httpbin = format!("{SUBNET}.1.2");

    // listeners: the STRICT service port with the policy that set it, and the outbound proxy.
    let rows = table(&ok(
        home,
        &["proxy-config", "listeners", "httpbin.team-app"],
    ));
    assert_eq!(
        rows[0],
        [
            "ADDRESS",
            "PORT",
            "DIRECTION",
            "MODE",
            "PROTOCOL",
            "POLICY",
            "DESTINATION"
        ]
    );
    let inbound = row(&rows, &[&httpbin, "8080"]);
    assert_eq!(
        inbound[2..6],
        [
            "inbound",
            "STRICT",
            "HTTP",
            "namespace team-app/mutual-tls-auth"
        ]
    );
    assert_eq!(inbound[6], format!("app {SUBNET}.2.2:8080"));
    assert_eq!(row(&rows, &[&httpbin, "15001"])[2], "outbound");

    // clusters: istioctl's columns, plus the TLS the client originates and its traffic policy.
    let rows = table(&ok(home, &["pc", "clusters", "client.team-app"]));
    assert_eq!(
        rows[0],
        [
            "SERVICE FQDN",
            "PORT",
            "SUBSET",
            "DIRECTION",
            "TYPE",
            "DESTINATION RULE",
            "TLS",
            "TRAFFIC POLICY"
        ]
    );
    assert_eq!(
        row(&rows, &["httpbin-svc.team-app.svc.cluster.local", "8080"])[2..],
        ["-", "outbound", "EDS", "-", "ISTIO_MUTUAL", "ROUND_ROBIN"]
    );

    // endpoints: istioctl's columns, and the identity the server must prove.
    let rows = table(&ok(home, &["pc", "endpoints", "client.team-app"]));
    assert_eq!(
        rows[0][..4],
        ["ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER"]
    );
    assert_eq!(
        row(&rows, &[&format!("{httpbin}:8080")])[1..],
        [
            "HEALTHY",
            "OK",
            "outbound|8080||httpbin-svc.team-app.svc.cluster.local",
            "ISTIO_MUTUAL",
            "spiffe://cluster.local/ns/team-app/sa/default"
        ]
    );

    // secret: `default` is the certificate the sidecar presents, `ROOTCA` the mesh's root.
    let rows = table(&ok(home, &["pc", "secret", "httpbin.team-app"]));
    assert_eq!(
        rows[0],
        [
            "RESOURCE NAME",
            "TYPE",
            "STATUS",
            "VALID CERT",
            "SERIAL NUMBER",
            "NOT AFTER",
            "NOT BEFORE"
        ]
    );
    let default = row(&rows, &["default", "Cert Chain", "ACTIVE", "true"]);
    let root = row(&rows, &["ROOTCA", "CA", "ACTIVE", "true"]);
    let data = home.join("up/data");
    let presented = openssl_serial(&format!(
        "openssl s_client -connect {httpbin}:8080 -alpn istio -cert {cert} -key {key} \
         </dev/null 2>/dev/null | openssl x509 -noout -serial",
        cert = data.join("admin/admin-cert.pem").display(),
        key = data.join("admin/admin-key.pem").display(),
    ));
    assert_eq!(default[4], presented, "{rows:?}");
    let root_serial = openssl_serial(&format!(
        "openssl x509 -noout -serial -in {}",
        data.join("ca/root-cert.pem").display()
    ));
    assert_eq!(root[4], root_serial, "{rows:?}");
    assert!(
        default[5].ends_with('Z') && default[6] < default[5],
        "{rows:?}"
    );
    let json: serde_json::Value = serde_json::from_str(&ok(
        home,
        &["pc", "secret", "httpbin.team-app", "-o", "json"],
    ))
    .unwrap();
    let leaf = &json["certificates"][0]["cert_chain"][0];
    assert_eq!(leaf["serial_number"], presented.as_str());
    assert_eq!(
        leaf["subject_alt_names"][0]["uri"],
        "spiffe://cluster.local/ns/team-app/sa/default"
    );

    // log: Envoy's logger names change Meshward's tracing targets at runtime.
    let out = ok(
        home,
        &["pc", "log", "httpbin.team-app", "--level", "rbac:debug"],
    );
    let filter = out.lines().next().unwrap();
    assert!(
        filter.starts_with("active filter: ") && filter.contains("meshward::rbac=debug"),
        "{out}"
    );
    let rows = table(&out);
    assert_eq!(row(&rows, &["rbac"])[1..], ["debug", "meshward::rbac"]);
    assert_eq!(row(&rows, &["admin"])[1], "info");
    let json: serde_json::Value = serde_json::from_str(&ok(
        home,
        &["pc", "log", "httpbin.team-app", "--reset", "-o", "json"],
    ))
    .unwrap();
    assert_eq!(json["reported"], true);
    assert!(!json["filter"].as_str().unwrap().contains("rbac"), "{json}");
    assert!(
        fails(
            home,
            &["pc", "log", "httpbin.team-app", "--level", "rbac:loud"]
        )
        .contains("unknown level")
    );

    // -o json is the data, for scripts.
    for verb in ["listeners", "clusters", "endpoints"] {
        let out = ok(home, &["pc", verb, "client.team-app", "-o", "json"]);
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert!(!json.as_array().unwrap().is_empty(), "{verb}: {out}");
    }
    let json: serde_json::Value = serde_json::from_str(&ok(
        home,
        &["pc", "endpoints", "client.team-app", "-o", "json"],
    ))
    .unwrap();
    assert_eq!(json[0]["tlsSource"], "auto-mTLS");

    // The errors say what to do.
    let err = fails(home, &["pc", "listeners", "nosuch.team-app"]);
    assert!(
        err.contains("client.team-app, httpbin.team-app, naked.team-app"),
        "{err}"
    );
    let err = fails(home, &["pc", "secret", "naked.team-app"]);
    assert!(err.contains("has no sidecar"), "{err}");
    let err = fails(
        home,
        &["pc", "secret", "httpbin.team-app", "--admin-port", "1"],
    );
    assert!(err.contains("not reachable on its admin port"), "{err}");

    // proxy-status: when each proxy was last sent a view and last acknowledged one.
    let rows = table(&ok(home, &["proxy-status"]));
    assert_eq!(rows[0][6..8], ["LAST SENT", "LAST ACKED"]);
    let status = row(&rows, &["httpbin", "team-app"]);
    assert!(
        status[6].ends_with(" ago") && status[7].ends_with(" ago"),
        "{rows:?}"
    );

    // The control plane's push metrics, under Istio's names.
    let scrape = metrics(home);
    assert_eq!(
        sample(
            &scrape,
            &format!("pilot_xds{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"))
        ),
        Some(2.0),
        "{scrape}"
    );
    let lds = sample(&scrape, "pilot_xds_pushes{type=\"lds\"}").unwrap();
    assert!(lds >= 2.0, "{scrape}");
    // A change measures convergence: from the apply to the proxy's ACK.
    let file = home.join("permissive.yaml");
    std::fs::write(
        &file,
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: httpbin\n  \
         namespace: team-app\nspec:\n  selector:\n    matchLabels:\n      app: httpbin\n  mtls:\n    \
         mode: PERMISSIVE\n",
    )
    .unwrap();
    ok(home, &["apply", "-f", file.to_str().unwrap()]);
    wait_for(
        || sample(&metrics(home), "pilot_proxy_convergence_time_count").unwrap_or(0.0) >= 1.0,
        "a convergence time",
    );
    let scrape = metrics(home);
    assert!(
        sample(&scrape, "pilot_xds_pushes{type=\"lds\"}").unwrap() > lds,
        "{scrape}"
    );
    let rows = table(&ok(home, &["pc", "listeners", "httpbin.team-app"]));
    assert_eq!(
        row(&rows, &[&httpbin, "8080"])[3..6],
        ["PERMISSIVE", "HTTP", "workload team-app/httpbin"]
    );
}
