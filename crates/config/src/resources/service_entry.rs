//! `networking.istio.io` ServiceEntry and WorkloadEntry: services and workloads the mesh learns
//! from configuration rather than from Kubernetes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::common::PortNumber;

/// `spec` of a ServiceEntry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceEntrySpec {
    /// Host names (may start with `*.`).
    pub hosts: Vec<String>,
    /// Virtual IPs or CIDRs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// Ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ServicePort>,
    /// Inside or outside the mesh.
    #[serde(default)]
    pub location: Location,
    /// How endpoints are found.
    #[serde(default)]
    pub resolution: Resolution,
    /// Static endpoints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<WorkloadEntrySpec>,
    /// Selects workloads (Workload / WorkloadEntry) in the same namespace as endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<EntrySelector>,
    /// Visibility: `*`, `.` or namespaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub export_to: Vec<String>,
    /// Identities the endpoints run as.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
}

/// `workloadSelector: {labels: …}` (ServiceEntry's own shape, not `matchLabels`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntrySelector {
    /// Labels the workload must carry.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A ServiceEntry or Gateway port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServicePort {
    /// Port number.
    pub number: PortNumber,
    /// Protocol: HTTP, HTTPS, GRPC, HTTP2, MONGO, TCP, TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Port name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Endpoint port, when it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<PortNumber>,
}

/// `ServiceEntry.Location`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Location {
    /// Outside the mesh (no sidecars).
    #[default]
    MeshExternal,
    /// Part of the mesh.
    MeshInternal,
}

/// `ServiceEntry.Resolution`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Resolution {
    /// Use the original destination address.
    #[default]
    None,
    /// The static endpoint addresses.
    Static,
    /// Resolve endpoint host names through DNS.
    Dns,
    /// DNS, one address at a time.
    DnsRoundRobin,
    /// DNS, dynamically per request.
    DynamicDns,
}

/// `spec` of a WorkloadEntry, also a ServiceEntry endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadEntrySpec {
    /// IP address or DNS name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Port name → port number.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, PortNumber>,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Network name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Locality (`region/zone/subzone`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<String>,
    /// Load-balancing weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// Service account it runs as (its identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
}
