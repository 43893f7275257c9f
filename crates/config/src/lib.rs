//! Istio-compatible configuration: multi-document YAML/JSON parsing with file:line:column
//! diagnostics, validation with Istio's rules, and the effective policy for one workload and
//! port, computed by pure functions over a [`Mesh`] snapshot.
//!
//! The paved path: [`parse_stream`] a stream → [`ParsedStream::into_documents`] (all or
//! nothing) → [`Mesh::new`] → [`Mesh::peer_authentication`], [`Mesh::client_tls`],
//! [`Mesh::resolve_host`], [`Mesh::endpoints`]. Over them: [`analyze::analyze`] (cross-resource
//! findings with Istio's codes) and [`tls_check::tls_check`] (the client × server mTLS matrix).
//! Authorization: [`Mesh::compiled_authz`] → [`authz::evaluate`], a pure decision that names
//! the policy and rule that decided.
//! This crate does no I/O.

pub mod analyze;
pub mod authz;
pub mod diagnostic;
pub mod mesh;
pub mod meta;
pub mod parse;
pub mod resolve;
pub mod resources;
pub mod tls_check;
pub mod validate;

pub use diagnostic::{Diagnostic, Location, Severity};
pub use mesh::{Mesh, MeshError, WorkloadInstance};
pub use meta::{Kind, ObjectMeta, ResourceKey};
pub use parse::{Document, Limits, ParsedDocument, ParsedStream, parse_stream};
pub use resources::Resource;
