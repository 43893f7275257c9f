//! Destinations: a name → a Service or ServiceEntry host, and the endpoints (workloads,
//! addresses, ports, identities) behind one of its ports.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::names::{dns_candidates, service_fqdn};
use crate::mesh::workload::spiffe_id;
use crate::mesh::{Entry, Mesh, WorkloadInstance};
use crate::resources::kube::{ServiceSpec, TargetPort};
use crate::resources::service_entry::{Location, ServiceEntrySpec};

/// What a host name resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination<'a> {
    /// A Kubernetes-style Service.
    Service(&'a Entry<ServiceSpec>),
    /// A ServiceEntry host.
    ServiceEntry(&'a Entry<ServiceEntrySpec>),
}

impl Destination<'_> {
    /// The namespace the destination is defined in.
    pub fn namespace(&self) -> &str {
        match self {
            Destination::Service(entry) => entry.namespace(),
            Destination::ServiceEntry(entry) => entry.namespace(),
        }
    }

    /// Its service ports.
    pub fn ports(&self) -> Vec<u16> {
        match self {
            Destination::Service(e) => e
                .object
                .spec
                .ports
                .iter()
                .filter_map(|p| p.port.valid())
                .collect(),
            Destination::ServiceEntry(e) => e
                .object
                .spec
                .ports
                .iter()
                .filter_map(|p| p.number.valid())
                .collect(),
        }
    }
}

/// A resolved host: its full name and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedHost<'a> {
    /// The fully qualified name.
    pub fqdn: String,
    /// The destination.
    pub destination: Destination<'a>,
}

/// One endpoint of a destination port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint<'a> {
    /// The workload, when the endpoint is one.
    pub workload: Option<&'a WorkloadInstance>,
    /// Its address, when known.
    pub address: Option<String>,
    /// The port to connect to (the workload's target port).
    pub port: u16,
    /// The SPIFFE ID it runs as, when known.
    pub identity: Option<String>,
    /// Whether a sidecar terminates mesh mTLS there.
    pub sidecar: bool,
}

impl Mesh {
    /// Resolves `name` as seen from a caller in `namespace`, trying the Kubernetes DNS search
    /// path in order; ServiceEntry hosts (exact or `*.` wildcard) are tried after Services.
    pub fn resolve_host(&self, namespace: &str, name: &str) -> Option<ResolvedHost<'_>> {
        let lower = name.to_ascii_lowercase();
        for candidate in dns_candidates(namespace, &lower) {
            let service = self
                .services
                .iter()
                .find(|s| service_fqdn(&s.object.metadata.name, s.namespace()) == candidate);
            if let Some(entry) = service {
                return Some(ResolvedHost {
                    fqdn: candidate,
                    destination: Destination::Service(entry),
                });
            }
        }
        let entry = self.service_entries.iter().find(|e| {
            e.object.spec.hosts.iter().any(|host| {
                let host = host.to_ascii_lowercase();
                host == lower
                    || host
                        .strip_prefix('*')
                        .is_some_and(|suffix| lower.ends_with(suffix))
            })
        })?;
        Some(ResolvedHost {
            fqdn: lower,
            destination: Destination::ServiceEntry(entry),
        })
    }

    /// The endpoints behind `service_port` of a destination: the workloads its selector picks
    /// in its namespace, with the target port each listens on and its identity.
    pub fn endpoints<'a>(
        &'a self,
        destination: &Destination<'a>,
        service_port: u16,
    ) -> Vec<Endpoint<'a>> {
        let trust_domain = self.config.trust_domain.as_str();
        match destination {
            Destination::Service(entry) => {
                let spec = &entry.object.spec;
                let Some(port) = spec
                    .ports
                    .iter()
                    .find(|p| p.port.0 == u64::from(service_port))
                else {
                    return Vec::new();
                };
                // Kubernetes: a Service without a selector has no automatic endpoints.
                if spec.selector.is_empty() {
                    return Vec::new();
                }
                self.selected(entry.namespace(), &spec.selector)
                    .filter_map(|workload| {
                        let target = match &port.target_port {
                            None => Some(service_port),
                            Some(TargetPort::Number(n)) => n.valid(),
                            Some(TargetPort::Name(name)) => workload.port_named(name),
                        }?;
                        Some(workload_endpoint(workload, target, trust_domain))
                    })
                    .collect()
            }
            Destination::ServiceEntry(entry) => {
                let spec = &entry.object.spec;
                let Some(port) = spec
                    .ports
                    .iter()
                    .find(|p| p.number.0 == u64::from(service_port))
                else {
                    return Vec::new();
                };
                let default_target = port
                    .target_port
                    .and_then(|p| p.valid())
                    .unwrap_or(service_port);
                if let Some(selector) = &spec.workload_selector {
                    return self
                        .selected(entry.namespace(), &selector.labels)
                        .map(|w| workload_endpoint(w, default_target, trust_domain))
                        .collect();
                }
                let meshed = spec.location == Location::MeshInternal;
                spec.endpoints
                    .iter()
                    .map(|endpoint| {
                        let target = port
                            .name
                            .as_ref()
                            .and_then(|name| endpoint.ports.get(name))
                            .and_then(|p| p.valid())
                            .unwrap_or(default_target);
                        Endpoint {
                            workload: None,
                            address: endpoint.address.clone(),
                            port: target,
                            identity: endpoint
                                .service_account
                                .as_ref()
                                .map(|sa| spiffe_id(trust_domain, entry.namespace(), sa)),
                            sidecar: meshed,
                        }
                    })
                    .collect()
            }
        }
    }

    /// The SPIFFE IDs a destination port is expected to run as (for the client's check of the
    /// server certificate). ServiceEntry `subjectAltNames` are added as written.
    pub fn expected_identities(
        &self,
        destination: &Destination<'_>,
        service_port: u16,
    ) -> BTreeSet<String> {
        let mut ids: BTreeSet<String> = self
            .endpoints(destination, service_port)
            .into_iter()
            .filter_map(|e| e.identity)
            .collect();
        if let Destination::ServiceEntry(entry) = destination {
            ids.extend(entry.object.spec.subject_alt_names.iter().cloned());
        }
        ids
    }

    fn selected<'a>(
        &'a self,
        namespace: &'a str,
        selector: &'a BTreeMap<String, String>,
    ) -> impl Iterator<Item = &'a WorkloadInstance> + 'a {
        self.workloads.iter().filter(move |w| {
            w.namespace == namespace && selector.iter().all(|(k, v)| w.labels.get(k) == Some(v))
        })
    }
}

fn workload_endpoint<'a>(
    workload: &'a WorkloadInstance,
    port: u16,
    trust_domain: &str,
) -> Endpoint<'a> {
    Endpoint {
        workload: Some(workload),
        address: workload.address.clone(),
        port,
        identity: Some(workload.spiffe_id(trust_domain)),
        sidecar: workload.sidecar,
    }
}
