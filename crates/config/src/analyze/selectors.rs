//! References that pick nothing: IST0127 NoMatchingWorkloadsFound for policy selectors, IST0101
//! ReferencedResourceNotFound for Gateway selectors and AuthorizationPolicy namespaces.

use std::collections::BTreeSet;

use super::{Context, NO_MATCHING_WORKLOADS_FOUND, REFERENCED_RESOURCE_NOT_FOUND};
use crate::meta::{Kind, ResourceKey};
use crate::resources::common::WorkloadSelector;

/// AuthorizationPolicy and PeerAuthentication selectors that match no workload.
///
/// Scope, as Istio applies the policies: an AuthorizationPolicy "in the root namespace applies
/// to all namespaces" and its selector matches workloads everywhere; elsewhere a selector
/// matches workloads of the policy's own namespace. A root-namespace PeerAuthentication with a
/// selector is ignored by Istio, so it is never checked against workloads here.
pub(super) fn policies(cx: &mut Context<'_>) {
    let root = cx.mesh.config.root_namespace.as_str();
    let mut unmatched: Vec<(ResourceKey, String)> = Vec::new();
    for entry in &cx.mesh.authorization_policies {
        if let Some(selector) = non_empty(entry.object.spec.selector.as_ref()) {
            let everywhere = entry.namespace() == root;
            if !cx.matches_any(selector, entry.namespace(), everywhere) {
                unmatched.push((entry.key(Kind::AuthorizationPolicy), selector.describe()));
            }
        }
    }
    for entry in &cx.mesh.peer_authentications {
        if entry.namespace() == root {
            continue;
        }
        if let Some(selector) = non_empty(entry.object.spec.selector.as_ref())
            && !cx.matches_any(selector, entry.namespace(), false)
        {
            unmatched.push((entry.key(Kind::PeerAuthentication), selector.describe()));
        }
    }
    for (key, labels) in unmatched {
        cx.report(
            NO_MATCHING_WORKLOADS_FOUND,
            &key,
            format!("No matching workloads for this resource with the following labels: {labels}"),
        );
    }
}

/// IST0101, as Istio's gateway analyzer: a Gateway's `selector` names the gateway workloads,
/// in any namespace; when none carries its labels, "Referenced selector not found".
pub(super) fn gateways(cx: &mut Context<'_>) {
    let mut unmatched: Vec<(ResourceKey, String)> = Vec::new();
    for entry in &cx.mesh.gateways {
        let selector = WorkloadSelector {
            match_labels: entry.object.spec.selector.clone(),
        };
        if !selector.match_labels.is_empty() && !cx.matches_any(&selector, "", true) {
            unmatched.push((entry.key(Kind::Gateway), selector.describe()));
        }
    }
    for (key, labels) in unmatched {
        cx.report(
            REFERENCED_RESOURCE_NOT_FOUND,
            &key,
            format!("Referenced selector not found: \"{labels}\""),
        );
    }
}

/// IST0101, as Istio's authorization analyzer: every `source.namespaces` and
/// `source.notNamespaces` value (exact, `prefix*`, `*suffix` or `*`) must match a namespace.
/// Offline, the namespaces that exist are the Namespace documents, every namespace a resource
/// is written in, and the root namespace.
pub(super) fn policy_namespaces(cx: &mut Context<'_>) {
    let mut known: BTreeSet<&str> = cx
        .locations
        .keys()
        .map(|key| match key.kind {
            Kind::Namespace => key.name.as_str(),
            _ => key.namespace.as_str(),
        })
        .filter(|ns| !ns.is_empty())
        .collect();
    known.insert(cx.mesh.config.root_namespace.as_str());
    let mut missing: Vec<(ResourceKey, String)> = Vec::new();
    for entry in &cx.mesh.authorization_policies {
        let rules = entry.object.spec.rules.iter().flatten();
        let sources = rules
            .flat_map(|rule| rule.from.iter().flatten())
            .map(|from| &from.source);
        for namespace in sources.flat_map(|s| s.namespaces.iter().chain(&s.not_namespaces)) {
            let found = known.iter().any(|ns| matches_pattern(namespace, ns));
            let key = entry.key(Kind::AuthorizationPolicy);
            if !found && !missing.contains(&(key.clone(), namespace.clone())) {
                missing.push((key, namespace.clone()));
            }
        }
    }
    for (key, namespace) in missing {
        cx.report(
            REFERENCED_RESOURCE_NOT_FOUND,
            &key,
            format!("Referenced namespace not found: \"{namespace}\""),
        );
    }
}

/// Istio's string match: `*` (any), `prefix*`, `*suffix`, or exact.
fn matches_pattern(pattern: &str, value: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    if let Some(prefix) = pattern.strip_suffix('*') {
        return value.starts_with(prefix);
    }
    if let Some(suffix) = pattern.strip_prefix('*') {
        return value.ends_with(suffix);
    }
    pattern == value
}

fn non_empty(selector: Option<&WorkloadSelector>) -> Option<&WorkloadSelector> {
    selector.filter(|s| !s.match_labels.is_empty())
}

impl Context<'_> {
    fn matches_any(&self, selector: &WorkloadSelector, namespace: &str, everywhere: bool) -> bool {
        self.mesh
            .workloads
            .iter()
            .any(|w| (everywhere || w.namespace == namespace) && selector.matches(&w.labels))
    }
}
