//! [`Mesh`]: an immutable, indexed snapshot of every applied resource, the input of every
//! effective-policy function. Build one per configuration revision.

use std::collections::BTreeMap;

use thiserror::Error;

use crate::diagnostic::Location;
use crate::meta::{Kind, ObjectMeta, ResourceKey};
use crate::parse::Document;
use crate::resources::authorization_policy::AuthorizationPolicySpec;
use crate::resources::destination_rule::DestinationRuleSpec;
use crate::resources::gateway::GatewaySpec;
use crate::resources::kube::ServiceSpec;
use crate::resources::mesh_config::MeshConfig;
use crate::resources::peer_authentication::PeerAuthenticationSpec;
use crate::resources::service_entry::ServiceEntrySpec;
use crate::resources::virtual_service::VirtualServiceSpec;
use crate::resources::{Object, Resource};

pub(crate) mod workload;

pub use workload::{WorkloadInstance, sidecar_injected};

/// Why a set of documents does not form a mesh.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MeshError {
    /// Two documents define the same resource.
    #[error("{key} is defined twice: at {first} and at {second}")]
    Duplicate {
        /// The resource.
        key: ResourceKey,
        /// The first definition.
        first: Location,
        /// The second definition.
        second: Location,
    },
}

/// One resource of a kind, with where it was defined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<S> {
    /// The resource.
    pub object: Object<S>,
    /// Where its document starts.
    pub location: Location,
}

impl<S> Entry<S> {
    /// Its key.
    pub fn key(&self, kind: Kind) -> ResourceKey {
        ResourceKey {
            kind,
            namespace: self.object.metadata.namespace().to_owned(),
            name: self.object.metadata.name.clone(),
        }
    }

    /// Its namespace.
    pub fn namespace(&self) -> &str {
        self.object.metadata.namespace()
    }
}

/// Every applied resource, indexed for the resolution functions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mesh {
    pub(crate) config: MeshConfig,
    pub(crate) namespaces: BTreeMap<String, Entry<crate::resources::NamespaceSpec>>,
    pub(crate) workloads: Vec<WorkloadInstance>,
    pub(crate) services: Vec<Entry<ServiceSpec>>,
    pub(crate) service_entries: Vec<Entry<ServiceEntrySpec>>,
    /// Oldest first, as Istio ranks same-level candidates.
    pub(crate) peer_authentications: Vec<Entry<PeerAuthenticationSpec>>,
    /// Oldest first.
    pub(crate) authorization_policies: Vec<Entry<AuthorizationPolicySpec>>,
    /// Oldest first: with several rules for one host, the first trafficPolicy wins.
    pub(crate) destination_rules: Vec<Entry<DestinationRuleSpec>>,
    pub(crate) virtual_services: Vec<Entry<VirtualServiceSpec>>,
    pub(crate) gateways: Vec<Entry<GatewaySpec>>,
    pub(crate) trust_bundles: Vec<Entry<crate::resources::trust_bundle::TrustBundleSpec>>,
}

impl Mesh {
    /// Builds the snapshot. Fails when two documents define the same resource.
    pub fn new(documents: impl IntoIterator<Item = Document>) -> Result<Mesh, MeshError> {
        let mut seen: BTreeMap<ResourceKey, Location> = BTreeMap::new();
        let mut mesh = Mesh::default();
        let mut workload_objects = Vec::new();
        let mut workload_entries = Vec::new();
        for document in documents {
            let key = document.resource.key();
            if let Some(first) = seen.get(&key) {
                return Err(MeshError::Duplicate {
                    key,
                    first: first.clone(),
                    second: document.location,
                });
            }
            seen.insert(key, document.location.clone());
            let location = document.location;
            match document.resource {
                Resource::MeshConfig(o) => mesh.config = o.spec,
                Resource::Namespace(object) => {
                    let name = object.metadata.name.clone();
                    mesh.namespaces.insert(name, Entry { object, location });
                }
                Resource::Workload(object) => workload_objects.push(object),
                Resource::WorkloadEntry(object) => workload_entries.push(object),
                Resource::Service(object) => mesh.services.push(Entry { object, location }),
                Resource::ServiceEntry(object) => {
                    mesh.service_entries.push(Entry { object, location });
                }
                Resource::PeerAuthentication(object) => {
                    mesh.peer_authentications.push(Entry { object, location });
                }
                Resource::AuthorizationPolicy(object) => {
                    mesh.authorization_policies.push(Entry { object, location });
                }
                Resource::DestinationRule(object) => {
                    mesh.destination_rules.push(Entry { object, location });
                }
                Resource::VirtualService(object) => {
                    mesh.virtual_services.push(Entry { object, location });
                }
                Resource::Gateway(object) => mesh.gateways.push(Entry { object, location }),
                Resource::TrustBundle(object) => {
                    mesh.trust_bundles.push(Entry { object, location });
                }
            }
        }
        oldest_first(&mut mesh.peer_authentications);
        oldest_first(&mut mesh.authorization_policies);
        oldest_first(&mut mesh.destination_rules);
        oldest_first(&mut mesh.virtual_services);
        for object in workload_objects {
            let ns_labels = mesh.namespace_labels(object.metadata.namespace());
            mesh.workloads
                .push(WorkloadInstance::from_workload(object, ns_labels));
        }
        for object in workload_entries {
            mesh.workloads.push(WorkloadInstance::from_entry(object));
        }
        Ok(mesh)
    }

