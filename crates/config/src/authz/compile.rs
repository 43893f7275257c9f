//! [`CompiledAuthz`]: the policies of one workload turned into plain matchers. The control plane
//! compiles once per revision and ships the result to the proxy as JSON; evaluating it needs
//! neither the YAML types nor the mesh.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::index::PrincipalIndex;
use super::matcher::{IpBlock, PathMatch, StringMatch, parse_port};
use crate::mesh::Entry;
use crate::resources::authorization_policy::{
    Action, AuthorizationPolicySpec, Condition, Operation, Source,
};
use crate::resources::mesh_config::MeshConfig;

/// Why a policy cannot be compiled. Validation rejects these first; this is the backstop that
/// keeps the engine from guessing.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("AuthorizationPolicy {namespace}/{name}: {field}: {message}")]
pub struct CompileError {
    /// The policy's namespace.
    pub namespace: String,
    /// The policy's name.
    pub name: String,
    /// The YAML path of the field, e.g. `spec.rules[0].when[1]`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Every policy that applies to one workload, in evaluation order (oldest first).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CompiledAuthz {
    /// The policies.
    pub policies: Vec<CompiledPolicy>,
    /// Built from `policies` on the first decision (also after deserializing).
    #[serde(skip)]
    index: OnceLock<PrincipalIndex>,
}

/// Equal when the policies are (the index is derived from them).
impl PartialEq for CompiledAuthz {
    fn eq(&self, other: &Self) -> bool {
        self.policies == other.policies
    }
}

impl Eq for CompiledAuthz {}

/// One AuthorizationPolicy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompiledPolicy {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// ALLOW, DENY or AUDIT.
    pub action: AuthzAction,
    /// `istio.io/dry-run: "true"`: evaluated and reported, never enforced.
    pub dry_run: bool,
    /// OR-ed rules; none never matches.
    pub rules: Vec<CompiledRule>,
}

/// The actions the engine evaluates (CUSTOM is rejected when applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuthzAction {
    /// Allow matching requests.
    Allow,
    /// Deny matching requests.
    Deny,
    /// Report matching requests.
    Audit,
}

impl AuthzAction {
    /// The action as Istio writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthzAction::Allow => "ALLOW",
            AuthzAction::Deny => "DENY",
            AuthzAction::Audit => "AUDIT",
        }
    }
}

/// `from` AND `to` AND `when`; an empty list matches anything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompiledRule {
    /// OR-ed sources.
    pub from: Vec<SourceMatch>,
    /// OR-ed operations.
    pub to: Vec<OperationMatch>,
    /// AND-ed conditions.
    pub when: Vec<ConditionMatch>,
}

/// A positive and a negative list: the value must match one of `values` (when any) and none of
/// `not_values`. Both empty: the field is unset and matches anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Field<T> {
    /// `x`.
    pub values: Vec<T>,
    /// `notX`.
    pub not_values: Vec<T>,
}

impl<T> Default for Field<T> {
    fn default() -> Self {
        Field {
            values: Vec::new(),
            not_values: Vec::new(),
        }
    }
}

impl<T> Field<T> {
    /// Whether the field is written at all.
    pub fn is_set(&self) -> bool {
        !self.values.is_empty() || !self.not_values.is_empty()
    }
}

/// One `from[].source`. `serviceAccounts` are compiled into `principals`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceMatch {
    /// `principals` / `notPrincipals` (plus service accounts), trust-domain aliases expanded.
    pub principals: Field<StringMatch>,
    /// `requestPrincipals` / `notRequestPrincipals` (JWT; HTTP only).
    pub request_principals: Field<StringMatch>,
    /// `namespaces` / `notNamespaces`.
    pub namespaces: Field<StringMatch>,
    /// `ipBlocks` / `notIpBlocks`.
    pub ip_blocks: Field<IpBlock>,
    /// `remoteIpBlocks` / `notRemoteIpBlocks`.
    pub remote_ip_blocks: Field<IpBlock>,
}

