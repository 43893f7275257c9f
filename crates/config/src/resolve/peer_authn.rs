//! The effective PeerAuthentication mode of one workload port, and which policy set it.
//!
//! Algorithm of Istio's `ComposePeerAuthentication` (pilot/pkg/security/authn/policy_applier.go).

use std::fmt;

use serde::Serialize;

use crate::mesh::{Entry, Mesh, WorkloadInstance};
use crate::meta::{Kind, ResourceKey};
use crate::resources::peer_authentication::{MtlsMode, PeerAuthenticationSpec};

/// What set the mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "level", rename_all = "camelCase")]
pub enum ModeSource {
    /// No policy: Istio's default, PERMISSIVE.
    Default,
    /// The mesh-wide policy (root namespace, no selector).
    Mesh {
        /// The policy.
        policy: ResourceKey,
    },
    /// The namespace-wide policy.
    Namespace {
        /// The policy.
        policy: ResourceKey,
    },
    /// A workload policy's `mtls`.
    Workload {
        /// The policy.
        policy: ResourceKey,
    },
    /// A workload policy's `portLevelMtls` entry.
    Port {
        /// The policy.
        policy: ResourceKey,
        /// The port.
        port: u16,
    },
}

impl fmt::Display for ModeSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModeSource::Default => f.write_str("default (no PeerAuthentication)"),
            ModeSource::Mesh { policy } => write!(f, "mesh {}", short(policy)),
            ModeSource::Namespace { policy } => write!(f, "namespace {}", short(policy)),
            ModeSource::Workload { policy } => write!(f, "workload {}", short(policy)),
            ModeSource::Port { policy, port } => write!(f, "port {port} of {}", short(policy)),
        }
    }
}

fn short(key: &ResourceKey) -> String {
    format!("{}/{}", key.namespace, key.name)
}

/// The effective mode of a port (never UNSET) and its source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EffectiveMtls {
    /// STRICT, PERMISSIVE or DISABLE.
    pub mode: MtlsMode,
    /// Which policy decided.
    pub source: ModeSource,
}

impl Mesh {
    /// The effective PeerAuthentication mode of `workload` on its (container) `port`.
    pub fn peer_authentication(&self, workload: &WorkloadInstance, port: u16) -> EffectiveMtls {
        let root = self.config.root_namespace.as_str();
        let key = |entry: &Entry<PeerAuthenticationSpec>| entry.key(Kind::PeerAuthentication);
        // "Start at PERMISSIVE": with no policy at all, or a mesh policy that is UNSET, the
        // workload accepts both mTLS and plaintext.
        let mut effective = EffectiveMtls {
            mode: MtlsMode::Permissive,
            source: ModeSource::Default,
        };
        // Mesh level: "a policy in the root namespace without a selector". A root-namespace
        // policy WITH a selector is ignored. Namespace level: no selector, the workload's
        // namespace. Workload level: a selector matching the workload, in a non-root namespace.
        // At each level "only the oldest policy takes effect" (the list is oldest first).
        let mesh = self
            .peer_authentications
            .iter()
            .find(|pa| pa.namespace() == root && !has_selector(&pa.object.spec));
        let namespace = self.peer_authentications.iter().find(|pa| {
            pa.namespace() == workload.namespace
                && workload.namespace != root
                && !has_selector(&pa.object.spec)
        });
        let selected = self.peer_authentications.iter().find(|pa| {
            pa.namespace() == workload.namespace
                && workload.namespace != root
                && has_selector(&pa.object.spec)
                && pa
                    .object
                    .spec
                    .selector
                    .as_ref()
                    .is_some_and(|s| s.matches(&workload.labels))
        });
        // "Each level overrides only if its mtls.mode is not UNSET (a missing mtls is UNSET)."
        let levels: [(Option<&Entry<PeerAuthenticationSpec>>, LevelSource); 3] = [
            (mesh, |policy| ModeSource::Mesh { policy }),
            (namespace, |policy| ModeSource::Namespace { policy }),
            (selected, |policy| ModeSource::Workload { policy }),
        ];
        for (entry, source) in levels {
            if let Some(entry) = entry {
                let mode = entry.object.spec.mtls.as_ref().map(|m| m.mode);
                if let Some(mode) = mode.filter(|m| *m != MtlsMode::Unset) {
                    effective = EffectiveMtls {
                        mode,
                        source: source(key(entry)),
                    };
                }
            }
        }
        // "portLevelMtls applies only with a selector ... keyed by the workload port; an UNSET
        // port entry inherits the already resolved workload mode."
        if let Some(entry) = selected {
            let port_mode = entry
                .object
                .spec
                .port_level_mtls
                .iter()
                .find(|(number, _)| number.0 == u64::from(port))
                .map(|(_, mtls)| mtls.mode);
            if let Some(mode) = port_mode.filter(|m| *m != MtlsMode::Unset) {
                effective = EffectiveMtls {
                    mode,
                    source: ModeSource::Port {
                        policy: key(entry),
                        port,
                    },
                };
            }
        }
        effective
    }
}

/// Builds the source of a level from the policy that set it.
type LevelSource = fn(ResourceKey) -> ModeSource;

fn has_selector(spec: &PeerAuthenticationSpec) -> bool {
    spec.selector
        .as_ref()
        .is_some_and(|s| !s.match_labels.is_empty())
}
