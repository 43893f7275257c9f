//! Service names: short names resolved in the caller's namespace as Kubernetes DNS does, and
//! DestinationRule hosts qualified as Istio does.

/// The cluster DNS domain.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// The names Kubernetes DNS tries, in order, for `name` looked up from a pod in `namespace`:
/// the search path is `<ns>.svc.cluster.local svc.cluster.local cluster.local`, then the name
/// itself. So `reviews` → `reviews.<ns>.svc.cluster.local`, `reviews.prod` →
/// `reviews.prod.svc.cluster.local`, `reviews.prod.svc` → `reviews.prod.svc.cluster.local`.
pub fn dns_candidates(namespace: &str, name: &str) -> Vec<String> {
    let name = name.trim_end_matches('.');
    let mut candidates = vec![
        format!("{name}.{namespace}.svc.{CLUSTER_DOMAIN}"),
        format!("{name}.svc.{CLUSTER_DOMAIN}"),
        format!("{name}.{CLUSTER_DOMAIN}"),
        name.to_owned(),
    ];
    candidates.dedup();
    candidates
}

/// The full name of a Service.
pub fn service_fqdn(name: &str, namespace: &str) -> String {
    format!("{name}.{namespace}.svc.{CLUSTER_DOMAIN}")
}

/// A DestinationRule `host` as Istio reads it: "Rules defined in namespace 'foo' with host
/// 'reviews' will be interpreted as 'reviews.foo.svc.cluster.local'"; a name with dots or a
/// wildcard is taken as written.
pub fn rule_host(host: &str, rule_namespace: &str) -> String {
    if host.contains('.') || host.contains('*') {
        host.to_ascii_lowercase()
    } else {
        service_fqdn(&host.to_ascii_lowercase(), rule_namespace)
    }
}

/// How well a rule host matches a service name: `None` when it does not; a higher score is more
/// specific. Exact names beat wildcards; a longer wildcard (`*.ns.svc.cluster.local`) beats a
/// shorter one (`*.local`, `*`).
pub fn host_match(rule_host: &str, fqdn: &str) -> Option<usize> {
    if rule_host == fqdn {
        return Some(usize::MAX);
    }
    if rule_host == "*" {
        return Some(0);
    }
    let suffix = rule_host.strip_prefix('*')?;
    fqdn.ends_with(suffix).then_some(suffix.len())
}
