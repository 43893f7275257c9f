//! PeerAuthentication and AuthorizationPolicy rules.

use super::{Issues, is_ip_or_cidr};
use crate::authz::compile::bracketed;
use crate::authz::matcher::{PathMatch, parse_port};
use crate::resources::authorization_policy::{
    Action, AuthorizationPolicySpec, Condition, Operation, Source,
};
use crate::resources::common::WorkloadSelector;
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
    if let Some(selector) = &spec.selector {
        workload_selector(selector, "spec.selector", issues);
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
        let base = format!("spec.rules[{r}]");
        // istio validation: "`from` must not be empty" / "`to` must not be empty" — an empty
        // list is not the same as leaving the field out (which matches anything).
        for (field, empty) in [
            ("from", rule.from.as_ref().is_some_and(Vec::is_empty)),
            ("to", rule.to.as_ref().is_some_and(Vec::is_empty)),
        ] {
            if empty {
                issues.error(
                    format!("{base}.{field}"),
                    format!("`{field}` must not be empty: leave it out to match anything"),
                );
            }
        }
        let mut tcp_from = false;
        for (f, from) in rule.from.iter().flatten().enumerate() {
            tcp_from |= source(&from.source, &format!("{base}.from[{f}].source"), issues);
        }
        let mut tcp_to = false;
        for (t, to) in rule.to.iter().flatten().enumerate() {
            tcp_to |= operation(&to.operation, &format!("{base}.to[{t}].operation"), issues);
        }
        for (c, cond) in rule.when.iter().enumerate() {
            condition(cond, &format!("{base}.when[{c}]"), issues);
        }
        // istio validation warning: a DENY rule whose `from`/`to` use only HTTP attributes
        // matches every TCP connection (HTTP-only fields are treated as matched there).
        let from_set = rule.from.as_ref().is_some_and(|f| !f.is_empty());
        let to_set = rule.to.as_ref().is_some_and(|t| !t.is_empty());
        if spec.action == Action::Deny
            && ((from_set && !to_set && !tcp_from) || (to_set && !tcp_to))
        {
            issues.warning(
                base,
                "this DENY rule uses only HTTP attributes, so it denies all traffic to TCP ports \
                 under its scope (HTTP-only fields are treated as matched on TCP): list the \
                 `ports` it is meant for",
            );
        }
    }
}

/// istio `validateWorkloadSelector`.
fn workload_selector(selector: &WorkloadSelector, base: &str, issues: &mut Issues) {
    if selector.match_labels.is_empty() {
        issues.warning(base, "workload selector specified without labels");
    }
    for (key, value) in &selector.match_labels {
        let path = format!("{base}.matchLabels");
        if key.is_empty() {
            issues.error(
                path,
                format!("empty key is not supported in selector: `={value}`"),
            );
        } else if key.contains('*') || value.contains('*') {
            issues.error(
                path,
                format!("wildcard is not supported in selector: `{key}={value}`"),
            );
        }
    }
}

