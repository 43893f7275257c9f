//! Unit tests below the decision: the value matchers (`matcher.rs`), compilation and its errors
//! (`compile.rs`), the request attributes (`request.rs`) and the text forms (`render.rs`).

use std::sync::Arc;

use super::{ap, decide, http, ip, mesh, peer, tcp};
use crate::authz::matcher::{IpBlock, PathMatch, StringMatch, TemplateToken, parse_port};
use crate::authz::{
    AuthzAction, CompileError, CompiledAuthz, ConditionMatch, HttpAttrs, RequestAttrs,
    render_policies,
};
use crate::diagnostic::Location;
use crate::mesh::Entry;
use crate::meta::ObjectMeta;
use crate::resources::Object;
use crate::resources::authorization_policy::AuthorizationPolicySpec;
use crate::resources::mesh_config::MeshConfig;

#[test]
fn string_match_parse_and_match() {
    use StringMatch::{Exact, Prefix, Presence, Suffix};
    let parsed: Vec<(&str, StringMatch)> = vec![
        ("abc", Exact("abc".into())),
        ("abc*", Prefix("abc".into())),
        ("*abc", Suffix("abc".into())),
        // "*" is presence, checked before prefix and suffix.
        ("*", Presence),
        // Istio checks the leading `*` first: `**` is a suffix match on `*`.
        ("**", Suffix("*".into())),
        ("*a*", Suffix("a*".into())),
        ("", Exact(String::new())),
    ];
    for (pattern, expected) in parsed {
        assert_eq!(StringMatch::parse(pattern), expected, "{pattern}");
    }
    // (pattern, value, matches, matches ignoring case)
    let cases = [
        ("abc", "abc", true, true),
        ("abc", "abcd", false, false),
        ("abc", "ABC", false, true),
        ("abc*", "abc", true, true),
        ("abc*", "abcd", true, true),
        ("abc*", "ab", false, false),
        ("abc*", "ABCD", false, true),
        ("*abc", "abc", true, true),
        ("*abc", "xabc", true, true),
        ("*abc", "abcx", false, false),
        ("*abc", "XABC", false, true),
        ("*", "x", true, true),
        ("*", "", false, false),
        ("", "", true, true),
        // Byte-wise case folding never splits a multi-byte character.
        ("*é", "é", true, true),
        ("é*", "x", false, false),
    ];
    for (pattern, value, exact, folded) in cases {
        let m = StringMatch::parse(pattern);
        assert_eq!(m.matches(value), exact, "{pattern} ~ {value}");
        assert_eq!(m.matches_ignore_case(value), folded, "{pattern} ~i {value}");
    }
}

#[test]
fn ip_blocks() {
    let ok = [
        ("10.0.0.1", "10.0.0.1", 32),
        ("10.0.0.0/8", "10.0.0.0", 8),
        // Host bits may be set, as netip.ParsePrefix allows.
        ("10.0.0.1/24", "10.0.0.1", 24),
        ("0.0.0.0/0", "0.0.0.0", 0),
        ("::1", "::1", 128),
        ("2001:db8::/32", "2001:db8::", 32),
        ("::/0", "::", 0),
        ("::ffff:10.0.0.1", "::ffff:10.0.0.1", 128),
    ];
    for (text, address, len) in ok {
        assert_eq!(
            IpBlock::parse(text),
            Some(IpBlock {
                address: ip(address),
                prefix_len: len
            }),
            "{text}"
        );
    }
    let bad = [
        "",
        "10.0.0",
        "10.0.0.256",
        "010.0.0.1",
        "10.0.0.0/33",
        "::/129",
        "10.0.0.0/",
        "10.0.0.0/+8",
        "10.0.0.0/08",
        "10.0.0.0/-1",
        "10.0.0.0/8/8",
        "/8",
        "2001:db8:::1",
        "fe80::1%eth0",
        "localhost",
        " 10.0.0.1",
        "10.0.0.*",
    ];
    for text in bad {
        assert_eq!(IpBlock::parse(text), None, "{text:?}");
    }
    // (block, address, contained)
    let contains = [
        ("10.0.0.0/24", "10.0.0.255", true),
        ("10.0.0.0/24", "10.0.1.0", false),
        ("10.0.0.1/24", "10.0.0.200", true),
        ("10.0.0.5", "10.0.0.5", true),
        ("10.0.0.5", "10.0.0.6", false),
        ("0.0.0.0/0", "192.0.2.1", true),
        ("0.0.0.0/0", "::1", false),
        ("::/0", "10.0.0.1", false),
        ("::/0", "2001:db8::1", true),
        ("2001:db8::/64", "2001:db8::ffff", true),
        ("2001:db8::/64", "2001:db8:0:1::1", false),
        ("2001:db8::1", "2001:db8::1", true),
        ("::ffff:10.0.0.1", "10.0.0.1", false),
    ];
    for (block, address, expected) in contains {
        let block = IpBlock::parse(block).unwrap();
        assert_eq!(
            block.contains(ip(address)),
            expected,
            "{block:?} ∋ {address}"
        );
    }
}

