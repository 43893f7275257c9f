//! DestinationRule, ServiceEntry and Gateway rules.

use std::collections::BTreeSet;

use super::{Issues, is_ip_or_cidr};
use crate::resources::destination_rule::{
    ClientTls, ClientTlsMode, DestinationRuleSpec, TrafficPolicy,
};
use crate::resources::gateway::GatewaySpec;
use crate::resources::service_entry::{Resolution, ServiceEntrySpec};

pub(super) fn destination_rule(spec: &DestinationRuleSpec, issues: &mut Issues) {
    if spec.host.is_empty() {
        issues.error("spec.host", "host must be set");
    }
    if let Some(policy) = &spec.traffic_policy {
        traffic_policy(policy, "spec.trafficPolicy", issues);
    }
    let mut names = BTreeSet::new();
    for (i, subset) in spec.subsets.iter().enumerate() {
        let base = format!("spec.subsets[{i}]");
        if subset.name.is_empty() {
            issues.error(format!("{base}.name"), "subset name must be set");
        } else if !names.insert(subset.name.as_str()) {
            issues.error(
                format!("{base}.name"),
                format!("duplicate subset name `{}`", subset.name),
            );
        }
        if let Some(policy) = &subset.traffic_policy {
            traffic_policy(policy, &format!("{base}.trafficPolicy"), issues);
        }
    }
    export_to(&spec.export_to, issues);
}

fn traffic_policy(policy: &TrafficPolicy, base: &str, issues: &mut Issues) {
    super::traffic::settings(
        policy.load_balancer.as_ref(),
        policy.connection_pool.as_ref(),
        policy.outlier_detection.as_ref(),
        base,
        issues,
    );
    for (field, set) in [
        ("tunnel", policy.tunnel.is_some()),
        ("proxyProtocol", policy.proxy_protocol.is_some()),
    ] {
        if set {
            issues.error(
                format!("{base}.{field}"),
                format!("`{field}` is not supported by Meshward"),
            );
        }
    }
    if let Some(tls) = &policy.tls {
        client_tls(tls, &format!("{base}.tls"), issues);
    }
    let mut ports = BTreeSet::new();
    for (i, setting) in policy.port_level_settings.iter().enumerate() {
        let path = format!("{base}.portLevelSettings[{i}]");
        match setting.port {
            None => issues.error(format!("{path}.port"), "port must be specified"),
            Some(port) => {
                issues.port(format!("{path}.port.number"), port.number);
                if !ports.insert(port.number) {
                    issues.error(
                        format!("{path}.port.number"),
                        format!(
                            "port {} appears in more than one portLevelSettings",
                            port.number
                        ),
                    );
                }
            }
        }
        super::traffic::settings(
            setting.load_balancer.as_ref(),
            setting.connection_pool.as_ref(),
            setting.outlier_detection.as_ref(),
            &path,
            issues,
        );
        if let Some(tls) = &setting.tls {
            client_tls(tls, &format!("{path}.tls"), issues);
        }
    }
}

