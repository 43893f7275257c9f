//! One table per field family of istio/api `security/v1beta1/authorization_policy.proto`; every
//! case quotes the documented rule it checks. Requests go to `shop/web` (`10.0.1.1:8080`) from
//! `10.0.0.5`, over mTLS ([`peer`]) or plaintext ([`tcp`]).

use super::{Case, ap, decide, http, ip, peer, run, tcp};
use crate::authz::{RequestAttrs, explain};

const ALLOWED: &str = "allowed by ALLOW policy shop/p rule 0";
const NONE: &str = "allow policies exist, but none allowed";
const PLAIN: &str = "allow policies exist, but none allowed (plaintext connection: principals and namespaces never match)";
const DENIED: &str = "denied by DENY policy shop/p rule 0";
const PASS: &str = "no ALLOW policies: allowed";

/// An ALLOW policy `shop/p` with these rules (YAML flow, comma-separated).
fn allow(rules: &str) -> String {
    ap("p", "shop", &format!("{{rules: [{rules}]}}"))
}

/// A DENY policy `shop/p` with these rules.
fn deny(rules: &str) -> String {
    ap("p", "shop", &format!("{{action: DENY, rules: [{rules}]}}"))
}

/// A rule with one source.
fn from(source: &str) -> String {
    format!("{{from: [{{source: {{{source}}}}}]}}")
}

/// A rule with one operation.
fn to(operation: &str) -> String {
    format!("{{to: [{{operation: {{{operation}}}}}]}}")
}

/// A rule with one condition; `values` is e.g. `values: ['a']` or `notValues: ['b']`.
fn when(key: &str, values: &str) -> String {
    format!("{{when: [{{key: '{key}', {values}}}]}}")
}

/// mTLS from a SPIFFE ID in any trust domain.
fn spiffe(id: &str) -> RequestAttrs {
    tcp().with_peer(id)
}

/// Plaintext TCP from `source` to 10.0.1.1:8080.
fn from_ip(source: &str) -> RequestAttrs {
    RequestAttrs::new(ip(source), ip("10.0.1.1"), 8080)
}

/// mTLS `GET path` from `front/front`.
fn get(path: &str) -> RequestAttrs {
    http(peer("front", "front"), "GET", path)
}

/// `GET /` from `front/front` with this Host.
fn host(value: &str) -> RequestAttrs {
    let mut attrs = get("/");
    if let Some(h) = attrs.http.as_mut() {
        value.clone_into(&mut h.host);
    }
    attrs
}

/// `GET /` from `front/front` with these headers.
fn headers(list: &[(&str, &str)]) -> RequestAttrs {
    let mut attrs = get("/");
    if let Some(h) = attrs.http.as_mut() {
        h.headers = list
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
    }
    attrs
}

/// The attributes on another destination port.
fn port(mut attrs: RequestAttrs, port: u16) -> RequestAttrs {
    attrs.destination_port = port;
    attrs
}

fn mesh_config(spec: &str) -> String {
    format!(
        "---\napiVersion: meshward.io/v1alpha1\nkind: MeshConfig\nmetadata: {{name: mesh}}\nspec: {spec}\n"
    )
}

#[test]
fn source_principals() {
    let p = |values: &str| allow(&from(&format!("principals: [{values}]")));
    let not = |values: &str| allow(&from(&format!("notPrincipals: [{values}]")));
    let cases: Vec<Case<'_>> = vec![
        (
            "principals: \"A list of peer identities derived from the peer certificate ... <TRUST_DOMAIN>/ns/<NAMESPACE>/sa/<SERVICE_ACCOUNT>\"",
            p("'cluster.local/ns/front/sa/front'"),
            peer("front", "front"),
            true,
            ALLOWED,
        ),
        (
            "principals: exact match \"abc\" matches only \"abc\"",
            p("'cluster.local/ns/front/sa/front'"),
            peer("front", "other"),
            false,
            NONE,
        ),
        (
            "principals: prefix match \"abc*\" matches \"abc\" and \"abcd\"",
            p("'cluster.local/ns/front/*'"),
            peer("front", "anyone"),
            true,
            ALLOWED,
        ),
        (
            "principals: prefix match does not match another prefix",
            p("'cluster.local/ns/front/*'"),
            peer("back", "anyone"),
            false,
            NONE,
        ),
        (
            "principals: suffix match \"*abc\" matches \"abc\" and \"xabc\"",
            p("'*/sa/front'"),
            peer("elsewhere", "front"),
            true,
            ALLOWED,
        ),
        (
            "principals: presence match \"*\" matches when the value is not empty (any mTLS peer)",
            p("'*'"),
            peer("any", "one"),
            true,
            ALLOWED,
        ),
        (
            "principals: \"This field requires mTLS enabled\": plaintext has no principal, even `*` does not match",
            p("'*'"),
            tcp(),
            false,
            PLAIN,
        ),
        (
            "principals are matched without `spiffe://`: a value with the scheme never matches",
            p("'spiffe://cluster.local/ns/front/sa/front'"),
            peer("front", "front"),
            false,
            NONE,
        ),
        (
            "notPrincipals: \"A list of negative match of peer identities\"",
            not("'cluster.local/ns/evil/sa/x'"),
            peer("evil", "x"),
            false,
            NONE,
        ),
        (
            "notPrincipals: another peer is not excluded",
            not("'cluster.local/ns/evil/sa/x'"),
            peer("front", "front"),
            true,
            ALLOWED,
        ),
        (
            "notPrincipals never match plaintext, so an ALLOW on notPrincipals admits plaintext",
            not("'cluster.local/ns/evil/sa/x'"),
            tcp(),
            true,
            ALLOWED,
        ),
        (
            "security policy examples \"require mTLS\": DENY with notPrincipals: [\"*\"] denies plaintext",
            deny(&from("notPrincipals: ['*']")),
            tcp(),
            false,
            DENIED,
        ),
        (
            "... and lets any mTLS peer through",
            deny(&from("notPrincipals: ['*']")),
            peer("front", "front"),
            true,
            PASS,
        ),
    ];
    run(cases);
}

