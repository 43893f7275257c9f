//! Effective policy, as pure functions over a [`Mesh`](crate::mesh::Mesh): PeerAuthentication
//! per (workload, port), DestinationRule TLS per destination with auto-mTLS, service names and
//! endpoints. Each rule quotes Istio's documentation beside the code that implements it.

pub mod endpoints;
pub mod names;
pub mod peer_authn;
pub mod protocol;
pub mod routes;
pub mod tls;
pub mod traffic;

#[cfg(test)]
mod tests;
