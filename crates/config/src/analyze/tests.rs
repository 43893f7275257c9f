//! Table-driven checks of every analyzer; each case quotes the rule it checks.

use super::{CODES, Finding, analyze, schema_findings};
use crate::parse::{Limits, parse_stream};

/// The STRICT lab: an injected namespace, two meshed workloads, one opted out, one Service.
const LAB: &str = include_str!("../../testdata/strict-lab.yaml");

fn doc(api: &str, kind: &str, ns: &str, name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: {api}\nkind: {kind}\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n"
    )
}

fn pa(ns: &str, name: &str, spec: &str) -> String {
    doc("security.istio.io/v1", "PeerAuthentication", ns, name, spec)
}

fn ap(ns: &str, name: &str, spec: &str) -> String {
    doc(
        "security.istio.io/v1",
        "AuthorizationPolicy",
        ns,
        name,
        spec,
    )
}

fn dr(ns: &str, name: &str, spec: &str) -> String {
    doc("networking.istio.io/v1", "DestinationRule", ns, name, spec)
}

fn findings(yaml: &str) -> Vec<String> {
    let docs = parse_stream("t.yaml", yaml, &Limits::default())
        .into_documents()
        .unwrap_or_else(|e| panic!("{e:?}"));
    analyze(&docs)
        .unwrap()
        .into_iter()
        .map(|f| {
            Finding {
                location: None,
                ..f
            }
            .to_string()
        })
        .collect()
}

const STRICT: &str = "{mtls: {mode: STRICT}}";