#[test]
fn ports() {
    let cases = [
        ("8080", Some(8080)),
        ("1", Some(1)),
        ("65535", Some(65535)),
        ("080", Some(80)),
        ("0", None),
        ("65536", None),
        ("+80", None),
        ("-1", None),
        ("", None),
        ("8o", None),
        (" 80", None),
        ("*", None),
    ];
    for (text, expected) in cases {
        assert_eq!(parse_port(text), expected, "{text:?}");
    }
}

#[test]
fn path_templates_parse() {
    use TemplateToken::{Literal, Segment, Segments};
    let lit = |s: &str| Literal(s.to_owned());
    let ok: Vec<(&str, Vec<TemplateToken>)> = vec![
        ("/foo/{*}", vec![lit("/foo/"), Segment]),
        ("/{*}/foo", vec![lit("/"), Segment, lit("/foo")]),
        ("/{*}/foo/", vec![lit("/"), Segment, lit("/foo/")]),
        ("/foo/{**}", vec![lit("/foo/"), Segments]),
        ("/foo/{**}/bar", vec![lit("/foo/"), Segments, lit("/bar")]),
        (
            "/foo/{*}/bar/{**}",
            vec![lit("/foo/"), Segment, lit("/bar/"), Segments],
        ),
        ("/{*}/{*}", vec![lit("/"), Segment, lit("/"), Segment]),
        ("/{**}/", vec![lit("/"), Segments, lit("/")]),
        ("/a=b/{*}", vec![lit("/a=b/"), Segment]),
    ];
    for (pattern, tokens) in ok {
        assert_eq!(
            PathMatch::parse(pattern),
            Ok(PathMatch::Template(tokens)),
            "{pattern}"
        );
    }
    // Strings without an operator stay Istio string matches, `*` included.
    assert_eq!(
        PathMatch::parse("/foo/*"),
        Ok(PathMatch::String(StringMatch::Prefix("/foo/".into())))
    );
    // istio CheckValidPathTemplate and its documented examples, plus what Envoy's parser
    // rejects: (pattern, part of the error).
    let bad = [
        ("/foo/{*}.txt", "whole-segment"),
        ("/foo/{**}buzz/bar", "whole-segment"),
        ("/{**}{*}", "whole-segment"),
        ("/{**}/foo/{*}", "last operator"),
        ("/{**}/{**}", "last operator"),
        ("/api/{**}/{*}", "last operator"),
        ("/*/baz/{*}", "not a valid literal"),
        ("/**/baz/{*}", "not a valid literal"),
        ("/foo/{*}/bar/*", "not a valid literal"),
        ("/foo//{*}", "not a valid literal"),
        ("/foo/{*}//", "not a valid literal"),
        ("/a b/{*}", "not a valid literal"),
        ("/a?b/{*}", "not a valid literal"),
        ("/{*}/foo/{}/bar", "whole-segment"),
        ("{*}/foo", "start with `/`"),
        ("/a/{id}", "outside"),
        ("/a/{}", "outside"),
        ("/a/{*", "outside"),
        ("/a/*}", "outside"),
        ("/{x=*}", "outside"),
    ];
    for (pattern, why) in bad {
        let err = PathMatch::parse(pattern).unwrap_err();
        assert!(err.contains(why), "{pattern}: {err}");
    }
}

