//! Sidecar injection: IST0102 NamespaceNotInjected and IST0103 PodMissingProxy.

use std::collections::BTreeSet;

use super::{Context, NAMESPACE_NOT_INJECTED, POD_MISSING_PROXY};
use crate::meta::{Kind, ResourceKey};

/// Namespaces Istio's injection analyzer skips: Kubernetes' own.
const SYSTEM_NAMESPACES: [&str; 4] = [
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "local-path-storage",
];

/// The namespace label that turns injection on or off.
const INJECTION_LABEL: &str = "istio-injection";
/// The revision label, which also enables injection.
const REVISION_LABEL: &str = "istio.io/rev";
/// The pod label that opts one workload out of (or into) injection.
const POD_INJECT_LABEL: &str = "sidecar.istio.io/inject";

/// IST0102, as Istio's injection analyzer: every namespace but the root and the system ones,
/// with neither `istio-injection` nor `istio.io/rev`, "is not enabled for Istio injection".
/// A namespace that holds Meshward Workloads but has no Namespace document has no label either.
pub(super) fn namespaces(cx: &mut Context<'_>) {
    let root = cx.mesh.config.root_namespace.clone();
    let mut names: BTreeSet<String> = cx.mesh.namespaces.keys().cloned().collect();
    names.extend(
        cx.mesh
            .workloads
            .iter()
            .filter(|w| w.origin == Kind::Workload)
            .map(|w| w.namespace.clone()),
    );
    for name in names {
        if name == root || SYSTEM_NAMESPACES.contains(&name.as_str()) {
            continue;
        }
        let labelled = cx
            .mesh
            .namespace_labels(&name)
            .is_some_and(|l| l.contains_key(INJECTION_LABEL) || l.contains_key(REVISION_LABEL));
        if labelled {
            continue;
        }
        let key = ResourceKey {
            kind: Kind::Namespace,
            namespace: String::new(),
            name: name.clone(),
        };
        cx.report(
            NAMESPACE_NOT_INJECTED,
            &key,
            format!(
                "The namespace is not enabled for Istio injection. Run 'kubectl label namespace \
                 {name} istio-injection=enabled' to enable it, or 'kubectl label namespace {name} \
                 istio-injection=disabled' to explicitly mark it as not needing injection."
            ),
        );
    }
}

/// IST0103, as Istio's injection analyzer: a workload in a namespace labelled for injection,
/// not opted out with `sidecar.istio.io/inject: "false"`, that runs without a proxy. For a
/// Meshward Workload that means an explicit `sidecar: false`.
pub(super) fn workloads(cx: &mut Context<'_>) {
    let missing: Vec<ResourceKey> = cx
        .mesh
        .workloads
        .iter()
        .filter(|w| w.origin == Kind::Workload && !w.sidecar)
        .filter(|w| {
            let injected = cx.mesh.namespace_labels(&w.namespace).is_some_and(|l| {
                l.get(INJECTION_LABEL).is_some_and(|v| v == "enabled")
                    || l.contains_key(REVISION_LABEL)
            });
            let opted_out = w
                .labels
                .get(POD_INJECT_LABEL)
                .is_some_and(|v| v.eq_ignore_ascii_case("false"));
            injected && !opted_out
        })
        .map(|w| ResourceKey {
            kind: w.origin,
            namespace: w.namespace.clone(),
            name: w.name.clone(),
        })
        .collect();
    for key in missing {
        cx.report(
            POD_MISSING_PROXY,
            &key,
            format!(
                "The pod {}/{} is missing the Istio proxy. Its namespace is enabled for \
                 injection but the Workload sets `sidecar: false`: remove it, or label the \
                 Workload `{POD_INJECT_LABEL}: \"false\"` to mark it as not needing a proxy.",
                key.namespace, key.name
            ),
        );
    }
}
