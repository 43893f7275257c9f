//! What TLS a client sidecar originates towards a destination: the DestinationRule that
//! applies (lookup order, `exportTo`, wildcard hosts, port and subset overrides), else
//! auto-mTLS.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::endpoints::Endpoint;
use super::names::{host_match, rule_host};
use crate::mesh::{Entry, Mesh};
use crate::meta::{Kind, ResourceKey};
use crate::resources::destination_rule::{
    ClientTls, ClientTlsMode, DestinationRuleSpec, TrafficPolicy,
};
use crate::resources::peer_authentication::MtlsMode;

/// A DestinationRule and one traffic policy of it.
pub(crate) type RulePolicy<'a> = (&'a Entry<DestinationRuleSpec>, &'a TrafficPolicy);

/// The client making the call.
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    /// Its namespace.
    pub namespace: &'a str,
    /// Its labels (for DestinationRule `workloadSelector`).
    pub labels: &'a BTreeMap<String, String>,
}

/// Which part of a DestinationRule set the TLS settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum TlsLevel {
    /// `trafficPolicy.tls`.
    TrafficPolicy,
    /// `trafficPolicy.portLevelSettings[].tls`.
    Port,
    /// `subsets[].trafficPolicy.tls`.
    Subset,
    /// `subsets[].trafficPolicy.portLevelSettings[].tls`.
    SubsetPort,
}

/// Why the client uses the mode it uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "by", rename_all = "camelCase")]
pub enum TlsSource {
    /// A DestinationRule's `tls`.
    DestinationRule {
        /// The rule.
        rule: ResourceKey,
        /// Where in it.
        level: TlsLevel,
    },
    /// Auto-mTLS: the endpoint has a sidecar that accepts mTLS.
    AutoMtls,
    /// Auto-mTLS chose plaintext: the endpoint has no sidecar (or is outside the mesh).
    AutoNoSidecar,
    /// Auto-mTLS chose plaintext: the endpoint's PeerAuthentication is DISABLE.
    AutoServerDisabled,
    /// `enableAutoMtls: false` and no DestinationRule `tls`: plaintext.
    AutoMtlsOff,
}

impl fmt::Display for TlsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsSource::DestinationRule { rule, level } => {
                write!(
                    f,
                    "DestinationRule {}/{} ({level:?})",
                    rule.namespace, rule.name
                )
            }
            TlsSource::AutoMtls => f.write_str("auto-mTLS"),
            TlsSource::AutoNoSidecar => f.write_str("auto-mTLS: endpoint has no sidecar"),
            TlsSource::AutoServerDisabled => {
                f.write_str("auto-mTLS: server PeerAuthentication is DISABLE")
            }
            TlsSource::AutoMtlsOff => f.write_str("enableAutoMtls is false"),
        }
    }
}

/// What a client sidecar originates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientTlsDecision {
    /// The mode.
    pub mode: ClientTlsMode,
    /// The DestinationRule settings, when one decided.
    pub settings: Option<ClientTls>,
    /// Why.
    pub source: TlsSource,
}

impl Mesh {
    /// The DestinationRule TLS settings (if any) for `host` (a full name), `port` and `subset`,
    /// as seen by `client`. `service_namespace` is where the destination is defined.
    pub fn destination_rule_tls(
        &self,
        client: Client<'_>,
        host: &str,
        service_namespace: Option<&str>,
        port: u16,
        subset: Option<&str>,
    ) -> Option<(ClientTls, ResourceKey, TlsLevel)> {
        let (top, sub) = self.applicable_policies(client, host, service_namespace, subset);
        // Istio merges subset policy over the top-level policy, and port-level settings over
        // the policy they sit in: subset port > subset > top-level port > top-level.
        let mut chosen: Option<(ClientTls, ResourceKey, TlsLevel)> = None;
        if let Some((rule, policy)) = top {
            chosen = tls_of(policy, port, TlsLevel::TrafficPolicy, TlsLevel::Port)
                .map(|(tls, level)| (tls.clone(), rule.key(Kind::DestinationRule), level));
        }
        if let Some((rule, policy)) = sub
            && let Some((tls, level)) = tls_of(policy, port, TlsLevel::Subset, TlsLevel::SubsetPort)
        {
            chosen = Some((tls.clone(), rule.key(Kind::DestinationRule), level));
        }
        chosen
    }

