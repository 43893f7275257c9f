//! Service, Workload, WorkloadEntry and MeshConfig rules.

use std::collections::BTreeSet;

use super::Issues;
use crate::meta::ObjectMeta;
use crate::resources::kube::{ServiceSpec, TargetPort};
use crate::resources::mesh_config::{ACCESS_LOG_STDOUT, MeshConfig};
use crate::resources::service_entry::WorkloadEntrySpec;
use crate::resources::workload::WorkloadSpec;

pub(super) fn service(spec: &ServiceSpec, issues: &mut Issues) {
    if let Some(kind) = &spec.service_type
        && kind != "ClusterIP"
    {
        issues.error(
            "spec.type",
            format!("Service type `{kind}` is not supported: Meshward serves ClusterIP services"),
        );
    }
    let mut names = BTreeSet::new();
    for (i, port) in spec.ports.iter().enumerate() {
        let base = format!("spec.ports[{i}]");
        issues.port(format!("{base}.port"), port.port);
        if let Some(TargetPort::Number(target)) = &port.target_port {
            issues.port(format!("{base}.targetPort"), *target);
        }
        match &port.name {
            None if spec.ports.len() > 1 => issues.error(
                format!("{base}.name"),
                "a Service with several ports must name each of them",
            ),
            Some(name) if !names.insert(name.as_str()) => {
                issues.error(
                    format!("{base}.name"),
                    format!("duplicate port name `{name}`"),
                );
            }
            _ => {}
        }
        if let Some(protocol) = &port.protocol
            && protocol != "TCP"
        {
            issues.error(
                format!("{base}.protocol"),
                format!("protocol `{protocol}` is not supported: the mesh carries TCP only"),
            );
        }
    }
}

pub(super) fn workload(spec: &WorkloadSpec, issues: &mut Issues) {
    if spec.service_account.is_empty() {
        issues.error("spec.serviceAccount", "serviceAccount must not be empty");
    }
    let mut names = BTreeSet::new();
    let mut numbers = BTreeSet::new();
    for (i, port) in spec.ports.iter().enumerate() {
        let base = format!("spec.ports[{i}]");
        issues.port(format!("{base}.port"), port.port);
        if !numbers.insert(port.port) {
            issues.error(
                format!("{base}.port"),
                format!("port {} is listed twice", port.port),
            );
        }
        if let Some(name) = &port.name
            && !names.insert(name.as_str())
        {
            issues.error(
                format!("{base}.name"),
                format!("duplicate port name `{name}`"),
            );
        }
    }
    if spec.command.first().is_some_and(String::is_empty) {
        issues.error("spec.command[0]", "the program to run must not be empty");
    }
}

pub(super) fn workload_entry(spec: &WorkloadEntrySpec, base: &str, issues: &mut Issues) {
    for (name, port) in &spec.ports {
        issues.port(format!("{base}.ports.{name}"), *port);
    }
    if let Some(weight) = spec.weight
        && weight == 0
    {
        issues.error(format!("{base}.weight"), "weight must be at least 1");
    }
}

pub(super) fn mesh_config(spec: &MeshConfig, issues: &mut Issues) {
    if spec.trust_domain.is_empty() {
        issues.error("spec.trustDomain", "trustDomain must not be empty");
    }
    if spec.root_namespace.is_empty() {
        issues.error("spec.rootNamespace", "rootNamespace must not be empty");
    }
    if !spec.access_log_file.is_empty() && spec.access_log_file != ACCESS_LOG_STDOUT {
        issues.error(
            "spec.accessLogFile",
            format!(
                "accessLogFile `{}` is not supported: Meshward proxies write access logs to their \
                 standard output; use `{ACCESS_LOG_STDOUT}`, or leave it empty for none",
                spec.access_log_file
            ),
        );
    }
    if !spec.access_log_format.is_empty() {
        issues.error(
            "spec.accessLogFormat",
            "a custom accessLogFormat is not supported: use accessLogEncoding TEXT (Envoy's \
             default format) or JSON",
        );
    }
    if spec.access_log_file.is_empty() && spec.access_log_encoding.is_some() {
        issues.warning(
            "spec.accessLogEncoding",
            "accessLogEncoding has no effect without accessLogFile: /dev/stdout",
        );
    }
}

/// The Workload annotation that sets its proxy's access logs, overriding MeshConfig.
pub const ACCESS_LOG_ANNOTATION: &str = "meshward.io/access-log";

/// `meshward.io/access-log` is `off`, `text` or `json`.
pub(super) fn workload_annotations(metadata: &ObjectMeta, issues: &mut Issues) {
    if let Some(value) = metadata.annotations.get(ACCESS_LOG_ANNOTATION)
        && !matches!(value.as_str(), "off" | "text" | "json")
    {
        issues.error(
            format!("metadata.annotations.{ACCESS_LOG_ANNOTATION}"),
            format!("`{value}` is not an access log setting: use off, text or json"),
        );
    }
}