#[test]
fn path_templates_match() {
    // (template, path, matches)
    let cases = [
        ("/foo/{*}", "/foo/bar", true),
        ("/foo/{*}", "/foo/bar/baz", false),
        ("/foo/{*}", "/foo/", false),
        ("/foo/{*}", "/foo", false),
        ("/foo/{**}/", "/foo/bar/", true),
        ("/foo/{**}/", "/foo/bar/baz/", true),
        ("/foo/{**}/", "/foo//", true),
        ("/foo/{**}/", "/foo/bar", false),
        ("/foo/{*}/bar/{**}", "/foo/buzz/bar/", true),
        ("/foo/{*}/bar/{**}", "/foo/buzz/bar/baz", true),
        ("/foo/{*}/bar/{**}", "/foo/a/b/bar/baz", false),
        ("/{**}", "/", true),
        ("/{**}", "/a/b/c", true),
        ("/{**}/end", "/a/b/end", true),
        ("/{**}/end", "/a/b/end/x", false),
        ("/{*}/{*}", "/a/b", true),
        ("/{*}/{*}", "/a/b/c", false),
        // Envoy's pchar set for a variable: sub-delims but `*` and `=`; percent-encodings.
        ("/f/{*}", "/f/a-b_c.d~e!$&'()+,;:@", true),
        ("/f/{*}", "/f/%2F", true),
        ("/f/{*}", "/f/a=b", false),
        ("/f/{*}", "/f/a*b", false),
        ("/f/{*}", "/f/a b", false),
        ("/f/{*}", "/f/é", false),
        ("/f/{**}", "/f/x/y=z", false),
    ];
    for (template, path, expected) in cases {
        let m = PathMatch::parse(template).unwrap();
        assert_eq!(m.matches(path), expected, "{template} ~ {path}");
    }
    // String paths keep Istio's wildcards.
    let prefix = PathMatch::parse("/admin*").unwrap();
    assert!(prefix.matches("/admin") && prefix.matches("/admin/x") && !prefix.matches("/adm"));
}

/// An AuthorizationPolicy entry `shop/p` straight from its spec, without validation.
fn entry(spec: &str) -> Entry<AuthorizationPolicySpec> {
    Entry {
        object: Object {
            api_version: "security.istio.io/v1".to_owned(),
            metadata: ObjectMeta {
                name: "p".to_owned(),
                namespace: Some("shop".to_owned()),
                ..ObjectMeta::default()
            },
            spec: serde_saphyr::from_str(spec).unwrap(),
        },
        location: Location {
            source: Arc::from("t.yaml"),
            line: 1,
            column: 1,
        },
    }
}

fn compile_with(spec: &str, config: &MeshConfig) -> Result<CompiledAuthz, CompileError> {
    CompiledAuthz::compile(&[&entry(spec)], config)
}

fn compile(spec: &str) -> Result<CompiledAuthz, CompileError> {
    compile_with(spec, &MeshConfig::default())
}

