//! Which VirtualService routes a client's requests to a host, and which endpoints a
//! DestinationRule subset names.

use super::names::{host_match, rule_host};
use super::tls::Client;
use crate::mesh::{Entry, Mesh};
use crate::resources::destination_rule::Subset;
use crate::resources::virtual_service::VirtualServiceSpec;

impl Mesh {
    /// The VirtualService that routes `client`'s requests to `host` (a full name): the oldest
    /// visible one naming it (Istio: for sidecars, the first of several VirtualServices for one
    /// host wins), exact names before wildcards.
    pub fn virtual_service_for(
        &self,
        client: Client<'_>,
        host: &str,
    ) -> Option<&Entry<VirtualServiceSpec>> {
        self.virtual_services
            .iter()
            .filter(|vs| visible(&vs.object.spec.export_to, vs.namespace(), client))
            .filter_map(|vs| {
                let score = vs
                    .object
                    .spec
                    .hosts
                    .iter()
                    .filter_map(|h| host_match(&rule_host(h, vs.namespace()), host))
                    .max()?;
                Some((score, vs))
            })
            .fold(
                None,
                |best: Option<(usize, &Entry<VirtualServiceSpec>)>, (score, vs)| match best {
                    Some((s, _)) if s >= score => best,
                    _ => Some((score, vs)),
                },
            )
            .map(|(_, vs)| vs)
    }

    /// The subset `name` of `host` as `client` sees it: "first subset of a name wins".
    pub fn subset(
        &self,
        client: Client<'_>,
        host: &str,
        service_namespace: Option<&str>,
        name: &str,
    ) -> Option<&Subset> {
        self.destination_rules_for(client, host, service_namespace)
            .into_iter()
            .find_map(|r| r.object.spec.subsets.iter().find(|s| s.name == name))
    }

    /// Every subset name the DestinationRules of `host` define for `client`.
    pub fn subset_names(
        &self,
        client: Client<'_>,
        host: &str,
        service_namespace: Option<&str>,
    ) -> Vec<String> {
        let mut names: Vec<String> = self
            .destination_rules_for(client, host, service_namespace)
            .into_iter()
            .flat_map(|r| r.object.spec.subsets.iter().map(|s| s.name.clone()))
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

/// `exportTo`: `.` = the rule's own namespace, `*` (or nothing) = all, else namespace names.
fn visible(export_to: &[String], namespace: &str, client: Client<'_>) -> bool {
    export_to.is_empty()
        || export_to.iter().any(|to| {
            to == "*" || (to == "." && namespace == client.namespace) || to == client.namespace
        })
}
