//! [`evaluate`]: Istio's authorization decision for one connection or request, naming the
//! policy and rule that decided; [`explain`]: why each rule of each policy matched or not.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::compile::{
    AuthzAction, CompiledAuthz, CompiledPolicy, CompiledRule, ConditionMatch, Field,
    OperationMatch, SourceMatch,
};
use super::request::{HttpAttrs, RequestAttrs};

/// Names a policy: `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PolicyRef {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

impl fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A rule of a policy that matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleRef {
    /// The policy.
    pub policy: PolicyRef,
    /// The index of the rule in `spec.rules`.
    pub rule: usize,
}

/// What a dry-run policy would have done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DryRun {
    /// The policy.
    pub policy: PolicyRef,
    /// Its action.
    pub action: AuthzAction,
    /// The first rule that matched; `None` when none did.
    pub rule: Option<usize>,
}

/// The decision, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// The policy that decided: the matching DENY or ALLOW policy; `None` for a default.
    pub policy: Option<PolicyRef>,
    /// The rule of that policy that matched.
    pub rule: Option<usize>,
    /// The explanation, e.g. `denied by DENY policy ns/name rule 0`.
    pub reason: String,
    /// AUDIT rules that matched (logged, never enforced).
    pub audit: Vec<RuleRef>,
    /// Every dry-run policy and whether it matched (logged, never enforced).
    pub dry_run: Vec<DryRun>,
}

/// Why a rule did not match: the clause and the field that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Miss {
    /// `from`, `to` or `when`.
    pub clause: &'static str,
    /// The entry of that clause (for `from`/`to`, the first entry when none matched).
    pub index: usize,
    /// The field or condition key.
    pub field: &'static str,
    /// What failed.
    pub why: MissWhy,
}

/// What failed in a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissWhy {
    /// None of the values matched.
    NoValueMatched,
    /// A `notX` value matched.
    Excluded,
    /// An identity field on a plaintext connection.
    Plaintext,
    /// An HTTP-only field on a TCP connection, in an ALLOW policy: the whole rule is ignored.
    NotHttp,
    /// The attribute is absent (header, SNI, JWT).
    Absent,
}

impl fmt::Display for Miss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.why {
            MissWhy::NoValueMatched => "no value matched",
            MissWhy::Excluded => "a not-value matched",
            MissWhy::Plaintext => "plaintext connection: identity fields require mTLS",
            MissWhy::NotHttp => {
                "HTTP-only field on a TCP connection: Istio ignores the whole ALLOW rule"
            }
            MissWhy::Absent => "attribute absent",
        };
        write!(f, "{}[{}] {}: {why}", self.clause, self.index, self.field)
    }
}

/// How one policy fared, for `x authz check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyTrace {
    /// The policy.
    pub policy: PolicyRef,
    /// Its action.
    pub action: AuthzAction,
    /// Whether it is in dry-run mode.
    pub dry_run: bool,
    /// One entry per rule, in order; empty when the policy has no rules (never matches).
    pub rules: Vec<RuleTrace>,
}

/// How one rule fared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleTrace {
    /// Whether it matched.
    pub matched: bool,
    /// Why not, when it did not.
    pub why: Option<String>,
}

