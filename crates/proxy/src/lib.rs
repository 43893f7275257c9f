//! `meshward-proxy`: the sidecar that sits beside one workload.
//!
//! - **Inbound** ([`inbound`]): owns the workload's service ports on the workload address, sniffs
//!   the first bytes of each connection, terminates mesh mTLS (a ClientHello carrying one of
//!   Istio's mesh ALPNs) with a required, verified client SVID, and lets the port's
//!   PeerAuthentication mode decide everything else. HTTP is forwarded with
//!   `X-Forwarded-Client-Cert` naming the verified caller (and any forged one removed).
//! - **Outbound** ([`outbound`]): an HTTP/1.1 forward proxy and `CONNECT` on port 15001 that
//!   resolves mesh service names, picks an endpoint and originates mTLS that checks the server's
//!   SPIFFE ID before a byte of the request is sent; and static upstream listeners.
//! - **Credentials** ([`creds`]): a `watch` of the current rustls configs, empty (fail closed)
//!   until the first certificate; fed by static files or the control plane ([`xds`]).
//! - **Telemetry** ([`metrics`], [`access_log`], [`telemetry`]): Istio's standard metrics with
//!   Istio's names and labels, Envoy-format or JSON access logs, STRICT readiness counters.
//! - **Capture** ([`capture`]): the iptables rules of transparent mode (`meshward iptables`)
//!   and the original destination of redirected connections.
//! - **Admin and health** ([`admin`]), and one drain primitive ([`drain`]) for shutdown.
//!
//! [`Proxy::start`] binds everything and returns a handle; `meshward proxy` drives it.

pub mod access_log;
pub mod admin;
pub mod capture;
pub mod config;
pub mod creds;
pub mod drain;
pub mod inbound;
pub mod io;
pub mod metrics;
pub mod outbound;
mod proxy;
mod revocation;
pub mod telemetry;
pub mod tls;
pub mod view;
mod web;
pub mod xds;

pub use config::{IdentitySource, InboundPort, MtlsMode, ProxyConfig, Upstream};
pub use proxy::{Error, LogControl, Proxy};