#[test]
fn source_namespaces() {
    let ns = |values: &str| allow(&from(&format!("namespaces: [{values}]")));
    let not = |values: &str| allow(&from(&format!("notNamespaces: [{values}]")));
    run(vec![
        (
            "namespaces: \"A list of namespaces derived from the peer certificate\"",
            ns("front"),
            peer("front", "a"),
            true,
            ALLOWED,
        ),
        (
            "namespaces: another namespace does not match",
            ns("front"),
            peer("back", "a"),
            false,
            NONE,
        ),
        (
            "namespaces: prefix match \"abc*\"",
            ns("'fr*'"),
            peer("front", "a"),
            true,
            ALLOWED,
        ),
        (
            "namespaces: suffix match \"*abc\"",
            ns("'*ont'"),
            peer("front", "a"),
            true,
            ALLOWED,
        ),
        (
            "namespaces: \"This field requires mTLS enabled\"",
            ns("front"),
            tcp(),
            false,
            PLAIN,
        ),
        (
            "notNamespaces: \"A list of negative match of namespaces\"",
            not("evil"),
            peer("evil", "a"),
            false,
            NONE,
        ),
        (
            "ISTIO-SECURITY-2021-004: notNamespaces in an ALLOW policy allows plaintext (no namespace to exclude)",
            not("evil"),
            tcp(),
            true,
            ALLOWED,
        ),
    ]);
}

#[test]
fn source_service_accounts() {
    let sa = |values: &str| allow(&from(&format!("serviceAccounts: [{values}]")));
    run(vec![
        (
            "serviceAccounts: \"namespace/serviceAccount\" names the peer's Kubernetes service account",
            sa("front/front-sa"),
            peer("front", "front-sa"),
            true,
            ALLOWED,
        ),
        (
            "serviceAccounts: \"serviceAccount\" alone is in the policy's namespace",
            sa("web-sa"),
            peer("shop", "web-sa"),
            true,
            ALLOWED,
        ),
        (
            "serviceAccounts: the same name in another namespace does not match",
            sa("web-sa"),
            peer("front", "web-sa"),
            false,
            NONE,
        ),
        (
            "serviceAccounts: no partial namespace match (`xfront` is not `front`)",
            sa("front/front-sa"),
            peer("xfront", "front-sa"),
            false,
            NONE,
        ),
        (
            "serviceAccounts: no partial account match (`front-sa-2` is not `front-sa`)",
            sa("front/front-sa"),
            peer("front", "front-sa-2"),
            false,
            NONE,
        ),
        (
            "serviceAccounts name no trust domain: istio serviceAccountRegex `spiffe://.+/ns/<ns>/sa/<sa>` matches any",
            sa("front/front-sa"),
            spiffe("spiffe://other.example/ns/front/sa/front-sa"),
            true,
            ALLOWED,
        ),
        (
            "serviceAccounts compile into principals, which require mTLS",
            sa("front/front-sa"),
            tcp(),
            false,
            PLAIN,
        ),
        (
            "notServiceAccounts: the listed account is excluded",
            allow(&from("notServiceAccounts: [front/front-sa]")),
            peer("front", "front-sa"),
            false,
            NONE,
        ),
        (
            "notServiceAccounts: another account passes",
            allow(&from("notServiceAccounts: [front/front-sa]")),
            peer("front", "other"),
            true,
            ALLOWED,
        ),
    ]);
}

