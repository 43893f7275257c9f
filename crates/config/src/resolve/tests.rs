//! Table-driven checks of every resolution rule; each case names the Istio rule it checks.

use std::collections::BTreeMap;

use crate::mesh::Mesh;
use crate::parse::{Limits, parse_stream};
use crate::resolve::tls::{Client, TlsSource};
use crate::resources::destination_rule::ClientTlsMode;
use crate::resources::peer_authentication::MtlsMode;

fn mesh(yaml: &str) -> Mesh {
    let docs = parse_stream("t.yaml", yaml, &Limits::default())
        .into_documents()
        .unwrap_or_else(|e| panic!("{e:?}"));
    Mesh::new(docs).unwrap()
}

const WORKLOADS: &str = "
apiVersion: meshward.io/v1alpha1
kind: Workload
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {serviceAccount: web-sa, sidecar: true, ports: [{name: http, port: 8080}, {port: 9090}]}
---
apiVersion: meshward.io/v1alpha1
kind: Workload
metadata: {name: sys, namespace: istio-system, labels: {app: sys}}
spec: {sidecar: true, ports: [{port: 8080}]}
";

fn pa(name: &str, ns: &str, body: &str) -> String {
    format!(
        "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {body}\n"
    )
}

#[test]
fn peer_authentication_resolution() {
    let strict = "{mtls: {mode: STRICT}}";
    let disable = "{mtls: {mode: DISABLE}}";
    let unset = "{mtls: {mode: UNSET}}";
    let cases: Vec<(&str, String, &str, u16, MtlsMode, &str)> = vec![
        (
            "start at PERMISSIVE when there is no policy",
            String::new(),
            "shop/web",
            8080,
            MtlsMode::Permissive,
            "default (no PeerAuthentication)",
        ),
        (
            "mesh policy: root namespace, no selector",
            pa("default", "istio-system", strict),
            "shop/web",
            8080,
            MtlsMode::Strict,
            "mesh istio-system/default",
        ),
        (
            "mesh UNSET => PERMISSIVE",
            pa("default", "istio-system", unset),
            "shop/web",
            8080,
            MtlsMode::Permissive,
            "default (no PeerAuthentication)",
        ),
        (
            "a root-namespace policy with a selector is ignored",
            pa(
                "sel",
                "istio-system",
                "{selector: {matchLabels: {app: web}}, mtls: {mode: DISABLE}}",
            ),
            "shop/web",
            8080,
            MtlsMode::Permissive,
            "default (no PeerAuthentication)",
        ),
        (
            "... also for workloads in the root namespace",
            pa(
                "sel",
                "istio-system",
                "{selector: {matchLabels: {app: sys}}, mtls: {mode: STRICT}}",
            ),
            "istio-system/sys",
            8080,
            MtlsMode::Permissive,
            "default (no PeerAuthentication)",
        ),
        (
            "namespace overrides mesh",
            pa("default", "istio-system", strict) + &pa("ns", "shop", disable),
            "shop/web",
            8080,
            MtlsMode::Disable,
            "namespace shop/ns",
        ),
        (
            "UNSET namespace policy inherits the mesh mode",
            pa("default", "istio-system", strict) + &pa("ns", "shop", unset),
            "shop/web",
            8080,
            MtlsMode::Strict,
            "mesh istio-system/default",
        ),
        (
            "a missing mtls block counts as UNSET",
            pa("default", "istio-system", strict) + &pa("ns", "shop", "{}"),
            "shop/web",
            8080,
            MtlsMode::Strict,
            "mesh istio-system/default",
        ),
        (
            "workload selector overrides namespace",
            pa("ns", "shop", strict)
                + &pa(
                    "w",
                    "shop",
                    "{selector: {matchLabels: {app: web}}, mtls: {mode: PERMISSIVE}}",
                ),
            "shop/web",
            8080,
            MtlsMode::Permissive,
            "workload shop/w",
        ),
        (
            "a selector that does not match changes nothing",
            pa("ns", "shop", strict)
                + &pa(
                    "w",
                    "shop",
                    "{selector: {matchLabels: {app: other}}, mtls: {mode: DISABLE}}",
                ),
            "shop/web",
            8080,
            MtlsMode::Strict,
            "namespace shop/ns",
        ),
        (
            "portLevelMtls keyed by the workload port",
            pa(
                "w",
                "shop",
                "{selector: {matchLabels: {app: web}}, mtls: {mode: STRICT}, portLevelMtls: {9090: {mode: DISABLE}}}",
            ),
            "shop/web",
            9090,
            MtlsMode::Disable,
            "port 9090 of shop/w",
        ),
        (
            "other ports keep the workload mode",
            pa(
                "w",
                "shop",
                "{selector: {matchLabels: {app: web}}, mtls: {mode: STRICT}, portLevelMtls: {9090: {mode: DISABLE}}}",
            ),
            "shop/web",
            8080,
            MtlsMode::Strict,
            "workload shop/w",
        ),
        (
            "an UNSET port entry inherits the resolved mode",
            pa("ns", "shop", disable)
                + &pa(
                    "w",
                    "shop",
                    "{selector: {matchLabels: {app: web}}, portLevelMtls: {8080: {mode: UNSET}}}",
                ),
            "shop/web",
            8080,
            MtlsMode::Disable,
            "namespace shop/ns",
        ),
        (
            "mesh DISABLE + workload STRICT: the workload wins on the server",
            pa("default", "istio-system", disable)
                + &pa(
                    "w",
                    "shop",
                    "{selector: {matchLabels: {app: web}}, mtls: {mode: STRICT}}",
                ),
            "shop/web",
            8080,
            MtlsMode::Strict,
            "workload shop/w",
        ),
        (
            "several namespace policies: the oldest wins",
            pa("b-new", "shop", disable).replace(
                "namespace: shop}",
                "namespace: shop, creationTimestamp: '2024-02-01T00:00:00Z'}",
            ) + &pa("z-old", "shop", strict).replace(
                "namespace: shop}",
                "namespace: shop, creationTimestamp: '2024-01-01T00:00:00Z'}",
            ),
            "shop/web",
            8080,
            MtlsMode::Strict,
            "namespace shop/z-old",
        ),
        (
            "same age: the first by name wins",
            pa("b", "shop", disable) + &pa("a", "shop", strict),
            "shop/web",
            8080,
            MtlsMode::Strict,
            "namespace shop/a",
        ),
    ];
    for (rule, policies, workload, port, mode, source) in cases {
        let mesh = mesh(&format!("{WORKLOADS}{policies}"));
        let (ns, name) = workload.split_once('/').unwrap();
        let w = mesh.workload(ns, name).unwrap();
        let got = mesh.peer_authentication(w, port);
        assert_eq!(
            (got.mode, got.source.to_string().as_str()),
            (mode, source),
            "rule: {rule}"
        );
    }
}