#[test]
fn compile_errors() {
    // Validation rejects these first; compilation refuses to guess. (spec, field, message)
    let cases = [
        (
            "{rules: [{from: [{source: {ipBlocks: [10.0.0.0/8, '10.0.0.0/33']}}]}]}",
            "spec.rules[0].from[0].source.ipBlocks[1]",
            "invalid IP address or CIDR block `10.0.0.0/33`",
        ),
        (
            "{rules: [{from: [{source: {notIpBlocks: [x]}}]}]}",
            "spec.rules[0].from[0].source.notIpBlocks[0]",
            "invalid IP address or CIDR block `x`",
        ),
        (
            "{rules: [{}, {from: [{source: {remoteIpBlocks: ['::/200']}}]}]}",
            "spec.rules[1].from[0].source.remoteIpBlocks[0]",
            "invalid IP address or CIDR block `::/200`",
        ),
        (
            "{rules: [{from: [{source: {notRemoteIpBlocks: ['']}}]}]}",
            "spec.rules[0].from[0].source.notRemoteIpBlocks[0]",
            "invalid IP address or CIDR block ``",
        ),
        (
            "{rules: [{to: [{operation: {ports: ['0']}}]}]}",
            "spec.rules[0].to[0].operation.ports[0]",
            "invalid port",
        ),
        (
            "{rules: [{to: [{operation: {ports: ['80']}}, {operation: {notPorts: [http]}}]}]}",
            "spec.rules[0].to[1].operation.notPorts[0]",
            "invalid port",
        ),
        (
            "{rules: [{to: [{operation: {paths: ['/a/{id}']}}]}]}",
            "spec.rules[0].to[0].operation.paths[0]",
            "`{` or `}` outside a `{*}` or `{**}` operator is not a supported path template",
        ),
        (
            "{rules: [{to: [{operation: {notPaths: ['/{**}/{*}']}}]}]}",
            "spec.rules[0].to[0].operation.notPaths[0]",
            "`{**}` must be the last operator",
        ),
        (
            "{rules: [{when: [{key: source.ip, values: [10.0.0.1]}, {key: foo.bar, values: [x]}]}]}",
            "spec.rules[0].when[1].key",
            "unsupported condition key `foo.bar`",
        ),
        (
            "{rules: [{when: [{key: 'experimental.envoy.filters.a.b[c]', values: [x]}]}]}",
            "spec.rules[0].when[0].key",
            "unsupported condition key `experimental.envoy.filters.a.b[c]`",
        ),
        (
            "{rules: [{when: [{key: request.auth.unknown, values: [x]}]}]}",
            "spec.rules[0].when[0].key",
            "unsupported condition key `request.auth.unknown`",
        ),
        (
            "{rules: [{when: [{key: 'request.headers[]', values: [x]}]}]}",
            "spec.rules[0].when[0].key",
            "unsupported condition key `request.headers[]`",
        ),
        (
            "{rules: [{when: [{key: source.ip, notValues: [10.0.0.1, nope]}]}]}",
            "spec.rules[0].when[0].notValues[1]",
            "invalid IP address or CIDR block `nope`",
        ),
        (
            "{rules: [{when: [{key: destination.port, values: ['+80']}]}]}",
            "spec.rules[0].when[0].values[0]",
            "invalid port `+80`",
        ),
        (
            "{rules: [{from: [{source: {principals: [a], serviceAccounts: [ns/sa]}}]}]}",
            "spec.rules[0].from[0].source.serviceAccounts",
            "cannot set serviceAccounts with namespaces or principals",
        ),
        (
            "{rules: [{from: [{source: {notNamespaces: [a], notServiceAccounts: [sa]}}]}]}",
            "spec.rules[0].from[0].source.serviceAccounts",
            "cannot set serviceAccounts with namespaces or principals",
        ),
    ];
    for (spec, field, message) in cases {
        let err = compile(spec).unwrap_err();
        assert_eq!(
            (err.namespace.as_str(), err.name.as_str()),
            ("shop", "p"),
            "{spec}"
        );
        assert_eq!(
            (err.field.as_str(), err.message.as_str()),
            (field, message),
            "{spec}"
        );
    }
    let err = compile("{rules: [{to: [{operation: {ports: ['0']}}]}]}").unwrap_err();
    assert_eq!(
        err.to_string(),
        "AuthorizationPolicy shop/p: spec.rules[0].to[0].operation.ports[0]: invalid port"
    );
}

