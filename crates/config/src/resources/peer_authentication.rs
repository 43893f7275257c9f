//! `security.istio.io` PeerAuthentication: which mTLS mode a workload's sidecar accepts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::common::{PortNumber, WorkloadSelector};

/// `spec` of a PeerAuthentication.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerAuthenticationSpec {
    /// The workloads it applies to; none means the whole namespace (or mesh, in the root
    /// namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// The mode for every port; a missing block counts as UNSET.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls: Option<PeerMtls>,
    /// Per workload (container) port modes; requires a selector.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub port_level_mtls: BTreeMap<PortNumber, PeerMtls>,
}

/// `mtls: {mode: …}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerMtls {
    /// The mode; missing means UNSET.
    #[serde(default)]
    pub mode: MtlsMode,
}

/// PeerAuthentication's `MutualTLS.Mode`. Case matters: `strict` is an error, as in Istio's CRD.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MtlsMode {
    /// Inherit from the parent level.
    #[default]
    Unset,
    /// Plaintext only.
    Disable,
    /// Both plaintext and mTLS.
    Permissive,
    /// mTLS only.
    Strict,
}

impl MtlsMode {
    /// The mode as Istio writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            MtlsMode::Unset => "UNSET",
            MtlsMode::Disable => "DISABLE",
            MtlsMode::Permissive => "PERMISSIVE",
            MtlsMode::Strict => "STRICT",
        }
    }
}
