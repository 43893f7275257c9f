use super::*;

fn parse(text: &str) -> ParsedStream {
    parse_stream("policies.yaml", text, &Limits::default())
}

fn first_error(text: &str) -> Diagnostic {
    let stream = parse(text);
    stream
        .all_errors()
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("expected an error for:\n{text}"))
}

const PA: &str = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: default\n  namespace: istio-system\nspec:\n  mtls:\n    mode: STRICT\n";

#[test]
fn valid_stream_with_empty_documents() {
    let text = format!("---\n{PA}---\n# only a comment\n---\n{PA}");
    let stream = parse(&text);
    assert_eq!(stream.documents.len(), 2);
    assert!(stream.documents[0].is_valid());
    assert_eq!(stream.documents[1].location.line, 13);
}

#[test]
fn enum_typo_is_an_error_at_its_line_and_column() {
    for typo in ["STRICTT", "strict"] {
        let err = first_error(&PA.replace("STRICT", typo));
        let location = err.location.clone().unwrap();
        assert_eq!((location.line, location.column), (8, 11), "{err}");
        assert!(err.message.contains(typo), "{err}");
    }
}

#[test]
fn unknown_field_is_named_and_circuit_breaker_gets_a_hint() {
    let text = "apiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\nmetadata:\n  name: r\nspec:\n  host: a\n  trafficPolicy:\n    circuitBreaker:\n      consecutiveErrors: 3\n";
    let err = first_error(text);
    assert!(err.message.contains("circuitBreaker"), "{err}");
    assert!(err.message.contains("outlierDetection"), "{err}");
    assert_eq!(err.location.unwrap().line, 8);
}

#[test]
fn duplicate_keys_are_errors() {
    let err = first_error(&format!("{PA}  mtls:\n    mode: DISABLE\n"));
    assert!(err.message.to_lowercase().contains("duplicate"), "{err}");
}

#[test]
fn unsupported_kind_and_version_are_named() {
    let err = first_error("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\n");
    assert!(
        err.message.contains("unsupported kind `Deployment`"),
        "{err}"
    );
    let err = first_error(&PA.replace("security.istio.io/v1", "security.istio.io/v1alpha1"));
    assert!(
        err.message
            .contains("unsupported apiVersion `security.istio.io/v1alpha1`"),
        "{err}"
    );
}

#[test]
fn one_bad_document_does_not_hide_the_others() {
    let text = format!("{PA}---\n{}", PA.replace("STRICT", "STRICTT"));
    let stream = parse(&text);
    assert!(stream.documents[0].is_valid());
    assert!(!stream.documents[1].is_valid());
    assert!(stream.into_documents().is_err(), "all-or-nothing");
}

#[test]
fn alias_bomb_hits_the_budget() {
    let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 0..8 {
        let prev = if i == 0 {
            "a".to_owned()
        } else {
            format!("b{}", i - 1)
        };
        text.push_str(&format!("b{i}: &b{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
    }
    let err = first_error(&text);
    assert!(err.message.to_lowercase().contains("budget"), "{err}");
}

#[test]
fn size_and_document_limits() {
    let limits = Limits {
        max_bytes: 10,
        ..Limits::default()
    };
    let stream = parse_stream("big.yaml", PA, &limits);
    assert!(stream.errors[0].message.contains("more than the limit"));
    let limits = Limits {
        max_documents: 1,
        ..Limits::default()
    };
    let stream = parse_stream("many.yaml", &format!("{PA}---\n{PA}"), &limits);
    assert!(stream.errors[0].message.contains("2 documents"));
}

#[test]
fn json_documents_parse_with_positions() {
    let text = r#"{"apiVersion": "security.istio.io/v1beta1", "kind": "PeerAuthentication",
 "metadata": {"name": "p", "namespace": "ns"},
 "spec": {"selector": {"matchLabels": {"app": "a"}}, "portLevelMtls": {"8080": {"mode": "DISABLE"}}}}
{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns", "labels": {"istio-injection": "enabled"}}}"#;
    let docs = parse(text).into_documents().unwrap();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[1].location.line, 4);
}

#[test]
fn validation_errors_point_at_the_field() {
    let text = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: p\n  namespace: ns\nspec:\n  portLevelMtls:\n    70000:\n      mode: STRICT\n";
    let stream = parse(text);
    let errors = stream.all_errors();
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("portLevelMtls requires selector")),
        "{messages:?}"
    );
    let range = errors
        .iter()
        .find(|e| e.message.contains("1-65535"))
        .unwrap();
    assert_eq!(range.path.as_deref(), Some("spec.portLevelMtls.70000"));
    assert_eq!(range.location.as_ref().unwrap().line, 9);
}

