//! Meshward's control-plane wire protocol: the `Certificates`, `Discovery` and `Admin` gRPC
//! services of `proto/meshward/v1/mesh.proto`, generated at build time (nothing hand-edited),
//! and the one way to open a channel to them.

pub mod channel;

pub use channel::{ChannelError, connect};

/// Version 1 of the API.
#[allow(
    // Generated code: we do not control its docs, idioms or visibility.
    missing_docs,
    unreachable_pub,
    unused_qualifications,
    clippy::all,
    rust_2018_idioms
)]
pub mod v1 {
    tonic::include_proto!("meshward.v1");
}
