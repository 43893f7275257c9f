//! Bad configuration input: every case is refused with an error that names the place (or is
//! accepted exactly as Istio would), nothing panics, and every hostile shape is stopped by a
//! named bound before it can cost memory or stack. `docs/robustness.md` lists each case.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use meshward_config::{Diagnostic, Limits, ParsedStream, parse_stream};

fn parse(text: &str) -> ParsedStream {
    parse_stream("bad.yaml", text, &Limits::default())
}

/// The first error of `text`, which must have one.
fn first_error(text: &str) -> Diagnostic {
    parse(text)
        .all_errors()
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("expected an error for:\n{text}"))
}

const PA: &str = "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: team-app
spec:
  mtls:
    mode: STRICT
";

const AP: &str = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: allow-get
  namespace: team-app
spec:
  selector:
    matchLabels: {app: httpbin}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: [cluster.local/ns/team-app/sa/sleep]
    to:
    - operation:
        methods: [GET]
        paths: [/get]
";

/// (case, text, `line:column` of the error or `None` for "somewhere in the document", words
/// the message must contain, lower-cased).
type Case = (
    &'static str,
    String,
    Option<(u64, u64)>,
    &'static [&'static str],
);

fn check(cases: Vec<Case>) {
    for (name, text, at, words) in cases {
        let stream = parse(&text);
        assert!(!stream.is_valid(), "{name}: accepted:\n{text}");
        let errors = stream.all_errors();
        let err = &errors[0];
        let location = err
            .location
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: no location: {err:?}"));
        assert_eq!(&*location.source, "bad.yaml", "{name}");
        if let Some((line, column)) = at {
            assert_eq!(
                (location.line, location.column),
                (line, column),
                "{name}: {err}"
            );
        }
        let message = err.message.to_lowercase();
        for word in words {
            assert!(message.contains(word), "{name}: `{word}` not in: {err}");
        }
    }
}

#[test]
fn syntax_errors_are_refused_at_their_place() {
    check(vec![
        (
            "unclosed flow sequence",
            PA.replace("mode: STRICT", "mode: [STRICT"),
            None,
            &[],
        ),
        (
            "unclosed flow mapping",
            format!("{PA}  portLevelMtls: {{8080: {{mode: DISABLE}}\n"),
            None,
            &[],
        ),
        (
            "unterminated double-quoted string",
            PA.replace("name: default", "name: \"default"),
            None,
            &[],
        ),
        (
            "unterminated single-quoted string",
            PA.replace("name: default", "name: 'default"),
            None,
            &[],
        ),
        (
            "bad indentation",
            PA.replace("    mode: STRICT", "   mode: STRICT\n    other: x"),
            None,
            &[],
        ),
        (
            "tab indentation",
            PA.replace("    mode: STRICT", "\tmode: STRICT"),
            None,
            &[],
        ),
        (
            "mapping value where none is allowed",
            PA.replace("name: default", "name: default: again"),
            Some((4, 16)),
            &[],
        ),
        (
            "undefined alias",
            PA.replace("mode: STRICT", "mode: *nowhere"),
            None,
            &[],
        ),
        (
            "stray closing bracket",
            PA.replace("mode: STRICT", "mode: STRICT]"),
            None,
            &[],
        ),
        (
            "raw NUL byte",
            PA.replace("name: default", "name: def\0ault"),
            None,
            &[],
        ),
        (
            "JSON syntax error",
            "{\"apiVersion\": \"security.istio.io/v1\", \"kind\": }".to_owned(),
            Some((1, 48)),
            &["invalid json"],
        ),
        (
            "JSON truncated object",
            "{\"apiVersion\": \"security.istio.io/v1\", \"kind\": \"PeerAuthentication\""
                .to_owned(),
            None,
            &["invalid json"],
        ),
        (
            // Found by robustness_fuzz: serde_json reports this end of input at column 0.
            "JSON cut at the end of a line",
            "{\"apiVersion\": \"security.istio.io/v1\",\n".to_owned(),
            Some((2, 1)),
            &["invalid json"],
        ),
        (
            "a list where a document is expected",
            "- a\n- b\n".to_owned(),
            Some((1, 1)),
            &[],
        ),
        (
            "a scalar where a document is expected",
            "just words\n".to_owned(),
            Some((1, 1)),
            &[],
        ),
    ]);
}