const SERVICES: &str = "---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {selector: {app: web}, ports: [{name: http, port: 80, targetPort: http}, {name: admin, port: 90, targetPort: 9090}]}
---
apiVersion: meshward.io/v1alpha1
kind: Workload
metadata: {name: plain, namespace: shop, labels: {app: plain}}
spec: {sidecar: false, ports: [{port: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: plain, namespace: shop}
spec: {selector: {app: plain}, ports: [{port: 8080}]}
";

fn dr(name: &str, ns: &str, body: &str) -> String {
    format!(
        "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {body}\n"
    )
}

#[test]
fn client_tls_resolution() {
    let web = "web.shop.svc.cluster.local";
    type Case<'a> = (
        &'a str,
        String,
        &'a str,
        &'a str,
        u16,
        Option<&'a str>,
        ClientTlsMode,
        &'a str,
    );
    let cases: Vec<Case<'_>> = vec![
        ("no DR: auto-mTLS to a sidecar endpoint", String::new(), "front", web, 80, None, ClientTlsMode::IstioMutual, "auto-mTLS"),
        ("no DR: plaintext to an endpoint without sidecar", String::new(), "front", "plain.shop.svc.cluster.local", 8080, None, ClientTlsMode::Disable, "auto-mTLS: endpoint has no sidecar"),
        ("a DR without tls keeps auto-mTLS (istio#7590)", dr("lb", "shop", "{host: web, trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}}"), "front", web, 80, None, ClientTlsMode::IstioMutual, "auto-mTLS"),
        ("short DR host is qualified with the rule's namespace", dr("d", "shop", "{host: web, trafficPolicy: {tls: {mode: DISABLE}}}"), "front", web, 80, None, ClientTlsMode::Disable, "DestinationRule shop/d (TrafficPolicy)"),
        ("the client namespace is looked up first", dr("svc-ns", "shop", "{host: web.shop.svc.cluster.local, trafficPolicy: {tls: {mode: DISABLE}}}") + &dr("client-ns", "front", "{host: web.shop.svc.cluster.local, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}"), "front", web, 80, None, ClientTlsMode::IstioMutual, "DestinationRule front/client-ns (TrafficPolicy)"),
        ("then the service namespace, then the root namespace", dr("root", "istio-system", "{host: '*.local', trafficPolicy: {tls: {mode: DISABLE}}}") + &dr("svc-ns", "shop", "{host: web, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}"), "front", web, 80, None, ClientTlsMode::IstioMutual, "DestinationRule shop/svc-ns (TrafficPolicy)"),
        ("wildcard *.local in the root namespace", dr("root", "istio-system", "{host: '*.local', trafficPolicy: {tls: {mode: DISABLE}}}"), "front", web, 80, None, ClientTlsMode::Disable, "DestinationRule istio-system/root (TrafficPolicy)"),
        ("the most specific host wins within a namespace", dr("wide", "shop", "{host: '*.local', trafficPolicy: {tls: {mode: DISABLE}}}") + &dr("exact", "shop", "{host: web, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}"), "front", web, 80, None, ClientTlsMode::IstioMutual, "DestinationRule shop/exact (TrafficPolicy)"),
        ("exportTo '.' hides a rule from other namespaces", dr("private", "shop", "{host: web, exportTo: ['.'], trafficPolicy: {tls: {mode: DISABLE}}}"), "front", web, 80, None, ClientTlsMode::IstioMutual, "auto-mTLS"),
        ("exportTo '.' still applies in its own namespace", dr("private", "shop", "{host: web, exportTo: ['.'], trafficPolicy: {tls: {mode: DISABLE}}}"), "shop", web, 80, None, ClientTlsMode::Disable, "DestinationRule shop/private (TrafficPolicy)"),
        ("two rules, one host: the first trafficPolicy wins", dr("a-first", "shop", "{host: web, trafficPolicy: {tls: {mode: DISABLE}}}") + &dr("b-second", "shop", "{host: web, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}"), "front", web, 80, None, ClientTlsMode::Disable, "DestinationRule shop/a-first (TrafficPolicy)"),
        ("portLevelSettings override the rule for their port", dr("p", "shop", "{host: web, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}, portLevelSettings: [{port: {number: 90}, tls: {mode: DISABLE}}]}}"), "front", web, 90, None, ClientTlsMode::Disable, "DestinationRule shop/p (Port)"),
        ("... and only for their port", dr("p", "shop", "{host: web, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}, portLevelSettings: [{port: {number: 90}, tls: {mode: DISABLE}}]}}"), "front", web, 80, None, ClientTlsMode::IstioMutual, "DestinationRule shop/p (TrafficPolicy)"),
        ("a subset policy overrides the top-level policy", dr("s", "shop", "{host: web, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}, subsets: [{name: v1, labels: {app: web}, trafficPolicy: {tls: {mode: DISABLE}}}]}"), "front", web, 80, Some("v1"), ClientTlsMode::Disable, "DestinationRule shop/s (Subset)"),
        ("auto-mTLS off and no tls: plaintext", "---\napiVersion: meshward.io/v1alpha1\nkind: MeshConfig\nmetadata: {name: mesh}\nspec: {enableAutoMtls: false}\n".to_owned(), "front", web, 80, None, ClientTlsMode::Disable, "enableAutoMtls is false"),
        ("auto-mTLS follows a DISABLE server policy (istio#32079)", pa("w", "shop", "{selector: {matchLabels: {app: web}}, mtls: {mode: DISABLE}}"), "front", web, 80, None, ClientTlsMode::Disable, "auto-mTLS: server PeerAuthentication is DISABLE"),
    ];
    let labels = BTreeMap::new();
    for (rule, extra, client_ns, host, port, subset, mode, source) in cases {
        let mesh = mesh(&format!("{WORKLOADS}{SERVICES}{extra}"));
        let resolved = mesh.resolve_host(client_ns, host).unwrap();
        let endpoints = mesh.endpoints(&resolved.destination, port);
        assert_eq!(endpoints.len(), 1, "rule: {rule}");
        let client = Client {
            namespace: client_ns,
            labels: &labels,
        };
        let got = mesh.client_tls(
            client,
            &resolved.fqdn,
            Some(resolved.destination.namespace()),
            port,
            subset,
            &endpoints[0],
        );
        assert_eq!(
            (got.mode, got.source.to_string().as_str()),
            (mode, source),
            "rule: {rule}"
        );
        if source.starts_with("auto") {
            assert!(!matches!(got.source, TlsSource::DestinationRule { .. }));
        }
    }
}