    /// The mesh-wide settings (Istio's defaults when none was applied).
    pub fn config(&self) -> &MeshConfig {
        &self.config
    }

    /// The labels of a namespace, if it was applied.
    pub fn namespace_labels(&self, namespace: &str) -> Option<&BTreeMap<String, String>> {
        self.namespaces
            .get(namespace)
            .map(|entry| &entry.object.metadata.labels)
    }

    /// Applied namespaces.
    pub fn namespaces(&self) -> impl Iterator<Item = &ObjectMeta> {
        self.namespaces.values().map(|entry| &entry.object.metadata)
    }

    /// Every workload (Meshward Workloads and Istio WorkloadEntries).
    pub fn workloads(&self) -> &[WorkloadInstance] {
        &self.workloads
    }

    /// The workload `namespace/name`.
    pub fn workload(&self, namespace: &str, name: &str) -> Option<&WorkloadInstance> {
        self.workloads
            .iter()
            .find(|w| w.namespace == namespace && w.name == name)
    }

    /// Kubernetes Services.
    pub fn services(&self) -> &[Entry<ServiceSpec>] {
        &self.services
    }

    /// TrustBundles: the roots of other trust domains this mesh accepts.
    pub fn trust_bundles(&self) -> &[Entry<crate::resources::trust_bundle::TrustBundleSpec>] {
        &self.trust_bundles
    }

    /// ServiceEntries.
    pub fn service_entries(&self) -> &[Entry<ServiceEntrySpec>] {
        &self.service_entries
    }

    /// PeerAuthentications, oldest first.
    pub fn peer_authentications(&self) -> &[Entry<PeerAuthenticationSpec>] {
        &self.peer_authentications
    }

    /// AuthorizationPolicies, oldest first.
    pub fn authorization_policies(&self) -> &[Entry<AuthorizationPolicySpec>] {
        &self.authorization_policies
    }

    /// DestinationRules, oldest first.
    pub fn destination_rules(&self) -> &[Entry<DestinationRuleSpec>] {
        &self.destination_rules
    }

    /// VirtualServices, oldest first.
    pub fn virtual_services(&self) -> &[Entry<VirtualServiceSpec>] {
        &self.virtual_services
    }

    /// Gateways.
    pub fn gateways(&self) -> &[Entry<GatewaySpec>] {
        &self.gateways
    }
}

/// Istio ranks same-level policies by creation time, then by name ("the oldest wins"); a
/// resource without `creationTimestamp` counts as created at the epoch. RFC 3339 timestamps in
/// UTC (`…Z`, as Kubernetes writes them) order correctly as text.
fn oldest_first<S>(entries: &mut [Entry<S>]) {
    entries.sort_by(|a, b| {
        let rank = |e: &Entry<S>| {
            (
                e.object
                    .metadata
                    .creation_timestamp
                    .clone()
                    .unwrap_or_default(),
                e.object.metadata.name.clone(),
                e.namespace().to_owned(),
            )
        };
        rank(a).cmp(&rank(b))
    });
}