#[test]
fn unknown_kinds_versions_and_fields_are_named() {
    check(vec![
        (
            "unknown kind",
            PA.replace("kind: PeerAuthentication", "kind: PeerAuthenticationz"),
            Some((1, 1)),
            &["unsupported kind `peerauthenticationz`"],
        ),
        (
            "missing kind",
            PA.replace("kind: PeerAuthentication\n", ""),
            Some((1, 1)),
            &[],
        ),
        (
            "missing apiVersion",
            PA.replace("apiVersion: security.istio.io/v1\n", ""),
            Some((1, 1)),
            &[],
        ),
        (
            "unknown group",
            PA.replace("security.istio.io/v1", "security.istio.example/v1"),
            Some((1, 1)),
            &["security.istio.example/v1"],
        ),
        (
            "unknown field under spec",
            PA.replace("  mtls:", "  mtlss:"),
            Some((7, 3)),
            &["mtlss"],
        ),
        (
            "unknown field nested deep",
            AP.replace("methods: [GET]", "method: [GET]"),
            Some((16, 9)),
            &["method"],
        ),
        (
            "unknown top-level field",
            format!("{PA}specs: {{}}\n"),
            None,
            &["specs"],
        ),
        (
            "a known field with the wrong type",
            PA.replace("    mode: STRICT", "    mode: [STRICT]"),
            Some((8, 11)),
            &[],
        ),
        (
            "a map where a list is expected",
            AP.replace("methods: [GET]", "methods: {GET: 1}"),
            Some((16, 18)),
            &[],
        ),
        (
            "metadata name is not a string",
            PA.replace("name: default", "name: [a]"),
            None,
            &[],
        ),
    ]);
}

#[test]
fn wrong_enums_are_refused_with_the_choices() {
    check(vec![
        (
            "mode typo",
            PA.replace("STRICT", "STRICTT"),
            Some((8, 11)),
            &["strictt", "permissive"],
        ),
        (
            "mode in lower case (Istio's enums are case-sensitive)",
            PA.replace("STRICT", "strict"),
            Some((8, 11)),
            &["strict"],
        ),
        (
            "mode as an empty string",
            PA.replace("STRICT", "\"\""),
            Some((8, 11)),
            &[],
        ),
        (
            "action typo",
            AP.replace("action: ALLOW", "action: PERMIT"),
            Some((9, 11)),
            &["permit"],
        ),
        (
            "action with trailing space in quotes",
            AP.replace("action: ALLOW", "action: \"ALLOW \""),
            Some((9, 11)),
            &[],
        ),
        (
            "TLS mode of a DestinationRule",
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d, namespace: team-app}\nspec:\n  host: httpbin\n  trafficPolicy:\n    tls: {mode: ISTIO_MUTUALL}\n".to_owned(),
            Some((7, 17)),
            &["istio_mutuall"],
        ),
        (
            "port-level mode typo",
            format!(
                "{PA}  selector:\n    matchLabels: {{app: httpbin}}\n  portLevelMtls:\n    8080:\n      mode: DISABLED\n"
            ),
            Some((13, 13)),
            &["disabled"],
        ),
    ]);
}

#[test]
fn duplicate_keys_are_refused_at_every_level() {
    check(vec![
        (
            "top level",
            format!("{PA}kind: PeerAuthentication\n"),
            None,
            &["duplicate"],
        ),
        (
            "metadata",
            PA.replace("  name: default\n", "  name: default\n  name: other\n"),
            None,
            &["duplicate"],
        ),
        (
            "spec",
            format!("{PA}  mtls:\n    mode: DISABLE\n"),
            None,
            &["duplicate"],
        ),
        (
            "nested mapping",
            PA.replace("    mode: STRICT", "    mode: STRICT\n    mode: DISABLE"),
            None,
            &["duplicate"],
        ),
        (
            "flow mapping",
            AP.replace(
                "matchLabels: {app: httpbin}",
                "matchLabels: {app: httpbin, app: sleep}",
            ),
            None,
            &["duplicate"],
        ),
        (
            "integer keys of portLevelMtls",
            format!(
                "{PA}  selector:\n    matchLabels: {{app: httpbin}}\n  portLevelMtls:\n    8080: {{mode: DISABLE}}\n    8080: {{mode: STRICT}}\n"
            ),
            None,
            &["duplicate"],
        ),
        (
            "JSON object",
            r#"{"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "kind": "PeerAuthentication", "metadata": {"name": "p", "namespace": "ns"}, "spec": {}}"#.to_owned(),
            None,
            &["duplicate"],
        ),
    ]);
}