/// Istio's decision for `attrs` under `authz`.
///
/// istio.io `concepts/security`: "If there are any CUSTOM policies that match the request,
/// evaluate and deny the request if the evaluation result is deny. If there are any DENY
/// policies that match the request, deny the request. If there are no ALLOW policies for the
/// workload, allow the request. If any of the ALLOW policies match the request, allow the
/// request. Deny the request." CUSTOM is rejected when applied, so it never reaches here.
pub fn evaluate(authz: &CompiledAuthz, attrs: &RequestAttrs) -> Decision {
    let mut deny: Option<(&CompiledPolicy, usize)> = None;
    let mut allow: Option<(&CompiledPolicy, usize)> = None;
    let index = authz.index();
    let (enforced_allow, enforced_any) = (index.enforced_allow, index.enforced_any);
    // Policies skipped by the index name principals only: a plaintext peer misses them all.
    let mut plaintext_miss = attrs.source_principal.is_none() && index.identity_only_allow;
    let mut audit = Vec::new();
    let mut dry_run = Vec::new();
    let principal = attrs.source_principal.as_deref();
    for policy in index
        .candidates(principal)
        .filter_map(|i| authz.policies.get(i))
    {
        let mut matched = None;
        for (index, rule) in policy.rules.iter().enumerate() {
            match rule_matches(rule, attrs, policy.action) {
                Ok(()) => {
                    matched = Some(index);
                    break;
                }
                // Only an enforced ALLOW rule's miss explains a default deny.
                Err(miss) => {
                    plaintext_miss |= miss.why == MissWhy::Plaintext
                        && policy.action == AuthzAction::Allow
                        && !policy.dry_run;
                }
            }
        }
        // "The dry-run annotation ... evaluates the policy in shadow mode without enforcing it."
        if policy.dry_run {
            dry_run.push(DryRun {
                policy: policy_ref(policy),
                action: policy.action,
                rule: matched,
            });
            continue;
        }
        match policy.action {
            // "AUDIT policies do not affect whether requests are allowed or denied."
            AuthzAction::Audit => audit.extend(matched.map(|rule| RuleRef {
                policy: policy_ref(policy),
                rule,
            })),
            AuthzAction::Deny => deny = deny.or(matched.map(|rule| (policy, rule))),
            AuthzAction::Allow => allow = allow.or(matched.map(|rule| (policy, rule))),
        }
    }
    let decided = |allowed: bool, by: Option<(&CompiledPolicy, usize)>, reason: String| Decision {
        allowed,
        policy: by.map(|(p, _)| policy_ref(p)),
        rule: by.map(|(_, r)| r),
        reason,
        audit: Vec::new(),
        dry_run: Vec::new(),
    };
    let mut decision = if let Some((policy, rule)) = deny {
        let reason = format!("denied by DENY policy {} rule {rule}", policy_ref(policy));
        decided(false, deny, reason)
    } else if !enforced_allow {
        // "If there are no ALLOW policies for the workload, allow the request."
        let reason = if enforced_any {
            "no ALLOW policies: allowed"
        } else {
            "no policies: allowed"
        };
        decided(true, None, reason.to_owned())
    } else if let Some((policy, rule)) = allow {
        let reason = format!("allowed by ALLOW policy {} rule {rule}", policy_ref(policy));
        decided(true, allow, reason)
    } else {
        // "Deny the request." ztunnel's wording; a plaintext peer is named, since identity
        // fields never match it.
        let mut reason = "allow policies exist, but none allowed".to_owned();
        if plaintext_miss {
            reason.push_str(" (plaintext connection: principals and namespaces never match)");
        }
        decided(false, None, reason)
    };
    decision.audit = audit;
    decision.dry_run = dry_run;
    decision
}

/// Every policy with the outcome of each of its rules.
pub fn explain(authz: &CompiledAuthz, attrs: &RequestAttrs) -> Vec<PolicyTrace> {
    authz
        .policies
        .iter()
        .map(|policy| PolicyTrace {
            policy: policy_ref(policy),
            action: policy.action,
            dry_run: policy.dry_run,
            rules: policy
                .rules
                .iter()
                .map(|rule| match rule_matches(rule, attrs, policy.action) {
                    Ok(()) => RuleTrace {
                        matched: true,
                        why: None,
                    },
                    Err(miss) => RuleTrace {
                        matched: false,
                        why: Some(miss.to_string()),
                    },
                })
                .collect(),
        })
        .collect()
}

fn policy_ref(policy: &CompiledPolicy) -> PolicyRef {
    PolicyRef {
        namespace: policy.namespace.clone(),
        name: policy.name.clone(),
    }
}

/// istio/api: "A match occurs when at least one source, one operation and all conditions
/// matches the request." An absent `from`, `to` or `when` matches anything, so `rules: [{}]`
/// matches every request.
pub(crate) fn rule_matches(
    rule: &CompiledRule,
    attrs: &RequestAttrs,
    action: AuthzAction,
) -> Result<(), Miss> {
    // istio `authz/model` Generate on a TCP filter chain: an HTTP-only field in an ALLOW rule is
    // an error for the whole rule ("this will make all rules in the current permission
    // ignored, effectively result in a smaller allow policy"), whichever `from`/`to` entry holds
    // it — so `to: [{operation: {methods: [GET]}}, {operation: {ports: ["5432"]}}]` allows no
    // TCP at all, not port 5432.
    if action == AuthzAction::Allow
        && attrs.http.is_none()
        && let Some(miss) = http_only_field(rule)
    {
        return Err(miss);
    }
    // "If not set, any source is allowed." Otherwise OR across `from[]`.
    any_entry(&rule.from, "from", |s| source_matches(s, attrs, action))?;
    // "If not set, any operation is allowed." Otherwise OR across `to[]`.
    any_entry(&rule.to, "to", |o| operation_matches(o, attrs, action))?;
    // "Optional. A list of conditions ... all conditions must match."
    for (index, condition) in rule.when.iter().enumerate() {
        condition_matches(condition, attrs, action).map_err(|(field, why)| Miss {
            clause: "when",
            index,
            field,
            why,
        })?;
    }
    Ok(())
}

