//! `apiVersion` + `kind` → the typed resource, with errors that say what is unsupported and why.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_saphyr::Options;

use super::Placement;
use crate::diagnostic::Diagnostic;
use crate::meta::ObjectMeta;
use crate::resources::mesh_config::MeshConfig;
use crate::resources::{Object, Resource};

const SECURITY: &[&str] = &["security.istio.io/v1", "security.istio.io/v1beta1"];
const NETWORKING: &[&str] = &[
    "networking.istio.io/v1",
    "networking.istio.io/v1beta1",
    "networking.istio.io/v1alpha3",
];
const CORE: &[&str] = &["v1"];
const MESHWARD: &[&str] = &["meshward.io/v1alpha1"];

/// The kinds and the versions each is accepted in.
const KINDS: &[(&str, &[&str])] = &[
    ("PeerAuthentication", SECURITY),
    ("AuthorizationPolicy", SECURITY),
    ("DestinationRule", NETWORKING),
    ("VirtualService", NETWORKING),
    ("ServiceEntry", NETWORKING),
    ("Gateway", NETWORKING),
    ("WorkloadEntry", NETWORKING),
    ("Namespace", CORE),
    ("Service", CORE),
    ("ConfigMap", CORE),
    ("MeshConfig", MESHWARD),
    ("Workload", MESHWARD),
    ("TrustBundle", MESHWARD),
];

/// A resource document as written: header, metadata, spec (and `status`, output-only).
#[derive(Deserialize)]
#[serde(
    rename_all = "camelCase",
    deny_unknown_fields,
    bound(deserialize = "S: Deserialize<'de> + Default")
)]
struct Envelope<S> {
    #[serde(rename = "apiVersion")]
    _api_version: IgnoredAny,
    #[serde(rename = "kind")]
    _kind: IgnoredAny,
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: S,
    #[serde(default, rename = "status")]
    _status: Option<IgnoredAny>,
}

/// The `istio` ConfigMap: the mesh config as YAML text under `data.mesh`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConfigMapEnvelope {
    #[serde(rename = "apiVersion")]
    _api_version: IgnoredAny,
    #[serde(rename = "kind")]
    _kind: IgnoredAny,
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    data: BTreeMap<String, String>,
}

type Failure = Box<Diagnostic>;