#[test]
fn request_principals_without_jwt() {
    // Meshward has no RequestAuthentication: a request never carries a validated JWT.
    run(vec![
        (
            "requestPrincipals: \"This field requires request authentication enabled\": without a JWT nothing matches",
            allow(&from("requestPrincipals: ['*']")),
            get("/"),
            false,
            NONE,
        ),
        (
            "security policy examples: DENY notRequestPrincipals: [\"*\"] denies requests without a valid JWT",
            deny(&from("notRequestPrincipals: ['*']")),
            get("/"),
            false,
            DENIED,
        ),
        (
            "requestPrincipals are HTTP-only: in an ALLOW rule on TCP the rule is ignored",
            allow(&from("notRequestPrincipals: ['*']")),
            peer("front", "front"),
            false,
            NONE,
        ),
        (
            "requestPrincipals on TCP in a DENY rule are treated as matched",
            deny(&from("requestPrincipals: ['issuer/subject']")),
            peer("front", "front"),
            false,
            DENIED,
        ),
    ]);
}

#[test]
fn source_ip_blocks() {
    let mut remote = from_ip("10.0.0.5");
    remote.remote_ip = Some(ip("203.0.113.7"));
    let v6 = || from_ip("2001:db8::5");
    run(vec![
        (
            "ipBlocks: \"populated from the source address of the IP packet ... CIDR (e.g. 203.0.113.0/24)\"",
            allow(&from("ipBlocks: [10.0.0.0/24]")),
            from_ip("10.0.0.5"),
            true,
            ALLOWED,
        ),
        (
            "ipBlocks: \"Single IP (e.g. 203.0.113.4)\"",
            allow(&from("ipBlocks: [10.0.0.5]")),
            from_ip("10.0.0.5"),
            true,
            ALLOWED,
        ),
        (
            "ipBlocks: an address outside the block does not match",
            allow(&from("ipBlocks: [10.0.0.0/24]")),
            from_ip("10.0.9.5"),
            false,
            NONE,
        ),
        (
            "ipBlocks need no mTLS: they match plaintext",
            allow(&from("ipBlocks: [10.0.0.0/8]")),
            tcp(),
            true,
            ALLOWED,
        ),
        (
            "ipBlocks: IPv6 CIDR",
            allow(&from("ipBlocks: ['2001:db8::/64']")),
            v6(),
            true,
            ALLOWED,
        ),
        (
            "ipBlocks: an IPv4 block never holds an IPv6 source",
            allow(&from("ipBlocks: [0.0.0.0/0]")),
            v6(),
            false,
            NONE,
        ),
        (
            "notIpBlocks: \"A list of negative match of IP blocks\"",
            allow(&from("notIpBlocks: [10.0.0.5]")),
            from_ip("10.0.0.5"),
            false,
            NONE,
        ),
        (
            "notIpBlocks: other addresses pass",
            allow(&from("notIpBlocks: [10.0.0.5]")),
            from_ip("10.0.0.6"),
            true,
            ALLOWED,
        ),
        (
            "remoteIpBlocks: \"populated from X-Forwarded-For header or proxy protocol\"",
            allow(&from("remoteIpBlocks: [203.0.113.0/24]")),
            remote.clone(),
            true,
            ALLOWED,
        ),
        (
            "ipBlocks is the packet's source, not the original client",
            allow(&from("ipBlocks: [203.0.113.0/24]")),
            remote.clone(),
            false,
            NONE,
        ),
        (
            "remoteIpBlocks: without a forwarded address the remote address is the peer's",
            allow(&from("remoteIpBlocks: [10.0.0.0/24]")),
            from_ip("10.0.0.5"),
            true,
            ALLOWED,
        ),
        (
            "notRemoteIpBlocks: \"A list of negative match of remote IP blocks\"",
            allow(&from("notRemoteIpBlocks: [203.0.113.7]")),
            remote,
            false,
            NONE,
        ),
    ]);
}

#[test]
fn operation_hosts() {
    let hosts = |values: &str| allow(&to(&format!("hosts: [{values}]")));
    let not = |values: &str| allow(&to(&format!("notHosts: [{values}]")));
    run(vec![
        (
            "hosts: \"A list of hosts as specified in the HTTP request\"",
            hosts("web.shop"),
            host("web.shop"),
            true,
            ALLOWED,
        ),
        (
            "hosts: \"The match is case-insensitive\"",
            hosts("WEB.Shop"),
            host("web.SHOP"),
            true,
            ALLOWED,
        ),
        (
            "hosts: the Host header as sent, port included (security best practices: list `host:*` too)",
            hosts("web.shop"),
            host("web.shop:8080"),
            false,
            NONE,
        ),
        (
            "hosts: prefix match \"abc*\" covers the port",
            hosts("'web.shop:*'"),
            host("web.shop:8080"),
            true,
            ALLOWED,
        ),
        (
            "hosts: suffix match (\"the host has suffix .example.com\")",
            hosts("'*.shop'"),
            host("api.SHOP"),
            true,
            ALLOWED,
        ),
        (
            "hosts: presence \"*\" does not match an empty Host",
            hosts("'*'"),
            host(""),
            false,
            NONE,
        ),
        (
            "an unset field matches anything, an empty value included",
            allow(&to("methods: [GET]")),
            host(""),
            true,
            ALLOWED,
        ),
        (
            "notHosts: \"A list of negative match of hosts ... The match is case-insensitive\"",
            not("WEB.SHOP"),
            host("web.shop"),
            false,
            NONE,
        ),
        (
            "notHosts: other hosts pass",
            not("web.shop"),
            host("api.shop"),
            true,
            ALLOWED,
        ),
        (
            "hosts: \"Must be used only with HTTP\": an ALLOW rule with hosts ignores TCP",
            hosts("web.shop"),
            peer("front", "front"),
            false,
            NONE,
        ),
    ]);
}