#[test]
fn traffic_settings_merge_as_istio_does() {
    use crate::resources::traffic::SimpleLb;
    let web = "web.shop.svc.cluster.local";
    let labels = BTreeMap::new();
    let client = Client {
        namespace: "front",
        labels: &labels,
    };
    // (rule, extra manifests, port, subset, load balancer, maxConnections, outlier set)
    type Case<'a> = (
        &'a str,
        String,
        u16,
        Option<&'a str>,
        Option<SimpleLb>,
        Option<i64>,
        bool,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            "no rule: nothing set",
            String::new(),
            80,
            None,
            None,
            None,
            false,
        ),
        (
            "top-level settings apply to every port",
            dr(
                "d",
                "shop",
                "{host: web, trafficPolicy: {loadBalancer: {simple: RANDOM}, connectionPool: {tcp: {maxConnections: 7}}}}",
            ),
            90,
            None,
            Some(SimpleLb::Random),
            Some(7),
            false,
        ),
        (
            "MergeTrafficPolicy: a port-level field replaces the top-level one as a whole",
            dr(
                "d",
                "shop",
                "{host: web, trafficPolicy: {loadBalancer: {simple: RANDOM}, connectionPool: {tcp: {maxConnections: 7}}, portLevelSettings: [{port: {number: 80}, connectionPool: {http: {http2MaxRequests: 3}}}]}}",
            ),
            80,
            None,
            Some(SimpleLb::Random),
            None,
            false,
        ),
        (
            "a subset's policy is merged over the top-level one",
            dr(
                "d",
                "shop",
                "{host: web, trafficPolicy: {loadBalancer: {simple: RANDOM}}, subsets: [{name: v1, labels: {app: web}, trafficPolicy: {outlierDetection: {consecutive5xxErrors: 1}}}]}",
            ),
            80,
            Some("v1"),
            Some(SimpleLb::Random),
            None,
            true,
        ),
        (
            "first top-level trafficPolicy wins",
            dr(
                "a",
                "shop",
                "{host: web, trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}}",
            ) + &dr(
                "b",
                "shop",
                "{host: web, trafficPolicy: {loadBalancer: {simple: RANDOM}}}",
            ),
            80,
            None,
            Some(SimpleLb::RoundRobin),
            None,
            false,
        ),
    ];
    for (rule, extra, port, subset, lb, max_connections, outlier) in cases {
        let mesh = mesh(&format!("{WORKLOADS}{SERVICES}{extra}"));
        let got = mesh.traffic_settings(client, web, Some("shop"), port, subset);
        assert_eq!(got.load_balancer.and_then(|l| l.simple), lb, "rule: {rule}");
        let max = got
            .connection_pool
            .and_then(|p| p.tcp)
            .and_then(|t| t.max_connections);
        assert_eq!(max, max_connections, "rule: {rule}");
        assert_eq!(got.outlier_detection.is_some(), outlier, "rule: {rule}");
    }
}

