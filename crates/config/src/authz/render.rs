//! Text forms for logs and the CLI: a decision as one line, Envoy's response-code details for a
//! denial, and the table of policies that apply to a workload.

use std::fmt;

use super::compile::is_dry_run;
use super::engine::Decision;
use crate::mesh::Entry;
use crate::resources::authorization_policy::AuthorizationPolicySpec;

impl Decision {
    /// `ALLOW` or `DENY`, as `x authz check -o json` reports it.
    pub fn verdict(&self) -> &'static str {
        if self.allowed { "ALLOW" } else { "DENY" }
    }

    /// Envoy's RBAC response-code details for a denial (istio/proxy PR #3100):
    /// `rbac_access_denied_matched_policy[ns[NS]-policy[NAME]-rule[IDX]]` when a DENY policy
    /// matched, `rbac_access_denied_matched_policy[none]` when no ALLOW policy did; `None` when
    /// allowed.
    pub fn response_code_details(&self) -> Option<String> {
        if self.allowed {
            return None;
        }
        Some(match (&self.policy, self.rule) {
            (Some(policy), Some(rule)) => format!(
                "rbac_access_denied_matched_policy[ns[{}]-policy[{}]-rule[{rule}]]",
                policy.namespace, policy.name
            ),
            _ => "rbac_access_denied_matched_policy[none]".to_owned(),
        })
    }
}

/// `DENY: denied by DENY policy ns/name rule 0; audit ns/a rule 1; dry-run DENY ns/b rule 0`.
impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.verdict(), self.reason)?;
        for audit in &self.audit {
            write!(f, "; audit {} rule {}", audit.policy, audit.rule)?;
        }
        for dry in &self.dry_run {
            match dry.rule {
                Some(rule) => write!(
                    f,
                    "; dry-run {} {} matched rule {rule}",
                    dry.action.as_str(),
                    dry.policy
                )?,
                None => write!(
                    f,
                    "; dry-run {} {} matched no rule",
                    dry.action.as_str(),
                    dry.policy
                )?,
            }
        }
        Ok(())
    }
}

/// The policies of a workload as `istioctl x authz check` lists them:
///
/// ```text
/// ACTION  AuthorizationPolicy      RULES
/// DENY    deny-admin.shop          1
/// ALLOW   allow-web.shop (dry-run) 2
/// ```
pub fn render_policies(policies: &[&Entry<AuthorizationPolicySpec>]) -> String {
    let rows: Vec<(&str, String, usize)> = policies
        .iter()
        .map(|entry| {
            let mut name = format!("{}.{}", entry.object.metadata.name, entry.namespace());
            if is_dry_run(entry) {
                name.push_str(" (dry-run)");
            }
            let rules = entry.object.spec.rules.as_ref().map_or(0, Vec::len);
            (entry.object.spec.action.as_str(), name, rules)
        })
        .collect();
    let header = "AuthorizationPolicy";
    let width = rows
        .iter()
        .map(|(_, name, _)| name.len())
        .chain([header.len()])
        .max()
        .unwrap_or(header.len());
    let mut out = format!("{:<7} {header:<width$} RULES\n", "ACTION");
    for (action, name, rules) in rows {
        out.push_str(&format!("{action:<7} {name:<width$} {rules}\n"));
    }
    out
}