/// Validates one `from[].source`; returns whether it uses a field that applies to TCP.
fn source(source: &Source, base: &str, issues: &mut Issues) -> bool {
    let tcp_fields = [
        &source.principals,
        &source.not_principals,
        &source.namespaces,
        &source.not_namespaces,
        &source.ip_blocks,
        &source.not_ip_blocks,
        &source.remote_ip_blocks,
        &source.not_remote_ip_blocks,
        &source.service_accounts,
        &source.not_service_accounts,
    ];
    let tcp = tcp_fields.iter().any(|values| !values.is_empty());
    let jwt = !source.request_principals.is_empty() || !source.not_request_principals.is_empty();
    if !tcp && !jwt {
        issues.error(base, "`from.source` must not be empty");
    }
    for (field, values) in [
        ("principals", &source.principals),
        ("notPrincipals", &source.not_principals),
    ] {
        for (i, principal) in values.iter().enumerate() {
            spiffe_prefix(principal, &format!("{base}.{field}[{i}]"), issues);
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
        // Istio: "cannot set serviceAccounts with namespaces or principals".
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
        service_accounts(field, values, &path, issues);
    }
    for (field, values) in [
        ("namespaces", &source.namespaces),
        ("notNamespaces", &source.not_namespaces),
        ("requestPrincipals", &source.request_principals),
        ("notRequestPrincipals", &source.not_request_principals),
    ] {
        no_empty_values(base, field, values, issues);
    }
    if jwt {
        let field = if source.request_principals.is_empty() {
            "notRequestPrincipals"
        } else {
            "requestPrincipals"
        };
        no_jwt(&format!("{base}.{field}"), issues);
    }
    tcp
}

/// Validates one `to[].operation`; returns whether it uses `ports` or `notPorts`.
fn operation(op: &Operation, base: &str, issues: &mut Issues) -> bool {
    let fields = [
        ("hosts", &op.hosts),
        ("notHosts", &op.not_hosts),
        ("ports", &op.ports),
        ("notPorts", &op.not_ports),
        ("methods", &op.methods),
        ("notMethods", &op.not_methods),
        ("paths", &op.paths),
        ("notPaths", &op.not_paths),
    ];
    if fields.iter().all(|(_, values)| values.is_empty()) {
        issues.error(base, "`to.operation` must not be empty");
    }
    for (field, values) in [("ports", &op.ports), ("notPorts", &op.not_ports)] {
        for (i, port) in values.iter().enumerate() {
            if parse_port(port).is_none() {
                issues.error(
                    format!("{base}.{field}[{i}]"),
                    format!("invalid port `{port}`: must be between 1-65535"),
                );
            }
        }
    }
    for (field, values) in [("paths", &op.paths), ("notPaths", &op.not_paths)] {
        for (i, path) in values.iter().enumerate() {
            if let Err(why) = PathMatch::parse(path) {
                issues.error(
                    format!("{base}.{field}[{i}]"),
                    format!("invalid or unsupported path `{path}`: {why}"),
                );
            }
        }
    }
    // Ports are checked above, an empty one included.
    for (field, values) in fields {
        if !matches!(field, "ports" | "notPorts") {
            no_empty_values(base, field, values, issues);
        }
    }
    !op.ports.is_empty() || !op.not_ports.is_empty()
}

/// One `when` condition: istio `ValidateAttribute` on `values` and `notValues`, plus what
/// Meshward cannot evaluate.
fn condition(cond: &Condition, base: &str, issues: &mut Issues) {
    let key = cond.key.as_str();
    if key.is_empty() {
        issues.error(format!("{base}.key"), "key must not be empty");
        return;
    }
    if cond.values.is_empty() && cond.not_values.is_empty() {
        issues.error(
            base,
            format!("at least one of values or notValues must be set for key {key}"),
        );
        return;
    }
    let key_error = |issues: &mut Issues, message: String| {
        issues.error(format!("{base}.key"), message);
    };
    let lists = [("values", &cond.values), ("notValues", &cond.not_values)];
    let each = |issues: &mut Issues, bad: &dyn Fn(&str) -> Option<String>| {
        for (field, values) in lists {
            for (i, value) in values.iter().enumerate() {
                if let Some(message) = bad(value) {
                    issues.error(format!("{base}.{field}[{i}]"), message);
                }
            }
        }
    };
    for (field, values) in lists {
        no_empty_values(base, field, values, issues);
    }
    match key {
        "source.ip" | "remote.ip" | "destination.ip" => each(issues, &|v| {
            (!is_ip_or_cidr(v)).then(|| format!("invalid IP address or CIDR block `{v}`"))
        }),
        "destination.port" => each(issues, &|v| {
            parse_port(v)
                .is_none()
                .then(|| format!("invalid port `{v}`: must be between 1-65535"))
        }),
        "source.principal" => {
            for (field, values) in lists {
                for (i, value) in values.iter().enumerate() {
                    spiffe_prefix(value, &format!("{base}.{field}[{i}]"), issues);
                }
            }
        }
        "source.serviceAccount" => {
            for (field, values) in lists {
                service_accounts(field, values, &format!("{base}.{field}"), issues);
            }
        }
        "source.namespace" | "connection.sni" => {}
        "request.auth.principal" | "request.auth.audiences" | "request.auth.presenter" => {
            no_jwt(base, issues);
        }
        "destination.namespace" => key_error(
            issues,
            format!("attribute {key} is replaced by the metadata.namespace"),
        ),
        "destination.name" | "destination.user" => key_error(
            issues,
            format!("deprecated attribute {key}: only supported in v1alpha1"),
        ),
        _ if key.starts_with("destination.labels") => key_error(
            issues,
            format!("attribute {key} is replaced by the workload selector"),
        ),
        _ if key.starts_with("experimental.envoy.filters.") => key_error(
            issues,
            format!("`{key}` reads Envoy filter metadata, which Meshward does not have"),
        ),
        _ if key.starts_with("request.experimental.inline.headers") => key_error(
            issues,
            format!("`{key}` is not supported by Meshward: use `request.headers[NAME]`"),
        ),
        _ if key.starts_with("request.auth.claims") => {
            if bracketed(key, "request.auth.claims").is_none() {
                key_error(
                    issues,
                    format!("bad key `{key}`: should have format request.auth.claims[NAME]"),
                );
            }
            no_jwt(base, issues);
        }
        _ if key.starts_with("request.headers") => {
            if bracketed(key, "request.headers").is_none() {
                key_error(
                    issues,
                    format!("bad key `{key}`: should have format request.headers[NAME]"),
                );
            }
        }
        _ => key_error(issues, format!("unknown attribute: {key}")),
    }
}

/// istio `CheckServiceAccount`: at most 16, `ns/sa` or `sa`, no wildcard, at most 320
/// characters.
fn service_accounts(field: &str, values: &[String], path: &str, issues: &mut Issues) {
    if values.len() > 16 {
        issues.error(path, format!("at most 16 {field} may be listed"));
    }
    for (i, account) in values.iter().enumerate() {
        let parts: Vec<&str> = account.split('/').collect();
        let well_formed =
            parts.len() <= 2 && parts.iter().all(|p| !p.is_empty() && !p.contains('*'));
        if !well_formed {
            issues.error(
                format!("{path}[{i}]"),
                format!(
                    "service account `{account}` must be `namespace/name` or `name`, without \
                     wildcards"
                ),
            );
        } else if account.len() > 320 {
            issues.error(
                format!("{path}[{i}]"),
                "a service account cannot exceed 320 characters",
            );
        }
    }
}

/// Istio matches principals against the peer identity without its scheme, so a `spiffe://`
/// prefix is accepted but can never match.
fn spiffe_prefix(principal: &str, path: &str, issues: &mut Issues) {
    if let Some(rest) = principal.strip_prefix("spiffe://") {
        issues.warning(
            path,
            format!(
                "principal `{principal}` starts with `spiffe://` and will never match: write it \
                 without the scheme (`{rest}`)"
            ),
        );
    }
}

/// JWT attributes exist only with a RequestAuthentication, which Meshward does not have.
fn no_jwt(path: &str, issues: &mut Issues) {
    issues.warning(
        path,
        "Meshward has no RequestAuthentication, so no request carries a validated JWT: \
         requestPrincipals and request.auth.* values never match, their negative forms always do",
    );
}

fn no_empty_values(base: &str, field: &str, values: &[String], issues: &mut Issues) {
    for (i, value) in values.iter().enumerate() {
        if value.is_empty() {
            issues.error(format!("{base}.{field}[{i}]"), "empty value is not allowed");
        }
    }
}
