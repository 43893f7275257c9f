//! Selectors that pick no workload: IST0127 NoMatchingWorkloadsFound for policies, IST0101
//! ReferencedResourceNotFound for Gateways.

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