fn client_tls(tls: &ClientTls, base: &str, issues: &mut Issues) {
    match tls.mode {
        // istio/api: "ISTIO_MUTUAL ... all other fields in ClientTLSSettings should be empty".
        ClientTlsMode::IstioMutual => {
            let mut set = tls.material_fields();
            if tls.insecure_skip_verify.is_some() {
                set.push("insecureSkipVerify");
            }
            for field in set {
                issues.error(
                    format!("{base}.{field}"),
                    format!(
                        "`{field}` cannot be set with mode ISTIO_MUTUAL: the mesh provides the \
                         certificates; use MUTUAL to bring your own"
                    ),
                );
            }
        }
        // istio/api: MUTUAL needs clientCertificate and privateKey unless credentialName is set.
        ClientTlsMode::Mutual if tls.credential_name.is_none() => {
            if tls.client_certificate.is_none() {
                issues.error(
                    format!("{base}.clientCertificate"),
                    "client certificate required for mutual tls",
                );
            }
            if tls.private_key.is_none() {
                issues.error(
                    format!("{base}.privateKey"),
                    "private key required for mutual tls",
                );
            }
        }
        _ => {}
    }
    if tls.credential_name.is_some() && tls.ca_crl.is_some() {
        issues.error(
            format!("{base}.caCrl"),
            "caCrl cannot be set together with credentialName",
        );
    }
    // Meshward has no Kubernetes Secrets and always verifies the server (docs/compat.md).
    if tls.credential_name.is_some() && tls.mode != ClientTlsMode::IstioMutual {
        issues.error(
            format!("{base}.credentialName"),
            "credentialName is not supported: Meshward has no Secrets; give the files with \
             clientCertificate, privateKey and caCertificates",
        );
    }
    if tls.insecure_skip_verify == Some(true) {
        issues.error(
            format!("{base}.insecureSkipVerify"),
            "insecureSkipVerify is not supported: Meshward always verifies the server; give \
             its CA with caCertificates",
        );
    }
    if tls.ca_crl.is_some() && tls.credential_name.is_none() {
        issues.error(
            format!("{base}.caCrl"),
            "caCrl is not supported yet: Meshward does not check CRLs of external servers",
        );
    }
}

fn export_to(values: &[String], issues: &mut Issues) {
    for (i, value) in values.iter().enumerate() {
        let ok = value == "*" || value == "." || is_dns_label(value);
        if !ok {
            issues.error(
                format!("spec.exportTo[{i}]"),
                format!("exportTo `{value}` must be `*`, `.` or a namespace name"),
            );
        }
    }
}

fn is_dns_label(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !value.starts_with('-')
        && !value.ends_with('-')
}

pub(super) fn service_entry(spec: &ServiceEntrySpec, issues: &mut Issues) {
    if spec.hosts.is_empty() {
        issues.error("spec.hosts", "ServiceEntry must have at least one host");
    }
    for (i, host) in spec.hosts.iter().enumerate() {
        if host.is_empty() || host == "*" {
            issues.error(
                format!("spec.hosts[{i}]"),
                format!("invalid host `{host}`: a ServiceEntry host must be a name, not `*`"),
            );
        }
    }
    for (i, address) in spec.addresses.iter().enumerate() {
        if !is_ip_or_cidr(address) {
            issues.error(
                format!("spec.addresses[{i}]"),
                format!("invalid address `{address}`: must be an IP or CIDR"),
            );
        }
    }
    let mut numbers = BTreeSet::new();
    for (i, port) in spec.ports.iter().enumerate() {
        issues.port(format!("spec.ports[{i}].number"), port.number);
        if !numbers.insert(port.number) {
            issues.error(
                format!("spec.ports[{i}].number"),
                format!("port number {} is duplicated", port.number),
            );
        }
    }
    if !spec.endpoints.is_empty() && spec.workload_selector.is_some() {
        issues.error(
            "spec.workloadSelector",
            "only one of WorkloadSelector or Endpoints is allowed in Service Entry",
        );
    }
    if spec.resolution == Resolution::Static
        && spec.endpoints.is_empty()
        && spec.workload_selector.is_none()
    {
        issues.error(
            "spec.resolution",
            "no endpoints provided for resolution type STATIC",
        );
    }
    for (i, endpoint) in spec.endpoints.iter().enumerate() {
        super::workloads::workload_entry(endpoint, &format!("spec.endpoints[{i}]"), issues);
    }
    export_to(&spec.export_to, issues);
}

pub(super) fn gateway(spec: &GatewaySpec, issues: &mut Issues) {
    if spec.servers.is_empty() {
        issues.error("spec.servers", "gateway must have at least one server");
    }
    for (i, server) in spec.servers.iter().enumerate() {
        let base = format!("spec.servers[{i}]");
        issues.port(format!("{base}.port.number"), server.port.number);
        if server.hosts.is_empty() {
            issues.error(
                format!("{base}.hosts"),
                "server config must contain at least one host",
            );
        }
    }
}