#[test]
fn analyzers() {
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "a labelled, consistent lab has nothing to report",
            format!("{LAB}{}", pa("team-app", "mutual-tls-auth", STRICT)),
            vec![],
        ),
        (
            "IST0102: a namespace without istio-injection or istio.io/rev is not enabled",
            format!(
                "{LAB}---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: plain}}\n\
                 ---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: rev, labels: {{istio.io/rev: stable}}}}\n\
                 ---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: off, labels: {{istio-injection: disabled}}}}\n\
                 ---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: istio-system}}\n\
                 ---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: kube-system}}\n"
            ),
            vec![
                "Info [IST0102] (Namespace plain) The namespace is not enabled for Istio injection. Run 'kubectl label namespace plain istio-injection=enabled' to enable it, or 'kubectl label namespace plain istio-injection=disabled' to explicitly mark it as not needing injection.",
            ],
        ),
        (
            "IST0102: Workloads in a namespace no document labels",
            doc(
                "meshward.io/v1alpha1",
                "Workload",
                "shop",
                "web",
                "{sidecar: true}",
            ),
            vec![
                "Info [IST0102] (Namespace shop) The namespace is not enabled for Istio injection. Run 'kubectl label namespace shop istio-injection=enabled' to enable it, or 'kubectl label namespace shop istio-injection=disabled' to explicitly mark it as not needing injection.",
            ],
        ),
        (
            "IST0103: injected namespace, not opted out, but no proxy",
            format!(
                "{LAB}{}",
                doc(
                    "meshward.io/v1alpha1",
                    "Workload",
                    "team-app",
                    "legacy",
                    "{sidecar: false}"
                )
            ),
            vec![
                "Warning [IST0103] (Workload team-app/legacy) The pod team-app/legacy is missing the Istio proxy. Its namespace is enabled for injection but the Workload sets `sidecar: false`: remove it, or label the Workload `sidecar.istio.io/inject: \"false\"` to mark it as not needing a proxy.",
            ],
        ),
        (
            "IST0127: an AuthorizationPolicy selector that matches no workload of its namespace",
            format!(
                "{LAB}{}{}",
                ap(
                    "team-app",
                    "ghost",
                    "{selector: {matchLabels: {app: ghost, tier: x}}}"
                ),
                ap(
                    "team-app",
                    "real",
                    "{selector: {matchLabels: {app: httpbin}}}"
                )
            ),
            vec![
                "Warning [IST0127] (AuthorizationPolicy team-app/ghost) No matching workloads for this resource with the following labels: app=ghost,tier=x",
            ],
        ),
        (
            "IST0127: a root-namespace AuthorizationPolicy selector matches in every namespace",
            format!(
                "{LAB}{}",
                ap(
                    "istio-system",
                    "mesh-wide",
                    "{selector: {matchLabels: {app: httpbin}}}"
                )
            ),
            vec![],
        ),
        (
            "IST0127: a PeerAuthentication selector that matches nothing (root ones are MW0002)",
            format!(
                "{LAB}{}{}",
                pa(
                    "team-app",
                    "ghost",
                    "{selector: {matchLabels: {app: ghost}}, mtls: {mode: STRICT}}"
                ),
                pa(
                    "istio-system",
                    "ignored",
                    "{selector: {matchLabels: {app: ghost}}}"
                )
            ),
            vec![
                "Warning [IST0127] (PeerAuthentication team-app/ghost) No matching workloads for this resource with the following labels: app=ghost",
                "Warning [MW0002] (PeerAuthentication istio-system/ignored) The policy has no effect: a PeerAuthentication with a selector (app=ghost) in the root namespace istio-system is ignored. Move it to the namespace of the workloads it selects.",
            ],
        ),
        (
            "IST0174: a DestinationRule host that names no Service or ServiceEntry host",
            format!(
                "{LAB}{}{}",
                dr("team-app", "typo", "{host: httpbim}"),
                dr("team-app", "ok", "{host: httpbin-svc}")
            ),
            vec![
                "Warning [IST0174] (DestinationRule team-app/typo) The host httpbim defined in the DestinationRule does not match any services in the mesh.",
            ],
        ),
        (
            "IST0101: a Gateway selector that matches no workload, in any namespace",
            format!(
                "{LAB}{}{}",
                doc(
                    "networking.istio.io/v1",
                    "Gateway",
                    "istio-system",
                    "ingress",
                    "{selector: {istio: ingressgateway}, servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: [\"*\"]}]}"
                ),
                doc(
                    "networking.istio.io/v1",
                    "Gateway",
                    "istio-system",
                    "self",
                    "{selector: {app: httpbin}, servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: [\"*\"]}]}"
                )
            ),
            vec![
                "Error [IST0101] (Gateway istio-system/ingress) Referenced selector not found: \"istio=ingressgateway\"",
            ],
        ),
        (
            "IST0101: AuthorizationPolicy source namespaces (exact, prefix*, *suffix) must exist",
            format!(
                "{LAB}{}",
                ap(
                    "team-app",
                    "from-ns",
                    "{rules: [{from: [{source: {namespaces: [team-app, istio-sys*, \"*-app\", fronted]}}, {source: {notNamespaces: [legacy]}}]}]}"
                )
            ),
            vec![
                "Error [IST0101] (AuthorizationPolicy team-app/from-ns) Referenced namespace not found: \"fronted\"",
                "Error [IST0101] (AuthorizationPolicy team-app/from-ns) Referenced namespace not found: \"legacy\"",
            ],
        ),
        (
            "IST0173: a subset whose labels select none of the host's workloads",
            format!(
                "{LAB}{}",
                dr(
                    "team-app",
                    "versions",
                    "{host: httpbin-svc.team-app.svc.cluster.local, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}"
                )
            ),
            vec![
                "Error [IST0173] (DestinationRule team-app/versions) The Subset v2 defined in the DestinationRule does not select any pods. Which may lead to 503 UH (NoHealthyUpstream).",
            ],
        ),
        (
            "IST0128/IST0129: SIMPLE or MUTUAL without caCertificates does not verify the server",
            format!(
                "{LAB}{}{}",
                dr(
                    "team-app",
                    "db-tls",
                    "{host: httpbin-svc, trafficPolicy: {tls: {mode: SIMPLE}, portLevelSettings: [{port: {number: 8080}, tls: {mode: MUTUAL, clientCertificate: /c, privateKey: /k}}]}}"
                ),
                dr(
                    "team-app",
                    "verified",
                    "{host: httpbin-svc, exportTo: [other], trafficPolicy: {tls: {mode: SIMPLE, caCertificates: /ca.pem}}}"
                )
            ),
            vec![
                "Warning [IST0128] (DestinationRule team-app/db-tls) DestinationRule db-tls in namespace team-app has TLS mode set to SIMPLE but no caCertificates are set to validate server identity for host: httpbin-svc",
                "Warning [IST0129] (DestinationRule team-app/db-tls) DestinationRule db-tls in namespace team-app has TLS mode set to MUTUAL but no caCertificates are set to validate server identity for host: httpbin-svc at port number:8080",
            ],
        ),
        (
            "MW0002: only the oldest namespace-wide (or mesh-wide) policy applies",
            format!(
                "{LAB}{}{}{}",
                pa("team-app", "mutual-tls-auth", STRICT),
                pa("team-app", "zz-later", "{mtls: {mode: DISABLE}}"),
                pa("istio-system", "default", STRICT)
            ),
            vec![
                "Warning [MW0002] (PeerAuthentication team-app/zz-later) The policy has no effect: PeerAuthentication team-app/mutual-tls-auth is an older namespace-wide policy and only the oldest one applies.",
            ],
        ),
        (
            "MW0002: a root-namespace PeerAuthentication with a selector is ignored",
            format!(
                "{LAB}{}",
                pa(
                    "istio-system",
                    "sel",
                    "{selector: {matchLabels: {app: httpbin}}, mtls: {mode: DISABLE}}"
                )
            ),
            vec![
                "Warning [MW0002] (PeerAuthentication istio-system/sel) The policy has no effect: a PeerAuthentication with a selector (app=httpbin) in the root namespace istio-system is ignored. Move it to the namespace of the workloads it selects.",
            ],
        ),
    ];
    for (rule, yaml, expected) in cases {
        assert_eq!(findings(&yaml), expected, "{rule}");
    }
}

