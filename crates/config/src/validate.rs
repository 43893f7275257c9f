//! Semantic checks on one resource, after it parsed: Istio's validation rules, plus warnings for
//! what Istio accepts but cannot match. Each issue names its field path; the parser turns the
//! path into file:line:column.

use crate::diagnostic::Severity;
use crate::resources::Resource;
use crate::resources::common::PortNumber;

mod networking;
mod routes;
mod security;
mod traffic;
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
    object_names(resource, &mut issues);
    match resource {
        Resource::PeerAuthentication(o) => security::peer_authentication(&o.spec, &mut issues),
        Resource::AuthorizationPolicy(o) => security::authorization_policy(&o.spec, &mut issues),
        Resource::DestinationRule(o) => networking::destination_rule(&o.spec, &mut issues),
        Resource::VirtualService(o) => routes::virtual_service(&o.spec, &mut issues),
        Resource::ServiceEntry(o) => networking::service_entry(&o.spec, &mut issues),
        Resource::Gateway(o) => networking::gateway(&o.spec, &mut issues),
        Resource::WorkloadEntry(o) => workloads::workload_entry(&o.spec, "spec", &mut issues),
        Resource::Service(o) => workloads::service(&o.spec, &mut issues),
        Resource::Workload(o) => {
            workloads::workload(&o.spec, &mut issues);
            workloads::workload_annotations(&o.metadata, &mut issues);
        }
        Resource::MeshConfig(o) => workloads::mesh_config(&o.spec, &mut issues),
        Resource::TrustBundle(o) => {
            use crate::resources::trust_bundle::{roots_problem, trust_domain_problem};
            if let Some(problem) = trust_domain_problem(&o.spec.trust_domain) {
                issues.error("spec.trustDomain", problem);
            }
            if let Some(problem) = roots_problem(&o.spec.roots) {
                issues.error("spec.roots", problem);
            }
        }
        Resource::Namespace(_) => {}
    }
    issues.0
}

/// Names as the Kubernetes API server accepts them: `metadata.name` a DNS-1123 subdomain, a
/// namespace (and a Namespace's name) a DNS-1123 label. Names end up in identities, store keys,
/// logs and metric labels, so a control character or a megabyte-long name never gets that far.
fn object_names(resource: &Resource, issues: &mut Issues) {
    let metadata = resource.metadata();
    let namespace_kind = matches!(resource, Resource::Namespace(_));
    if !metadata.name.is_empty() {
        let problem = if namespace_kind {
            dns_label_problem(&metadata.name)
        } else {
            dns_subdomain_problem(&metadata.name)
        };
        if let Some(problem) = problem {
            issues.error("metadata.name", format!("invalid name: {problem}"));
        }
    }
    if let Some(namespace) = &metadata.namespace
        && let Some(problem) = dns_label_problem(namespace)
    {
        issues.error(
            "metadata.namespace",
            format!("invalid namespace: {problem}"),
        );
    }
}

/// Why `name` is not a DNS-1123 label (at most 63 of `a-z`, `0-9`, `-`, alphanumeric at both
/// ends), if it is not.
fn dns_label_problem(name: &str) -> Option<String> {
    if name.len() > 63 {
        return Some(format!("{} bytes, at most 63", name.len()));
    }
    label_chars_problem(name)
}

/// Why `label` is not made of `a-z`, `0-9` and `-` with an alphanumeric at both ends.
fn label_chars_problem(name: &str) -> Option<String> {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !name.chars().all(|c| alnum(c) || c == '-') {
        return Some(format!(
            "{name:?} must consist of lower case alphanumeric characters or '-'"
        ));
    }
    if !name.starts_with(alnum) || !name.ends_with(alnum) {
        return Some(format!(
            "{name:?} must start and end with an alphanumeric character"
        ));
    }
    None
}

/// Why `name` is not a DNS-1123 subdomain (at most 253 bytes of dot-separated labels of `a-z`,
/// `0-9`, `-`), if it is not.
fn dns_subdomain_problem(name: &str) -> Option<String> {
    if name.len() > 253 {
        return Some(format!("{} bytes, at most 253", name.len()));
    }
    name.split('.').find_map(|label| {
        if label.is_empty() {
            Some(format!("{name:?} has an empty label between dots"))
        } else {
            label_chars_problem(label).map(|_| {
                format!(
                    "{name:?} must consist of lower case alphanumeric characters, '-' or '.', and start and end with an alphanumeric character"
                )
            })
        }
    })
}

/// Whether `text` is an IP address or a CIDR block.
pub(crate) fn is_ip_or_cidr(text: &str) -> bool {
    crate::authz::matcher::IpBlock::parse(text).is_some()
}

#[cfg(test)]
mod tests;