#[test]
fn compile_shapes() {
    use StringMatch::{Exact, Suffix};
    // `spec: {}`: ALLOW with no rules, which never matches.
    let nothing = compile("{}").unwrap();
    assert_eq!(nothing.policies.len(), 1);
    assert_eq!(nothing.policies[0].action, AuthzAction::Allow);
    assert!(nothing.policies[0].rules.is_empty() && !nothing.policies[0].dry_run);
    // `rules: [{}]`: one rule that matches everything.
    let all = compile("{action: DENY, rules: [{}]}").unwrap();
    assert_eq!(all.policies[0].action, AuthzAction::Deny);
    assert_eq!(all.policies[0].rules, vec![Default::default()]);
    // CUSTOM is rejected when applied; compilation skips it.
    let custom = compile("{action: CUSTOM, provider: {name: x}, rules: [{}]}").unwrap();
    assert!(custom.policies.is_empty());
    // serviceAccounts: `ns/sa` or `sa` in the policy's namespace, any trust domain.
    let accounts = compile(
        "{rules: [{from: [{source: {serviceAccounts: [front/a, b], notServiceAccounts: [c]}}]}]}",
    )
    .unwrap();
    let source = &accounts.policies[0].rules[0].from[0];
    assert_eq!(
        source.principals.values,
        vec![
            Suffix("/ns/front/sa/a".into()),
            Suffix("/ns/shop/sa/b".into())
        ]
    );
    assert_eq!(
        source.principals.not_values,
        vec![Suffix("/ns/shop/sa/c".into())]
    );
    let condition =
        compile("{rules: [{when: [{key: source.serviceAccount, values: [x/y]}]}]}").unwrap();
    assert_eq!(
        condition.policies[0].rules[0].when,
        vec![ConditionMatch::SourceServiceAccount(crate::authz::Field {
            values: vec![Suffix("/ns/x/sa/y".into())],
            not_values: vec![],
        })]
    );
    // Trust-domain aliases (istio trustdomain bundle_test): (trust domain, aliases, principal,
    // compiled principals).
    let cases: Vec<(&str, Vec<&str>, &str, Vec<StringMatch>)> = vec![
        (
            "cluster.local",
            vec![],
            "cluster.local/ns/a/sa/b",
            vec![Exact("cluster.local/ns/a/sa/b".into())],
        ),
        (
            "td2",
            vec!["td1"],
            "cluster.local/ns/a/sa/b",
            vec![Exact("td2/ns/a/sa/b".into()), Exact("td1/ns/a/sa/b".into())],
        ),
        (
            "td2",
            vec!["td1"],
            "td1/ns/a/sa/b",
            vec![Exact("td2/ns/a/sa/b".into()), Exact("td1/ns/a/sa/b".into())],
        ),
        (
            "td2",
            vec!["td1"],
            "other/ns/a/sa/b",
            vec![Exact("other/ns/a/sa/b".into())],
        ),
        (
            "td2",
            vec!["td1"],
            "*/ns/a/sa/b",
            vec![Suffix("/ns/a/sa/b".into())],
        ),
        (
            "td2",
            vec!["td1"],
            "cluster.local/ns/a/*",
            vec![StringMatch::Prefix("cluster.local/ns/a/".into())],
        ),
        ("td2", vec!["td1"], "*", vec![StringMatch::Presence]),
        // "*-td can match with old-td and new-td, but we only want to keep the principal
        // as-is in the generated config, i.e. *-td".
        (
            "new-td",
            vec!["old-td"],
            "*-td/ns/a/sa/b",
            vec![Suffix("-td/ns/a/sa/b".into())],
        ),
        // A `prefix*` trust domain is replaced by each local domain it covers.
        (
            "td2",
            vec!["td1"],
            "td*/ns/a/sa/b",
            vec![Exact("td2/ns/a/sa/b".into()), Exact("td1/ns/a/sa/b".into())],
        ),
    ];
    for (trust_domain, aliases, principal, expected) in cases {
        let config = MeshConfig {
            trust_domain: trust_domain.to_owned(),
            trust_domain_aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
            ..MeshConfig::default()
        };
        let compiled = compile_with(
            &format!("{{rules: [{{from: [{{source: {{principals: ['{principal}']}}}}]}}]}}"),
            &config,
        )
        .unwrap();
        assert_eq!(
            compiled.policies[0].rules[0].from[0].principals.values, expected,
            "{principal} with {trust_domain} {aliases:?}"
        );
    }
}

#[test]
fn compiled_policies_travel_as_json() {
    let mesh = mesh(&ap(
        "p",
        "shop",
        "{action: DENY, rules: [{from: [{source: {principals: ['cluster.local/ns/a/*'], ipBlocks: ['10.0.0.0/8']}}], to: [{operation: {ports: ['8080'], paths: ['/a/{*}'], hosts: ['*.shop']}}], when: [{key: 'request.headers[x]', notValues: ['*']}, {key: destination.port, values: ['8080']}]}]}",
    ));
    let web = mesh.workload("shop", "web").unwrap();
    let compiled = mesh.compiled_authz(web).unwrap();
    let json = serde_json::to_string(&compiled).unwrap();
    let back: CompiledAuthz = serde_json::from_str(&json).unwrap();
    assert_eq!(back, compiled);
    assert!(json.contains("\"action\":\"DENY\""), "{json}");
}