#[test]
fn service_names_resolve_as_kubernetes_dns() {
    let mesh = mesh(&format!("{WORKLOADS}{SERVICES}"));
    let cases = [
        (
            "short name in the caller's namespace",
            "shop",
            "web",
            Some("web.shop.svc.cluster.local"),
        ),
        (
            "short name from another namespace does not resolve",
            "front",
            "web",
            None,
        ),
        (
            "name.namespace",
            "front",
            "web.shop",
            Some("web.shop.svc.cluster.local"),
        ),
        (
            "name.namespace.svc",
            "front",
            "web.shop.svc",
            Some("web.shop.svc.cluster.local"),
        ),
        (
            "full name",
            "front",
            "web.shop.svc.cluster.local",
            Some("web.shop.svc.cluster.local"),
        ),
        ("unknown name", "shop", "nope", None),
    ];
    for (rule, ns, name, want) in cases {
        let got = mesh.resolve_host(ns, name).map(|r| r.fqdn);
        assert_eq!(got.as_deref(), want, "rule: {rule}");
    }
}

#[test]
fn endpoints_use_target_ports_and_identities() {
    let mesh = mesh(&format!("{WORKLOADS}{SERVICES}"));
    let web = mesh.resolve_host("shop", "web").unwrap();
    let http = mesh.endpoints(&web.destination, 80);
    assert_eq!(http[0].port, 8080, "targetPort by name");
    assert_eq!(
        http[0].identity.as_deref(),
        Some("spiffe://cluster.local/ns/shop/sa/web-sa")
    );
    assert_eq!(
        mesh.endpoints(&web.destination, 90)[0].port,
        9090,
        "targetPort by number"
    );
    assert!(
        mesh.endpoints(&web.destination, 81).is_empty(),
        "not a service port"
    );
    let ids = mesh.expected_identities(&web.destination, 80);
    assert_eq!(
        ids.into_iter().collect::<Vec<_>>(),
        ["spiffe://cluster.local/ns/shop/sa/web-sa"]
    );
}

#[test]
fn sidecar_injection_follows_istio_labels() {
    use crate::mesh::sidecar_injected;
    let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let enabled = labels(&[("istio-injection", "enabled")]);
    let disabled = labels(&[("istio-injection", "disabled")]);
    let opt_out = labels(&[("sidecar.istio.io/inject", "false")]);
    let opt_in = labels(&[("sidecar.istio.io/inject", "true")]);
    let none = BTreeMap::new();
    let cases = [
        ("namespace enabled", None, &none, Some(&enabled), true),
        (
            "pod opts out of an enabled namespace",
            None,
            &opt_out,
            Some(&enabled),
            false,
        ),
        (
            "namespace disabled wins over the pod",
            None,
            &opt_in,
            Some(&disabled),
            false,
        ),
        (
            "pod opts in without a namespace label",
            None,
            &opt_in,
            None,
            true,
        ),
        ("no label: no sidecar", None, &none, None, false),
        (
            "explicit sidecar flag wins",
            Some(true),
            &opt_out,
            Some(&disabled),
            true,
        ),
    ];
    for (rule, explicit, pod, ns, want) in cases {
        assert_eq!(sidecar_injected(explicit, pod, ns), want, "rule: {rule}");
    }
}