/// One `to[].operation`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationMatch {
    /// `hosts` / `notHosts` (case-insensitive; HTTP only).
    pub hosts: Field<StringMatch>,
    /// `ports` / `notPorts`.
    pub ports: Field<u16>,
    /// `methods` / `notMethods` (HTTP only).
    pub methods: Field<StringMatch>,
    /// `paths` / `notPaths` (HTTP only).
    pub paths: Field<PathMatch>,
}

/// One `when` condition, typed by its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ConditionMatch {
    /// `source.principal` (mTLS only; trust-domain aliases expanded).
    SourcePrincipal(Field<StringMatch>),
    /// `source.namespace` (mTLS only).
    SourceNamespace(Field<StringMatch>),
    /// `source.serviceAccount` (`ns/sa` or `sa`; mTLS only; any trust domain).
    SourceServiceAccount(Field<StringMatch>),
    /// `source.ip`.
    SourceIp(Field<IpBlock>),
    /// `remote.ip`.
    RemoteIp(Field<IpBlock>),
    /// `destination.ip`.
    DestinationIp(Field<IpBlock>),
    /// `destination.port`.
    DestinationPort(Field<u16>),
    /// `connection.sni`.
    ConnectionSni(Field<StringMatch>),
    /// `request.headers[NAME]` (HTTP only).
    RequestHeader {
        /// The header name.
        name: String,
        /// The values.
        field: Field<StringMatch>,
    },
    /// `request.auth.principal`, `.audiences`, `.presenter`, `.claims[NAME]` (JWT; HTTP only).
    /// Meshward has no RequestAuthentication, so the attribute is always absent.
    RequestAuth(Field<StringMatch>),
}

impl CompiledAuthz {
    /// The given policies, in evaluation order.
    pub fn new(policies: Vec<CompiledPolicy>) -> CompiledAuthz {
        CompiledAuthz {
            policies,
            index: OnceLock::new(),
        }
    }

    /// Which policies a request may match, by principal.
    pub(crate) fn index(&self) -> &PrincipalIndex {
        self.index
            .get_or_init(|| PrincipalIndex::new(&self.policies))
    }

    /// Compiles the policies of one workload (as [`Mesh::authorization_policies_for`] returns
    /// them). CUSTOM policies are skipped: applying one is already an error.
    ///
    /// [`Mesh::authorization_policies_for`]: crate::mesh::Mesh::authorization_policies_for
    pub fn compile(
        policies: &[&Entry<AuthorizationPolicySpec>],
        config: &MeshConfig,
    ) -> Result<CompiledAuthz, CompileError> {
        let mut compiled = Vec::with_capacity(policies.len());
        for entry in policies {
            let action = match entry.object.spec.action {
                Action::Allow => AuthzAction::Allow,
                Action::Deny => AuthzAction::Deny,
                Action::Audit => AuthzAction::Audit,
                Action::Custom => continue,
            };
            let cx = Cx {
                namespace: entry.namespace(),
                name: &entry.object.metadata.name,
                config,
            };
            let mut rules = Vec::new();
            for (r, rule) in entry.object.spec.rules.iter().flatten().enumerate() {
                let from = rule
                    .from
                    .iter()
                    .flatten()
                    .enumerate()
                    .map(|(f, from)| cx.source(&from.source, &format!("spec.rules[{r}].from[{f}]")))
                    .collect::<Result<_, _>>()?;
                let to = rule
                    .to
                    .iter()
                    .flatten()
                    .enumerate()
                    .map(|(t, to)| cx.operation(&to.operation, &format!("spec.rules[{r}].to[{t}]")))
                    .collect::<Result<_, _>>()?;
                let when = rule
                    .when
                    .iter()
                    .enumerate()
                    .map(|(c, cond)| cx.condition(cond, &format!("spec.rules[{r}].when[{c}]")))
                    .collect::<Result<_, _>>()?;
                rules.push(CompiledRule { from, to, when });
            }
            compiled.push(CompiledPolicy {
                namespace: cx.namespace.to_owned(),
                name: cx.name.to_owned(),
                action,
                dry_run: is_dry_run(entry),
                rules,
            });
        }
        Ok(CompiledAuthz::new(compiled))
    }
}