#[test]
fn operation_ports() {
    run(vec![
        (
            "ports: \"A list of ports as specified in the connection\"",
            allow(&to("ports: ['8080']")),
            tcp(),
            true,
            ALLOWED,
        ),
        (
            "ports: another port does not match",
            allow(&to("ports: ['9090']")),
            tcp(),
            false,
            NONE,
        ),
        (
            "ports: values in one field are ORed",
            allow(&to("ports: ['9090', '8080']")),
            tcp(),
            true,
            ALLOWED,
        ),
        (
            "ports apply to HTTP too",
            allow(&to("ports: ['8080']")),
            get("/"),
            true,
            ALLOWED,
        ),
        (
            "notPorts: \"A list of negative match of ports\"",
            allow(&to("notPorts: ['8080']")),
            tcp(),
            false,
            NONE,
        ),
        (
            "notPorts: other ports pass",
            allow(&to("notPorts: ['8080']")),
            port(tcp(), 9090),
            true,
            ALLOWED,
        ),
    ]);
}

#[test]
fn operation_methods() {
    let grpc = || http(peer("front", "front"), "POST", "/shop.Cart/Add");
    run(vec![
        (
            "methods: \"A list of methods as specified in the HTTP request\"",
            allow(&to("methods: [GET, HEAD]")),
            get("/"),
            true,
            ALLOWED,
        ),
        (
            "methods: a method not listed does not match",
            allow(&to("methods: [GET, HEAD]")),
            http(peer("front", "front"), "DELETE", "/"),
            false,
            NONE,
        ),
        (
            "methods: exact match is case-sensitive (only hosts are case-insensitive)",
            allow(&to("methods: [get]")),
            get("/"),
            false,
            NONE,
        ),
        (
            "notMethods: \"A list of negative match of methods\"",
            allow(&to("notMethods: [DELETE]")),
            http(peer("front", "front"), "DELETE", "/"),
            false,
            NONE,
        ),
        (
            "notMethods: other methods pass",
            allow(&to("notMethods: [DELETE]")),
            get("/"),
            true,
            ALLOWED,
        ),
        (
            "methods: \"For gRPC service, this will always be POST\"; paths: \"/package.service/method\"",
            allow(&to("methods: [POST], paths: [/shop.Cart/Add]")),
            grpc(),
            true,
            ALLOWED,
        ),
    ]);
}

#[test]
fn operation_paths() {
    let paths = |values: &str| allow(&to(&format!("paths: [{values}]")));
    let not = |values: &str| allow(&to(&format!("notPaths: [{values}]")));
    run(vec![
        (
            "paths: exact match \"abc\"",
            paths("/info"),
            get("/info"),
            true,
            ALLOWED,
        ),
        (
            "paths: exact match does not match a longer path",
            paths("/info"),
            get("/info/x"),
            false,
            NONE,
        ),
        (
            "paths: prefix match \"abc*\" matches \"abc\" and \"abcd\"",
            paths("'/info*'"),
            get("/info"),
            true,
            ALLOWED,
        ),
        (
            "paths: prefix match, longer path",
            paths("'/info*'"),
            get("/information/x"),
            true,
            ALLOWED,
        ),
        (
            "paths: suffix match \"*abc\"",
            paths("'*.html'"),
            get("/a/b.html"),
            true,
            ALLOWED,
        ),
        (
            "paths: presence match \"*\"",
            paths("'*'"),
            get("/"),
            true,
            ALLOWED,
        ),
        (
            "notPaths: \"A list of negative match of paths\" (\"the path doesn't have prefix /admin\")",
            not("'/admin*'"),
            get("/admin/users"),
            false,
            NONE,
        ),
        (
            "notPaths: other paths pass",
            not("'/admin*'"),
            get("/shop"),
            true,
            ALLOWED,
        ),
        (
            "paths: \"{*} matches a single glob that cannot extend beyond a path segment\"",
            paths("'/api/{*}/items'"),
            get("/api/42/items"),
            true,
            ALLOWED,
        ),
        (
            "paths: {*} does not span two segments",
            paths("'/api/{*}/items'"),
            get("/api/4/2/items"),
            false,
            NONE,
        ),
        (
            "paths: {*} matches at least one character",
            paths("'/api/{*}/items'"),
            get("/api//items"),
            false,
            NONE,
        ),
        (
            "paths: \"{**} matches zero or more globs\" (several segments)",
            paths("'/api/{**}'"),
            get("/api/v1/items/42"),
            true,
            ALLOWED,
        ),
        (
            "paths: {**} matches zero characters",
            paths("'/api/{**}'"),
            get("/api/"),
            true,
            ALLOWED,
        ),
        (
            "paths: the `/` before {**} is part of the template",
            paths("'/api/{**}'"),
            get("/api"),
            false,
            NONE,
        ),
        (
            "paths: literals may follow the last {**} (\"/foo/{*}/bar/{**}\" style)",
            paths("'/foo/{*}/bar/{**}/end'"),
            get("/foo/x/bar/a/b/end"),
            true,
            ALLOWED,
        ),
        (
            "notPaths take templates too",
            not("'/admin/{**}'"),
            get("/admin/a/b"),
            false,
            NONE,
        ),
    ]);
}

