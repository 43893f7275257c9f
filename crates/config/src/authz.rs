//! AuthorizationPolicy: which policies apply to a workload, their compiled form, and Istio's
//! decision for one connection or request — a pure function that names the policy and rule
//! that decided and says why.
//!
//! The paved path: [`Mesh::authorization_policies_for`] → [`CompiledAuthz::compile`] (or
//! [`Mesh::compiled_authz`]) → ship as JSON → [`evaluate`] per connection or request;
//! [`explain`] for the per-rule trace. Each rule of Istio's semantics is quoted beside the code
//! that implements it and checked by a table test in `authz/tests.rs`.

pub mod compile;
pub mod engine;
mod index;
pub mod matcher;
pub mod normalize;
pub mod render;
pub mod request;

#[cfg(test)]
mod tests;

pub use compile::{
    AuthzAction, CompileError, CompiledAuthz, CompiledPolicy, CompiledRule, ConditionMatch, Field,
    OperationMatch, SourceMatch,
};
pub use engine::{
    Decision, DryRun, Miss, MissWhy, PolicyRef, PolicyTrace, RuleRef, RuleTrace, evaluate, explain,
};
pub use normalize::{PathError, normalize_path};
pub use render::render_policies;
pub use request::{HttpAttrs, RequestAttrs};

use crate::mesh::{Entry, Mesh, WorkloadInstance};
use crate::resources::authorization_policy::AuthorizationPolicySpec;

impl Mesh {
    /// The AuthorizationPolicies that apply to `workload`, oldest first (dry-run ones included:
    /// [`CompiledPolicy::dry_run`] marks them).
    ///
    /// istio/api: "the policy applies to workloads in the same namespace as the policy, selected
    /// by `selector` (all workloads of the namespace without one). If the policy is in the root
    /// namespace, it applies to all workloads in the mesh", and in the root namespace "the
    /// selector matches workloads in all namespaces" — unlike PeerAuthentication, where a
    /// root-namespace selector is ignored.
    pub fn authorization_policies_for(
        &self,
        workload: &WorkloadInstance,
    ) -> Vec<&Entry<AuthorizationPolicySpec>> {
        let root = self.config.root_namespace.as_str();
        self.authorization_policies
            .iter()
            .filter(|entry| entry.namespace() == root || entry.namespace() == workload.namespace)
            .filter(|entry| {
                entry
                    .object
                    .spec
                    .selector
                    .as_ref()
                    .is_none_or(|selector| selector.matches(&workload.labels))
            })
            .collect()
    }

    /// The compiled policies of `workload`, with this mesh's trust domain and aliases.
    pub fn compiled_authz(
        &self,
        workload: &WorkloadInstance,
    ) -> Result<CompiledAuthz, CompileError> {
        CompiledAuthz::compile(&self.authorization_policies_for(workload), &self.config)
    }
}
