//! Every manifest in `testdata/seeds/` (Istio YAML as users write it) parses, or fails with the
//! exact unsupported kind or field named. Where the manifest is wrong about Istio, the error is
//! the expectation.

use std::path::Path;

use meshward_config::{Limits, Severity, parse_stream};

/// What a manifest gives.
enum Expect {
    /// Valid, no warning.
    Parses,
    /// Rejected at `line:column`, the message naming each of `names`.
    Fails {
        line: u64,
        column: u64,
        names: &'static [&'static str],
    },
}

use Expect::{Fails, Parses};

/// A kind Meshward does not read: rejected at the document start, naming the kind.
const fn unsupported(names: &'static [&'static str]) -> Expect {
    Fails {
        line: 1,
        column: 1,
        names,
    }
}

/// (file, resource, expectation, why).
const SEEDS: &[(&str, &str, Expect, &str)] = &[
    (
        "s000-peerauthentication-default.yaml",
        "PeerAuthentication istio-system/default",
        Parses,
        "mesh-wide STRICT",
    ),
    (
        "s000-peerauthentication-production-mtls.yaml",
        "PeerAuthentication production/production-mtls",
        Parses,
        "namespace-wide STRICT",
    ),
    (
        "s000-peerauthentication-sample-app-mtls.yaml",
        "PeerAuthentication production/sample-app-mtls",
        Parses,
        "portLevelMtls with a selector, as Istio requires",
    ),
    (
        "s000-destinationrule-sample-app-mtls.yaml",
        "DestinationRule production/sample-app-mtls",
        Parses,
        "ISTIO_MUTUAL, top level and subset",
    ),
    (
        "s000-secret-custom-ca-secret.yaml",
        "Secret istio-system/custom-ca-secret",
        unsupported(&["unsupported kind `Secret`"]),
        "wrong about Istio: a plug-in CA is the `cacerts` Secret; Meshward reads CA files (`meshward ca`), not Secrets",
    ),
    (
        "s000-serviceentry-remote-service.yaml",
        "ServiceEntry production/remote-service",
        Parses,
        "MESH_EXTERNAL host",
    ),
    (
        "s000-destinationrule-remote-service-mtls.yaml",
        "DestinationRule production/remote-service-mtls",
        Parses,
        "valid; ISTIO_MUTUAL works only toward a proxy trusting the same root",
    ),
    (
        "s000-peerauthentication-legacy-service.yaml",
        "PeerAuthentication production/legacy-service",
        Parses,
        "workload PERMISSIVE",
    ),
    (
        "s001-peerauthentication-default.yaml",
        "PeerAuthentication istio-system/default",
        Parses,
        "mesh-wide STRICT",
    ),
    (
        "s001-peerauthentication-namespace-policy.yaml",
        "PeerAuthentication production/namespace-policy",
        Parses,
        "namespace-wide",
    ),
    (
        "s001-peerauthentication-service-policy.yaml",
        "PeerAuthentication production/service-policy",
        Parses,
        "workload policy",
    ),
    (
        "s001-peerauthentication-legacy-service-policy.yaml",
        "PeerAuthentication production/legacy-service-policy",
        Parses,
        "portLevelMtls exception",
    ),
    (
        "s001-peerauthentication-external-service-policy.yaml",
        "PeerAuthentication production/external-service-policy",
        Parses,
        "workload DISABLE",
    ),
    (
        "s001-destinationrule-sample-app-mtls.yaml",
        "DestinationRule production/sample-app-mtls",
        Fails {
            line: 20,
            column: 5,
            names: &["unknown field `circuitBreaker`", "use `outlierDetection`"],
        },
        "wrong about Istio: there is no `circuitBreaker` field",
    ),
    (
        "s001-destinationrule-external-service-tls.yaml",
        "DestinationRule production/external-service-tls",
        Parses,
        "SIMPLE with caCertificates and sni",
    ),
    (
        "s001-destinationrule-custom-mtls.yaml",
        "DestinationRule production/custom-mtls",
        Parses,
        "MUTUAL with certificate files",
    ),
    (
        "s001-secret-custom-ca-secret.yaml",
        "Secret istio-system/custom-ca-secret",
        unsupported(&["unsupported kind `Secret`"]),
        "wrong about Istio: see s000",
    ),
    (
        "s001-configmap-istio.yaml",
        "ConfigMap istio-system/istio",
        Fails {
            line: 9,
            column: 1,
            names: &[
                "unknown field `defaultConfig`",
                "(Envoy proxy settings) is not supported",
            ],
        },
        "the mesh ConfigMap is read, but `defaultConfig` configures Envoy",
    ),
    (
        "s001-serviceentry-remote-service.yaml",
        "ServiceEntry production/remote-service",
        Parses,
        "MESH_EXTERNAL host",
    ),
    (
        "s001-destinationrule-remote-service-mtls.yaml",
        "DestinationRule production/remote-service-mtls",
        Parses,
        "ISTIO_MUTUAL",
    ),
    (
        "s001-peerauthentication-cross-cluster-mtls.yaml",
        "PeerAuthentication production/cross-cluster-mtls",
        Parses,
        "STRICT",
    ),
    (
        "s002-peerauthentication-default.yaml",
        "PeerAuthentication istio-system/default",
        Parses,
        "mesh-wide STRICT",
    ),
    (
        "s002-authorizationpolicy-require-jwt.yaml",
        "AuthorizationPolicy backend/require-jwt",
        Parses,
        "ALLOW by principal, without spiffe://",
    ),
    (
        "s003-peerauthentication-mutual-tls-auth.yaml",
        "PeerAuthentication team-app/mutual-tls-auth",
        Parses,
        "the STRICT lab",
    ),
    (
        "s004-peerauthentication-default-mtls-strict.yaml",
        "PeerAuthentication istio-system/default-mtls-strict",
        Parses,
        "mesh-wide STRICT",
    ),
    (
        "s004-peerauthentication-production-mtls-strict.yaml",
        "PeerAuthentication default/production-mtls-strict",
        Parses,
        "namespace STRICT",
    ),
    (
        "s004-peerauthentication-staging-mtls-permissive.yaml",
        "PeerAuthentication staging/staging-mtls-permissive",
        Parses,
        "namespace PERMISSIVE",
    ),
    (
        "s004-peerauthentication-legacy-service-mtls.yaml",
        "PeerAuthentication default/legacy-service-mtls",
        Parses,
        "portLevelMtls exception",
    ),
    (
        "s004-destinationrule-default-mtls.yaml",
        "DestinationRule istio-system/default-mtls",
        Parses,
        "mesh-wide `*.local` ISTIO_MUTUAL",
    ),
    (
        "s004-authorizationpolicy-deny-all-default.yaml",
        "AuthorizationPolicy default/deny-all-default",
        Parses,
        "allow-nothing `spec: {}`",
    ),
    (
        "s004-authorizationpolicy-allow-api-gateway-to-backends.yaml",
        "AuthorizationPolicy default/allow-api-gateway-to-backends",
        Parses,
        "principals and HTTP operations",
    ),
    (
        "s004-authorizationpolicy-allow-reporting-to-ai.yaml",
        "AuthorizationPolicy default/allow-reporting-to-ai",
        Parses,
        "principals and paths",
    ),
    (
        "s004-authorizationpolicy-readonly-analytics.yaml",
        "AuthorizationPolicy default/readonly-analytics",
        Parses,
        "methods",
    ),
    (
        "s004-authorizationpolicy-allow-health-checks.yaml",
        "AuthorizationPolicy default/allow-health-checks",
        Parses,
        "paths",
    ),
    (
        "s004-configmap-trust-bundle.yaml",
        "ConfigMap istio-system/trust-bundle",
        Fails {
            line: 1,
            column: 1,
            names: &["ConfigMap `trust-bundle` is not mesh configuration"],
        },
        "wrong about Istio: a trust-bundle ConfigMap does nothing unless fed to meshConfig.caCertificates",
    ),
    (
        "s004-serviceentry-eu-region-services.yaml",
        "ServiceEntry istio-system/eu-region-services",
        Parses,
        "MESH_INTERNAL region hosts",
    ),
    (
        "s004-gateway-cross-region-gateway.yaml",
        "Gateway istio-system/cross-region-gateway",
        Parses,
        "AUTO_PASSTHROUGH on 15443",
    ),
    (
        "s004-authorizationpolicy-allow-cross-region-eu.yaml",
        "AuthorizationPolicy default/allow-cross-region-eu",
        Parses,
        "principals of another trust domain",
    ),
    (
        "s004-authorizationpolicy-allow-access-to-my-service.yaml",
        "AuthorizationPolicy my-namespace/allow-access-to-my-service",
        Parses,
        "ALLOW by principal",
    ),
    (
        "s004-peerauthentication-production-strict.yaml",
        "PeerAuthentication production/production-strict",
        Parses,
        "namespace STRICT",
    ),
    (
        "s004-destinationrule-connection-pooling.yaml",
        "DestinationRule default/connection-pooling",
        Parses,
        "http2MaxRequests and maxRequestsPerConnection, enforced by the sidecar",
    ),
    (
        "s004-envoyfilter-enable-compression.yaml",
        "EnvoyFilter enable-compression",
        unsupported(&["unsupported kind `EnvoyFilter`"]),
        "Envoy-specific",
    ),
];