#[test]
fn conditions() {
    let cond = |key: &str, values: &str| allow(&when(key, values));
    let mut remote = tcp();
    remote.remote_ip = Some(ip("203.0.113.7"));
    let mut sni = peer("front", "front");
    sni.sni = Some("web.shop.svc.cluster.local".to_owned());
    run(vec![
        (
            "source.principal: \"Source identity ... requires mTLS\"",
            cond(
                "source.principal",
                "values: ['cluster.local/ns/front/sa/front']",
            ),
            peer("front", "front"),
            true,
            ALLOWED,
        ),
        (
            "source.principal on plaintext never matches",
            cond("source.principal", "values: ['*']"),
            tcp(),
            false,
            PLAIN,
        ),
        (
            "source.principal notValues",
            cond(
                "source.principal",
                "notValues: ['cluster.local/ns/front/*']",
            ),
            peer("front", "front"),
            false,
            NONE,
        ),
        (
            "source.namespace: \"Source workload instance namespace ... requires mTLS\"",
            cond("source.namespace", "values: [front]"),
            peer("front", "x"),
            true,
            ALLOWED,
        ),
        (
            "source.namespace on plaintext never matches",
            cond("source.namespace", "values: [front]"),
            tcp(),
            false,
            PLAIN,
        ),
        (
            "source.namespace notValues",
            cond("source.namespace", "notValues: [front]"),
            peer("front", "x"),
            false,
            NONE,
        ),
        (
            "source.serviceAccount: `namespace/serviceAccount`",
            cond("source.serviceAccount", "values: [front/front]"),
            peer("front", "front"),
            true,
            ALLOWED,
        ),
        (
            "source.ip: \"Source workload instance IP address, supports single IP or CIDR\"",
            cond("source.ip", "values: [10.0.0.0/16]"),
            tcp(),
            true,
            ALLOWED,
        ),
        (
            "source.ip notValues",
            cond("source.ip", "notValues: [10.0.0.5]"),
            tcp(),
            false,
            NONE,
        ),
        (
            "remote.ip: \"Original client IP address as determined by X-Forwarded-For or Proxy Protocol\"",
            cond("remote.ip", "values: [203.0.113.7]"),
            remote.clone(),
            true,
            ALLOWED,
        ),
        (
            "remote.ip is not source.ip",
            cond("source.ip", "values: [203.0.113.7]"),
            remote,
            false,
            NONE,
        ),
        (
            "destination.ip: \"Destination workload instance IP address\"",
            cond("destination.ip", "values: [10.0.1.1]"),
            tcp(),
            true,
            ALLOWED,
        ),
        (
            "destination.ip: another address",
            cond("destination.ip", "values: [10.0.2.0/24]"),
            tcp(),
            false,
            NONE,
        ),
        (
            "destination.port: \"Destination workload instance port, must be in the range [0, 65535]\"",
            cond("destination.port", "values: ['8080']"),
            tcp(),
            true,
            ALLOWED,
        ),
        (
            "destination.port notValues",
            cond("destination.port", "notValues: ['8080']"),
            tcp(),
            false,
            NONE,
        ),
        (
            "connection.sni: \"The server name indication\"",
            cond("connection.sni", "values: ['*.cluster.local']"),
            sni,
            true,
            ALLOWED,
        ),
        (
            "connection.sni: no SNI sent, no match",
            cond("connection.sni", "values: ['*.cluster.local']"),
            peer("front", "front"),
            false,
            NONE,
        ),
        (
            "connection.sni notValues: no SNI sent passes",
            cond("connection.sni", "notValues: [evil.example]"),
            peer("front", "front"),
            true,
            ALLOWED,
        ),
    ]);
}