#[test]
fn request_attributes() {
    let attrs = RequestAttrs::new(ip("10.0.0.5"), ip("10.0.1.1"), 80)
        .with_peer("spiffe://td/ns/front/sa/web");
    assert_eq!(
        attrs.source_principal.as_deref(),
        Some("td/ns/front/sa/web")
    );
    assert_eq!(attrs.source_namespace.as_deref(), Some("front"));
    // "namespaces ... derived from the peer certificate": no namespace without `/ns/`.
    let odd = tcp().with_peer("td/workload/web");
    assert_eq!(odd.source_principal.as_deref(), Some("td/workload/web"));
    assert_eq!(odd.source_namespace, None);
    assert_eq!(tcp().remote_ip(), ip("10.0.0.5"));
    let h = HttpAttrs {
        headers: vec![
            ("X-A".into(), "1".into()),
            ("x-b".into(), "2".into()),
            ("x-a".into(), "3".into()),
        ],
        ..HttpAttrs::default()
    };
    assert_eq!(h.header("x-a").as_deref(), Some("1,3"));
    assert_eq!(h.header("X-B").as_deref(), Some("2"));
    assert_eq!(h.header("x-c"), None);
}

#[test]
fn decisions_render() {
    let deny = ap(
        "deny-admin",
        "shop",
        "{action: DENY, rules: [{to: [{operation: {methods: [POST]}}]}, {to: [{operation: {paths: ['/admin*']}}]}]}",
    );
    let denied = decide(&deny, "shop/web", &http(peer("a", "b"), "GET", "/admin/x"));
    assert_eq!(denied.verdict(), "DENY");
    assert_eq!(
        denied.response_code_details().as_deref(),
        Some("rbac_access_denied_matched_policy[ns[shop]-policy[deny-admin]-rule[1]]")
    );
    assert_eq!(
        denied.to_string(),
        "DENY: denied by DENY policy shop/deny-admin rule 1"
    );
    let none = decide(&ap("p", "shop", "{}"), "shop/web", &http(tcp(), "GET", "/"));
    assert_eq!(
        none.response_code_details().as_deref(),
        Some("rbac_access_denied_matched_policy[none]")
    );
    let allowed = decide("", "shop/web", &tcp());
    assert_eq!(allowed.verdict(), "ALLOW");
    assert_eq!(allowed.response_code_details(), None);
    assert_eq!(allowed.to_string(), "ALLOW: no policies: allowed");
    let dry = "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: dry, namespace: shop, annotations: {istio.io/dry-run: 'true'}}\nspec: {rules: [{to: [{operation: {ports: ['1']}}]}]}\n";
    let audit = ap("audit", "shop", "{action: AUDIT, rules: [{}]}");
    let shadow = decide(&format!("{dry}{audit}"), "shop/web", &tcp());
    assert_eq!(
        shadow.to_string(),
        "ALLOW: no ALLOW policies: allowed; audit shop/audit rule 0; dry-run ALLOW shop/dry matched no rule"
    );
}

#[test]
fn policy_table_renders() {
    let dry = "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: allow-web, namespace: shop, annotations: {istio.io/dry-run: 'true'}}\nspec: {rules: [{}, {}]}\n";
    let deny = ap(
        "deny-admin",
        "istio-system",
        "{action: DENY, rules: [{to: [{operation: {paths: ['/admin*']}}]}]}",
    );
    let nothing = ap("nothing", "shop", "{}");
    let mesh = mesh(&format!("{dry}{deny}{nothing}"));
    let web = mesh.workload("shop", "web").unwrap();
    let table = render_policies(&mesh.authorization_policies_for(web));
    assert_eq!(
        table,
        "ACTION  AuthorizationPolicy      RULES\n\
         ALLOW   allow-web.shop (dry-run) 2\n\
         DENY    deny-admin.istio-system  1\n\
         ALLOW   nothing.shop             0\n"
    );
    assert_eq!(render_policies(&[]), "ACTION  AuthorizationPolicy RULES\n");
}
