//! MW0001 MtlsConflict: a DestinationRule whose `tls` the servers behind its host cannot
//! accept — Istio's retired IST0113 ("A DestinationRule and Policy are in conflict with regards
//! to mTLS"), recomputed with today's semantics.

use std::collections::BTreeSet;

use super::{Context, MTLS_CONFLICT};
use crate::meta::{Kind, ResourceKey};
use crate::resolve::names::{host_match, rule_host};
use crate::resolve::tls::Client;
use crate::tls_check::{Status, destinations, fit};

/// For every DestinationRule, every destination its host covers, every port and endpoint:
/// the TLS the rule makes a client of its own namespace originate (subset settings for the
/// endpoints a subset selects), checked against the endpoint's effective PeerAuthentication.
/// "Any DR trafficPolicy.tls overrides auto-mTLS", so a DISABLE rule toward a STRICT port, or
/// an ISTIO_MUTUAL rule toward a DISABLE port (or a workload without sidecar), breaks every
/// connection. Only the rule that wins the lookup is blamed.
pub(super) fn destination_rules(cx: &mut Context<'_>) {
    let mesh = cx.mesh;
    let mut reports: BTreeSet<(ResourceKey, String)> = BTreeSet::new();
    let targets = destinations(mesh);
    for entry in &mesh.destination_rules {
        let spec = &entry.object.spec;
        let key = entry.key(Kind::DestinationRule);
        let host = rule_host(&spec.host, entry.namespace());
        let no_labels = Default::default();
        let client = Client {
            namespace: entry.namespace(),
            labels: spec
                .workload_selector
                .as_ref()
                .map_or(&no_labels, |s| &s.match_labels),
        };
        for (fqdn, destination) in targets
            .iter()
            .filter(|(f, _)| host_match(&host, f).is_some())
        {
            for port in destination.ports() {
                for endpoint in mesh.endpoints(destination, port) {
                    let Some(server) = endpoint.workload else {
                        continue;
                    };
                    let subsets = spec
                        .subsets
                        .iter()
                        .filter(|s| {
                            s.labels
                                .iter()
                                .all(|(k, v)| server.labels.get(k) == Some(v))
                        })
                        .map(|s| Some(s.name.as_str()));
                    for subset in std::iter::once(None).chain(subsets) {
                        let Some((tls, rule, _)) = mesh.destination_rule_tls(
                            client,
                            fqdn,
                            Some(destination.namespace()),
                            port,
                            subset,
                        ) else {
                            continue;
                        };
                        if rule != key {
                            continue;
                        }
                        let effective = server
                            .sidecar
                            .then(|| mesh.peer_authentication(server, endpoint.port));
                        let verdict = fit(tls.mode, effective.as_ref().map(|e| e.mode));
                        if verdict.status != Status::Conflict {
                            continue;
                        }
                        let server_side = match &effective {
                            Some(e) => format!(
                                "workload {} port {} is {} (PeerAuthentication: {})",
                                server.qualified_name(),
                                endpoint.port,
                                e.mode.as_str(),
                                e.source
                            ),
                            None => format!(
                                "workload {} runs without a sidecar",
                                server.qualified_name()
                            ),
                        };
                        let subset = subset.map(|s| format!(" subset {s}")).unwrap_or_default();
                        reports.insert((
                            key.clone(),
                            format!(
                                "DestinationRule {}/{} sets tls.mode {} for {fqdn}:{port}{subset}, \
                                 but {server_side}: {}.",
                                key.namespace,
                                key.name,
                                tls.mode.as_str(),
                                verdict.reason
                            ),
                        ));
                    }
                }
            }
        }
    }
    for (key, message) in reports {
        cx.report(MTLS_CONFLICT, &key, message);
    }
}
