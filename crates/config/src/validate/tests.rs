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

fn vs(spec: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: r, namespace: ns}}\nspec: {spec}\n"
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
            "CUSTOM without rules never triggers either way: still unsupported",
            ap("{action: CUSTOM}"),
            Severity::Error,
            "spec.action",
            "not supported",
        ),
        (
            "provider only with CUSTOM",
            ap("{provider: {name: x}, rules: [{}]}"),
            Severity::Error,
            "spec.provider",
            "only be used with action CUSTOM",
        ),
        (
            "istio ValidateIPs: a prefix length is plain digits",
            ap("{rules: [{from: [{source: {notRemoteIpBlocks: ['10.0.0.0/+8']}}]}]}"),
            Severity::Error,
            "spec.rules[0].from[0].source.notRemoteIpBlocks[0]",
            "invalid IP",
        ),
        (
            "istio ValidateIPs: not an address",
            ap("{rules: [{from: [{source: {remoteIpBlocks: ['10.0.0.*']}}]}]}"),
            Severity::Error,
            "spec.rules[0].from[0].source.remoteIpBlocks[0]",
            "invalid IP",
        ),
        (
            "\"`from` must not be empty\"",
            ap("{rules: [{from: []}]}"),
            Severity::Error,
            "spec.rules[0].from",
            "`from` must not be empty",
        ),
        (
            "\"`to` must not be empty\"",
            ap("{rules: [{to: []}]}"),
            Severity::Error,
            "spec.rules[0].to",
            "`to` must not be empty",
        ),
        (
            "\"`from.source` must not be nil\"",
            ap("{rules: [{from: [{}]}]}"),
            Severity::Error,
            "spec.rules[0].from[0].source",
            "must not be empty",
        ),
        (
            "\"`from.source` must not be empty\"",
            ap("{rules: [{from: [{source: {}}]}]}"),
            Severity::Error,
            "spec.rules[0].from[0].source",
            "must not be empty",
        ),
        (
            "\"`to.operation` must not be empty\"",
            ap("{rules: [{to: [{operation: {}}]}]}"),
            Severity::Error,
            "spec.rules[0].to[0].operation",
            "must not be empty",
        ),
        (
            "CheckServiceAccount: at most 16",
            ap(
                "{rules: [{from: [{source: {serviceAccounts: [a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q]}}]}]}",
            ),
            Severity::Error,
            "spec.rules[0].from[0].source.serviceAccounts",
            "at most 16",
        ),
        (
            "CheckServiceAccount: `namespace/serviceAccount` at most",
            ap("{rules: [{from: [{source: {notServiceAccounts: [a/b/c]}}]}]}"),
            Severity::Error,
            "spec.rules[0].from[0].source.notServiceAccounts[0]",
            "must be `namespace/name` or `name`",
        ),
        (
            "CheckServiceAccount: at most 320 characters",
            ap(&format!(
                "{{rules: [{{from: [{{source: {{serviceAccounts: [ns/{}]}}}}]}}]}}",
                "a".repeat(320)
            )),
            Severity::Error,
            "spec.rules[0].from[0].source.serviceAccounts[0]",
            "320 characters",
        ),
        (
            "CheckValidPathTemplate: characters beside an operator in its segment",
            ap("{rules: [{to: [{operation: {paths: ['/foo/{*}.txt']}}]}]}"),
            Severity::Error,
            "spec.rules[0].to[0].operation.paths[0]",
            "invalid or unsupported path",
        ),
        (
            "CheckValidPathTemplate: \"{**} is not the last operator\"",
            ap("{rules: [{to: [{operation: {notPaths: ['/{**}/foo/{*}']}}]}]}"),
            Severity::Error,
            "spec.rules[0].to[0].operation.notPaths[0]",
            "must be the last operator",
        ),
        (
            "CheckValidPathTemplate: `*` outside an operator in a template",
            ap("{rules: [{to: [{operation: {paths: ['/*/baz/{*}']}}]}]}"),
            Severity::Error,
            "spec.rules[0].to[0].operation.paths[0]",
            "not a valid literal",
        ),
        (
            "CheckValidPathTemplate: named variables are not supported",
            ap("{rules: [{to: [{operation: {paths: ['/users/{id}']}}]}]}"),
            Severity::Error,
            "spec.rules[0].to[0].operation.paths[0]",
            "invalid or unsupported path",
        ),
        (
            "istio ValidatePorts on notPorts",
            ap("{rules: [{to: [{operation: {notPorts: ['+80']}}]}]}"),
            Severity::Error,
            "spec.rules[0].to[0].operation.notPorts[0]",
            "1-65535",
        ),
        (
            "\"`key` must not be empty\"",
            ap("{rules: [{when: [{key: '', values: [x]}]}]}"),
            Severity::Error,
            "spec.rules[0].when[0].key",
            "must not be empty",
        ),
        (
            "ValidateAttribute: \"unknown attribute\"",
            ap("{rules: [{when: [{key: source.user, values: [x]}]}]}"),
            Severity::Error,
            "spec.rules[0].when[0].key",
            "unknown attribute: source.user",
        ),
        (
            "ValidateAttribute: destination.namespace",
            ap("{rules: [{when: [{key: destination.namespace, values: [x]}]}]}"),
            Severity::Error,
            "spec.rules[0].when[0].key",
            "replaced by the metadata.namespace",
        ),
        (
            "ValidateAttribute: destination.labels",
            ap("{rules: [{when: [{key: 'destination.labels[app]', values: [x]}]}]}"),
            Severity::Error,
            "spec.rules[0].when[0].key",
            "replaced by the workload selector",
        ),
        (
            "ValidateAttribute: destination.user",
            ap("{rules: [{when: [{key: destination.user, values: [x]}]}]}"),
            Severity::Error,
            "spec.rules[0].when[0].key",
            "only supported in v1alpha1",
        ),
        (
            "experimental.envoy.filters.* reads Envoy metadata Meshward does not have",
            ap("{rules: [{when: [{key: 'experimental.envoy.filters.a.b[c]', values: [x]}]}]}"),
            Severity::Error,
            "spec.rules[0].when[0].key",
            "Meshward does not have",
        ),
        (
            "request.experimental.inline.headers is not supported",
            ap("{rules: [{when: [{key: 'request.experimental.inline.headers[x]', values: [x]}]}]}"),
            Severity::Error,
            "spec.rules[0].when[0].key",
            "use `request.headers[NAME]`",
        ),
        (
            "validateMapKey: request.headers needs a name in brackets",
            ap("{rules: [{when: [{key: request.headers, values: [x]}]}]}"),
            Severity::Error,
            "spec.rules[0].when[0].key",
            "should have format request.headers[NAME]",
        ),
        (
            "validateMapKey: request.auth.claims needs a name in brackets",
            ap("{rules: [{when: [{key: 'request.auth.claims[]', values: [x]}]}]}"),
            Severity::Error,
            "spec.rules[0].when[0].key",
            "should have format request.auth.claims[NAME]",
        ),
        (
            "ValidateAttribute: source.ip values are IPs or CIDRs",
            ap("{rules: [{when: [{key: source.ip, values: [10.0.0.0/8, nope]}]}]}"),
            Severity::Error,
            "spec.rules[0].when[0].values[1]",
            "invalid IP",
        ),
        (
            "ValidateAttribute: notValues too",
            ap("{rules: [{when: [{key: destination.ip, notValues: ['::/129']}]}]}"),
            Severity::Error,
            "spec.rules[0].when[0].notValues[0]",
            "invalid IP",
        ),
        (
            "ValidateAttribute: destination.port",
            ap("{rules: [{when: [{key: destination.port, values: ['65536']}]}]}"),
            Severity::Error,
            "spec.rules[0].when[0].values[0]",
            "1-65535",
        ),
        (
            "ValidateAttribute: source.serviceAccount",
            ap("{rules: [{when: [{key: source.serviceAccount, values: ['ns/*']}]}]}"),
            Severity::Error,
            "spec.rules[0].when[0].values[0]",
            "without wildcards",
        ),
        (
            "CheckEmptyValues in conditions",
            ap("{rules: [{when: [{key: source.namespace, values: ['']}]}]}"),
            Severity::Error,
            "spec.rules[0].when[0].values[0]",
            "empty value",
        ),
        (
            "a spiffe:// principal in a condition cannot match",
            ap(
                "{rules: [{when: [{key: source.principal, values: ['spiffe://cluster.local/ns/a/sa/b']}]}]}",
            ),
            Severity::Warning,
            "spec.rules[0].when[0].values[0]",
            "never match",
        ),
        (
            "a spiffe:// notPrincipal cannot match",
            ap(
                "{rules: [{from: [{source: {notPrincipals: ['spiffe://cluster.local/ns/a/sa/b']}}]}]}",
            ),
            Severity::Warning,
            "spec.rules[0].from[0].source.notPrincipals[0]",
            "never match",
        ),
        (
            "requestPrincipals need a RequestAuthentication, which Meshward does not have",
            ap("{rules: [{from: [{source: {requestPrincipals: ['*']}}]}]}"),
            Severity::Warning,
            "spec.rules[0].from[0].source.requestPrincipals",
            "no RequestAuthentication",
        ),
        (
            "request.auth.* likewise",
            ap("{rules: [{when: [{key: 'request.auth.claims[iss]', values: [x]}]}]}"),
            Severity::Warning,
            "spec.rules[0].when[0]",
            "no RequestAuthentication",
        ),
        (
            "istio: a DENY rule with only HTTP attributes denies all TCP traffic",
            ap("{action: DENY, rules: [{to: [{operation: {methods: [POST]}}]}]}"),
            Severity::Warning,
            "spec.rules[0]",
            "denies all traffic to TCP ports",
        ),
        (
            "... `from` with only requestPrincipals and no `to` as well",
            ap("{action: DENY, rules: [{from: [{source: {notRequestPrincipals: ['*']}}]}]}"),
            Severity::Warning,
            "spec.rules[0]",
            "denies all traffic to TCP ports",
        ),
        (
            "validateWorkloadSelector: no wildcard",
            ap("{selector: {matchLabels: {app: 'web*'}}, rules: [{}]}"),
            Severity::Error,
            "spec.selector.matchLabels",
            "wildcard is not supported in selector",
        ),
        (
            "validateWorkloadSelector: a selector without labels",
            ap("{selector: {}, rules: [{}]}"),
            Severity::Warning,
            "spec.selector",
            "without labels",
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
            "Meshward compat: no Secrets behind credentialName",
            dr("{host: a, trafficPolicy: {tls: {mode: SIMPLE, credentialName: c}}}"),
            Severity::Error,
            "spec.trafficPolicy.tls.credentialName",
            "not supported",
        ),
        (
            "Meshward compat: the server is always verified",
            dr("{host: a, trafficPolicy: {tls: {mode: SIMPLE, insecureSkipVerify: true}}}"),
            Severity::Error,
            "spec.trafficPolicy.tls.insecureSkipVerify",
            "always verifies",
        ),
        (
            "Meshward compat: no CRL checks of external servers",
            dr("{host: a, trafficPolicy: {tls: {mode: SIMPLE, caCrl: /crl.pem}}}"),
            Severity::Error,
            "spec.trafficPolicy.tls.caCrl",
            "not supported",
        ),
        (
            "validateLoadBalancer: simple and consistentHash are exclusive",
            dr(
                "{host: a, trafficPolicy: {loadBalancer: {simple: RANDOM, consistentHash: {useSourceIp: true}}}}",
            ),
            Severity::Error,
            "spec.trafficPolicy.loadBalancer",
            "only one of simple or consistentHash",
        ),
        (
            "Meshward compat: no cookie affinity",
            dr(
                "{host: a, trafficPolicy: {loadBalancer: {consistentHash: {httpCookie: {name: c, ttl: 0s}}}}}",
            ),
            Severity::Error,
            "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie",
            "not supported",
        ),
        (
            "validateConnectionPool: counts are non-negative",
            dr("{host: a, trafficPolicy: {connectionPool: {tcp: {maxConnections: -1}}}}"),
            Severity::Error,
            "spec.trafficPolicy.connectionPool.tcp.maxConnections",
            "must be between 0",
        ),
        (
            "validateConnectionPool: durations are at least 1ms",
            dr("{host: a, trafficPolicy: {connectionPool: {tcp: {connectTimeout: 0s}}}}"),
            Severity::Error,
            "spec.trafficPolicy.connectionPool.tcp.connectTimeout",
            "at least 1ms",
        ),
        (
            "Meshward compat: no maximum connection duration",
            dr("{host: a, trafficPolicy: {connectionPool: {tcp: {maxConnectionDuration: 1h}}}}"),
            Severity::Error,
            "spec.trafficPolicy.connectionPool.tcp.maxConnectionDuration",
            "not supported",
        ),
        (
            "validateConnectionPool: at least one of tcp or http",
            dr("{host: a, trafficPolicy: {connectionPool: {}}}"),
            Severity::Error,
            "spec.trafficPolicy.connectionPool",
            "at least one field",
        ),
        (
            "validateOutlierDetection: percents in [0, 100]",
            dr("{host: a, trafficPolicy: {outlierDetection: {maxEjectionPercent: 101}}}"),
            Severity::Error,
            "spec.trafficPolicy.outlierDetection.maxEjectionPercent",
            "[0, 100]",
        ),
        (
            "per-port settings are validated the same way",
            dr(
                "{host: a, trafficPolicy: {portLevelSettings: [{port: {number: 80}, outlierDetection: {interval: 0ms}}]}}",
            ),
            Severity::Error,
            "spec.trafficPolicy.portLevelSettings[0].outlierDetection.interval",
            "at least 1ms",
        ),
        (
            "tunnel is rejected",
            dr("{host: a, trafficPolicy: {tunnel: {protocol: CONNECT}}}"),
            Severity::Error,
            "spec.trafficPolicy.tunnel",
            "not supported",
        ),
        (
            "validateHTTPRoute: total destination weight must be 100",
            vs(
                "{hosts: [a], http: [{route: [{destination: {host: a, subset: v1}, weight: 50}, {destination: {host: a, subset: v2}, weight: 40}]}]}",
            ),
            Severity::Error,
            "spec.http[0].route",
            "total destination weight 90 != 100",
        ),
        (
            "validateHTTPRewrite: rewrite must specify URI, authority, or URI regex rewrite",
            vs("{hosts: [a], http: [{rewrite: {}, route: [{destination: {host: a}}]}]}"),
            Severity::Error,
            "spec.http[0].rewrite",
            "must specify URI, authority",
        ),
        (
            "Meshward compat: no regex rewrites",
            vs(
                "{hosts: [a], http: [{rewrite: {uriRegexRewrite: {match: a, rewrite: b}}, route: [{destination: {host: a}}]}]}",
            ),
            Severity::Error,
            "spec.http[0].rewrite.uriRegexRewrite",
            "not supported",
        ),
        (
            "Meshward compat: a path rewrite needs a matched prefix, not a regex",
            vs(
                "{hosts: [a], http: [{match: [{uri: {regex: '/a.*'}}], rewrite: {uri: /b}, route: [{destination: {host: a}}]}]}",
            ),
            Severity::Error,
            "spec.http[0].rewrite.uri",
            "regex",
        ),
        (
            "ValidateHTTPHeaderOperationName: destination headers are checked too",
            vs(
                "{hosts: [a], http: [{route: [{destination: {host: a}, headers: {request: {set: {':path': /x}}}}]}]}",
            ),
            Severity::Error,
            "spec.http[0].route[0].headers.request.set",
            "pseudo-headers",
        ),
        (
            "validateHTTPRoute: route and redirect are exclusive",
            vs("{hosts: [a], http: [{redirect: {uri: /b}, route: [{destination: {host: a}}]}]}"),
            Severity::Error,
            "spec.http[0].route",
            "cannot contain both route and redirect",
        ),
        (
            "validateHTTPRedirect: a redirect code is 3xx",
            vs("{hosts: [a], http: [{redirect: {uri: /b, redirectCode: 200}}]}"),
            Severity::Error,
            "spec.http[0].redirect.redirectCode",
            "not a redirect code",
        ),
        (
            "validateHTTPDirectResponse: status in [200, 599]",
            vs("{hosts: [a], http: [{directResponse: {status: 100}}]}"),
            Severity::Error,
            "spec.http[0].directResponse.status",
            "[200, 599]",
        ),
        (
            "HTTPMatchRequest.queryParams: prefix matching is not supported",
            vs(
                "{hosts: [a], http: [{match: [{queryParams: {v: {prefix: '1'}}}], route: [{destination: {host: a}}]}]}",
            ),
            Severity::Error,
            "spec.http[0].match[0].queryParams.v",
            "prefix matching is not supported",
        ),
        (
            "ValidateHTTPHeaderOperationName: the Host is rewrite.authority's",
            vs(
                "{hosts: [a], http: [{headers: {request: {set: {Host: b}}}, route: [{destination: {host: a}}]}]}",
            ),
            Severity::Error,
            "spec.http[0].headers.request.set",
            "rewrite.authority",
        ),
        (
            "ValidateHTTPHeaderOperationName: no pseudo-headers",
            vs(
                "{hosts: [a], http: [{headers: {response: {remove: [':status']}}, route: [{destination: {host: a}}]}]}",
            ),
            Severity::Error,
            "spec.http[0].headers.response.remove",
            "pseudo-headers",
        ),
        (
            "ValidateHTTPHeaderOperationName: header names are tokens",
            vs(
                "{hosts: [a], http: [{headers: {request: {add: {'bad name': x}}}, route: [{destination: {host: a}}]}]}",
            ),
            Severity::Error,
            "spec.http[0].headers.request.add",
            "not a valid header name",
        ),
        (
            "validateHTTPRoute: a route needs a destination",
            vs("{hosts: [a], http: [{match: [{uri: {prefix: /x}}]}]}"),
            Severity::Error,
            "spec.http[0].route",
            "route is required",
        ),
        (
            "Meshward compat: no gateways",
            vs(
                "{hosts: [a], gateways: [istio-system/gw], http: [{route: [{destination: {host: a}}]}]}",
            ),
            Severity::Error,
            "spec.gateways[0]",
            "not supported",
        ),
        (
            "invalid regex",
            vs(
                "{hosts: [a], http: [{match: [{uri: {regex: '(unclosed'}}], route: [{destination: {host: a}}]}]}",
            ),
            Severity::Error,
            "spec.http[0].match[0].uri.regex",
            "invalid regex",
        ),
        (
            "validateHTTPRetry: retryOn conditions",
            vs(
                "{hosts: [a], http: [{route: [{destination: {host: a}}], retries: {attempts: 2, retryOn: 'bogus'}}]}",
            ),
            Severity::Error,
            "spec.http[0].retries.retryOn",
            "not supported",
        ),
        (
            "validateHTTPFaultInjectionAbort: status in 200..599",
            vs(
                "{hosts: [a], http: [{route: [{destination: {host: a}}], fault: {abort: {httpStatus: 700}}}]}",
            ),
            Severity::Error,
            "spec.http[0].fault.abort.httpStatus",
            "invalid http status",
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
    let specs = [
        "{selector: {matchLabels: {app: a}}, rules: [{from: [{source: {principals: ['cluster.local/ns/a/sa/b'], ipBlocks: ['10.0.0.0/8', '::1']}}], to: [{operation: {ports: ['8080'], methods: [GET]}}]}]}",
        "{}",
        "{rules: [{}]}",
        "{action: DENY, rules: [{to: [{operation: {ports: ['8080'], methods: [POST], paths: ['/api/{*}/items', '/static/{**}', '/x/{**}/end', '/{*}/', '/admin*', '*.png']}}]}]}",
        "{action: DENY, rules: [{from: [{source: {notPrincipals: ['*']}}]}]}",
        "{rules: [{from: [{source: {serviceAccounts: [front/web, api], notIpBlocks: ['10.0.0.1/24']}}]}]}",
        "{rules: [{when: [{key: source.ip, values: ['10.0.0.0/8']}, {key: remote.ip, notValues: ['2001:db8::/32']}, {key: destination.ip, values: [10.0.1.1]}, {key: destination.port, values: ['8080']}, {key: connection.sni, values: ['*.local']}, {key: source.namespace, values: [a]}, {key: source.principal, notValues: ['*']}, {key: source.serviceAccount, values: [a/b]}, {key: 'request.headers[x-user]', values: [alice]}]}]}",
        "{action: AUDIT, rules: [{to: [{operation: {hosts: ['*.shop', 'web.shop:*'], notHosts: [admin.shop]}}]}]}",
    ];
    for spec in specs {
        assert_eq!(issues(&ap(spec)), vec![], "{spec}");
    }
    let routes = "{hosts: [a], http: [{match: [{uri: {prefix: /api/}}], rewrite: {uri: /v2/, authority: b.example}, headers: {request: {set: {x-team: blue}, add: {x-trace: '1'}, remove: [cookie]}, response: {set: {x-served-by: mesh}}}, route: [{destination: {host: a}}]}]}";
    assert_eq!(issues(&vs(routes)), vec![], "{routes}");
    let matches = "{hosts: [a], http: [{match: [{scheme: {exact: http}, authority: {prefix: a}, queryParams: {debug: {exact: ''}, v: {regex: '[0-9]+'}}, sourceNamespace: front}], route: [{destination: {host: a}}]}], tcp: [{match: [{sourceNamespace: front}], route: [{destination: {host: a}}]}]}";
    assert_eq!(issues(&vs(matches)), vec![], "{matches}");
    let hashed = "{host: a, trafficPolicy: {loadBalancer: {consistentHash: {httpQueryParameterName: user}}}}";
    assert_eq!(issues(&dr(hashed)), vec![], "{hashed}");
    let local = "{hosts: [a], http: [{match: [{uri: {exact: /old}}], redirect: {uri: /new, authority: b, derivePort: FROM_REQUEST_PORT}}, {directResponse: {status: 503, body: {bytes: ZG93bg==}}}]}";
    assert_eq!(issues(&vs(local)), vec![], "{local}");
    // connectionPool.tcp.idleTimeout: "If set to 0s, the timeout will be disabled."
    for idle in ["0s", "1s", "1h"] {
        let spec = format!(
            "{{host: a, trafficPolicy: {{connectionPool: {{tcp: {{idleTimeout: {idle}}}}}}}}}"
        );
        assert_eq!(issues(&dr(&spec)), vec![], "{spec}");
    }
}
