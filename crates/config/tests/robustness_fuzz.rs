//! Property tests standing in for fuzz targets (cargo-fuzz needs a nightly toolchain): the
//! manifest parser and the authorization compiler on arbitrary, YAML-shaped and mutated input,
//! and request path normalization. Each runs a short smoke in CI; for a long run raise the case
//! count:
//!
//! ```sh
//! PROPTEST_CASES=200000 cargo nextest run -p meshward-config --test robustness_fuzz
//! ```

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use meshward_config::authz::{HttpAttrs, RequestAttrs, evaluate, normalize_path};
use meshward_config::resources::mesh_config::NormalizationType;
use meshward_config::{Limits, Mesh, ParsedStream, parse_stream};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;

/// `PROPTEST_CASES` when set, else `smoke`; no regression files are written (a failure found
/// here becomes an explicit regression test).
fn config(smoke: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(smoke);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

const SEEDS: &[&str] = &[
    "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: team-app}
spec:
  selector: {matchLabels: {app: httpbin}}
  mtls: {mode: STRICT}
  portLevelMtls:
    8080: {mode: DISABLE}
",
    "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow, namespace: team-app}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: ALLOW
  rules:
  - from: [{source: {principals: [cluster.local/ns/team-app/sa/sleep], ipBlocks: [10.0.0.0/8]}}]
    to: [{operation: {methods: [GET], paths: [/get, /status/*], ports: ['8080']}}]
    when: [{key: request.headers[x-id], values: ['a*']}]
",
    "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: dr, namespace: team-app}
spec:
  host: httpbin.team-app.svc.cluster.local
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
  subsets: [{name: v1, labels: {version: v1}}]
",
    "apiVersion: meshward.io/v1alpha1
kind: Workload
metadata: {name: httpbin, namespace: team-app, labels: {app: httpbin}}
spec:
  serviceAccount: httpbin
  ports: [{name: http, port: 8080, protocol: HTTP}]
  command: [python3, -m, http.server]
---
apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: team-app}
spec: {selector: {app: httpbin}, ports: [{name: http, port: 8000, targetPort: 8080}]}
",
    r#"{"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
 "metadata": {"name": "p", "namespace": "ns"}, "spec": {"mtls": {"mode": "PERMISSIVE"}}}"#,
    "apiVersion: meshward.io/v1alpha1
kind: MeshConfig
metadata: {name: mesh}
spec:
  trustDomain: cluster.local
  pathNormalization: {normalization: MERGE_SLASHES}
",
];

/// Parses `text`; whatever it is, nothing panics and every error says where.
fn check(text: &str) -> ParsedStream {
    let stream = parse_stream("fuzz.yaml", text, &Limits::default());
    // Line breaks as YAML counts them: LF, CRLF, a lone CR (and, to be generous, NEL, LS, PS).
    let breaks = text
        .replace("\r\n", "\n")
        .matches(['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}'])
        .count();
    let lines = u64::try_from(breaks).unwrap_or(u64::MAX) + 1;
    for error in stream.all_errors() {
        let location = error
            .location
            .as_ref()
            .expect("an error without a location");
        assert!(location.line >= 1 && location.column >= 1, "{error:?}");
        assert!(
            location.line <= lines.max(1),
            "{error:?} past the end of {lines} lines"
        );
    }
    if stream.is_valid() {
        for document in stream.clone().into_documents().unwrap() {
            assert!(
                text.contains(document.text.trim()),
                "a document not from the input"
            );
        }
    }
    stream
}

/// Byte-level edits of a seed: delete, insert or replace a character at a position.
fn mutate(seed: &str, edits: &[(Index, u8, char)]) -> String {
    let mut chars: Vec<char> = seed.chars().collect();
    for (at, kind, c) in edits {
        if chars.is_empty() {
            chars.push(*c);
            continue;
        }
        let i = at.index(chars.len());
        match kind {
            0 => {
                chars.remove(i);
            }
            1 => chars.insert(i, *c),
            _ => chars[i] = *c,
        }
    }
    chars.into_iter().collect()
}

/// Characters that matter to YAML and JSON, and some that should not be there.
fn yaml_char() -> impl Strategy<Value = char> {
    prop_oneof![
        6 => prop::sample::select(vec![
            ':', '-', ' ', '\n', '{', '}', '[', ']', ',', '&', '*', '!', '|', '>', '\'', '"', '#',
            '%', '@', '`', '?', '<', '\t', '\r', '\\', '.', '/', '0', '9',
        ]),
        3 => prop::char::range('a', 'z'),
        1 => any::<char>(),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        check(&text);
    }

    #[test]
    fn yaml_shaped_text_never_panics(chars in prop::collection::vec(yaml_char(), 0..400)) {
        check(&chars.into_iter().collect::<String>());
    }

    #[test]
    fn mutated_manifests_never_panic(
        seed in 0..SEEDS.len(),
        edits in prop::collection::vec((any::<Index>(), 0u8..3, yaml_char()), 1..10),
    ) {
        let text = mutate(SEEDS[seed], &edits);
        let stream = check(&text);
        // Whatever survives validation also builds a mesh and compiles (or names why not).
        if let Ok(documents) = stream.into_documents()
            && let Ok(mesh) = Mesh::new(documents)
        {
            for w in mesh.workloads() {
                let _ = mesh.compiled_authz(w);
            }
        }
    }

    #[test]
    fn generated_policies_compile_travel_and_decide(
        action in prop::sample::select(vec!["ALLOW", "DENY", "AUDIT", "CUSTOM", ""]),
        principal in prop::sample::select(vec![
            "cluster.local/ns/a/sa/b", "*", "*/ns/a/sa/*", "", "spiffe://x", "a*b*c",
            "cluster.local/ns/a/sa/b/../c",
        ]),
        namespace in "[a-z*]{0,6}",
        ip in prop::sample::select(vec!["10.0.0.0/8", "1.2.3.4", "::1/128", "300.0.0.1", "1.2.3.4/33", ""]),
        method in "[A-Z*]{0,6}",
        path in prop::sample::select(vec!["/a", "/a/*", "*/b", "/{*}", "/{**}/x", "/a/{*}/b", "", "/a/{x}", "/**"]),
        port in prop::sample::select(vec!["8080", "0", "65536", "-1", "x", ""]),
        key in prop::sample::select(vec![
            "source.ip", "request.headers[x]", "request.headers[]", "destination.port",
            "connection.sni", "request.auth.claims[iss]", "nope", "",
        ]),
        value in "[a-z0-9*./]{0,8}",
        request_path in "/[a-z/*.]{0,12}",
    ) {
        let yaml = format!(
            "apiVersion: meshward.io/v1alpha1
kind: Workload
metadata: {{name: w, namespace: ns, labels: {{app: w}}}}
spec: {{serviceAccount: w}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: p, namespace: ns}}
spec:
  selector: {{matchLabels: {{app: w}}}}
  action: '{action}'
  rules:
  - from: [{{source: {{principals: ['{principal}'], namespaces: ['{namespace}'], ipBlocks: ['{ip}']}}}}]
    to: [{{operation: {{methods: ['{method}'], paths: ['{path}'], ports: ['{port}']}}}}]
    when: [{{key: '{key}', values: ['{value}']}}]
"
        );
        let stream = check(&yaml);
        let Ok(documents) = stream.into_documents() else { return Ok(()) };
        let mesh = Mesh::new(documents).unwrap();
        let w = mesh.workload("ns", "w").unwrap();
        // Validation accepted it, so it compiles; the control plane ships it as JSON.
        let compiled = mesh.compiled_authz(w).unwrap();
        let json = serde_json::to_string(&compiled).unwrap();
        let back: meshward_config::authz::CompiledAuthz = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&back, &compiled);
        let attrs = RequestAttrs::new(
            "10.1.2.3".parse().unwrap(),
            "10.9.9.9".parse().unwrap(),
            8080,
        )
        .with_peer("spiffe://cluster.local/ns/a/sa/b");
        let tcp = evaluate(&back, &attrs);
        let http = evaluate(
            &back,
            &attrs.with_http(HttpAttrs {
                host: "w".into(),
                method: "GET".into(),
                path: request_path,
                headers: vec![("x".into(), value)],
            }),
        );
        // A policy decides; a DENY never allows less on TCP than on HTTP for the same rule.
        let _ = (tcp, http);
    }
}

fn modes() -> impl Strategy<Value = NormalizationType> {
    prop::sample::select(vec![
        NormalizationType::Default,
        NormalizationType::None,
        NormalizationType::Base,
        NormalizationType::MergeSlashes,
        NormalizationType::DecodeAndMergeSlashes,
    ])
}

/// Request targets made of the pieces that matter to normalization (mostly ones it accepts,
/// so that the properties of its output get exercised).
fn targets() -> impl Strategy<Value = String> {
    let accepted = prop::sample::select(vec![
        "/",
        "//",
        "\\",
        ".",
        "..",
        "/./",
        "/../",
        "%2e",
        "%2E",
        "%2f",
        "%2F",
        "%5c",
        "%5C",
        "%25",
        "%41",
        "%3a",
        "%e2%82%ac",
        "a",
        "admin",
        "Z",
        "~",
        ";",
        "?",
        "&",
        "=",
        "é",
        "*",
    ]);
    let rare = prop::sample::select(vec!["%00", "%0a", "%7f", "%zz", "%4", "#", "\u{0}", " "]);
    let piece = prop_oneof![19 => accepted, 1 => rare];
    prop::collection::vec(piece, 0..16).prop_map(|p| format!("/{}", p.concat()))
}

fn path_of(target: &str) -> &str {
    target.split('?').next().unwrap_or_default()
}

proptest! {
    #![proptest_config(config(2048))]

    #[test]
    fn normalization_never_panics(target in any::<String>(), mode in modes()) {
        let _ = normalize_path(&target, mode);
    }

    #[test]
    fn normalization_is_idempotent_and_leaves_nothing_to_reinterpret(
        target in targets(),
        mode in modes(),
    ) {
        let Ok(normalized) = normalize_path(&target, mode) else { return Ok(()) };
        // Normalizing again changes nothing: the app and the policy see the same path.
        prop_assert_eq!(normalize_path(&normalized, mode), Ok(normalized.clone()));
        // The query string is kept as it was.
        prop_assert_eq!(
            normalized.split_once('?').map(|(_, q)| q),
            target.split_once('?').map(|(_, q)| q)
        );
        let path = path_of(&normalized);
        prop_assert!(path.starts_with('/'));
        prop_assert!(!path.bytes().any(|b| b.is_ascii_control()));
        prop_assert!(!normalized.contains('#'));
        if mode == NormalizationType::None {
            return Ok(());
        }
        let segments: Vec<&str> = path.split('/').skip(1).collect();
        prop_assert!(
            !segments.iter().any(|s| *s == "." || *s == ".."),
            "a dot segment in {}", normalized
        );
        prop_assert!(!path.contains('\\'));
        let upper = path.to_ascii_uppercase();
        // No escaped slash, and no escape an app would decode into something else.
        prop_assert!(!upper.contains("%2F") && !upper.contains("%5C"), "{}", normalized);
        prop_assert!(!upper.contains("%2E") && !upper.contains("%41"), "{}", normalized);
        if matches!(
            mode,
            NormalizationType::MergeSlashes | NormalizationType::DecodeAndMergeSlashes
        ) {
            prop_assert!(!path.contains("//"), "{}", normalized);
        }
    }
}