/// Istio reads the `istio.io/dry-run` annotation with Go's `strconv.ParseBool`.
pub(crate) fn is_dry_run(entry: &Entry<AuthorizationPolicySpec>) -> bool {
    entry
        .object
        .metadata
        .annotations
        .get("istio.io/dry-run")
        .is_some_and(|v| matches!(v.as_str(), "1" | "t" | "T" | "true" | "TRUE" | "True"))
}

/// The policy being compiled.
struct Cx<'a> {
    namespace: &'a str,
    name: &'a str,
    config: &'a MeshConfig,
}

impl Cx<'_> {
    fn error(&self, field: &str, message: impl Into<String>) -> CompileError {
        CompileError {
            namespace: self.namespace.to_owned(),
            name: self.name.to_owned(),
            field: field.to_owned(),
            message: message.into(),
        }
    }

    fn source(&self, source: &Source, base: &str) -> Result<SourceMatch, CompileError> {
        // `serviceAccounts` become principals, which is sound only because Istio forbids
        // combining them with principals or namespaces ("cannot set serviceAccounts with
        // namespaces or principals"): merged, they would OR where Istio ANDs.
        let accounts =
            !source.service_accounts.is_empty() || !source.not_service_accounts.is_empty();
        let identities = !source.principals.is_empty()
            || !source.not_principals.is_empty()
            || !source.namespaces.is_empty()
            || !source.not_namespaces.is_empty();
        if accounts && identities {
            return Err(self.error(
                &format!("{base}.source.serviceAccounts"),
                "cannot set serviceAccounts with namespaces or principals",
            ));
        }
        let mut principals = Field {
            values: self.principals(&source.principals),
            not_values: self.principals(&source.not_principals),
        };
        principals
            .values
            .extend(self.service_accounts(&source.service_accounts));
        principals
            .not_values
            .extend(self.service_accounts(&source.not_service_accounts));
        Ok(SourceMatch {
            principals,
            request_principals: strings(&source.request_principals, &source.not_request_principals),
            namespaces: strings(&source.namespaces, &source.not_namespaces),
            ip_blocks: Field {
                values: self.blocks(&source.ip_blocks, &format!("{base}.source.ipBlocks"))?,
                not_values: self
                    .blocks(&source.not_ip_blocks, &format!("{base}.source.notIpBlocks"))?,
            },
            remote_ip_blocks: Field {
                values: self.blocks(
                    &source.remote_ip_blocks,
                    &format!("{base}.source.remoteIpBlocks"),
                )?,
                not_values: self.blocks(
                    &source.not_remote_ip_blocks,
                    &format!("{base}.source.notRemoteIpBlocks"),
                )?,
            },
        })
    }

    /// IP blocks; a malformed one is an error, never dropped (dropping the only `ipBlocks`
    /// entry would widen the rule to every address).
    fn blocks(&self, values: &[String], field: &str) -> Result<Vec<IpBlock>, CompileError> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                IpBlock::parse(v).ok_or_else(|| {
                    self.error(
                        &format!("{field}[{i}]"),
                        format!("invalid IP address or CIDR block `{v}`"),
                    )
                })
            })
            .collect()
    }

    /// istio `trustdomain/bundle.go` ReplaceTrustDomainAliases: a principal
    /// `<td>/ns/<ns>/sa/<sa>` (exactly five segments) whose trust domain `<td>` is `cluster.local`
    /// ("a pointer to the local trust domain and its aliases") or matches the local trust domain
    /// or one of its aliases is expanded to the same identity in each of them; a `*suffix` trust
    /// domain is kept as written for the domains it already matches. A principal that does not
    /// enforce a trust domain (`*/ns/foo/sa/bar`, `*`, `ns/foo/sa/bar`) or names another trust
    /// domain is kept as written.
    fn principals(&self, principals: &[String]) -> Vec<StringMatch> {
        let local: Vec<&str> = std::iter::once(&self.config.trust_domain)
            .chain(&self.config.trust_domain_aliases)
            .map(String::as_str)
            .collect();
        let mut out: Vec<StringMatch> = Vec::new();
        for principal in principals {
            let parts: Vec<&str> = principal.split('/').collect();
            // isTrustDomainBeingEnforced: five segments and a trust domain other than `*`.
            let domain = match parts.as_slice() {
                [domain, _, _, _, _] if *domain != "*" => Some(*domain),
                _ => None,
            };
            let ours = domain.filter(|domain| {
                *domain == "cluster.local" || local.iter().any(|td| domain_matches(domain, td))
            });
            let Some(domain) = ours else {
                push_unique(&mut out, StringMatch::parse(principal));
                continue;
            };
            let rest = parts.get(1..).unwrap_or_default().join("/");
            for td in &local {
                let rewritten = if suffix_match(td, domain) {
                    principal.clone()
                } else {
                    format!("{td}/{rest}")
                };
                push_unique(&mut out, StringMatch::parse(&rewritten));
            }
        }
        out
    }

    /// `serviceAccounts`: "`ns/sa`, or `sa` for the policy's namespace". istio
    /// `serviceAccountRegex` matches `spiffe://.+/ns/<ns>/(.+/|)sa/<sa>(/.+)?`: any trust
    /// domain, with no trust-domain aliasing (the field exists so that users need not name one).
    /// Validation forbids wildcards and combining them with principals or namespaces.
    fn service_accounts(&self, accounts: &[String]) -> Vec<StringMatch> {
        accounts
            .iter()
            .map(|account| {
                let (ns, sa) = account
                    .split_once('/')
                    .unwrap_or((self.namespace, account.as_str()));
                StringMatch::Suffix(format!("/ns/{ns}/sa/{sa}"))
            })
            .collect()
    }

    fn operation(&self, op: &Operation, base: &str) -> Result<OperationMatch, CompileError> {
        let base = format!("{base}.operation");
        let ports = |values: &[String], field: &str| {
            values
                .iter()
                .enumerate()
                .map(|(i, port)| {
                    parse_port(port)
                        .ok_or_else(|| self.error(&format!("{base}.{field}[{i}]"), "invalid port"))
                })
                .collect::<Result<Vec<u16>, _>>()
        };
        let paths = |values: &[String], field: &str| {
            values
                .iter()
                .enumerate()
                .map(|(i, path)| {
                    PathMatch::parse(path)
                        .map_err(|message| self.error(&format!("{base}.{field}[{i}]"), message))
                })
                .collect::<Result<Vec<PathMatch>, _>>()
        };
        Ok(OperationMatch {
            hosts: strings(&op.hosts, &op.not_hosts),
            ports: Field {
                values: ports(&op.ports, "ports")?,
                not_values: ports(&op.not_ports, "notPorts")?,
            },
            methods: strings(&op.methods, &op.not_methods),
            paths: Field {
                values: paths(&op.paths, "paths")?,
                not_values: paths(&op.not_paths, "notPaths")?,
            },
        })
    }

    /// The keys of istio.io "Authorization Policy Conditions". `request.auth.*` are accepted
    /// (always absent: no JWT); `experimental.envoy.filters.*`,
    /// `request.experimental.inline.headers[…]` and unknown keys are errors.
    fn condition(&self, cond: &Condition, base: &str) -> Result<ConditionMatch, CompileError> {
        let key = cond.key.as_str();
        let ips = || -> Result<Field<IpBlock>, CompileError> {
            Ok(Field {
                values: self.blocks(&cond.values, &format!("{base}.values"))?,
                not_values: self.blocks(&cond.not_values, &format!("{base}.notValues"))?,
            })
        };
        Ok(match key {
            "source.principal" => ConditionMatch::SourcePrincipal(Field {
                values: self.principals(&cond.values),
                not_values: self.principals(&cond.not_values),
            }),
            "source.namespace" => {
                ConditionMatch::SourceNamespace(strings(&cond.values, &cond.not_values))
            }
            "source.serviceAccount" => ConditionMatch::SourceServiceAccount(Field {
                values: self.service_accounts(&cond.values),
                not_values: self.service_accounts(&cond.not_values),
            }),
            "source.ip" => ConditionMatch::SourceIp(ips()?),
            "remote.ip" => ConditionMatch::RemoteIp(ips()?),
            "destination.ip" => ConditionMatch::DestinationIp(ips()?),
            "destination.port" => {
                let parse = |values: &[String], field: &str| {
                    values
                        .iter()
                        .enumerate()
                        .map(|(i, v)| {
                            parse_port(v).ok_or_else(|| {
                                self.error(
                                    &format!("{base}.{field}[{i}]"),
                                    format!("invalid port `{v}`"),
                                )
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()
                };
                ConditionMatch::DestinationPort(Field {
                    values: parse(&cond.values, "values")?,
                    not_values: parse(&cond.not_values, "notValues")?,
                })
            }
            "connection.sni" => {
                ConditionMatch::ConnectionSni(strings(&cond.values, &cond.not_values))
            }
            "request.auth.principal" | "request.auth.audiences" | "request.auth.presenter" => {
                ConditionMatch::RequestAuth(strings(&cond.values, &cond.not_values))
            }
            _ if bracketed(key, "request.auth.claims").is_some() => {
                ConditionMatch::RequestAuth(strings(&cond.values, &cond.not_values))
            }
            _ => match bracketed(key, "request.headers") {
                Some(name) => ConditionMatch::RequestHeader {
                    name: name.to_owned(),
                    field: strings(&cond.values, &cond.not_values),
                },
                None => {
                    return Err(self.error(
                        &format!("{base}.key"),
                        format!("unsupported condition key `{key}`"),
                    ));
                }
            },
        })
    }
}

/// `prefix[NAME]` → `NAME` (non-empty), as istio `validateMapKey` requires.
pub(crate) fn bracketed<'k>(key: &'k str, prefix: &str) -> Option<&'k str> {
    key.strip_prefix(prefix)?
        .strip_prefix('[')?
        .strip_suffix(']')
        .filter(|name| !name.is_empty())
}

/// istio `trustdomain/util.go` stringMatch: equal, or either side a `*` / `prefix*` / `*suffix`
/// pattern of the other.
fn domain_matches(domain: &str, td: &str) -> bool {
    domain == td
        || td == "*"
        || prefix_match(domain, td)
        || prefix_match(td, domain)
        || suffix_match(domain, td)
        || suffix_match(td, domain)
}

/// `pattern` is `prefix*` and `value` starts with `prefix`.
fn prefix_match(value: &str, pattern: &str) -> bool {
    pattern
        .strip_suffix('*')
        .is_some_and(|prefix| value.starts_with(prefix))
}

/// `pattern` is `*suffix` and `value` ends with `suffix`.
fn suffix_match(value: &str, pattern: &str) -> bool {
    pattern
        .strip_prefix('*')
        .is_some_and(|suffix| value.ends_with(suffix))
}

fn push_unique(out: &mut Vec<StringMatch>, value: StringMatch) {
    if !out.contains(&value) {
        out.push(value);
    }
}

fn strings(values: &[String], not_values: &[String]) -> Field<StringMatch> {
    let parse = |v: &[String]| v.iter().map(|s| StringMatch::parse(s)).collect();
    Field {
        values: parse(values),
        not_values: parse(not_values),
    }
}
