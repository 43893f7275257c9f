//! The authorization decision the sidecar takes per request, for 10, 100 and 1 000
//! AuthorizationPolicies on one workload, beside the same decision with no policy at all (the
//! floor: building nothing, matching nothing) in the same run.
//!
//! Each policy is a realistic ALLOW: one principal, two methods, a path prefix. The request
//! comes from the principal of the *last* policy, so every policy is looked at (the worst
//! case); a second series asks as a principal no policy names (default deny).

// Benchmark setup may panic: a broken fixture must stop the run, not skew it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use meshward_config::Mesh;
use meshward_config::authz::{CompiledAuthz, HttpAttrs, RequestAttrs, evaluate};
use meshward_config::{Limits, parse_stream};

const WORKLOAD: &str = "apiVersion: meshward.io/v1alpha1
kind: Workload
metadata: {name: api, namespace: shop, labels: {app: api}}
spec: {serviceAccount: api, ports: [{name: http, port: 8080}]}
";

/// The compiled policies of `shop/api` with `n` ALLOW policies; `wildcard` names each
/// caller by a principal prefix (`…/sa/client-7*`), which the principal index cannot file, so
/// every policy is evaluated in turn.
fn compiled(n: usize, wildcard: bool) -> CompiledAuthz {
    let star = if wildcard { "*" } else { "" };
    let mut yaml = WORKLOAD.to_owned();
    for i in 0..n {
        yaml.push_str(&format!(
            "---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: allow-{i}, namespace: shop}}
spec:
  selector: {{matchLabels: {{app: api}}}}
  rules:
  - from: [{{source: {{principals: [\"cluster.local/ns/shop/sa/client-{i}{star}\"]}}}}]
    to: [{{operation: {{methods: [GET, HEAD], paths: [/api/v1/items/{i}/*]}}}}]
"
        ));
    }
    let limits = Limits {
        max_bytes: 64 << 20,
        max_documents: 10_000,
        ..Limits::default()
    };
    let docs = parse_stream("bench.yaml", &yaml, &limits)
        .into_documents()
        .unwrap();
    let mesh = Mesh::new(docs).unwrap();
    let workload = mesh.workload("shop", "api").unwrap();
    mesh.compiled_authz(workload).unwrap()
}

fn request(client: usize) -> RequestAttrs {
    RequestAttrs::new(
        "10.0.0.5".parse().unwrap(),
        "10.0.1.1".parse().unwrap(),
        8080,
    )
    .with_peer(&format!(
        "spiffe://cluster.local/ns/shop/sa/client-{client}"
    ))
    .with_http(HttpAttrs {
        host: "api.shop.svc.cluster.local".to_owned(),
        method: "GET".to_owned(),
        path: format!("/api/v1/items/{client}/detail"),
        headers: vec![("user-agent".to_owned(), "bench".to_owned())],
    })
}

fn decisions(c: &mut Criterion) {
    let mut group = c.benchmark_group("authz_decision");
    let none = CompiledAuthz::default();
    let attrs = request(0);
    group.bench_function("baseline: no policy", |b| {
        b.iter(|| evaluate(black_box(&none), black_box(&attrs)));
    });
    for n in [10, 100, 1000] {
        let authz = compiled(n, false);
        let last = request(n - 1);
        assert!(evaluate(&authz, &last).allowed);
        group.bench_with_input(
            BenchmarkId::new("allowed by the last policy", n),
            &n,
            |b, _| {
                b.iter(|| evaluate(black_box(&authz), black_box(&last)));
            },
        );
        let stranger = request(n + 1);
        assert!(!evaluate(&authz, &stranger).allowed);
        group.bench_with_input(
            BenchmarkId::new("denied, no policy matches", n),
            &n,
            |b, _| {
                b.iter(|| evaluate(black_box(&authz), black_box(&stranger)));
            },
        );
        let scanned = compiled(n, true);
        assert!(evaluate(&scanned, &last).allowed);
        group.bench_with_input(
            BenchmarkId::new("wildcard principals, allowed by the last policy", n),
            &n,
            |b, _| b.iter(|| evaluate(black_box(&scanned), black_box(&last))),
        );
    }
    group.finish();
}

criterion_group!(benches, decisions);
criterion_main!(benches);