    /// The TLS a client sidecar originates to one endpoint of `host:port`.
    pub fn client_tls(
        &self,
        client: Client<'_>,
        host: &str,
        service_namespace: Option<&str>,
        port: u16,
        subset: Option<&str>,
        endpoint: &Endpoint<'_>,
    ) -> ClientTlsDecision {
        // "Any DR trafficPolicy.tls overrides auto-mTLS; a DR with no tls block keeps it."
        if let Some((tls, rule, level)) =
            self.destination_rule_tls(client, host, service_namespace, port, subset)
        {
            return ClientTlsDecision {
                mode: tls.mode,
                settings: Some(tls),
                source: TlsSource::DestinationRule { rule, level },
            };
        }
        let plaintext = |source| ClientTlsDecision {
            mode: ClientTlsMode::Disable,
            settings: None,
            source,
        };
        // "enableAutoMtls (default true): if the DR has no tls, the client uses ISTIO_MUTUAL
        // toward endpoints that have a sidecar, otherwise plaintext."
        if !self.config.enable_auto_mtls {
            return plaintext(TlsSource::AutoMtlsOff);
        }
        if !endpoint.sidecar {
            return plaintext(TlsSource::AutoNoSidecar);
        }
        // Auto-mTLS follows the server's workload-level PeerAuthentication (istio PR #34118):
        // a DISABLE server gets plaintext instead of a handshake it would reject.
        if let Some(workload) = endpoint.workload
            && self.peer_authentication(workload, endpoint.port).mode == MtlsMode::Disable
        {
            return plaintext(TlsSource::AutoServerDisabled);
        }
        ClientTlsDecision {
            mode: ClientTlsMode::IstioMutual,
            settings: None,
            source: TlsSource::AutoMtls,
        }
    }

    /// The top-level `trafficPolicy` and the policy of `subset` that apply to `host` for
    /// `client`, each with its rule: "with several DRs for one host: first subset of a name
    /// wins, first top-level trafficPolicy wins" (istio.io ops/best-practices/traffic-management).
    pub(crate) fn applicable_policies(
        &self,
        client: Client<'_>,
        host: &str,
        service_namespace: Option<&str>,
        subset: Option<&str>,
    ) -> (Option<RulePolicy<'_>>, Option<RulePolicy<'_>>) {
        let rules = self.destination_rules_for(client, host, service_namespace);
        let top = rules
            .iter()
            .find_map(|r| r.object.spec.traffic_policy.as_ref().map(|p| (*r, p)));
        let sub = subset.and_then(|name| {
            rules.iter().find_map(|r| {
                let subset = r.object.spec.subsets.iter().find(|s| s.name == name)?;
                Some((*r, subset.traffic_policy.as_ref()?))
            })
        });
        (top, sub)
    }

    /// The DestinationRules that apply to `host` for `client`, all from the one namespace
    /// that wins, oldest first.
    ///
    /// "DR lookup order: client namespace → service namespace → meshConfig.rootNamespace.
    /// exportTo controls visibility, not lookup." Within a namespace the most specific host
    /// wins (exact name over `*.ns.svc.cluster.local` over `*.local`).
    pub(crate) fn destination_rules_for(
        &self,
        client: Client<'_>,
        host: &str,
        service_namespace: Option<&str>,
    ) -> Vec<&Entry<DestinationRuleSpec>> {
        let mut order = vec![client.namespace];
        order.extend(service_namespace);
        order.push(self.config.root_namespace.as_str());
        for namespace in order {
            let candidates: Vec<(usize, &Entry<DestinationRuleSpec>)> = self
                .destination_rules
                .iter()
                .filter(|r| r.namespace() == namespace && visible(r, client))
                .filter_map(|r| {
                    let score = host_match(&rule_host(&r.object.spec.host, r.namespace()), host)?;
                    Some((score, r))
                })
                .collect();
            if let Some(best) = candidates.iter().map(|(score, _)| *score).max() {
                return candidates
                    .into_iter()
                    .filter(|(score, _)| *score == best)
                    .map(|(_, r)| r)
                    .collect();
            }
        }
        Vec::new()
    }
}

/// "exportTo: `.` = the rule's own namespace, `*` = all (the default), or namespace names";
/// a `workloadSelector` limits a rule to matching clients of its own namespace.
fn visible(rule: &Entry<DestinationRuleSpec>, client: Client<'_>) -> bool {
    let spec = &rule.object.spec;
    if let Some(selector) = &spec.workload_selector
        && (rule.namespace() != client.namespace || !selector.matches(client.labels))
    {
        return false;
    }
    spec.export_to.is_empty()
        || spec.export_to.iter().any(|to| {
            to == "*"
                || (to == "." && rule.namespace() == client.namespace)
                || to == client.namespace
        })
}

fn tls_of(
    policy: &TrafficPolicy,
    port: u16,
    whole: TlsLevel,
    per_port: TlsLevel,
) -> Option<(&ClientTls, TlsLevel)> {
    let port_tls = policy
        .port_level_settings
        .iter()
        .filter(|s| s.port.is_some_and(|p| p.number.0 == u64::from(port)))
        .find_map(|s| s.tls.as_ref());
    match port_tls {
        Some(tls) => Some((tls, per_port)),
        None => policy.tls.as_ref().map(|tls| (tls, whole)),
    }
}
