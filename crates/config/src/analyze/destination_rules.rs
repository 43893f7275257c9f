//! DestinationRule analyzers: IST0174 (host not found), IST0173 (subset selects nothing),
//! IST0128/IST0129 (SIMPLE or MUTUAL TLS that does not verify the server).

use std::collections::BTreeMap;

use super::{
    Context, NO_SERVER_CERT_VERIFICATION_DESTINATION, NO_SERVER_CERT_VERIFICATION_PORT,
    SUBSET_SELECTS_NO_PODS, UNKNOWN_DESTINATION_RULE_HOST,
};
use crate::mesh::Mesh;
use crate::meta::{Kind, ResourceKey};
use crate::resolve::endpoints::Destination;
use crate::resources::destination_rule::{ClientTls, ClientTlsMode};

/// IST0174 and IST0173, as Istio's pod-not-selected analyzer.
///
/// "Rules defined in namespace 'foo' with host 'reviews' will be interpreted as
/// 'reviews.foo.svc.cluster.local'": a host that names no Service and no ServiceEntry host
/// "does not match any services in the mesh" (wildcard hosts are not checked). A subset whose labels select none
/// of the host's workloads "may lead to 503 UH (NoHealthyUpstream)".
pub(super) fn hosts_and_subsets(cx: &mut Context<'_>) {
    let mut reports: Vec<(super::Code, ResourceKey, String)> = Vec::new();
    for entry in &cx.mesh.destination_rules {
        let spec = &entry.object.spec;
        let key = entry.key(Kind::DestinationRule);
        if spec.host.contains('*') {
            continue;
        }
        let Some(resolved) = cx.mesh.resolve_host(entry.namespace(), &spec.host) else {
            reports.push((
                UNKNOWN_DESTINATION_RULE_HOST,
                key,
                format!(
                    "The host {} defined in the DestinationRule does not match any services in \
                     the mesh.",
                    spec.host
                ),
            ));
            continue;
        };
        let members = member_labels(cx.mesh, &resolved.destination);
        for subset in &spec.subsets {
            let selects = members
                .iter()
                .any(|labels| subset.labels.iter().all(|(k, v)| labels.get(k) == Some(v)));
            if !selects {
                reports.push((
                    SUBSET_SELECTS_NO_PODS,
                    key.clone(),
                    format!(
                        "The Subset {} defined in the DestinationRule does not select any pods. \
                         Which may lead to 503 UH (NoHealthyUpstream).",
                        subset.name
                    ),
                ));
            }
        }
    }
    for (code, key, message) in reports {
        cx.report(code, &key, message);
    }
}

/// The labels of every member of a destination: the workloads a Service (or a ServiceEntry's
/// `workloadSelector`) selects in its namespace, or a ServiceEntry's static endpoints.
fn member_labels<'a>(
    mesh: &'a Mesh,
    destination: &Destination<'a>,
) -> Vec<&'a BTreeMap<String, String>> {
    let selected = |namespace: &str, selector: &BTreeMap<String, String>| {
        mesh.workloads
            .iter()
            .filter(|w| {
                w.namespace == namespace && selector.iter().all(|(k, v)| w.labels.get(k) == Some(v))
            })
            .map(|w| &w.labels)
            .collect::<Vec<_>>()
    };
    match destination {
        Destination::Service(entry) if entry.object.spec.selector.is_empty() => Vec::new(),
        Destination::Service(entry) => selected(entry.namespace(), &entry.object.spec.selector),
        Destination::ServiceEntry(entry) => match &entry.object.spec.workload_selector {
            Some(selector) => selected(entry.namespace(), &selector.labels),
            None => entry
                .object
                .spec
                .endpoints
                .iter()
                .map(|e| &e.labels)
                .collect(),
        },
    }
}

/// IST0128 and IST0129, as Istio's CA-certificate analyzer: the top-level `trafficPolicy.tls`
/// and each `portLevelSettings[].tls` in SIMPLE or MUTUAL mode "has TLS mode set to … but no
/// caCertificates are set to validate server identity". A `credentialName` (which carries the
/// CA) or an explicit `insecureSkipVerify: true` is a deliberate choice and is not reported.
pub(super) fn ca_certificates(cx: &mut Context<'_>) {
    let mut reports: Vec<(super::Code, ResourceKey, String)> = Vec::new();
    for entry in &cx.mesh.destination_rules {
        let spec = &entry.object.spec;
        let Some(policy) = &spec.traffic_policy else {
            continue;
        };
        let key = entry.key(Kind::DestinationRule);
        let describe = |tls: &ClientTls| {
            format!(
                "DestinationRule {} in namespace {} has TLS mode set to {} but no caCertificates \
                 are set to validate server identity for host: {}",
                entry.object.metadata.name,
                entry.namespace(),
                tls.mode.as_str(),
                spec.host
            )
        };
        if let Some(tls) = policy.tls.as_ref().filter(|t| unverified(t)) {
            reports.push((
                NO_SERVER_CERT_VERIFICATION_DESTINATION,
                key.clone(),
                describe(tls),
            ));
        }
        for setting in &policy.port_level_settings {
            if let (Some(tls), Some(port)) = (setting.tls.as_ref(), setting.port)
                && unverified(tls)
            {
                reports.push((
                    NO_SERVER_CERT_VERIFICATION_PORT,
                    key.clone(),
                    format!("{} at port number:{}", describe(tls), port.number),
                ));
            }
        }
    }
    for (code, key, message) in reports {
        cx.report(code, &key, message);
    }
}

fn unverified(tls: &ClientTls) -> bool {
    matches!(tls.mode, ClientTlsMode::Simple | ClientTlsMode::Mutual)
        && tls.ca_certificates.is_none()
        && tls.credential_name.is_none()
        && tls.insecure_skip_verify != Some(true)
}
