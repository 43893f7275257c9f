//! Kubernetes object metadata and the keys that name a resource.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The `metadata` block every resource carries (the subset a mesh needs).
///
/// Output-only fields that `kubectl get -o yaml` emits (`uid`, `resourceVersion`, `generation`)
/// are accepted so that exported manifests apply unchanged; they carry no meaning here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    /// The resource name, unique per kind and namespace.
    #[serde(default)]
    pub name: String,
    /// The namespace; `None` means the namespace the tool applies to (`default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// RFC 3339 creation time; decides which of several same-level policies is the oldest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    /// Output-only, accepted and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Output-only, accepted and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Output-only, accepted and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
}

impl ObjectMeta {
    /// The namespace, with Kubernetes' default when none is written.
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE)
    }
}

/// The namespace a resource without `metadata.namespace` lands in, as with `kubectl apply`.
pub const DEFAULT_NAMESPACE: &str = "default";

/// The kinds Meshward understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Kind {
    /// `security.istio.io` PeerAuthentication.
    PeerAuthentication,
    /// `security.istio.io` AuthorizationPolicy.
    AuthorizationPolicy,
    /// `networking.istio.io` DestinationRule.
    DestinationRule,
    /// `networking.istio.io` VirtualService.
    VirtualService,
    /// `networking.istio.io` ServiceEntry.
    ServiceEntry,
    /// `networking.istio.io` Gateway.
    Gateway,
    /// `networking.istio.io` WorkloadEntry.
    WorkloadEntry,
    /// Core `v1` Namespace.
    Namespace,
    /// Core `v1` Service.
    Service,
    /// Mesh-wide settings (a `meshward.io/v1alpha1` MeshConfig or the `istio` ConfigMap).
    MeshConfig,
    /// `meshward.io/v1alpha1` Workload.
    Workload,
    /// `meshward.io/v1alpha1` TrustBundle: the roots of another trust domain.
    TrustBundle,
}

impl Kind {
    /// Every kind, in a stable order.
    pub const ALL: [Kind; 12] = [
        Kind::PeerAuthentication,
        Kind::AuthorizationPolicy,
        Kind::DestinationRule,
        Kind::VirtualService,
        Kind::ServiceEntry,
        Kind::Gateway,
        Kind::WorkloadEntry,
        Kind::Namespace,
        Kind::Service,
        Kind::MeshConfig,
        Kind::Workload,
        Kind::TrustBundle,
    ];

    /// The kind's name as written in `kind:`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::PeerAuthentication => "PeerAuthentication",
            Kind::AuthorizationPolicy => "AuthorizationPolicy",
            Kind::DestinationRule => "DestinationRule",
            Kind::VirtualService => "VirtualService",
            Kind::ServiceEntry => "ServiceEntry",
            Kind::Gateway => "Gateway",
            Kind::WorkloadEntry => "WorkloadEntry",
            Kind::Namespace => "Namespace",
            Kind::Service => "Service",
            Kind::MeshConfig => "MeshConfig",
            Kind::Workload => "Workload",
            Kind::TrustBundle => "TrustBundle",
        }
    }

    /// Parses a kind name case-insensitively, also accepting kubectl's short names (`pa`, `dr`).
    pub fn from_name(name: &str) -> Option<Kind> {
        let lower = name.to_ascii_lowercase();
        let alias = match lower.as_str() {
            "pa" | "peerauthentications" => Some(Kind::PeerAuthentication),
            "ap" | "authorizationpolicies" => Some(Kind::AuthorizationPolicy),
            "dr" | "destinationrules" => Some(Kind::DestinationRule),
            "vs" | "virtualservices" => Some(Kind::VirtualService),
            "se" | "serviceentries" => Some(Kind::ServiceEntry),
            "gw" | "gateways" => Some(Kind::Gateway),
            "we" | "workloadentries" => Some(Kind::WorkloadEntry),
            "ns" | "namespaces" => Some(Kind::Namespace),
            "svc" | "services" => Some(Kind::Service),
            "workloads" => Some(Kind::Workload),
            "trustbundles" => Some(Kind::TrustBundle),
            _ => None,
        };
        alias.or_else(|| {
            Kind::ALL
                .into_iter()
                .find(|kind| kind.as_str().eq_ignore_ascii_case(&lower))
        })
    }

    /// Whether resources of this kind live in a namespace.
    pub fn is_namespaced(self) -> bool {
        !matches!(self, Kind::Namespace | Kind::MeshConfig)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Names one resource: kind, namespace (empty for cluster-scoped kinds) and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ResourceKey {
    /// The kind.
    pub kind: Kind,
    /// The namespace, empty for cluster-scoped kinds.
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}
