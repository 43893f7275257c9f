//! `meshward validate`, `analyze` and `authn tls-check` on fixture directories: the real
//! binary, offline, with its exit codes.

mod support;

use support::{in_fixtures, stderr, stdout};

const CONFLICTS: [&str; 7] = [
    "Error [IST0101] (Gateway shop/shop-gateway conflicts/policies.yaml:24) Referenced selector not found: \"istio=ingressgateway\"",
    "Error [IST0173] (DestinationRule shop/web-plaintext conflicts/destinationrules.yaml:1) The Subset canary defined in the DestinationRule does not select any pods. Which may lead to 503 UH (NoHealthyUpstream).",
    "Error [MW0001] (DestinationRule shop/web-plaintext conflicts/destinationrules.yaml:1) DestinationRule shop/web-plaintext sets tls.mode DISABLE for web.shop.svc.cluster.local:8080, but workload shop/web port 8080 is STRICT (PeerAuthentication: namespace shop/strict): client sends plaintext but server port is STRICT.",
    "Warning [IST0127] (AuthorizationPolicy shop/allow-ghost conflicts/policies.yaml:10) No matching workloads for this resource with the following labels: app=ghost",
    "Warning [IST0128] (DestinationRule shop/payments-tls conflicts/destinationrules.yaml:24) DestinationRule payments-tls in namespace shop has TLS mode set to SIMPLE but no caCertificates are set to validate server identity for host: payments.example.com",
    "Warning [IST0174] (DestinationRule shop/typo conflicts/destinationrules.yaml:16) The host wbe defined in the DestinationRule does not match any services in the mesh.",
    "Info [IST0102] (Namespace shop conflicts/lab.yaml:1) The namespace is not enabled for Istio injection. Run 'kubectl label namespace shop istio-injection=enabled' to enable it, or 'kubectl label namespace shop istio-injection=disabled' to explicitly mark it as not needing injection.",
];

/// The STRICT lab without its PeerAuthentication: PERMISSIVE everywhere.
const PERMISSIVE_LAB: [&str; 6] = [
    "-f",
    "strict-lab/namespace.yaml",
    "-f",
    "strict-lab/workloads.yaml",
    "-f",
    "strict-lab/service.yaml",
];