#[test]
fn alias_bombs_hit_the_alias_budget() {
    // Billion laughs: 9 levels of 10 aliases each.
    let mut laughs = String::from("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    let mut prev = "a".to_owned();
    for i in 0..9 {
        let refs = vec![format!("*{prev}"); 10].join(", ");
        laughs.push_str(&format!("b{i}: &b{i} [{refs}]\n"));
        prev = format!("b{i}");
    }
    // Merge keys (`<<`) that fan out the same way inside a real resource.
    let mut merges = String::from(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: m, namespace: ns}\nx0: &x0 {k: v}\n",
    );
    for i in 1..150 {
        merges.push_str(&format!("x{i}: &x{i} {{<<: *x{}, k{i}: v}}\n", i - 1));
    }
    // Aliases used as keys, another classic.
    let mut keys = String::from("k: &k [a, b, c]\n");
    for i in 0..200 {
        keys.push_str(&format!("? *k\n: {i}\n"));
    }
    check(vec![
        ("billion laughs", laughs, None, &["budget"]),
        ("merge-key fan-out", merges, None, &["budget"]),
        ("aliases as keys", keys, None, &[]),
    ]);
}

#[test]
fn deep_nesting_hits_the_depth_budget_without_exhausting_the_stack() {
    let depth = 200_000;
    let cases = vec![
        (
            "flow sequences",
            format!("a: {}{}\n", "[".repeat(depth), "]".repeat(depth)),
        ),
        (
            "flow mappings",
            format!("a: {}x: 1{}\n", "{a: ".repeat(depth), "}".repeat(depth)),
        ),
        (
            "unclosed flow sequences",
            format!("a: {}\n", "[".repeat(depth)),
        ),
        (
            "block mappings",
            (0..2_000)
                .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
                .collect::<String>(),
        ),
        (
            "block sequences",
            (0..2_000)
                .map(|i| format!("{}- \n", " ".repeat(2 * i)))
                .collect::<String>(),
        ),
        (
            "JSON arrays",
            format!("{{\"a\": {}{}}}", "[".repeat(depth), "]".repeat(depth)),
        ),
        (
            "unclosed JSON arrays",
            format!("{{\"a\": {}", "[".repeat(depth)),
        ),
        (
            "nested inside a resource",
            format!("{AP}  x: {}{}\n", "[".repeat(depth), "]".repeat(depth)),
        ),
    ];
    for (name, text) in cases {
        let stream = parse(&text);
        assert!(!stream.is_valid(), "{name}: accepted");
        assert!(
            !stream.all_errors().is_empty(),
            "{name}: refused without an error"
        );
    }
    // The bound itself: depth 32 is fine, 33 is not (counted as serde-saphyr counts it).
    let limits = Limits::default();
    let nested = |n: usize| format!("a: {}{}\n", "[".repeat(n), "]".repeat(n));
    let errors = |n: usize| parse_stream("d.yaml", &nested(n), &limits).all_errors();
    assert!(
        errors(limits.max_depth - 2)
            .iter()
            .all(|e| !e.message.contains("budget")),
        "{:?}",
        errors(limits.max_depth - 2)
    );
    assert!(
        errors(limits.max_depth + 1)
            .iter()
            .any(|e| e.message.contains("budget")),
        "{:?}",
        errors(limits.max_depth + 1)
    );
}

#[test]
fn oversized_streams_hit_their_bounds() {
    let limits = Limits::default();
    // One byte over the stream limit: refused before any parsing.
    let big = format!("{PA}# {}\n", "x".repeat(limits.max_bytes));
    let stream = parse(&big);
    assert!(stream.documents.is_empty());
    assert!(
        stream.errors[0].message.contains("bytes"),
        "{:?}",
        stream.errors
    );
    // Too many documents: refused as a whole.
    let many = vec!["a: 1\n"; limits.max_documents + 1].join("---\n");
    let stream = parse(&many);
    assert!(stream.documents.is_empty());
    assert!(
        stream.errors[0].message.contains("documents"),
        "{:?}",
        stream.errors
    );
    // Too many nodes in one document.
    let nodes = format!("{AP}  x: [{}]\n", vec!["1"; limits.max_nodes + 1].join(","));
    let err = first_error(&nodes);
    assert!(err.message.contains("budget"), "{err}");
    // A huge scalar inside the limit is only a long value, refused by validation.
    let long_name = PA.replace("name: default", &format!("name: {}", "a".repeat(1 << 20)));
    let err = first_error(&long_name);
    assert_eq!(err.path.as_deref(), Some("metadata.name"), "{err}");
    // So are ten thousand rules: accepted as Istio accepts them, bounded by the stream size.
    let rules = (0..10_000)
        .map(|i| format!("  - to: [{{operation: {{paths: [/p{i}]}}}}]\n"))
        .collect::<String>();
    let policy = AP.split("  rules:\n").next().unwrap().to_owned() + "  rules:\n" + &rules;
    let stream = parse(&policy);
    assert!(stream.is_valid(), "{:?}", stream.all_errors());
}

