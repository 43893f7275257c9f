//! The proxy's settings, parsed from flags at the boundary into typed values whose errors name
//! the flag and the value.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use meshward_identity::{SpiffeId, TrustDomain};
use serde::Serialize;

pub use crate::access_log::{AccessLogFormat, AccessLogSink};

/// A flag value that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `--inbound` is not `PORT=MODE`.
    #[error("--inbound `{value}`: {reason} (expected PORT=strict|permissive|disable)")]
    Inbound {
        /// The flag value.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// `--upstream` is not `LISTEN=TARGET,SPIFFE_ID`.
    #[error("--upstream `{value}`: {reason} (expected LISTEN_ADDR=TARGET_ADDR,spiffe://ID)")]
    Upstream {
        /// The flag value.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// `--workload` is not `NAME.NAMESPACE`.
    #[error("--workload `{0}`: expected NAME.NAMESPACE")]
    Workload(String),
}

/// The PeerAuthentication mTLS mode of one inbound port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MtlsMode {
    /// Mesh mTLS only; anything else is closed.
    Strict,
    /// Mesh mTLS and anything else (plaintext, the app's own TLS).
    Permissive,
    /// No mesh TLS termination: every byte is forwarded as is.
    Disable,
}

impl fmt::Display for MtlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Strict => "STRICT",
            Self::Permissive => "PERMISSIVE",
            Self::Disable => "DISABLE",
        })
    }
}

impl FromStr for MtlsMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "strict" => Ok(Self::Strict),
            "permissive" => Ok(Self::Permissive),
            "disable" => Ok(Self::Disable),
            _ => Err(format!("unknown mode `{s}`")),
        }
    }
}

/// A static inbound port (`--inbound PORT=MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboundPort {
    /// The service port, on both the workload address and the app address.
    pub port: u16,
    /// Its PeerAuthentication mode.
    pub mode: MtlsMode,
}

impl FromStr for InboundPort {
    type Err = ConfigError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| ConfigError::Inbound {
            value: value.to_owned(),
            reason,
        };
        let (port, mode) = value
            .split_once('=')
            .ok_or_else(|| err("missing `=`".to_owned()))?;
        let port: u16 = port
            .parse()
            .map_err(|e| err(format!("bad port `{port}`: {e}")))?;
        if port == 0 {
            return Err(err("port 0 is not a service port".to_owned()));
        }
        Ok(Self {
            port,
            mode: mode.parse().map_err(err)?,
        })
    }
}

/// A static upstream (`--upstream LISTEN=TARGET,SPIFFE_ID`): a local listener whose every
/// connection is carried over mTLS to one server that must present `identity`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Where the local listener binds.
    pub listen: SocketAddr,
    /// The server sidecar's address.
    pub target: SocketAddr,
    /// The SPIFFE ID the server must present.
    pub identity: SpiffeId,
}

impl FromStr for Upstream {
    type Err = ConfigError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| ConfigError::Upstream {
            value: value.to_owned(),
            reason,
        };
        let (listen, rest) = value
            .split_once('=')
            .ok_or_else(|| err("missing `=`".to_owned()))?;
        let (target, identity) = rest
            .split_once(',')
            .ok_or_else(|| err("missing `,` before the SPIFFE ID".to_owned()))?;
        Ok(Self {
            listen: listen
                .parse()
                .map_err(|e| err(format!("bad listen address `{listen}`: {e}")))?,
            target: target
                .parse()
                .map_err(|e| err(format!("bad target address `{target}`: {e}")))?,
            identity: identity
                .parse()
                .map_err(|e| err(format!("bad SPIFFE ID `{identity}`: {e}")))?,
        })
    }
}

/// The workload a proxy serves, `name.namespace`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkloadName {
    /// The workload's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
}

impl FromStr for WorkloadName {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('.') {
            Some((name, namespace))
                if !name.is_empty() && !namespace.is_empty() && !namespace.contains('.') =>
            {
                Ok(Self {
                    name: name.to_owned(),
                    namespace: namespace.to_owned(),
                })
            }
            _ => Err(ConfigError::Workload(s.to_owned())),
        }
    }
}

impl fmt::Display for WorkloadName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.name, self.namespace)
    }
}

/// Where the proxy's certificate comes from.
#[derive(Debug, Clone)]
pub enum IdentitySource {
    /// PEM files, reloaded when they change.
    Files {
        /// Certificate chain, leaf first.
        cert: PathBuf,
        /// The leaf's private key (PKCS#8 or SEC1).
        key: PathBuf,
        /// Trust bundle: the roots of the trust domain.
        bundle: PathBuf,
    },
    /// The control plane signs a CSR for a key generated in this process, and pushes views.
    ControlPlane {
        /// `HOST:PORT` of the control plane's gRPC endpoint.
        address: String,
        /// The root that signed the control plane's certificate (PEM file).
        root: PathBuf,
        /// One-time join token for the first certificate.
        join_token: String,
    },
}

