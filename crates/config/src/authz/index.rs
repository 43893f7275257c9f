//! [`PrincipalIndex`]: which policies a request can match at all, by its principal — so a
//! decision over a thousand policies looks only at the few that name the caller.
//!
//! A policy whose every rule has a `from`, each of whose sources lists exact `principals`, can
//! only match a request whose principal is one of them (sources are ANDed fields, rules and
//! sources are ORed). Such a policy is filed under each of its principals; every other policy
//! (wildcards, no `from`, `namespaces` or IP only, dry-run) is always looked at. The result is
//! exactly the linear scan's: a skipped policy could not have matched.

use std::collections::HashMap;

use super::compile::{AuthzAction, CompiledPolicy};
use super::matcher::StringMatch;

/// Candidate policies by principal, in evaluation order.
#[derive(Debug, Clone, Default)]
pub(crate) struct PrincipalIndex {
    /// Policies that only the listed principals can match.
    by_principal: HashMap<String, Vec<usize>>,
    /// Policies any request may match.
    always: Vec<usize>,
    /// An enforced (not dry-run) ALLOW policy exists.
    pub(crate) enforced_allow: bool,
    /// An enforced policy exists.
    pub(crate) enforced_any: bool,
    /// An enforced ALLOW policy with rules sits in `by_principal`: a plaintext request (no
    /// principal) misses it for lack of an identity, which the decision's reason says.
    pub(crate) identity_only_allow: bool,
}

impl PrincipalIndex {
    /// Indexes `policies`.
    pub(crate) fn new(policies: &[CompiledPolicy]) -> PrincipalIndex {
        let mut index = PrincipalIndex::default();
        for (i, policy) in policies.iter().enumerate() {
            if !policy.dry_run {
                index.enforced_any = true;
                index.enforced_allow |= policy.action == AuthzAction::Allow;
            }
            match required_principals(policy) {
                Some(principals) => {
                    index.identity_only_allow |= !policy.dry_run
                        && policy.action == AuthzAction::Allow
                        && !policy.rules.is_empty();
                    for principal in principals {
                        let list = index.by_principal.entry(principal.to_owned()).or_default();
                        // A policy naming one principal twice is filed once.
                        if list.last() != Some(&i) {
                            list.push(i);
                        }
                    }
                }
                None => index.always.push(i),
            }
        }
        index
    }

    /// The policies a request from `principal` may match, in ascending order.
    pub(crate) fn candidates(&self, principal: Option<&str>) -> impl Iterator<Item = usize> + '_ {
        let named = principal
            .and_then(|p| self.by_principal.get(p))
            .map_or(&[][..], Vec::as_slice);
        Merge {
            a: &self.always,
            b: named,
        }
    }
}

/// The exact principals one of which a request must have to match `policy`; `None` when any
/// request may match it. A policy without rules matches nothing: no principal at all.
fn required_principals(policy: &CompiledPolicy) -> Option<Vec<&str>> {
    // Dry-run policies are reported whether they match or not: always evaluated.
    if policy.dry_run {
        return None;
    }
    let mut principals = Vec::new();
    for rule in &policy.rules {
        if rule.from.is_empty() {
            return None;
        }
        for source in &rule.from {
            if source.principals.values.is_empty() {
                return None;
            }
            for value in &source.principals.values {
                match value {
                    StringMatch::Exact(exact) => principals.push(exact.as_str()),
                    _ => return None,
                }
            }
        }
    }
    Some(principals)
}

/// Two ascending lists merged into one ascending sequence.
struct Merge<'a> {
    a: &'a [usize],
    b: &'a [usize],
}

impl Iterator for Merge<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let take_a = match (self.a.first(), self.b.first()) {
            (Some(a), Some(b)) => a <= b,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return None,
        };
        let list = if take_a { &mut self.a } else { &mut self.b };
        let (first, rest) = list.split_first()?;
        *list = rest;
        Some(*first)
    }
}
