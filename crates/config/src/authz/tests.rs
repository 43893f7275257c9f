//! Table-driven checks of Istio's authorization semantics; each case quotes the rule it checks.
//! Evaluation order and selection here, field semantics in `tests/fields.rs`, matchers,
//! compilation and rendering in `tests/units.rs`.

use std::net::IpAddr;

use super::{Decision, HttpAttrs, RequestAttrs, evaluate};
use crate::mesh::Mesh;
use crate::parse::{Limits, parse_stream};

mod fields;
mod units;

const WORKLOADS: &str = "
apiVersion: meshward.io/v1alpha1
kind: Workload
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {serviceAccount: web-sa, sidecar: true, ports: [{name: http, port: 8080}]}
---
apiVersion: meshward.io/v1alpha1
kind: Workload
metadata: {name: db, namespace: data, labels: {app: db}}
spec: {serviceAccount: db-sa, sidecar: true, ports: [{port: 5432}]}
";

pub(super) fn mesh(extra: &str) -> Mesh {
    let yaml = format!("{WORKLOADS}{extra}");
    let docs = parse_stream("t.yaml", &yaml, &Limits::default())
        .into_documents()
        .unwrap_or_else(|e| panic!("{e:?}"));
    Mesh::new(docs).unwrap()
}

/// An AuthorizationPolicy document.
pub(super) fn ap(name: &str, ns: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n"
    )
}

/// The decision for `workload` (`ns/name`) under `policies`.
pub(super) fn decide(policies: &str, workload: &str, attrs: &RequestAttrs) -> Decision {
    let mesh = mesh(policies);
    let (ns, name) = workload.split_once('/').unwrap();
    let workload = mesh.workload(ns, name).unwrap();
    evaluate(&mesh.compiled_authz(workload).unwrap(), attrs)
}

pub(super) fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// Plaintext TCP from 10.0.0.5 to 10.0.1.1:8080.
pub(super) fn tcp() -> RequestAttrs {
    RequestAttrs::new(ip("10.0.0.5"), ip("10.0.1.1"), 8080)
}

/// mTLS TCP from `cluster.local/ns/<ns>/sa/<sa>`.
pub(super) fn peer(ns: &str, sa: &str) -> RequestAttrs {
    tcp().with_peer(&format!("spiffe://cluster.local/ns/{ns}/sa/{sa}"))
}

/// The same connection carrying `method path` to host `web.shop`.
pub(super) fn http(attrs: RequestAttrs, method: &str, path: &str) -> RequestAttrs {
    attrs.with_http(HttpAttrs {
        host: "web.shop".to_owned(),
        method: method.to_owned(),
        path: path.to_owned(),
        headers: Vec::new(),
    })
}

pub(super) type Case<'a> = (&'a str, String, RequestAttrs, bool, &'a str);

/// Runs a table against `shop/web`: (rule, policies, request, allowed, reason).
pub(super) fn run(cases: Vec<Case<'_>>) {
    for (rule, policies, attrs, allowed, reason) in cases {
        let decision = decide(&policies, "shop/web", &attrs);
        assert_eq!(
            (decision.allowed, decision.reason.as_str()),
            (allowed, reason),
            "{rule}"
        );
    }
}

