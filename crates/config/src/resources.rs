//! The typed resources, one module per kind, and the [`Resource`] enum over them.
//!
//! Every struct denies unknown fields, so a typo or an unsupported field is an error that names
//! it. Istio fields that Meshward parses but rejects or does not enforce yet are typed loosely
//! (`serde_json::Value`) and reported by validation with the reason.

use serde::{Deserialize, Serialize};

use crate::meta::{Kind, ObjectMeta, ResourceKey};

pub mod authorization_policy;
pub mod common;
pub mod destination_rule;
pub mod gateway;
pub mod kube;
pub mod mesh_config;
pub mod peer_authentication;
pub mod service_entry;
pub mod traffic;
pub mod trust_bundle;
pub mod virtual_service;
pub mod workload;

use authorization_policy::AuthorizationPolicySpec;
use destination_rule::DestinationRuleSpec;
use gateway::GatewaySpec;
use kube::ServiceSpec;
use mesh_config::MeshConfig;
use peer_authentication::PeerAuthenticationSpec;
use service_entry::{ServiceEntrySpec, WorkloadEntrySpec};
use trust_bundle::TrustBundleSpec;
use workload::WorkloadSpec;

/// One resource: its `apiVersion` as written, its metadata and its typed spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Object<S> {
    /// `apiVersion` as written (several versions map to one type).
    pub api_version: String,
    /// Metadata.
    pub metadata: ObjectMeta,
    /// The spec.
    pub spec: S,
}

/// `spec` of a Namespace: only what `kubectl get -o yaml` emits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamespaceSpec {
    /// Kubernetes finalizers, accepted and ignored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
}

/// Any resource Meshward understands.
// The variants differ in size, but resources are few and long-lived; boxing them would only add
// indirection to every match.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Resource {
    /// PeerAuthentication.
    PeerAuthentication(Object<PeerAuthenticationSpec>),
    /// AuthorizationPolicy.
    AuthorizationPolicy(Object<AuthorizationPolicySpec>),
    /// DestinationRule.
    DestinationRule(Object<DestinationRuleSpec>),
    /// VirtualService.
    VirtualService(Object<virtual_service::VirtualServiceSpec>),
    /// ServiceEntry.
    ServiceEntry(Object<ServiceEntrySpec>),
    /// Gateway.
    Gateway(Object<GatewaySpec>),
    /// WorkloadEntry.
    WorkloadEntry(Object<WorkloadEntrySpec>),
    /// Namespace.
    Namespace(Object<NamespaceSpec>),
    /// Service.
    Service(Object<ServiceSpec>),
    /// Mesh-wide settings (from a MeshConfig document or the `istio` ConfigMap).
    MeshConfig(Object<MeshConfig>),
    /// Workload.
    Workload(Object<WorkloadSpec>),
    /// TrustBundle.
    TrustBundle(Object<TrustBundleSpec>),
}

impl Resource {
    /// The kind.
    pub fn kind(&self) -> Kind {
        match self {
            Resource::PeerAuthentication(_) => Kind::PeerAuthentication,
            Resource::AuthorizationPolicy(_) => Kind::AuthorizationPolicy,
            Resource::DestinationRule(_) => Kind::DestinationRule,
            Resource::VirtualService(_) => Kind::VirtualService,
            Resource::ServiceEntry(_) => Kind::ServiceEntry,
            Resource::Gateway(_) => Kind::Gateway,
            Resource::WorkloadEntry(_) => Kind::WorkloadEntry,
            Resource::Namespace(_) => Kind::Namespace,
            Resource::Service(_) => Kind::Service,
            Resource::MeshConfig(_) => Kind::MeshConfig,
            Resource::Workload(_) => Kind::Workload,
            Resource::TrustBundle(_) => Kind::TrustBundle,
        }
    }

    /// The metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Resource::PeerAuthentication(o) => &o.metadata,
            Resource::AuthorizationPolicy(o) => &o.metadata,
            Resource::DestinationRule(o) => &o.metadata,
            Resource::VirtualService(o) => &o.metadata,
            Resource::ServiceEntry(o) => &o.metadata,
            Resource::Gateway(o) => &o.metadata,
            Resource::WorkloadEntry(o) => &o.metadata,
            Resource::Namespace(o) => &o.metadata,
            Resource::Service(o) => &o.metadata,
            Resource::MeshConfig(o) => &o.metadata,
            Resource::Workload(o) => &o.metadata,
            Resource::TrustBundle(o) => &o.metadata,
        }
    }

    /// The key that names it. Cluster-scoped kinds have an empty namespace; there is one mesh
    /// config, whatever its document is called.
    pub fn key(&self) -> ResourceKey {
        let kind = self.kind();
        let metadata = self.metadata();
        let (namespace, name) = match kind {
            Kind::MeshConfig => (String::new(), "mesh".to_owned()),
            Kind::Namespace => (String::new(), metadata.name.clone()),
            _ => (metadata.namespace().to_owned(), metadata.name.clone()),
        };
        ResourceKey {
            kind,
            namespace,
            name,
        }
    }
}