#[test]
fn mtls_conflicts() {
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "a DR with tls.mode DISABLE toward a STRICT port: the server rejects plaintext",
            format!(
                "{LAB}{}{}",
                pa("team-app", "mutual-tls-auth", STRICT),
                dr(
                    "team-app",
                    "no-tls",
                    "{host: httpbin-svc, trafficPolicy: {tls: {mode: DISABLE}}}"
                )
            ),
            vec![
                "Error [MW0001] (DestinationRule team-app/no-tls) DestinationRule team-app/no-tls sets tls.mode DISABLE for httpbin-svc.team-app.svc.cluster.local:8080, but workload team-app/httpbin port 8080 is STRICT (PeerAuthentication: namespace team-app/mutual-tls-auth): client sends plaintext but server port is STRICT.",
            ],
        ),
        (
            "ISTIO_MUTUAL toward a port a workload-level policy made DISABLE",
            format!(
                "{LAB}{}{}",
                pa(
                    "team-app",
                    "off",
                    "{selector: {matchLabels: {app: httpbin}}, portLevelMtls: {8080: {mode: DISABLE}}}"
                ),
                dr(
                    "team-app",
                    "mtls",
                    "{host: httpbin-svc, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}"
                )
            ),
            vec![
                "Error [MW0001] (DestinationRule team-app/mtls) DestinationRule team-app/mtls sets tls.mode ISTIO_MUTUAL for httpbin-svc.team-app.svc.cluster.local:8080, but workload team-app/httpbin port 8080 is DISABLE (PeerAuthentication: port 8080 of team-app/off): client sends mTLS but server port is DISABLE.",
            ],
        ),
        (
            "a mesh-wide `*.local` rule in the root namespace toward a DISABLE namespace",
            format!(
                "{LAB}{}{}",
                pa("team-app", "off", "{mtls: {mode: DISABLE}}"),
                dr(
                    "istio-system",
                    "default",
                    "{host: \"*.local\", trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}"
                )
            ),
            vec![
                "Error [MW0001] (DestinationRule istio-system/default) DestinationRule istio-system/default sets tls.mode ISTIO_MUTUAL for httpbin-svc.team-app.svc.cluster.local:8080, but workload team-app/httpbin port 8080 is DISABLE (PeerAuthentication: namespace team-app/off): client sends mTLS but server port is DISABLE.",
            ],
        ),
        (
            "subset settings apply to the endpoints the subset selects",
            format!(
                "{LAB}{}{}",
                pa("team-app", "mutual-tls-auth", STRICT),
                dr(
                    "team-app",
                    "v1-plain",
                    "{host: httpbin-svc, subsets: [{name: v1, labels: {version: v1}, trafficPolicy: {tls: {mode: DISABLE}}}]}"
                )
            ),
            vec![
                "Error [MW0001] (DestinationRule team-app/v1-plain) DestinationRule team-app/v1-plain sets tls.mode DISABLE for httpbin-svc.team-app.svc.cluster.local:8080 subset v1, but workload team-app/httpbin port 8080 is STRICT (PeerAuthentication: namespace team-app/mutual-tls-auth): client sends plaintext but server port is STRICT.",
            ],
        ),
        (
            "ISTIO_MUTUAL toward STRICT, and a DR without tls (auto-mTLS), are fine",
            format!(
                "{LAB}{}{}{}",
                pa("team-app", "mutual-tls-auth", STRICT),
                dr(
                    "team-app",
                    "mtls",
                    "{host: httpbin-svc, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}"
                ),
                dr(
                    "istio-system",
                    "lb",
                    "{host: \"*.local\", trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}}"
                )
            ),
            vec![],
        ),
        (
            "only the rule that wins the lookup is blamed: an exact host beats a wildcard",
            format!(
                "{LAB}{}{}{}",
                pa("team-app", "mutual-tls-auth", STRICT),
                dr(
                    "team-app",
                    "mtls",
                    "{host: httpbin-svc, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}"
                ),
                dr(
                    "team-app",
                    "plain",
                    "{host: \"*.team-app.svc.cluster.local\", trafficPolicy: {tls: {mode: DISABLE}}}"
                )
            ),
            vec![],
        ),
    ];
    for (rule, yaml, expected) in cases {
        let got: Vec<String> = findings(&yaml)
            .into_iter()
            .filter(|f| f.contains("[MW0001]"))
            .collect();
        assert_eq!(got, expected, "{rule}");
    }
}