#[test]
fn evaluation_order() {
    let allow_all = ap("all", "shop", "{rules: [{}]}");
    let deny_all = ap("deny", "shop", "{action: DENY, rules: [{}]}");
    let allow_get = ap(
        "get",
        "shop",
        "{rules: [{to: [{operation: {methods: [GET]}}]}]}",
    );
    let deny_admin = ap(
        "admin",
        "shop",
        "{action: DENY, rules: [{to: [{operation: {paths: [/admin]}}]}]}",
    );
    let audit_all = ap("audit", "shop", "{action: AUDIT, rules: [{}]}");
    let get = || http(peer("front", "front"), "GET", "/");
    run(vec![
        (
            "no policy at all => allow",
            String::new(),
            get(),
            true,
            "no policies: allowed",
        ),
        (
            "spec: {} is ALLOW without rules: it never matches, so it denies everything",
            ap("nothing", "shop", "{}"),
            get(),
            false,
            "allow policies exist, but none allowed",
        ),
        (
            "`rules: [{}]` matches every request: with ALLOW, allow all",
            allow_all.clone(),
            get(),
            true,
            "allowed by ALLOW policy shop/all rule 0",
        ),
        (
            "`rules: [{}]` with DENY: deny all",
            deny_all.clone(),
            get(),
            false,
            "denied by DENY policy shop/deny rule 0",
        ),
        (
            "If there are any DENY policies that match the request, deny the request (before ALLOW)",
            format!("{allow_all}{deny_all}"),
            get(),
            false,
            "denied by DENY policy shop/deny rule 0",
        ),
        (
            "If there are no ALLOW policies for the workload, allow the request",
            deny_admin.clone(),
            get(),
            true,
            "no ALLOW policies: allowed",
        ),
        (
            "If any of the ALLOW policies match the request, allow the request",
            format!("{deny_admin}{allow_get}"),
            get(),
            true,
            "allowed by ALLOW policy shop/get rule 0",
        ),
        (
            "Deny the request (ALLOW policies exist, none matched)",
            allow_get.clone(),
            http(peer("front", "front"), "POST", "/"),
            false,
            "allow policies exist, but none allowed",
        ),
        (
            "AUDIT policies do not affect whether requests are allowed or denied",
            format!("{audit_all}{allow_get}"),
            http(peer("front", "front"), "POST", "/"),
            false,
            "allow policies exist, but none allowed",
        ),
        (
            "an AUDIT policy alone leaves the default allow",
            audit_all,
            get(),
            true,
            "no ALLOW policies: allowed",
        ),
    ]);
}

#[test]
fn audit_and_dry_run_are_reported_not_enforced() {
    let dry = "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: dry, namespace: shop, annotations: {istio.io/dry-run: \"true\"}}\nspec: {action: DENY, rules: [{}]}\n";
    let audit = ap(
        "audit",
        "shop",
        "{action: AUDIT, rules: [{to: [{operation: {methods: [POST]}}]}, {}]}",
    );
    let decision = decide(
        &format!("{dry}{audit}"),
        "shop/web",
        &http(tcp(), "GET", "/"),
    );
    // "istio.io/dry-run ... evaluates the policy in shadow mode without enforcing it."
    assert!(decision.allowed, "{decision}");
    assert_eq!(decision.dry_run.len(), 1);
    assert_eq!(decision.dry_run[0].rule, Some(0));
    assert_eq!(decision.audit.len(), 1);
    assert_eq!(
        decision.audit[0].rule, 1,
        "AUDIT names the rule that matched"
    );
    assert_eq!(
        decision.to_string(),
        "ALLOW: no ALLOW policies: allowed; audit shop/audit rule 1; dry-run DENY shop/dry matched rule 0"
    );
    // Without the annotation, the same policy denies.
    let enforced = dry.replace("istio.io/dry-run: \"true\"", "istio.io/dry-run: \"false\"");
    assert!(!decide(&enforced, "shop/web", &tcp()).allowed);
}

#[test]
fn rule_shape() {
    let two_rules = ap(
        "p",
        "shop",
        "{rules: [{to: [{operation: {methods: [DELETE]}}]}, {to: [{operation: {methods: [GET]}}]}]}",
    );
    let from_and_to = ap(
        "p",
        "shop",
        "{rules: [{from: [{source: {namespaces: [front]}}], to: [{operation: {methods: [GET]}}], when: [{key: 'request.headers[x-ok]', values: [yes]}]}]}",
    );
    let two_sources = ap(
        "p",
        "shop",
        "{rules: [{from: [{source: {namespaces: [a]}}, {source: {namespaces: [front]}}]}]}",
    );
    let anded_fields = ap(
        "p",
        "shop",
        "{rules: [{from: [{source: {namespaces: [front], ipBlocks: [192.168.0.0/16]}}]}]}",
    );
    let with_header = |value: &str| {
        let mut attrs = http(peer("front", "front"), "GET", "/");
        if let Some(h) = attrs.http.as_mut() {
            h.headers.push(("X-OK".to_owned(), value.to_owned()));
        }
        attrs
    };
    run(vec![
        (
            "OR across rules: the second rule matches",
            two_rules,
            http(tcp(), "GET", "/"),
            true,
            "allowed by ALLOW policy shop/p rule 1",
        ),
        (
            "AND of from, to and when: all hold",
            from_and_to.clone(),
            with_header("yes"),
            true,
            "allowed by ALLOW policy shop/p rule 0",
        ),
        (
            "AND of from, to and when: `when` fails",
            from_and_to,
            with_header("no"),
            false,
            "allow policies exist, but none allowed",
        ),
        (
            "OR across from[] sources",
            two_sources,
            peer("front", "x"),
            true,
            "allowed by ALLOW policy shop/p rule 0",
        ),
        (
            "Fields in the source are ANDed: namespace matches, ipBlocks does not",
            anded_fields,
            peer("front", "x"),
            false,
            "allow policies exist, but none allowed",
        ),
    ]);
}