/// Timeouts of the data path. Every wait is bounded by one of these.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// How long an inbound connection may stay silent before it is taken as server-first
    /// plaintext (or closed on a STRICT port).
    pub first_byte: Duration,
    /// A TLS handshake, either side, including reading the whole ClientHello.
    pub handshake: Duration,
    /// A TCP connect to the app or to an upstream.
    pub connect: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            first_byte: Duration::from_secs(1),
            handshake: Duration::from_secs(10),
            connect: Duration::from_secs(5),
        }
    }
}

/// What transparent mode does with a captured outbound connection whose original destination
/// is not in the mesh: MeshConfig `outboundTrafficPolicy.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OutboundPolicy {
    /// Passed through to where it was going (Istio's default).
    #[default]
    AllowAny,
    /// Closed: only mesh services and workloads are reachable.
    RegistryOnly,
}

impl FromStr for OutboundPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().replace('-', "_").as_str() {
            "ALLOW_ANY" => Ok(Self::AllowAny),
            "REGISTRY_ONLY" => Ok(Self::RegistryOnly),
            _ => Err(format!(
                "unknown outbound traffic policy `{s}` (expected ALLOW_ANY or REGISTRY_ONLY)"
            )),
        }
    }
}

/// Transparent mode: connections redirected by `meshward iptables` arrive on the outbound port
/// (15001) and on `inbound_capture_port` (15006), both bound on every address of the network
/// namespace; the app owns its service ports itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transparent {
    /// Where inbound connections are redirected (Istio's 15006).
    pub inbound_capture_port: u16,
    /// What happens to outbound connections to addresses outside the mesh.
    pub outbound_policy: OutboundPolicy,
}

/// Everything a proxy needs to start.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The workload served; required with a control plane.
    pub workload: Option<WorkloadName>,
    /// The workload address: every listener binds here.
    pub address: IpAddr,
    /// The app's private address: inbound port P goes to `app_address:P`.
    pub app_address: IpAddr,
    /// The local trust domain.
    pub trust_domain: TrustDomain,
    /// Where the certificate comes from.
    pub identity: IdentitySource,
    /// Static inbound ports (standalone mode; the control plane's view replaces them).
    pub inbound: Vec<InboundPort>,
    /// Static upstreams.
    pub upstreams: Vec<Upstream>,
    /// Outbound forward proxy port; 0 disables it.
    pub outbound_port: u16,
    /// Admin port; 0 disables it.
    pub admin_port: u16,
    /// Readiness port; 0 disables it.
    pub ready_port: u16,
    /// Istio's stats port (`/stats/prometheus` for anyone, as Envoy's 15090); 0 disables it.
    pub stats_port: u16,
    /// Forces the access log format; `None` follows the control plane (and is off standalone).
    pub access_log: Option<AccessLogFormat>,
    /// Where access log lines go.
    pub access_log_sink: AccessLogSink,
    /// How long in-flight connections may run after a shutdown signal.
    pub drain_timeout: Duration,
    /// Data-path timeouts.
    pub timeouts: Timeouts,
    /// Transparent mode (captured connections); `None`: explicit listeners only.
    pub transparent: Option<Transparent>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_inbound_ports() {
        let p: InboundPort = "8080=STRICT".parse().unwrap();
        assert_eq!(
            p,
            InboundPort {
                port: 8080,
                mode: MtlsMode::Strict
            }
        );
        for bad in ["8080", "x=strict", "0=strict", "80=loose", "70000=disable"] {
            assert!(bad.parse::<InboundPort>().is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_upstreams() {
        let u: Upstream = "127.0.0.1:9000=127.0.10.2:8080,spiffe://cluster.local/ns/a/sa/b"
            .parse()
            .unwrap();
        assert_eq!(u.listen.port(), 9000);
        assert_eq!(u.identity.to_string(), "spiffe://cluster.local/ns/a/sa/b");
        for bad in [
            "127.0.0.1:9000=127.0.10.2:8080",
            "127.0.0.1:9000,spiffe://cluster.local/ns/a/sa/b",
            "127.0.0.1:9000=host:1,spiffe://cluster.local/ns/a/sa/b",
            "127.0.0.1:9000=127.0.0.1:1,http://x",
        ] {
            assert!(bad.parse::<Upstream>().is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_workload_names() {
        let w: WorkloadName = "sleep.team-app".parse().unwrap();
        assert_eq!(
            (w.name.as_str(), w.namespace.as_str()),
            ("sleep", "team-app")
        );
        for bad in ["sleep", ".ns", "name.", "a.b.c"] {
            assert!(bad.parse::<WorkloadName>().is_err(), "{bad}");
        }
    }
}