#[test]
fn istio_config_map_is_the_mesh_config() {
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: istio\n  namespace: istio-system\ndata:\n  mesh: |\n    trustDomain: example.org\n    enableAutoMtls: false\n";
    let docs = parse(text).into_documents().unwrap();
    let Resource::MeshConfig(mesh) = &docs[0].resource else {
        panic!("{docs:?}")
    };
    assert_eq!(mesh.spec.trust_domain, "example.org");
    assert!(!mesh.spec.enable_auto_mtls);
    assert_eq!(mesh.spec.root_namespace, "istio-system");
    let err = first_error(&text.replace("enableAutoMtls: false", "defaultConfig: {}"));
    assert!(err.message.contains("defaultConfig"), "{err}");
    assert_eq!(err.location.unwrap().line, 9, "points inside data.mesh");
}

#[test]
fn access_log_settings_of_the_mesh_config() {
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: istio\n  namespace: istio-system\ndata:\n  mesh: |\n    accessLogFile: /dev/stdout\n    accessLogEncoding: JSON\n";
    let docs = parse(text).into_documents().unwrap();
    let Resource::MeshConfig(mesh) = &docs[0].resource else {
        panic!("{docs:?}")
    };
    assert_eq!(
        mesh.spec.access_log(),
        Some(crate::resources::mesh_config::AccessLogEncoding::Json)
    );
    // TEXT by default, off without a file.
    let text_only = text.replace("    accessLogEncoding: JSON\n", "");
    let docs = parse(&text_only).into_documents().unwrap();
    let Resource::MeshConfig(mesh) = &docs[0].resource else {
        panic!("{docs:?}")
    };
    assert_eq!(
        mesh.spec.access_log(),
        Some(crate::resources::mesh_config::AccessLogEncoding::Text)
    );
    assert_eq!(
        crate::resources::mesh_config::MeshConfig::default().access_log(),
        None
    );

    let err = first_error(&text.replace("/dev/stdout", "/var/log/envoy.log"));
    assert!(
        err.message.contains("/var/log/envoy.log") && err.message.contains("/dev/stdout"),
        "{err}"
    );
    assert_eq!(err.path.as_deref(), Some("spec.accessLogFile"));
    let err = first_error(&text.replace("JSON", "XML"));
    assert!(err.message.contains("XML"), "{err}");
    let err = first_error(&text.replace(
        "accessLogEncoding: JSON",
        "accessLogFormat: \"%START_TIME%\"",
    ));
    assert!(err.message.contains("accessLogFormat"), "{err}");
}

#[test]
fn access_log_annotation_of_a_workload_is_checked() {
    let text = "apiVersion: meshward.io/v1alpha1\nkind: Workload\nmetadata:\n  name: web\n  annotations:\n    meshward.io/access-log: json\nspec:\n  serviceAccount: web\n";
    assert!(parse(text).into_documents().is_ok());
    let err = first_error(&text.replace("json", "loud"));
    assert!(
        err.message.contains("loud") && err.message.contains("off, text or json"),
        "{err}"
    );
}

#[test]
fn outbound_traffic_policy_of_the_mesh_config() {
    use crate::resources::mesh_config::OutboundTrafficMode;
    let text = |mesh: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: istio\n  namespace: istio-system\ndata:\n  mesh: |\n    {mesh}\n"
        )
    };
    // (mesh setting, the mode sidecars get)
    let cases = [
        ("trustDomain: cluster.local", OutboundTrafficMode::AllowAny),
        ("outboundTrafficPolicy: {}", OutboundTrafficMode::AllowAny),
        (
            "outboundTrafficPolicy: {mode: ALLOW_ANY}",
            OutboundTrafficMode::AllowAny,
        ),
        (
            "outboundTrafficPolicy: {mode: REGISTRY_ONLY}",
            OutboundTrafficMode::RegistryOnly,
        ),
    ];
    for (mesh, mode) in cases {
        let docs = parse(&text(mesh)).into_documents().unwrap();
        let Resource::MeshConfig(config) = &docs[0].resource else {
            panic!("{docs:?}")
        };
        assert_eq!(config.spec.outbound_traffic_mode(), mode, "{mesh}");
    }
    let err = first_error(&text("outboundTrafficPolicy: {mode: DENY}"));
    assert!(err.message.contains("DENY"), "{err}");
}