#[test]
fn selection() {
    let root_selector = ap(
        "root",
        "istio-system",
        "{selector: {matchLabels: {app: db}}, action: DENY, rules: [{}]}",
    );
    let root_all = ap("root-all", "istio-system", "{action: DENY, rules: [{}]}");
    let other_ns = ap("other", "data", "{action: DENY, rules: [{}]}");
    let selected = ap(
        "sel",
        "shop",
        "{selector: {matchLabels: {app: web}}, action: DENY, rules: [{}]}",
    );
    let unselected = ap(
        "unsel",
        "shop",
        "{selector: {matchLabels: {app: api}}, action: DENY, rules: [{}]}",
    );
    let cases: Vec<(&str, String, &str, Vec<&str>)> = vec![
        (
            "a policy applies in its own namespace only",
            other_ns.clone(),
            "shop/web",
            vec![],
        ),
        (
            "... and to the workloads of that namespace",
            other_ns,
            "data/db",
            vec!["other"],
        ),
        (
            "a selector picks workloads by label",
            format!("{selected}{unselected}"),
            "shop/web",
            vec!["sel"],
        ),
        (
            "a root-namespace policy applies mesh-wide",
            root_all,
            "data/db",
            vec!["root-all"],
        ),
        (
            "in the root namespace the selector matches workloads in all namespaces",
            root_selector.clone(),
            "data/db",
            vec!["root"],
        ),
        (
            "... and only the selected ones",
            root_selector,
            "shop/web",
            vec![],
        ),
    ];
    for (rule, policies, workload, expected) in cases {
        let mesh = mesh(&policies);
        let (ns, name) = workload.split_once('/').unwrap();
        let w = mesh.workload(ns, name).unwrap();
        let names: Vec<&str> = mesh
            .authorization_policies_for(w)
            .iter()
            .map(|e| e.object.metadata.name.as_str())
            .collect();
        assert_eq!(names, expected, "{rule}");
    }
}

/// The principal index must decide exactly as a scan in order would: the oldest matching
/// policy decides whether it was filed by principal or not, and a plaintext peer still hears
/// that identity fields never match it.
#[test]
fn the_principal_index_keeps_order_and_reasons() {
    let exact = |name: &str, action: &str| {
        ap(
            name,
            "shop",
            &format!(
                "{{action: {action}, rules: [{{from: [{{source: {{principals: [cluster.local/ns/front/sa/front]}}}}]}}]}}"
            ),
        )
    };
    let wildcard = |name: &str, action: &str| {
        ap(
            name,
            "shop",
            &format!(
                "{{action: {action}, rules: [{{from: [{{source: {{principals: [cluster.local/ns/front/*]}}}}]}}]}}"
            ),
        )
    };
    run(vec![
        (
            "filed DENY first, wildcard DENY second: the first applied decides",
            format!("{}{}", exact("a-exact", "DENY"), wildcard("b-wild", "DENY")),
            peer("front", "front"),
            false,
            "denied by DENY policy shop/a-exact rule 0",
        ),
        (
            "wildcard DENY first, filed DENY second: the first applied decides",
            format!("{}{}", wildcard("a-wild", "DENY"), exact("b-exact", "DENY")),
            peer("front", "front"),
            false,
            "denied by DENY policy shop/a-wild rule 0",
        ),
        (
            "a caller no filed policy names falls through to the wildcard",
            format!(
                "{}{}",
                exact("a-exact", "ALLOW"),
                wildcard("b-wild", "ALLOW")
            ),
            peer("front", "other"),
            true,
            "allowed by ALLOW policy shop/b-wild rule 0",
        ),
        (
            "principals \"require mTLS\": a plaintext peer is told so though the policy was skipped",
            exact("a-exact", "ALLOW"),
            tcp(),
            false,
            "allow policies exist, but none allowed (plaintext connection: principals and namespaces never match)",
        ),
    ]);
}
