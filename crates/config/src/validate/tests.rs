use crate::diagnostic::Severity;
use crate::parse::{Limits, parse_stream};

fn issues(yaml: &str) -> Vec<(Severity, String, String)> {
    let stream = parse_stream("v.yaml", yaml, &Limits::default());
    stream
        .documents
        .iter()
        .flat_map(|d| d.diagnostics.iter())
        .map(|d| {
            (
                d.severity,
                d.path.clone().unwrap_or_default(),
                d.message.clone(),
            )
        })
        .collect()
}

fn ap(spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: p, namespace: ns}}\nspec: {spec}\n"
    )
}

fn dr(spec: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: r, namespace: ns}}\nspec: {spec}\n"
    )
}

#[test]
fn validation_rules() {
    let cases: Vec<(&str, String, Severity, &str, &str)> = vec![
        (
            "CUSTOM is not supported",
            ap("{action: CUSTOM, provider: {name: x}, rules: [{}]}"),
            Severity::Error,
            "spec.action",
            "not supported",
        ),
        (
            "ipBlocks must be IPs or CIDRs",
            ap("{rules: [{from: [{source: {ipBlocks: ['10.0.0.0/33']}}]}]}"),
            Severity::Error,
            "spec.rules[0].from[0].source.ipBlocks[0]",
            "invalid IP",
        ),
        (
            "serviceAccounts cannot be combined with principals",
            ap("{rules: [{from: [{source: {principals: [a], serviceAccounts: [ns/sa]}}]}]}"),
            Severity::Error,
            "spec.rules[0].from[0].source.serviceAccounts",
            "cannot be set together",
        ),
        (
            "serviceAccounts take no wildcards",
            ap("{rules: [{from: [{source: {serviceAccounts: ['ns/*']}}]}]}"),
            Severity::Error,
            "spec.rules[0].from[0].source.serviceAccounts[0]",
            "without wildcards",
        ),
        (
            "a condition needs values",
            ap("{rules: [{when: [{key: source.ip}]}]}"),
            Severity::Error,
            "spec.rules[0].when[0]",
            "values or notValues",
        ),
        (
            "operation ports are 1-65535",
            ap("{rules: [{to: [{operation: {ports: ['0']}}]}]}"),
            Severity::Error,
            "spec.rules[0].to[0].operation.ports[0]",
            "1-65535",
        ),
        (
            "DENY without rules matches nothing",
            ap("{action: DENY}"),
            Severity::Warning,
            "spec",
            "never matches",
        ),
        (
            "a spiffe:// principal cannot match",
            ap("{rules: [{from: [{source: {principals: ['spiffe://cluster.local/ns/a/sa/b']}}]}]}"),
            Severity::Warning,
            "spec.rules[0].from[0].source.principals[0]",
            "never match",
        ),
        (
            "ISTIO_MUTUAL with certificate fields",
            dr("{host: a, trafficPolicy: {tls: {mode: ISTIO_MUTUAL, caCertificates: /x}}}"),
            Severity::Error,
            "spec.trafficPolicy.tls.caCertificates",
            "cannot be set with mode ISTIO_MUTUAL",
        ),
        (
            "MUTUAL needs a client certificate",
            dr("{host: a, trafficPolicy: {tls: {mode: MUTUAL, privateKey: /k}}}"),
            Severity::Error,
            "spec.trafficPolicy.tls.clientCertificate",
            "client certificate required",
        ),
        (
            "connectionPool is not enforced",
            dr("{host: a, trafficPolicy: {connectionPool: {tcp: {maxConnections: 1}}}}"),
            Severity::Warning,
            "spec.trafficPolicy.connectionPool",
            "not enforced",
        ),
        (
            "tunnel is rejected",
            dr("{host: a, trafficPolicy: {tunnel: {protocol: CONNECT}}}"),
            Severity::Error,
            "spec.trafficPolicy.tunnel",
            "not supported",
        ),
        (
            "duplicate subsets",
            dr("{host: a, subsets: [{name: v1}, {name: v1}]}"),
            Severity::Error,
            "spec.subsets[1].name",
            "duplicate subset",
        ),
    ];
    for (rule, yaml, severity, path, message) in cases {
        let found = issues(&yaml);
        assert!(
            found
                .iter()
                .any(|(s, p, m)| *s == severity && p == path && m.contains(message)),
            "rule: {rule}: got {found:?}"
        );
    }
}

#[test]
fn a_valid_policy_has_no_issue() {
    let yaml = ap(
        "{selector: {matchLabels: {app: a}}, rules: [{from: [{source: {principals: ['cluster.local/ns/a/sa/b'], ipBlocks: ['10.0.0.0/8', '::1']}}], to: [{operation: {ports: ['8080'], methods: [GET]}}]}]}",
    );
    assert_eq!(issues(&yaml), vec![]);
}
