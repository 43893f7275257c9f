//! Meshward's own `meshward.io/v1alpha1` Workload: one instance of a service running outside
//! Kubernetes (a process on this machine or a VM), with what `meshward up` needs to start it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::common::PortNumber;

/// `spec` of a Workload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadSpec {
    /// The service account it runs as; `default` when missing, as for a pod.
    #[serde(default = "default_service_account")]
    pub service_account: String,
    /// Its ports (the "container ports" PeerAuthentication `portLevelMtls` refers to).
    #[serde(default)]
    pub ports: Vec<WorkloadPort>,
    /// Program and arguments to start it (local runs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Environment for the command.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Explicit sidecar choice; when missing, Istio's injection labels decide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar: Option<bool>,
    /// The workload's address; a runtime may assign it later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<IpAddr>,
}

fn default_service_account() -> String {
    "default".to_owned()
}

/// One workload port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadPort {
    /// Name, which a Service `targetPort` may refer to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The port number.
    pub port: PortNumber,
    /// `TCP` (default), `HTTP`, `GRPC`, ….
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}
