//! Semantic checks on one resource, after it parsed: Istio's validation rules, plus warnings for
//! what Istio accepts but cannot match. Each issue names its field path; the parser turns the
//! path into file:line:column.

use crate::diagnostic::Severity;
use crate::resources::Resource;
use crate::resources::common::PortNumber;

mod networking;
mod security;
mod workloads;

pub use workloads::ACCESS_LOG_ANNOTATION;

/// One problem in a resource, before it is placed in its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// Error or warning.
    pub severity: Severity,
    /// Field path, e.g. `spec.portLevelMtls.8080`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Collects issues while walking one resource.
#[derive(Debug, Default)]
pub(crate) struct Issues(Vec<Issue>);

impl Issues {
    pub(crate) fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Issue {
            severity: Severity::Error,
            path: path.into(),
            message: message.into(),
        });
    }

    pub(crate) fn warning(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Issue {
            severity: Severity::Warning,
            path: path.into(),
            message: message.into(),
        });
    }

    /// Port numbers must be 1–65535.
    pub(crate) fn port(&mut self, path: impl Into<String>, port: PortNumber) {
        if port.valid().is_none() {
            self.error(path, format!("port {port} must be between 1-65535"));
        }
    }
}

/// Validates one resource.
pub fn validate(resource: &Resource) -> Vec<Issue> {
    let mut issues = Issues::default();
    let metadata = resource.metadata();
    if metadata.name.is_empty() && !matches!(resource, Resource::MeshConfig(_)) {
        issues.error("metadata.name", "a resource needs a name");
    }
    match resource {
        Resource::PeerAuthentication(o) => security::peer_authentication(&o.spec, &mut issues),
        Resource::AuthorizationPolicy(o) => security::authorization_policy(&o.spec, &mut issues),
        Resource::DestinationRule(o) => networking::destination_rule(&o.spec, &mut issues),
        Resource::ServiceEntry(o) => networking::service_entry(&o.spec, &mut issues),
        Resource::Gateway(o) => networking::gateway(&o.spec, &mut issues),
        Resource::WorkloadEntry(o) => workloads::workload_entry(&o.spec, "spec", &mut issues),
        Resource::Service(o) => workloads::service(&o.spec, &mut issues),
        Resource::Workload(o) => {
            workloads::workload(&o.spec, &mut issues);
            workloads::workload_annotations(&o.metadata, &mut issues);
        }
        Resource::MeshConfig(o) => workloads::mesh_config(&o.spec, &mut issues),
        Resource::Namespace(_) => {}
    }
    issues.0
}

/// Whether `text` is an IP address or a CIDR block.
pub(crate) fn is_ip_or_cidr(text: &str) -> bool {
    crate::authz::matcher::IpBlock::parse(text).is_some()
}

#[cfg(test)]
mod tests;