/// The first HTTP-only field of a rule: `requestPrincipals`, `hosts`, `methods`, `paths`,
/// `request.headers[…]`, `request.auth.*`.
fn http_only_field(rule: &CompiledRule) -> Option<Miss> {
    let miss = |clause, index, field| Miss {
        clause,
        index,
        field,
        why: MissWhy::NotHttp,
    };
    let from = rule.from.iter().enumerate().find_map(|(i, source)| {
        source
            .request_principals
            .is_set()
            .then(|| miss("from", i, "requestPrincipals"))
    });
    let to = || {
        rule.to.iter().enumerate().find_map(|(i, op)| {
            [
                ("hosts", op.hosts.is_set()),
                ("methods", op.methods.is_set()),
                ("paths", op.paths.is_set()),
            ]
            .into_iter()
            .find(|(_, set)| *set)
            .map(|(field, _)| miss("to", i, field))
        })
    };
    let when = || {
        rule.when
            .iter()
            .enumerate()
            .find_map(|(i, condition)| match condition {
                ConditionMatch::RequestHeader { field, .. } if field.is_set() => {
                    Some(miss("when", i, "request.headers"))
                }
                ConditionMatch::RequestAuth(field) if field.is_set() => {
                    Some(miss("when", i, "request.auth"))
                }
                _ => None,
            })
    };
    from.or_else(to).or_else(when)
}

