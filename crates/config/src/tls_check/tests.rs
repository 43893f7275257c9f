//! Table-driven checks of the mTLS matrix; each case names the Istio rule it checks.

use super::{Scope, Status, fit, tls_check};
use crate::mesh::Mesh;
use crate::parse::{Limits, parse_stream};
use crate::resources::destination_rule::ClientTlsMode;
use crate::resources::peer_authentication::MtlsMode;

/// The STRICT lab (without its PeerAuthentication).
const LAB: &str = include_str!("../../testdata/strict-lab.yaml");

fn mesh(extra: &str) -> Mesh {
    let yaml = format!("{LAB}\n{extra}");
    let docs = parse_stream("t.yaml", &yaml, &Limits::default())
        .into_documents()
        .unwrap_or_else(|e| panic!("{e:?}"));
    Mesh::new(docs).unwrap()
}

fn pa(name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: {name}, namespace: team-app}}\nspec: {spec}\n"
    )
}

fn dr(name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}, namespace: team-app}}\nspec: {spec}\n"
    )
}

#[test]
fn fit_table() {
    use ClientTlsMode::{Disable, IstioMutual, Simple};
    use MtlsMode::{Permissive, Strict};
    let cases = [
        (
            "STRICT: the connection is an mTLS tunnel",
            IstioMutual,
            Some(Strict),
            Status::Ok,
            "mTLS",
        ),
        (
            "STRICT rejects plaintext",
            Disable,
            Some(Strict),
            Status::Conflict,
            "client sends plaintext but server port is STRICT",
        ),
        (
            "STRICT rejects application TLS",
            Simple,
            Some(Strict),
            Status::Conflict,
            "client originates its own TLS (SIMPLE), not mesh mTLS, but server port is STRICT",
        ),
        (
            "PERMISSIVE accepts plaintext",
            Disable,
            Some(Permissive),
            Status::Ok,
            "plaintext",
        ),
        (
            "PERMISSIVE accepts mTLS",
            IstioMutual,
            Some(Permissive),
            Status::Ok,
            "mTLS",
        ),
        (
            "DISABLE answers a handshake with plaintext (istio#32079)",
            IstioMutual,
            Some(MtlsMode::Disable),
            Status::Conflict,
            "client sends mTLS but server port is DISABLE",
        ),
        (
            "no sidecar: nothing terminates mesh mTLS",
            IstioMutual,
            None,
            Status::Conflict,
            "client sends mTLS but the server has no sidecar to terminate it",
        ),
        (
            "no sidecar: plaintext reaches the app",
            Disable,
            None,
            Status::Ok,
            "plaintext",
        ),
        (
            "no sidecar: application TLS reaches the app",
            Simple,
            None,
            Status::Ok,
            "application TLS",
        ),
    ];
    for (rule, client, server, status, reason) in cases {
        let verdict = fit(client, server);
        assert_eq!(
            (verdict.status, verdict.reason.as_str()),
            (status, reason),
            "{rule}"
        );
    }
}

/// (client, originates, by, status) of every pair toward httpbin.
fn pairs(mesh: &Mesh) -> Vec<(String, &'static str, String, Status)> {
    tls_check(mesh, &Scope::All)
        .pairs
        .into_iter()
        .map(|p| (p.client, p.originates.as_str(), p.by, p.verdict.status))
        .collect()
}

/// (client, originates, by, status) as the table expects it.
type Row<'a> = (&'a str, &'a str, &'a str, Status);

#[test]
fn pairs_table() {
    let ok = Status::Ok;
    let conflict = Status::Conflict;
    let cases: Vec<(&str, String, Vec<Row<'_>>)> = vec![
        (
            "STRICT lab: auto-mTLS client fits, a client without sidecar sends plaintext",
            pa("mutual-tls-auth", "{mtls: {mode: STRICT}}"),
            vec![
                ("team-app/client", "ISTIO_MUTUAL", "auto-mTLS", ok),
                (
                    "team-app/naked",
                    "DISABLE",
                    "client has no sidecar",
                    conflict,
                ),
            ],
        ),
        (
            "no policy: PERMISSIVE accepts both",
            String::new(),
            vec![
                ("team-app/client", "ISTIO_MUTUAL", "auto-mTLS", ok),
                ("team-app/naked", "DISABLE", "client has no sidecar", ok),
            ],
        ),
        (
            "any DR trafficPolicy.tls overrides auto-mTLS",
            format!(
                "{}{}",
                pa("mutual-tls-auth", "{mtls: {mode: STRICT}}"),
                dr(
                    "plain",
                    "{host: httpbin-svc, trafficPolicy: {tls: {mode: DISABLE}}}"
                )
            ),
            vec![
                (
                    "team-app/client",
                    "DISABLE",
                    "DestinationRule team-app/plain (TrafficPolicy)",
                    conflict,
                ),
                (
                    "team-app/naked",
                    "DISABLE",
                    "client has no sidecar",
                    conflict,
                ),
            ],
        ),
        (
            "auto-mTLS follows a DISABLE server (plaintext, no conflict)",
            pa("off", "{mtls: {mode: DISABLE}}"),
            vec![
                (
                    "team-app/client",
                    "DISABLE",
                    "auto-mTLS: server PeerAuthentication is DISABLE",
                    ok,
                ),
                ("team-app/naked", "DISABLE", "client has no sidecar", ok),
            ],
        ),
    ];
    for (rule, extra, expected) in cases {
        let expected: Vec<(String, &str, String, Status)> = expected
            .into_iter()
            .map(|(c, m, b, s)| (c.to_owned(), m, b.to_owned(), s))
            .collect();
        assert_eq!(pairs(&mesh(&extra)), expected, "{rule}");
    }
}