#[test]
fn header_and_jwt_conditions() {
    let header = |values: &str| allow(&when("request.headers[x-user]", values));
    run(vec![
        (
            "request.headers: \"HTTP request headers. The actual header name is surrounded by brackets\"",
            header("values: [alice]"),
            headers(&[("x-user", "alice")]),
            true,
            ALLOWED,
        ),
        (
            "request.headers: header names are case-insensitive",
            header("values: [alice]"),
            headers(&[("X-User", "alice")]),
            true,
            ALLOWED,
        ),
        (
            "request.headers: values are case-sensitive",
            header("values: [alice]"),
            headers(&[("x-user", "Alice")]),
            false,
            NONE,
        ),
        (
            "request.headers: an absent header does not match",
            header("values: [alice]"),
            headers(&[]),
            false,
            NONE,
        ),
        (
            "request.headers: prefix match",
            header("values: ['ali*']"),
            headers(&[("x-user", "alice")]),
            true,
            ALLOWED,
        ),
        (
            "request.headers: presence \"*\" matches any non-empty value",
            header("values: ['*']"),
            headers(&[("x-user", "bob")]),
            true,
            ALLOWED,
        ),
        (
            "request.headers: a repeated header is matched as Envoy joins it (`,`)",
            header("values: ['alice,bob']"),
            headers(&[("x-user", "alice"), ("X-USER", "bob")]),
            true,
            ALLOWED,
        ),
        (
            "request.headers notValues: an absent header passes",
            header("notValues: [mallory]"),
            headers(&[]),
            true,
            ALLOWED,
        ),
        (
            "request.headers notValues: the listed value is excluded",
            header("notValues: [mallory]"),
            headers(&[("x-user", "mallory")]),
            false,
            NONE,
        ),
        (
            "request.headers are HTTP-only: an ALLOW rule on TCP is ignored",
            header("notValues: [mallory]"),
            peer("front", "front"),
            false,
            NONE,
        ),
        (
            "request.headers on TCP in a DENY rule are treated as matched",
            deny(&when("request.headers[x-user]", "values: [mallory]")),
            peer("front", "front"),
            false,
            DENIED,
        ),
        (
            "request.auth.claims[iss]: JWT claims need request authentication; without a JWT nothing matches",
            allow(&when(
                "request.auth.claims[iss]",
                "values: ['https://issuer']",
            )),
            get("/"),
            false,
            NONE,
        ),
        (
            "request.auth.principal notValues: no JWT, so no principal to exclude",
            deny(&when("request.auth.principal", "notValues: ['*']")),
            get("/"),
            false,
            DENIED,
        ),
        (
            "request.auth.audiences on HTTP without a JWT",
            allow(&when("request.auth.audiences", "values: [shop]")),
            get("/"),
            false,
            NONE,
        ),
        (
            "request.auth.presenter notValues on HTTP without a JWT",
            allow(&when("request.auth.presenter", "notValues: [evil]")),
            get("/"),
            true,
            ALLOWED,
        ),
    ]);
}

#[test]
fn boolean_shape() {
    run(vec![
        (
            "\"values in one field are ORed\": the second principal matches",
            allow(&from(
                "principals: ['cluster.local/ns/a/sa/a', 'cluster.local/ns/front/sa/front']",
            )),
            peer("front", "front"),
            true,
            ALLOWED,
        ),
        (
            "\"Fields in the source are ANDed together\": namespace matches, principal does not",
            allow(&from(
                "principals: ['cluster.local/ns/front/sa/admin'], namespaces: [front]",
            )),
            peer("front", "front"),
            false,
            NONE,
        ),
        (
            "\"Fields in the operation are ANDed together\": GET yes, path no",
            allow(&to("methods: [GET], paths: ['/admin*']")),
            get("/shop"),
            false,
            NONE,
        ),
        (
            "positive and negative fields AND: paths /api* but notPaths /api/admin*",
            allow(&to("paths: ['/api*'], notPaths: ['/api/admin*']")),
            get("/api/admin/users"),
            false,
            NONE,
        ),
        (
            "positive and negative fields AND: the allowed part",
            allow(&to("paths: ['/api*'], notPaths: ['/api/admin*']")),
            get("/api/items"),
            true,
            ALLOWED,
        ),
        (
            "\"A match occurs when at least one source ... matches\": sources are ORed",
            allow("{from: [{source: {namespaces: [a]}}, {source: {ipBlocks: [10.0.0.0/8]}}]}"),
            tcp(),
            true,
            ALLOWED,
        ),
        (
            "\"... at least one ... operation ... matches\": operations are ORed",
            allow(
                "{to: [{operation: {methods: [POST]}}, {operation: {methods: [GET], paths: [/]}}]}",
            ),
            get("/"),
            true,
            ALLOWED,
        ),
        (
            "\"... and all conditions matches\": one failing condition fails the rule",
            allow(
                "{when: [{key: source.ip, values: [10.0.0.0/8]}, {key: destination.port, values: ['9090']}]}",
            ),
            tcp(),
            false,
            NONE,
        ),
        (
            "all conditions hold",
            allow(
                "{when: [{key: source.ip, values: [10.0.0.0/8]}, {key: destination.port, values: ['8080']}]}",
            ),
            tcp(),
            true,
            ALLOWED,
        ),
        (
            "\"A match occurs when at least one rule matches\": the second rule names itself",
            allow("{to: [{operation: {ports: ['1']}}]}, {to: [{operation: {ports: ['8080']}}]}"),
            tcp(),
            true,
            "allowed by ALLOW policy shop/p rule 1",
        ),
    ]);
}

