//! Built-in demo workloads: an httpbin-like HTTP server and a TCP echo server.

pub mod echo;
pub mod httpbin;