#[test]
fn servers_show_mode_and_the_policy_that_set_it() {
    let mesh = mesh(&pa("mutual-tls-auth", "{mtls: {mode: STRICT}}"));
    let report = tls_check(&mesh, &Scope::All);
    let servers: Vec<(String, u16, Option<MtlsMode>, Option<String>)> = report
        .servers
        .iter()
        .map(|s| {
            (
                s.workload.clone(),
                s.port,
                s.mode,
                s.source.as_ref().map(ToString::to_string),
            )
        })
        .collect();
    assert_eq!(
        servers,
        [(
            "team-app/httpbin".to_owned(),
            8080,
            Some(MtlsMode::Strict),
            Some("namespace team-app/mutual-tls-auth".to_owned())
        )]
    );
}

#[test]
fn readiness_names_the_clients_strict_would_cut_off() {
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "PERMISSIVE today: the plaintext client would be rejected under STRICT",
            String::new(),
            vec!["team-app/naked → httpbin-svc.team-app.svc.cluster.local:8080"],
        ),
        (
            "a DR that forces plaintext keeps sending plaintext under STRICT",
            dr(
                "plain",
                "{host: httpbin-svc, workloadSelector: {matchLabels: {app: client}}, trafficPolicy: {tls: {mode: DISABLE}}}",
            ),
            vec![
                "team-app/client → httpbin-svc.team-app.svc.cluster.local:8080",
                "team-app/naked → httpbin-svc.team-app.svc.cluster.local:8080",
            ],
        ),
        (
            "auto-mTLS toward a DISABLE server switches to mTLS once it is STRICT",
            pa("off", "{mtls: {mode: DISABLE}}"),
            vec!["team-app/naked → httpbin-svc.team-app.svc.cluster.local:8080"],
        ),
    ];
    for (rule, extra, expected) in cases {
        let report = tls_check(&mesh(&extra), &Scope::All);
        assert_eq!(report.readiness.len(), 1, "{rule}");
        assert_eq!(report.readiness[0].subject, "namespace team-app", "{rule}");
        assert_eq!(report.readiness[0].plaintext_clients, expected, "{rule}");
        assert_eq!(report.readiness[0].safe, expected.is_empty(), "{rule}");
    }
}

#[test]
fn scopes() {
    let mesh = mesh(&pa("mutual-tls-auth", "{mtls: {mode: STRICT}}"));
    let cases = [
        (
            "name.namespace is a workload",
            "naked.team-app",
            Some(Scope::Workload {
                namespace: "team-app".into(),
                name: "naked".into(),
            }),
            1,
        ),
        (
            "a service name resolves as Kubernetes DNS does",
            "httpbin-svc.team-app",
            Some(Scope::Service {
                fqdn: "httpbin-svc.team-app.svc.cluster.local".into(),
            }),
            2,
        ),
        (
            "a full service name",
            "httpbin-svc.team-app.svc.cluster.local",
            Some(Scope::Service {
                fqdn: "httpbin-svc.team-app.svc.cluster.local".into(),
            }),
            2,
        ),
        ("nothing by that name", "nope.team-app", None, 0),
    ];
    for (rule, target, scope, pairs) in cases {
        let resolved = Scope::resolve(&mesh, target);
        assert_eq!(resolved, scope, "{rule}");
        if let Some(scope) = resolved {
            assert_eq!(tls_check(&mesh, &scope).pairs.len(), pairs, "{rule}");
        }
    }
}

#[test]
fn readiness_is_safe_when_every_client_would_send_mtls() {
    let yaml = "
apiVersion: meshward.io/v1alpha1
kind: Workload
metadata: {name: client, namespace: shop, labels: {app: client}}
spec: {sidecar: true}
---
apiVersion: meshward.io/v1alpha1
kind: Workload
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {sidecar: true, ports: [{port: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {selector: {app: web}, ports: [{port: 8080}]}
";
    let docs = parse_stream("t.yaml", yaml, &Limits::default())
        .into_documents()
        .unwrap();
    let report = tls_check(&Mesh::new(docs).unwrap(), &Scope::All);
    let readiness = &report.readiness[0];
    assert_eq!(
        (
            readiness.subject.as_str(),
            readiness.ports,
            readiness.strict_ports
        ),
        ("namespace shop", 1, 0)
    );
    assert!(
        readiness.safe,
        "auto-mTLS clients keep working under STRICT"
    );
    assert!(readiness.plaintext_clients.is_empty());
}