pub(super) fn typed(
    place: &Placement,
    text: &str,
    options: &Options,
    api_version: &str,
    kind: &str,
) -> Result<Resource, Failure> {
    let fail = |message: String| -> Failure {
        Box::new(Diagnostic {
            location: Some(place.at(1, 1)),
            ..Diagnostic::error(message)
        })
    };
    if kind.is_empty() || api_version.is_empty() {
        return Err(fail(
            "a resource needs both `apiVersion` and `kind`".to_owned(),
        ));
    }
    let Some((_, versions)) = KINDS.iter().find(|(name, _)| *name == kind) else {
        return Err(fail(format!(
            "unsupported kind `{kind}` (apiVersion `{api_version}`): Meshward reads {}",
            KINDS
                .iter()
                .map(|(name, _)| *name)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    if !versions.contains(&api_version) {
        return Err(fail(format!(
            "unsupported apiVersion `{api_version}` for kind `{kind}`: use one of {}",
            versions.join(", ")
        )));
    }
    let api = api_version.to_owned();
    let resource = match kind {
        "PeerAuthentication" => Resource::PeerAuthentication(object(place, text, options, api)?),
        "AuthorizationPolicy" => Resource::AuthorizationPolicy(object(place, text, options, api)?),
        "DestinationRule" => Resource::DestinationRule(object(place, text, options, api)?),
        "VirtualService" => Resource::VirtualService(object(place, text, options, api)?),
        "ServiceEntry" => Resource::ServiceEntry(object(place, text, options, api)?),
        "Gateway" => Resource::Gateway(object(place, text, options, api)?),
        "WorkloadEntry" => Resource::WorkloadEntry(object(place, text, options, api)?),
        "Namespace" => Resource::Namespace(object(place, text, options, api)?),
        "Service" => Resource::Service(object(place, text, options, api)?),
        "MeshConfig" => Resource::MeshConfig(object(place, text, options, api)?),
        "Workload" => Resource::Workload(object(place, text, options, api)?),
        "TrustBundle" => Resource::TrustBundle(object(place, text, options, api)?),
        _ => Resource::MeshConfig(config_map(place, text, options, api)?),
    };
    Ok(resource)
}

fn object<S: DeserializeOwned + Default>(
    place: &Placement,
    text: &str,
    options: &Options,
    api_version: String,
) -> Result<Object<S>, Failure> {
    let envelope: Envelope<S> = serde_saphyr::from_str_with_options(text, options.clone())
        .map_err(|err| serde_failure(place, &err, ""))?;
    Ok(Object {
        api_version,
        metadata: envelope.metadata,
        spec: envelope.spec,
    })
}

fn config_map(
    place: &Placement,
    text: &str,
    options: &Options,
    api_version: String,
) -> Result<Object<MeshConfig>, Failure> {
    let envelope: ConfigMapEnvelope = serde_saphyr::from_str_with_options(text, options.clone())
        .map_err(|err| serde_failure(place, &err, ""))?;
    let fail = |message: String| -> Failure {
        Box::new(Diagnostic {
            location: Some(place.at(1, 1)),
            path: Some("data".to_owned()),
            ..Diagnostic::error(message)
        })
    };
    if envelope.metadata.name != "istio" {
        return Err(fail(format!(
            "ConfigMap `{}` is not mesh configuration: Meshward reads only the `istio` ConfigMap \
             (key `mesh`) in the root namespace",
            envelope.metadata.name
        )));
    }
    if let Some(other) = envelope.data.keys().find(|key| key.as_str() != "mesh") {
        return Err(fail(format!(
            "ConfigMap `istio` key `{other}` is not supported: only `mesh` (MeshConfig) is read"
        )));
    }
    let mesh_text = envelope.data.get("mesh").map_or("", String::as_str);
    let inner = mesh_placement(place, text);
    let spec: MeshConfig = if mesh_text.trim().is_empty() {
        MeshConfig::default()
    } else {
        serde_saphyr::from_str_with_options(mesh_text, options.clone())
            .map_err(|err| serde_failure(&inner, &err, "data.mesh: "))?
    };
    if envelope.metadata.namespace() != spec.root_namespace {
        return Err(fail(format!(
            "the `istio` ConfigMap must be in the root namespace `{}`, not `{}`",
            spec.root_namespace,
            envelope.metadata.namespace()
        )));
    }
    Ok(Object {
        api_version,
        metadata: envelope.metadata,
        spec,
    })
}

/// Where the text of `data.mesh` starts: the line after `mesh: |`.
fn mesh_placement(place: &Placement, text: &str) -> Placement {
    let line = text
        .lines()
        .position(|l| l.trim_start().starts_with("mesh:"))
        .map_or(0, |i| i as u64 + 1);
    Placement {
        source: place.source.clone(),
        line: place.line + line,
        column_offset: 0,
    }
}

fn serde_failure(place: &Placement, err: &serde_saphyr::Error, prefix: &str) -> Failure {
    let message = err.without_snippet().to_string();
    let message = match unknown_field_hint(&message) {
        Some(hint) => format!("{prefix}{message}; {hint}"),
        None => format!("{prefix}{message}"),
    };
    Box::new(Diagnostic {
        location: Some(place.of_error(err)),
        ..Diagnostic::error(message)
    })
}

/// Istio fields (or common mistakes) that deserve more than "unknown field".
const HINTS: &[(&str, &str)] = &[
    (
        "circuitBreaker",
        "`circuitBreaker` is not an Istio field: use `outlierDetection` (e.g. \
         `outlierDetection.consecutive5xxErrors`) and `connectionPool`",
    ),
    (
        "consecutiveErrors",
        "`consecutiveErrors` is deprecated in Istio: use `consecutive5xxErrors`",
    ),
    (
        "defaultConfig",
        "MeshConfig `defaultConfig` (Envoy proxy settings) is not supported by Meshward",
    ),
    (
        "defaultProviders",
        "MeshConfig `defaultProviders` (telemetry providers) is not supported by Meshward; \
         metrics are always served on :15090",
    ),
    (
        "extensionProviders",
        "MeshConfig `extensionProviders` is not supported by Meshward (no CUSTOM authorization, \
         no tracing providers yet)",
    ),
    (
        "caCertificates",
        "MeshConfig `caCertificates` is not supported yet: trust bundles come from the CA",
    ),
];

fn unknown_field_hint(message: &str) -> Option<&'static str> {
    let rest = message.split("unknown field `").nth(1)?;
    let field = rest.split('`').next()?;
    HINTS
        .iter()
        .find(|(name, _)| *name == field)
        .map(|(_, hint)| *hint)
}