fn seeds_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/seeds"))
}

#[test]
fn every_seed_manifest_parses_or_names_what_is_unsupported() {
    for (file, resource, expect, why) in SEEDS {
        let text = std::fs::read_to_string(seeds_dir().join(file)).unwrap();
        let stream = parse_stream(file, &text, &Limits::default());
        assert!(stream.errors.is_empty(), "{file}: {:?}", stream.errors);
        assert_eq!(stream.documents.len(), 1, "{file}: one manifest per file");
        let document = &stream.documents[0];
        assert_eq!(document.resource.as_deref(), Some(*resource), "{file}");
        let errors: Vec<_> = document
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .collect();
        let warnings: Vec<_> = document
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .filter_map(|d| d.path.as_deref())
            .collect();
        match expect {
            Parses => {
                assert!(document.is_valid(), "{file} ({why}): {errors:?}");
                assert!(warnings.is_empty(), "{file} ({why}): {warnings:?}");
            }
            Fails {
                line,
                column,
                names,
            } => {
                assert!(!document.is_valid(), "{file} must be rejected: {why}");
                assert_eq!(errors.len(), 1, "{file}: {errors:?}");
                let error = errors[0];
                let location = error.location.as_ref().unwrap();
                assert_eq!(
                    (location.line, location.column),
                    (*line, *column),
                    "{file}: {error}"
                );
                for name in *names {
                    assert!(
                        error.message.contains(name),
                        "{file} ({why}): `{name}` not in {error}"
                    );
                }
            }
        }
    }
}

#[test]
fn the_table_covers_every_seed_file() {
    let mut files: Vec<String> = std::fs::read_dir(seeds_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".yaml"))
        .collect();
    files.sort();
    let mut listed: Vec<&str> = SEEDS.iter().map(|(file, ..)| *file).collect();
    listed.sort_unstable();
    assert_eq!(files, listed);
}