#[test]
fn a_byte_order_mark_and_odd_line_ends_are_handled() {
    let bom = format!("\u{feff}{PA}");
    let stream = parse(&bom);
    assert!(stream.is_valid(), "{:?}", stream.all_errors());
    let crlf = PA.replace('\n', "\r\n");
    let stream = parse(&crlf);
    assert!(stream.is_valid(), "{:?}", stream.all_errors());
    // A lone carriage return is a line break in YAML: the document still has its fields.
    let cr = PA.replace('\n', "\r");
    let stream = parse(&cr);
    assert!(
        stream.is_valid() || !stream.all_errors().is_empty(),
        "refused without an error"
    );
}

#[test]
fn every_truncation_of_a_manifest_is_refused_or_a_valid_prefix() {
    let stream = format!("{PA}---\n{AP}---\n{}", PA.replace("default", "second"));
    let whole = parse(&stream);
    assert!(whole.is_valid());
    let complete = whole.documents.len();
    for cut in 0..stream.len() {
        let Some(prefix) = stream.get(..cut) else {
            continue;
        };
        let parsed = parse(prefix);
        if parsed.is_valid() {
            // Only a cut at a document boundary (or inside trailing blank space) gives a
            // valid stream, and then it holds the documents before the cut, unchanged.
            let documents = parsed.into_documents().unwrap();
            assert!(documents.len() <= complete, "cut at {cut}");
            for (got, want) in documents.iter().zip(whole.documents.iter()) {
                let want = want.document.as_ref().unwrap();
                assert!(
                    got.resource == want.resource || got.text.len() < want.text.len(),
                    "cut at {cut}: a different resource came out of a truncated file"
                );
            }
        } else {
            let errors = parsed.all_errors();
            assert!(!errors.is_empty(), "cut at {cut}: refused without an error");
            assert!(
                errors.iter().all(|e| e.location.is_some()),
                "cut at {cut}: {errors:?}"
            );
        }
    }
}

#[test]
fn a_cut_inside_a_word_is_refused_naming_what_is_left() {
    let cut_mode = format!("{}STR\n", PA.split("STRICT").next().unwrap());
    let err = first_error(&cut_mode);
    assert!(err.message.contains("STR"), "{err}");
    let cut_action = AP.replace("action: ALLOW", "action: AL");
    let err = first_error(&cut_action);
    assert!(err.message.contains("AL"), "{err}");
    let cut_principal = AP.split("/sa/").next().unwrap().to_owned() + "/s";
    assert!(!parse(&cut_principal).is_valid());
}

#[test]
fn names_and_namespaces_must_be_what_kubernetes_accepts() {
    let long = "a".repeat(254);
    for (name, value) in [
        ("escaped NUL in a name", "\"a\\0b\""),
        ("newline in a name", "\"a\\nb\""),
        ("upper case name", "Default"),
        ("name with a slash", "a/b"),
        ("name with unicode", "défaut"),
        ("name with a space", "\"a b\""),
        ("name of 254 bytes", long.as_str()),
        ("name ending in a dash", "a-"),
        ("name with an empty label", "a..b"),
    ] {
        let text = PA.replace("name: default", &format!("name: {value}"));
        let err = first_error(&text);
        assert_eq!(err.path.as_deref(), Some("metadata.name"), "{name}: {err}");
        assert_eq!(err.location.as_ref().unwrap().line, 4, "{name}: {err}");
    }
    let long = "n".repeat(64);
    for (name, value) in [
        ("namespace with a dot", "team.app"),
        ("namespace of 64 bytes", long.as_str()),
        ("empty namespace", "\"\""),
        ("namespace with a control character", "\"a\\tb\""),
    ] {
        let text = PA.replace("namespace: team-app", &format!("namespace: {value}"));
        let err = first_error(&text);
        assert_eq!(
            err.path.as_deref(),
            Some("metadata.namespace"),
            "{name}: {err}"
        );
    }
    // What Kubernetes accepts stays accepted: dots in names, 253 bytes, digits first.
    for value in ["a.b-c.d", "0abc", &"a".repeat(253)] {
        let text = PA.replace("name: default", &format!("name: {value}"));
        assert!(parse(&text).is_valid(), "{value}");
    }
}
