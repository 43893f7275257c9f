//! [`WorkloadInstance`]: the one workload type of the model, whether it came from a Meshward
//! `Workload` or an Istio `WorkloadEntry`, and Istio's sidecar-injection rule.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::meta::Kind;
use crate::resources::Object;
use crate::resources::service_entry::WorkloadEntrySpec;
use crate::resources::workload::{WorkloadPort, WorkloadSpec};

/// One instance of a service: where it runs, who it runs as, what it listens on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadInstance {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Service account (its identity).
    pub service_account: String,
    /// Labels (what selectors match).
    pub labels: BTreeMap<String, String>,
    /// Annotations (e.g. `meshward.io/access-log`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Ports.
    pub ports: Vec<WorkloadPort>,
    /// Address, once known (a runtime may assign it).
    pub address: Option<String>,
    /// Whether a sidecar runs beside it.
    pub sidecar: bool,
    /// Program and arguments (local runs).
    pub command: Vec<String>,
    /// Environment (local runs).
    pub env: BTreeMap<String, String>,
    /// The kind it was declared as.
    pub origin: Kind,
}

impl WorkloadInstance {
    pub(crate) fn from_workload(
        object: Object<WorkloadSpec>,
        namespace_labels: Option<&BTreeMap<String, String>>,
    ) -> WorkloadInstance {
        let sidecar = sidecar_injected(
            object.spec.sidecar,
            &object.metadata.labels,
            namespace_labels,
        );
        WorkloadInstance {
            namespace: object.metadata.namespace().to_owned(),
            name: object.metadata.name,
            service_account: object.spec.service_account,
            labels: object.metadata.labels,
            annotations: object.metadata.annotations,
            ports: object.spec.ports,
            address: object.spec.address.map(|ip| ip.to_string()),
            sidecar,
            command: object.spec.command,
            env: object.spec.env,
            origin: Kind::Workload,
        }
    }

    /// A WorkloadEntry is a VM running Istio's agent: always meshed.
    pub(crate) fn from_entry(object: Object<WorkloadEntrySpec>) -> WorkloadInstance {
        let ports = object
            .spec
            .ports
            .iter()
            .map(|(name, port)| WorkloadPort {
                name: Some(name.clone()),
                port: *port,
                protocol: None,
            })
            .collect();
        WorkloadInstance {
            namespace: object.metadata.namespace().to_owned(),
            name: object.metadata.name,
            service_account: object
                .spec
                .service_account
                .unwrap_or_else(|| "default".to_owned()),
            labels: object.spec.labels,
            annotations: object.metadata.annotations,
            ports,
            address: object.spec.address,
            sidecar: true,
            command: Vec::new(),
            env: BTreeMap::new(),
            origin: Kind::WorkloadEntry,
        }
    }

    /// `spiffe://<trustDomain>/ns/<namespace>/sa/<serviceAccount>`.
    pub fn spiffe_id(&self, trust_domain: &str) -> String {
        spiffe_id(trust_domain, &self.namespace, &self.service_account)
    }

    /// `namespace/name`.
    pub fn qualified_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The port with this name.
    pub fn port_named(&self, name: &str) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| p.port.valid())
    }
}

/// Istio's identity URI for a namespace and service account.
pub(crate) fn spiffe_id(trust_domain: &str, namespace: &str, service_account: &str) -> String {
    format!("spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}")
}

/// Whether a workload gets a sidecar.
///
/// Meshward's explicit `sidecar:` wins. Otherwise Istio's rules, from its injection docs:
/// "The namespace label `istio-injection=disabled` ... the pod is not injected"; the pod label
/// `sidecar.istio.io/inject: "false"` opts a pod out of an enabled namespace, and
/// `sidecar.istio.io/inject: "true"` opts a pod in when the namespace has no label; with no
/// label at all, nothing is injected.
pub fn sidecar_injected(
    explicit: Option<bool>,
    labels: &BTreeMap<String, String>,
    namespace_labels: Option<&BTreeMap<String, String>>,
) -> bool {
    if let Some(choice) = explicit {
        return choice;
    }
    let namespace = namespace_labels
        .and_then(|l| l.get("istio-injection"))
        .map(String::as_str);
    let pod = labels.get("sidecar.istio.io/inject").map(String::as_str);
    match (namespace, pod) {
        (Some("disabled"), _) => false,
        (_, Some("false")) => false,
        (Some("enabled"), _) => true,
        (_, Some("true")) => true,
        _ => false,
    }
}