#[test]
fn http_only_fields_on_tcp() {
    let either_op = "{to: [{operation: {methods: [GET]}}, {operation: {ports: ['8080']}}]}";
    run(vec![
        (
            "authz-tcp: an ALLOW rule with HTTP-only fields \"is ignored\" on TCP, so TCP falls to default deny",
            allow(&to("methods: [GET]")),
            peer("front", "front"),
            false,
            NONE,
        ),
        (
            "istio Generate: an HTTP-only field in any `to` entry ignores the whole ALLOW rule, ports-only entry included",
            allow(either_op),
            peer("front", "front"),
            false,
            NONE,
        ),
        (
            "... the same rule on HTTP matches through either entry",
            allow(either_op),
            http(peer("front", "front"), "POST", "/"),
            true,
            ALLOWED,
        ),
        (
            "... and in any `from` entry",
            allow(
                "{from: [{source: {requestPrincipals: ['*']}}, {source: {namespaces: [front]}}]}",
            ),
            peer("front", "front"),
            false,
            NONE,
        ),
        (
            "... while another rule without HTTP fields still allows TCP",
            allow(&format!("{either_op}, {}", to("ports: ['8080']"))),
            peer("front", "front"),
            true,
            "allowed by ALLOW policy shop/p rule 1",
        ),
        (
            "authorization_policy.proto: \"For a DENY rule, missing attributes are treated as matches\": methods without ports denies all TCP",
            deny(&to("methods: [GET]")),
            peer("front", "front"),
            false,
            DENIED,
        ),
        (
            "\"it is recommended to always scope DENY policies to a specific port\": another port is not denied",
            deny(&to("methods: [POST], ports: ['9090']")),
            peer("front", "front"),
            true,
            PASS,
        ),
        (
            "\"all TCP traffic on port 8080 would be denied in the example above\"",
            deny(&to("methods: [POST], ports: ['8080']")),
            peer("front", "front"),
            false,
            DENIED,
        ),
        (
            "DENY hosts and paths on TCP are matched too",
            deny(&to("hosts: [web.shop], paths: [/admin]")),
            tcp(),
            false,
            DENIED,
        ),
        (
            "DENY on HTTP still checks the fields",
            deny(&to("methods: [POST]")),
            get("/"),
            true,
            PASS,
        ),
    ]);
    // The trace names the reason.
    let mesh = super::mesh(&allow(either_op));
    let web = mesh.workload("shop", "web").unwrap();
    let trace = explain(&mesh.compiled_authz(web).unwrap(), &peer("front", "front"));
    let why = trace[0].rules[0].why.clone().unwrap();
    assert!(
        why.contains("to[0] methods") && why.contains("HTTP-only"),
        "{why}"
    );
}

#[test]
fn plaintext_reasons() {
    // "principals ... This field requires mTLS enabled": the decision and the trace say so.
    let policies = allow(&from("namespaces: [front]"));
    let decision = decide(&policies, "shop/web", &tcp());
    assert!(!decision.allowed);
    assert!(decision.reason.contains("plaintext"), "{}", decision.reason);
    let mesh = super::mesh(&policies);
    let web = mesh.workload("shop", "web").unwrap();
    let trace = explain(&mesh.compiled_authz(web).unwrap(), &tcp());
    assert_eq!(
        trace[0].rules[0].why.as_deref(),
        Some("from[0] namespaces: plaintext connection: identity fields require mTLS")
    );
    // A plaintext miss in a DENY policy explains nothing about a default deny.
    let both = format!(
        "{}{}",
        ap(
            "d",
            "shop",
            "{action: DENY, rules: [{from: [{source: {namespaces: [evil]}}]}]}"
        ),
        allow(&to("methods: [POST]"))
    );
    let decision = decide(&both, "shop/web", &http(tcp(), "GET", "/"));
    assert_eq!(decision.reason, NONE);
}

