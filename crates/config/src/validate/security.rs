//! PeerAuthentication and AuthorizationPolicy rules.

use super::{Issues, is_ip_or_cidr};
use crate::resources::authorization_policy::{Action, AuthorizationPolicySpec, Source};
use crate::resources::peer_authentication::PeerAuthenticationSpec;

pub(super) fn peer_authentication(spec: &PeerAuthenticationSpec, issues: &mut Issues) {
    let has_selector = spec
        .selector
        .as_ref()
        .is_some_and(|s| !s.match_labels.is_empty());
    // istio/api CRD rule: "portLevelMtls requires selector".
    if !spec.port_level_mtls.is_empty() && !has_selector {
        issues.error("spec.portLevelMtls", "portLevelMtls requires selector");
    }
    for port in spec.port_level_mtls.keys() {
        issues.port(format!("spec.portLevelMtls.{port}"), *port);
    }
}

pub(super) fn authorization_policy(spec: &AuthorizationPolicySpec, issues: &mut Issues) {
    if spec.action == Action::Custom {
        issues.error(
            "spec.action",
            "action CUSTOM (external authorization) is not supported by Meshward",
        );
    }
    if spec.provider.is_some() && spec.action != Action::Custom {
        issues.error(
            "spec.provider",
            "provider must only be used with action CUSTOM",
        );
    }
    for field in ["targetRef", "targetRefs"] {
        let set = match field {
            "targetRef" => spec.target_ref.is_some(),
            _ => spec.target_refs.is_some(),
        };
        if set {
            issues.error(
                format!("spec.{field}"),
                format!(
                    "`{field}` attaches a policy to a waypoint or gateway, which Meshward does \
                     not run: use `selector`"
                ),
            );
        }
    }
    match &spec.rules {
        None if spec.action == Action::Deny => issues.warning(
            "spec",
            "a DENY policy without rules never matches and denies nothing; to deny all \
             requests write `rules: [{}]`",
        ),
        Some(rules) if rules.is_empty() && spec.action == Action::Deny => issues.warning(
            "spec.rules",
            "a DENY policy with an empty rule list never matches and denies nothing",
        ),
        _ => {}
    }
    for (r, rule) in spec.rules.iter().flatten().enumerate() {
        for (f, from) in rule.from.iter().enumerate() {
            source(
                &from.source,
                &format!("spec.rules[{r}].from[{f}].source"),
                issues,
            );
        }
        for (t, to) in rule.to.iter().enumerate() {
            let base = format!("spec.rules[{r}].to[{t}].operation");
            let op = &to.operation;
            for (field, values) in [("ports", &op.ports), ("notPorts", &op.not_ports)] {
                for (i, port) in values.iter().enumerate() {
                    if port.parse::<u16>().map_or(true, |p| p == 0) {
                        issues.error(
                            format!("{base}.{field}[{i}]"),
                            format!("invalid port `{port}`: must be between 1-65535"),
                        );
                    }
                }
            }
            for (field, values) in [
                ("hosts", &op.hosts),
                ("notHosts", &op.not_hosts),
                ("methods", &op.methods),
                ("notMethods", &op.not_methods),
                ("paths", &op.paths),
                ("notPaths", &op.not_paths),
            ] {
                no_empty_values(&base, field, values, issues);
            }
        }
        for (c, condition) in rule.when.iter().enumerate() {
            let base = format!("spec.rules[{r}].when[{c}]");
            if condition.values.is_empty() && condition.not_values.is_empty() {
                issues.error(
                    base,
                    format!(
                        "at least one of values or notValues must be set for key {}",
                        condition.key
                    ),
                );
            } else if condition.key.is_empty() {
                issues.error(format!("{base}.key"), "key must not be empty");
            }
        }
    }
}

fn source(source: &Source, base: &str, issues: &mut Issues) {
    for (field, values) in [
        ("principals", &source.principals),
        ("notPrincipals", &source.not_principals),
    ] {
        for (i, principal) in values.iter().enumerate() {
            // Istio matches principals against the peer identity without its scheme, so a
            // `spiffe://` prefix is accepted but can never match.
            if principal.starts_with("spiffe://") {
                issues.warning(
                    format!("{base}.{field}[{i}]"),
                    format!(
                        "principal `{principal}` starts with `spiffe://` and will never match: \
                         write it without the scheme (`{}`)",
                        principal.trim_start_matches("spiffe://")
                    ),
                );
            }
        }
        no_empty_values(base, field, values, issues);
    }
    for (field, values) in [
        ("ipBlocks", &source.ip_blocks),
        ("notIpBlocks", &source.not_ip_blocks),
        ("remoteIpBlocks", &source.remote_ip_blocks),
        ("notRemoteIpBlocks", &source.not_remote_ip_blocks),
    ] {
        for (i, block) in values.iter().enumerate() {
            if !is_ip_or_cidr(block) {
                issues.error(
                    format!("{base}.{field}[{i}]"),
                    format!("invalid IP address or CIDR block `{block}`"),
                );
            }
        }
    }
    for (field, values) in [
        ("serviceAccounts", &source.service_accounts),
        ("notServiceAccounts", &source.not_service_accounts),
    ] {
        if values.is_empty() {
            continue;
        }
        let path = format!("{base}.{field}");
        // Istio: serviceAccounts cannot be combined with principals or namespaces.
        let identity_fields = !source.principals.is_empty()
            || !source.not_principals.is_empty()
            || !source.namespaces.is_empty()
            || !source.not_namespaces.is_empty();
        if identity_fields {
            issues.error(
                path.clone(),
                format!("{field} cannot be set together with principals or namespaces"),
            );
        }
        if values.len() > 16 {
            issues.error(path.clone(), format!("at most 16 {field} may be listed"));
        }
        for (i, account) in values.iter().enumerate() {
            let parts: Vec<&str> = account.split('/').collect();
            let well_formed =
                parts.len() <= 2 && parts.iter().all(|p| !p.is_empty() && !p.contains('*'));
            if !well_formed {
                issues.error(
                    format!("{path}[{i}]"),
                    format!(
                        "service account `{account}` must be `namespace/name` or `name`, \
                         without wildcards"
                    ),
                );
            }
        }
    }
    for (field, values) in [
        ("namespaces", &source.namespaces),
        ("notNamespaces", &source.not_namespaces),
        ("requestPrincipals", &source.request_principals),
        ("notRequestPrincipals", &source.not_request_principals),
    ] {
        no_empty_values(base, field, values, issues);
    }
}

fn no_empty_values(base: &str, field: &str, values: &[String], issues: &mut Issues) {
    for (i, value) in values.iter().enumerate() {
        if value.is_empty() {
            issues.error(format!("{base}.{field}[{i}]"), "empty value is not allowed");
        }
    }
}
