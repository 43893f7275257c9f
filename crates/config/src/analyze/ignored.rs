//! MW0002 IgnoredPeerAuthentication: PeerAuthentications that Istio accepts but never applies.

use super::{Context, IGNORED_PEER_AUTHENTICATION};
use crate::meta::{Kind, ResourceKey};

/// Two rules of Istio's PeerAuthentication resolution make a policy dead on arrival:
///
/// - "only one mesh-wide and one namespace-wide policy take effect: the oldest; newer ones are
///   ignored" — a second policy without selector in the same namespace never applies;
/// - "a root-namespace policy with a selector is ignored" (the code, and istio/api PR #3604,
///   against the older proto comment).
pub(super) fn peer_authentications(cx: &mut Context<'_>) {
    let root = cx.mesh.config.root_namespace.as_str();
    let mut reports: Vec<(ResourceKey, String)> = Vec::new();
    // The list is oldest first, so the first policy without selector of a namespace wins.
    let mut winners: Vec<(&str, ResourceKey)> = Vec::new();
    for entry in &cx.mesh.peer_authentications {
        let key = entry.key(Kind::PeerAuthentication);
        let selector = entry
            .object
            .spec
            .selector
            .as_ref()
            .filter(|s| !s.match_labels.is_empty());
        if let Some(selector) = selector {
            if entry.namespace() == root {
                reports.push((
                    key,
                    format!(
                        "The policy has no effect: a PeerAuthentication with a selector ({}) in \
                         the root namespace {root} is ignored. Move it to the namespace of the \
                         workloads it selects.",
                        selector.describe()
                    ),
                ));
            }
            continue;
        }
        match winners.iter().find(|(ns, _)| *ns == entry.namespace()) {
            Some((_, winner)) => {
                let level = if entry.namespace() == root {
                    "mesh-wide"
                } else {
                    "namespace-wide"
                };
                reports.push((
                    key,
                    format!(
                        "The policy has no effect: PeerAuthentication {}/{} is an older \
                         {level} policy and only the oldest one applies.",
                        winner.namespace, winner.name
                    ),
                ));
            }
            None => winners.push((entry.namespace(), key)),
        }
    }
    for (key, message) in reports {
        cx.report(IGNORED_PEER_AUTHENTICATION, &key, message);
    }
}