type FieldMiss = (&'static str, MissWhy);

fn any_entry<T>(
    entries: &[T],
    clause: &'static str,
    matches: impl Fn(&T) -> Result<(), FieldMiss>,
) -> Result<(), Miss> {
    let mut first = None;
    for entry in entries {
        match matches(entry) {
            Ok(()) => return Ok(()),
            Err(miss) => first = first.or(Some(miss)),
        }
    }
    match first {
        None => Ok(()),
        Some((field, why)) => Err(Miss {
            clause,
            index: 0,
            field,
            why,
        }),
    }
}

/// istio/api Source: "Source specifies the source identities of a request. Fields in the source
/// are ANDed together." `principals`/`namespaces` "require mTLS enabled": a plaintext peer has
/// no identity, so positive lists never match it and negative lists never exclude it.
fn source_matches(
    source: &SourceMatch,
    attrs: &RequestAttrs,
    action: AuthzAction,
) -> Result<(), FieldMiss> {
    let principal = attrs.source_principal.as_deref();
    check(
        &source.principals,
        principal,
        |m, v| m.matches(v),
        MissWhy::Plaintext,
    )
    .map_err(|why| ("principals", why))?;
    http_only(
        &source.request_principals,
        attrs.http.as_ref(),
        action,
        |_| {
            // No RequestAuthentication: a request never carries a validated JWT.
            check(
                &source.request_principals,
                None,
                |m, v: &str| m.matches(v),
                MissWhy::Absent,
            )
        },
    )
    .map_err(|why| ("requestPrincipals", why))?;
    let namespace = attrs.source_namespace.as_deref();
    check(
        &source.namespaces,
        namespace,
        |m, v| m.matches(v),
        MissWhy::Plaintext,
    )
    .map_err(|why| ("namespaces", why))?;
    check(
        &source.ip_blocks,
        Some(attrs.source_ip),
        |b, ip| b.contains(ip),
        MissWhy::Absent,
    )
    .map_err(|why| ("ipBlocks", why))?;
    let remote = Some(attrs.remote_ip());
    check(
        &source.remote_ip_blocks,
        remote,
        |b, ip| b.contains(ip),
        MissWhy::Absent,
    )
    .map_err(|why| ("remoteIpBlocks", why))
}

/// istio/api Operation: "Fields in the operation are ANDed together." `hosts`, `methods` and
/// `paths` are HTTP-only.
fn operation_matches(
    op: &OperationMatch,
    attrs: &RequestAttrs,
    action: AuthzAction,
) -> Result<(), FieldMiss> {
    let http = attrs.http.as_ref();
    http_only(&op.hosts, http, action, |h| {
        // "hosts: ... The match is case-insensitive."
        check(
            &op.hosts,
            Some(h.host.as_str()),
            |m, v| m.matches_ignore_case(v),
            MissWhy::Absent,
        )
    })
    .map_err(|why| ("hosts", why))?;
    check(
        &op.ports,
        Some(attrs.destination_port),
        |p, v| *p == v,
        MissWhy::Absent,
    )
    .map_err(|why| ("ports", why))?;
    http_only(&op.methods, http, action, |h| {
        check(
            &op.methods,
            Some(h.method.as_str()),
            |m, v| m.matches(v),
            MissWhy::Absent,
        )
    })
    .map_err(|why| ("methods", why))?;
    http_only(&op.paths, http, action, |h| {
        check(
            &op.paths,
            Some(h.path.as_str()),
            |m, v| m.matches(v),
            MissWhy::Absent,
        )
    })
    .map_err(|why| ("paths", why))
}

/// istio.io "Authorization Policy Conditions": the supported keys.
fn condition_matches(
    condition: &ConditionMatch,
    attrs: &RequestAttrs,
    action: AuthzAction,
) -> Result<(), FieldMiss> {
    let string = |m: &super::matcher::StringMatch, v: &str| m.matches(v);
    let block = |b: &super::matcher::IpBlock, ip| b.contains(ip);
    match condition {
        ConditionMatch::SourcePrincipal(field) => {
            let principal = attrs.source_principal.as_deref();
            check(field, principal, string, MissWhy::Plaintext).map_err(|w| ("source.principal", w))
        }
        ConditionMatch::SourceNamespace(field) => {
            let namespace = attrs.source_namespace.as_deref();
            check(field, namespace, string, MissWhy::Plaintext).map_err(|w| ("source.namespace", w))
        }
        ConditionMatch::SourceServiceAccount(field) => {
            let principal = attrs.source_principal.as_deref();
            check(field, principal, string, MissWhy::Plaintext)
                .map_err(|w| ("source.serviceAccount", w))
        }
        ConditionMatch::SourceIp(field) => {
            check(field, Some(attrs.source_ip), block, MissWhy::Absent)
                .map_err(|w| ("source.ip", w))
        }
        ConditionMatch::RemoteIp(field) => {
            check(field, Some(attrs.remote_ip()), block, MissWhy::Absent)
                .map_err(|w| ("remote.ip", w))
        }
        ConditionMatch::DestinationIp(field) => {
            check(field, Some(attrs.destination_ip), block, MissWhy::Absent)
                .map_err(|w| ("destination.ip", w))
        }
        ConditionMatch::DestinationPort(field) => check(
            field,
            Some(attrs.destination_port),
            |p, v| *p == v,
            MissWhy::Absent,
        )
        .map_err(|w| ("destination.port", w)),
        ConditionMatch::ConnectionSni(field) => {
            check(field, attrs.sni.as_deref(), string, MissWhy::Absent)
                .map_err(|w| ("connection.sni", w))
        }
        ConditionMatch::RequestHeader { name, field } => {
            http_only(field, attrs.http.as_ref(), action, |h| {
                check(field, h.header(name).as_deref(), string, MissWhy::Absent)
            })
            .map_err(|w| ("request.headers", w))
        }
        ConditionMatch::RequestAuth(field) => http_only(field, attrs.http.as_ref(), action, |_| {
            check(field, None, string, MissWhy::Absent)
        })
        .map_err(|w| ("request.auth", w)),
    }
}

/// One field: "values in one field are ORed"; `notX`: "the request must not match any of
/// them" — so an absent attribute fails a positive list and passes a negative one.
fn check<T, V: Copy>(
    field: &Field<T>,
    value: Option<V>,
    matches: impl Fn(&T, V) -> bool,
    absent: MissWhy,
) -> Result<(), MissWhy> {
    if !field.values.is_empty() {
        let value = value.ok_or(absent)?;
        if !field.values.iter().any(|m| matches(m, value)) {
            return Err(MissWhy::NoValueMatched);
        }
    }
    match value {
        Some(value) if field.not_values.iter().any(|m| matches(m, value)) => Err(MissWhy::Excluded),
        _ => Ok(()),
    }
}

/// HTTP-only fields on TCP (istio.io `authz-tcp`, `ops/common-problems/security-issues`):
/// under ALLOW "the rule is ignored" (never matches; [`rule_matches`] drops the whole rule first)
/// and the request falls to default-deny; under DENY "the fields are treated as matching", so a
/// DENY on `methods: [GET]` without `ports` denies all TCP. AUDIT is built like DENY.
fn http_only<T>(
    field: &Field<T>,
    http: Option<&HttpAttrs>,
    action: AuthzAction,
    matches: impl FnOnce(&HttpAttrs) -> Result<(), MissWhy>,
) -> Result<(), MissWhy> {
    match http {
        _ if !field.is_set() => Ok(()),
        Some(http) => matches(http),
        None if action == AuthzAction::Allow => Err(MissWhy::NotHttp),
        None => Ok(()),
    }
}