#[test]
fn trust_domain_aliases() {
    // MeshConfig: "trustDomainAliases ... Any service with the identity `td1/ns/foo/sa/a`,
    // `td2/ns/foo/sa/a` ... will be treated the same in the Istio mesh."
    let td = mesh_config("{trustDomain: td2, trustDomainAliases: [td1]}");
    let with = |policy: String| format!("{td}{policy}");
    let p = |value: &str| with(allow(&from(&format!("principals: ['{value}']"))));
    run(vec![
        (
            "\"cluster.local\" is \"a pointer to the local trust domain and its aliases\": the local domain",
            p("cluster.local/ns/front/sa/front"),
            spiffe("spiffe://td2/ns/front/sa/front"),
            true,
            ALLOWED,
        ),
        (
            "... and an alias",
            p("cluster.local/ns/front/sa/front"),
            spiffe("td1/ns/front/sa/front"),
            true,
            ALLOWED,
        ),
        (
            "... but not `cluster.local` itself when it is neither",
            p("cluster.local/ns/front/sa/front"),
            peer("front", "front"),
            false,
            NONE,
        ),
        (
            "a principal in an alias matches the same identity in the local trust domain",
            p("td1/ns/front/sa/front"),
            spiffe("td2/ns/front/sa/front"),
            true,
            ALLOWED,
        ),
        (
            "aliasing keeps namespace and account: another account does not match",
            p("td1/ns/front/sa/front"),
            spiffe("td2/ns/front/sa/other"),
            false,
            NONE,
        ),
        (
            "a 5-segment principal with a wildcard account is expanded too",
            p("td1/ns/front/sa/*"),
            spiffe("td2/ns/front/sa/any"),
            true,
            ALLOWED,
        ),
        (
            "\"If the trust domain from the existing doesn't match ... keep the policy as it is\": another domain",
            p("other/ns/front/sa/front"),
            spiffe("td2/ns/front/sa/front"),
            false,
            NONE,
        ),
        (
            "... which still matches itself",
            p("other/ns/front/sa/front"),
            spiffe("other/ns/front/sa/front"),
            true,
            ALLOWED,
        ),
        (
            "\"in the principal */ns/foo/sa/bar, the trust domain ... won't be checked\"",
            p("*/ns/front/sa/front"),
            spiffe("anything/ns/front/sa/front"),
            true,
            ALLOWED,
        ),
        (
            "a principal that is not `<td>/ns/<ns>/sa/<sa>` does not enforce a trust domain: kept as written",
            p("cluster.local/ns/front/*"),
            spiffe("td2/ns/front/sa/front"),
            false,
            NONE,
        ),
        (
            "notPrincipals are expanded as well",
            with(allow(&from("notPrincipals: ['td1/ns/evil/sa/x']"))),
            spiffe("td2/ns/evil/sa/x"),
            false,
            NONE,
        ),
        (
            "when source.principal is expanded as well",
            with(allow(&when(
                "source.principal",
                "values: ['cluster.local/ns/front/sa/front']",
            ))),
            spiffe("td1/ns/front/sa/front"),
            true,
            ALLOWED,
        ),
        (
            "serviceAccounts match every trust domain, aliases or not",
            with(allow(&from("serviceAccounts: [front/front]"))),
            spiffe("elsewhere/ns/front/sa/front"),
            true,
            ALLOWED,
        ),
    ]);
    // Without aliases, `cluster.local` in a policy points at the configured trust domain.
    let example = mesh_config("{trustDomain: example.org}");
    run(vec![(
        "\"cluster.local\" points at the local trust domain",
        format!(
            "{example}{}",
            allow(&from("principals: ['cluster.local/ns/front/sa/front']"))
        ),
        spiffe("example.org/ns/front/sa/front"),
        true,
        ALLOWED,
    )]);
}

#[test]
fn dry_run_annotation() {
    let annotated = |value: &str, spec: &str| {
        format!(
            "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: p, namespace: shop, annotations: {{istio.io/dry-run: '{value}'}}}}\nspec: {spec}\n"
        )
    };
    let deny_all = "{action: DENY, rules: [{}]}";
    let cases: Vec<(&str, String, bool, &str)> = vec![
        (
            "istio.io/dry-run: \"true\" \"evaluates the policy in shadow mode without enforcing it\"",
            annotated("true", deny_all),
            true,
            "no policies: allowed",
        ),
        (
            "the annotation is read as a Go bool: \"1\"",
            annotated("1", deny_all),
            true,
            "no policies: allowed",
        ),
        (
            "... \"True\"",
            annotated("True", deny_all),
            true,
            "no policies: allowed",
        ),
        (
            "\"false\" enforces the policy",
            annotated("false", deny_all),
            false,
            DENIED,
        ),
        (
            "a value that is not a bool enforces the policy",
            annotated("yes", deny_all),
            false,
            DENIED,
        ),
        (
            "a dry-run ALLOW policy does not switch the workload to default deny",
            annotated("true", "{rules: [{to: [{operation: {ports: ['1']}}]}]}"),
            true,
            "no policies: allowed",
        ),
    ];
    for (rule, policies, allowed, reason) in cases {
        let decision = decide(&policies, "shop/web", &tcp());
        assert_eq!(
            (decision.allowed, decision.reason.as_str()),
            (allowed, reason),
            "{rule}"
        );
    }
    let decision = decide(
        &annotated("true", "{rules: [{to: [{operation: {ports: ['1']}}]}]}"),
        "shop/web",
        &tcp(),
    );
    assert_eq!(decision.dry_run.len(), 1, "the dry-run policy is reported");
    assert_eq!(decision.dry_run[0].rule, None, "it matched no rule");
}