#[test]
fn validate_gives_a_verdict_per_document() {
    let out = in_fixtures(&["validate", "-f", "strict-lab"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).matches(": valid").count(),
        6,
        "{}",
        stdout(&out)
    );

    let out = in_fixtures(&["validate", "-f", "invalid"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("invalid/peerauthentication-typo.yaml:8:11: Error (PeerAuthentication team-app/typo) unknown variant `STRICTT`"),
        "{text}"
    );
}

#[test]
fn analyze_a_consistent_lab_finds_nothing() {
    let out = in_fixtures(&["analyze", "-f", "strict-lab"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    assert!(
        stderr(&out).contains("No validation issues found when analyzing 6 document(s)."),
        "{}",
        stderr(&out)
    );
}

#[test]
fn analyze_reports_in_istioctl_format_and_fails_on_errors() {
    let out = in_fixtures(&["analyze", "-f", "conflicts"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines, CONFLICTS);
}

#[test]
fn analyze_json_is_istioctls_shape() {
    let out = in_fixtures(&["analyze", "-f", "conflicts", "-o", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let codes: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        [
            "IST0101", "IST0173", "MW0001", "IST0127", "IST0128", "IST0174", "IST0102"
        ]
    );
    assert_eq!(json[0]["level"], "Error");
    assert_eq!(json[0]["origin"], "Gateway shop/shop-gateway");
    assert_eq!(json[0]["reference"], "conflicts/policies.yaml:24");
    assert_eq!(
        json[0]["documentationUrl"],
        "https://istio.io/latest/docs/reference/config/analysis/ist0101/"
    );
    assert!(
        json[2].get("documentationUrl").is_none(),
        "MW codes are Meshward's"
    );
}

#[test]
fn analyze_reports_invalid_documents_and_analyzes_the_rest() {
    let out = in_fixtures(&["analyze", "-f", "invalid", "-f", "strict-lab"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out).lines().collect::<Vec<_>>(),
        [
            "Error [IST0106] (PeerAuthentication team-app/typo invalid/peerauthentication-typo.yaml:8) Schema validation error: unknown variant `STRICTT`, expected one of UNSET, DISABLE, PERMISSIVE, STRICT at line 8, column 11"
        ]
    );
}

/// Rows of the pair table, split on runs of 2+ spaces.
fn rows(text: &str, first: &str) -> Vec<Vec<String>> {
    text.lines()
        .skip_while(|l| !l.starts_with(first))
        .take_while(|l| !l.is_empty())
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

#[test]
fn tls_check_strict_lab_flags_the_client_without_sidecar() {
    let out = in_fixtures(&["authn", "tls-check", "-f", "strict-lab"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a CONFLICT exits 1: {}",
        stderr(&out)
    );
    let text = stdout(&out);
    assert_eq!(
        rows(&text, "SERVER"),
        [
            vec!["SERVER", "PORT", "MODE", "SET BY"],
            vec![
                "team-app/httpbin",
                "8080",
                "STRICT",
                "namespace team-app/mutual-tls-auth"
            ],
        ]
    );
    let service = "httpbin-svc.team-app.svc.cluster.local:8080";
    let server = "team-app/httpbin:8080";
    assert_eq!(
        rows(&text, "CLIENT")[1..],
        [
            vec![
                "team-app/client",
                service,
                server,
                "ISTIO_MUTUAL",
                "auto-mTLS",
                "STRICT",
                "OK",
                "mTLS"
            ],
            vec![
                "team-app/naked",
                service,
                server,
                "DISABLE",
                "client has no sidecar",
                "STRICT",
                "CONFLICT",
                "client sends plaintext but server port is STRICT"
            ],
        ]
    );
    assert!(
        text.contains("namespace team-app is STRICT on all 1 sidecar port(s): 1 plaintext client(s) rejected: team-app/naked → httpbin-svc.team-app.svc.cluster.local:8080"),
        "{text}"
    );
}

#[test]
fn tls_check_says_whether_switching_to_strict_is_safe() {
    let out = in_fixtures(&[&["authn", "tls-check"][..], &PERMISSIVE_LAB].concat());
    assert_eq!(
        out.status.code(),
        Some(0),
        "PERMISSIVE accepts both: {}",
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(
        text.contains("safe to switch namespace team-app to STRICT: no — 1 plaintext client(s) (0 of 1 sidecar port(s) STRICT today): team-app/naked → httpbin-svc.team-app.svc.cluster.local:8080"),
        "{text}"
    );
}

#[test]
fn tls_check_json_and_scopes() {
    let out = in_fixtures(&[
        "authn",
        "tls-check",
        "naked.team-app",
        "-f",
        "strict-lab",
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let pairs = json["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 1, "only the pairs of the workload in scope");
    assert_eq!(pairs[0]["client"], "team-app/naked");
    assert_eq!(pairs[0]["originates"], "DISABLE");
    assert_eq!(pairs[0]["serverMode"], "STRICT");
    assert_eq!(pairs[0]["status"], "CONFLICT");

    let out = in_fixtures(&[
        "authn",
        "tls-check",
        "httpbin-svc.team-app",
        "-f",
        "strict-lab",
        "-o",
        "json",
    ]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["pairs"].as_array().unwrap().len(), 2);
    assert_eq!(
        json["readiness"][0]["subject"],
        "service httpbin-svc.team-app.svc.cluster.local"
    );
    assert_eq!(json["readiness"][0]["safe"], false, "naked sends plaintext");

    let out = in_fixtures(&["authn", "tls-check", "nope.team-app", "-f", "strict-lab"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no workload `name.namespace` or service named `nope.team-app`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn tls_check_refuses_invalid_manifests() {
    let out = in_fixtures(&["authn", "tls-check", "-f", "invalid", "-f", "strict-lab"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("invalid/peerauthentication-typo.yaml:8:11"),
        "{err}"
    );
    assert!(err.contains("1 error(s) in the manifests"), "{err}");
    assert_eq!(stdout(&out), "");
}

#[test]
fn analyze_stops_on_a_resource_defined_twice_after_printing_what_it_found() {
    let out = in_fixtures(&[
        "analyze",
        "-f",
        "invalid",
        "-f",
        "strict-lab",
        "-f",
        "strict-lab",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).starts_with("Error [IST0106]"),
        "{}",
        stdout(&out)
    );
    let err = stderr(&out);
    assert!(
        err.contains("cross-resource analysis stopped: Namespace team-app is defined twice"),
        "{err}"
    );
}