#[test]
fn findings_print_as_istioctl_with_file_and_line() {
    let yaml = format!("{LAB}{}", dr("team-app", "typo", "{host: nowhere}"));
    let docs = parse_stream("lab.yaml", &yaml, &Limits::default())
        .into_documents()
        .unwrap();
    let lines: Vec<String> = analyze(&docs)
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        lines,
        [
            "Warning [IST0174] (DestinationRule team-app/typo lab.yaml:26) The host nowhere defined in the DestinationRule does not match any services in the mesh."
        ]
    );
}

#[test]
fn invalid_documents_are_schema_findings() {
    let yaml = format!(
        "{}{}",
        pa("team-app", "typo", "{mtls: {mode: STRICTT}}"),
        dr(
            "team-app",
            "lb",
            "{host: a, trafficPolicy: {loadBalancer: {simple: PASSTHROUGH}}}"
        )
    );
    let stream = parse_stream("t.yaml", &yaml, &Limits::default());
    let found: Vec<(&str, String)> = schema_findings(&stream)
        .into_iter()
        .map(|f| (f.code, f.origin))
        .collect();
    assert_eq!(
        found,
        [
            ("IST0106", "PeerAuthentication team-app/typo".to_owned()),
            ("IST0106", "DestinationRule team-app/lb".to_owned()),
        ]
    );
}

#[test]
fn every_code_is_documented() {
    let docs = include_str!("../../../../docs/analyze.md");
    for code in CODES {
        assert!(
            docs.contains(&format!("{} {}", code.id, code.name)),
            "docs/analyze.md must document {} {}",
            code.id,
            code.name
        );
    }
}
