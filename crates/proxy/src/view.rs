//! What the proxy currently knows about the mesh: its workload's inbound ports with their
//! PeerAuthentication modes, and the services it may call. Built from flags (standalone) or
//! from the control plane's `ProxyView` ([`proto`]), validated before it replaces the last one.

pub mod policy;
pub mod proto;
mod resolve;
pub mod routes;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use meshward_config::authz::CompiledAuthz;
use meshward_config::resources::mesh_config::NormalizationType;
use meshward_identity::{SpiffeId, TrustDomain};
use serde::{Serialize, Serializer};

pub use policy::Policy;
pub use resolve::ResolveError;

use crate::access_log::AccessLogFormat;
use crate::config::{MtlsMode, OutboundPolicy};
use crate::metrics::labels::{Peers, ServiceLabels, WorkloadLabels};

/// The compiled view one proxy works from.
#[derive(Debug, Serialize)]
pub struct View {
    /// The control plane's version; 0 for a view built from flags.
    pub version: u64,
    /// The namespace short names resolve in.
    pub namespace: String,
    /// The local trust domain.
    #[serde(serialize_with = "display")]
    pub trust_domain: TrustDomain,
    /// Inbound service ports and their modes.
    pub inbound: BTreeMap<u16, MtlsMode>,
    /// Inbound ports declared as opaque TCP: authorized per connection, never per request.
    pub opaque: BTreeSet<u16>,
    /// Services this proxy may call.
    pub services: Vec<Service>,
    /// The AuthorizationPolicies of this workload, compiled; empty allows everything.
    pub authz: Arc<CompiledAuthz>,
    /// How request paths are normalized before authorization (and for the app).
    pub path_normalization: NormalizationType,
    /// MeshConfig `outboundTrafficPolicy` for captured connections to outside the mesh;
    /// `None`: the proxy's own flag decides.
    pub outbound_policy: Option<OutboundPolicy>,
    /// What metric labels and access logs need.
    pub telemetry: TelemetryView,
}

/// What the view tells telemetry: who this workload is, who the peers are, which Service each
/// inbound port serves, and the access log format.
#[derive(Debug, Serialize)]
pub struct TelemetryView {
    /// This workload (`destination_*` inbound, `source_*` outbound).
    pub workload: Arc<WorkloadLabels>,
    /// The mesh's workloads, for the peer's labels.
    pub peers: Peers,
    /// Inbound port → the Service it serves.
    pub inbound_services: BTreeMap<u16, Arc<ServiceLabels>>,
    /// The access log format the control plane asks for; `None` when nobody says (flags).
    pub access_log: Option<AccessLogFormat>,
}

impl Default for TelemetryView {
    fn default() -> Self {
        Self {
            workload: WorkloadLabels::unknown(),
            peers: Peers::default(),
            inbound_services: BTreeMap::new(),
            access_log: None,
        }
    }
}

impl TelemetryView {
    /// The Service inbound `port` serves, `unknown` when none.
    pub fn inbound_service(&self, port: u16) -> Arc<ServiceLabels> {
        self.inbound_services
            .get(&port)
            .cloned()
            .unwrap_or_else(ServiceLabels::unknown)
    }
}

/// A mesh service.
#[derive(Debug, Serialize)]
pub struct Service {
    /// Fully qualified name, `name.ns.svc.cluster.local`.
    pub host: String,
    /// Short name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Virtual address, if any.
    pub address: Option<IpAddr>,
    /// Ports.
    pub ports: Vec<ServicePort>,
    /// A ServiceEntry host: answers to `host` only, not to Kubernetes short names.
    pub exact_name: bool,
    /// VirtualService HTTP routes; empty: every request to a port goes to its endpoints.
    pub http_routes: Vec<routes::HttpRoute>,
    /// VirtualService TCP routes.
    pub tcp_routes: Vec<routes::TcpRoute>,
    /// The VirtualService (`ns/name`), empty when none.
    pub routes_source: String,
    #[serde(skip)]
    labels: OnceLock<Arc<ServiceLabels>>,
}

impl Service {
    /// A service with these names, address and ports.
    pub fn new(
        host: String,
        name: String,
        namespace: String,
        address: Option<IpAddr>,
        ports: Vec<ServicePort>,
    ) -> Self {
        Self {
            host,
            name,
            namespace,
            address,
            ports,
            exact_name: false,
            http_routes: Vec::new(),
            tcp_routes: Vec::new(),
            routes_source: String::new(),
            labels: OnceLock::new(),
        }
    }

    /// Its `destination_service*` labels, built once.
    pub fn labels(&self) -> Arc<ServiceLabels> {
        Arc::clone(
            self.labels.get_or_init(|| {
                Arc::new(ServiceLabels::new(&self.host, &self.name, &self.namespace))
            }),
        )
    }
}

/// How the client sidecar talks to the endpoints of one service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TlsMode {
    /// Mesh mTLS, server SPIFFE ID checked.
    IstioMutual,
    /// Plaintext.
    Disable,
    /// Auto-mTLS: mesh mTLS to endpoints with a sidecar, plaintext to the others.
    Auto,
    /// TLS (or mTLS with the user's certificate) to an external server: the port's
    /// [`Origination`].
    Originate,
}

/// A DestinationRule's SIMPLE or MUTUAL settings for one port: TLS 1.2 or 1.3 to a server
/// whose certificate chains to `ca_certificates` (the system's roots when unset) and names
/// `server_name` or one of `subject_alt_names`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Origination {
    /// Roots that verify the server; `None`: the system's.
    pub ca_certificates: Option<PathBuf>,
    /// MUTUAL: the client chain and key files (the proxy reads them; the key stays here).
    pub client_identity: Option<(PathBuf, PathBuf)>,
    /// The SNI sent, and the name checked when `subject_alt_names` is empty.
    pub server_name: String,
    /// Names one of which the server certificate must carry.
    pub subject_alt_names: Vec<String>,
}

/// Where an endpoint is: an address, or a name resolved when connecting (ServiceEntry DNS).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// An IP address and port.
    Ip(SocketAddr),
    /// A DNS name and port.
    Dns(String, u16),
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ip(addr) => addr.fmt(f),
            Self::Dns(host, port) => write!(f, "{host}:{port}"),
        }
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl std::str::FromStr for Address {
    type Err = String;

    /// `ip:port`, `[ipv6]:port` or `name:port`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(Self::Ip(addr));
        }
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("`{s}`: expected host:port"))?;
        let port = port
            .parse::<u16>()
            .map_err(|e| format!("`{s}`: port: {e}"))?;
        let name = rustls_pki_types::DnsName::try_from(host)
            .map_err(|_| format!("`{s}`: `{host}` is neither an IP address nor a DNS name"))?;
        Ok(Self::Dns(name.as_ref().to_ascii_lowercase(), port))
    }
}

impl From<SocketAddr> for Address {
    fn from(addr: SocketAddr) -> Self {
        Self::Ip(addr)
    }
}

/// One port of a service.
#[derive(Debug, Serialize)]
pub struct ServicePort {
    /// The service port.
    pub port: u16,
    /// Accepted server identities; empty means each endpoint's own identity.
    #[serde(serialize_with = "display_all")]
    pub subject_alt_names: Vec<SpiffeId>,
    /// Endpoints, picked round robin.
    pub endpoints: Vec<Endpoint>,
    /// SIMPLE/MUTUAL settings, for endpoints whose mode is [`TlsMode::Originate`].
    pub origination: Option<Arc<Origination>>,
    /// Load balancing, limits, outlier detection.
    pub policy: Arc<Policy>,
    /// DestinationRule subsets of this port (for VirtualService routes), each with its own
    /// endpoints, policy and TLS.
    pub subsets: BTreeMap<String, ServicePort>,
    #[serde(skip)]
    next: AtomicUsize,
}

/// One endpoint of a service port.
#[derive(Debug, Clone, Serialize)]
pub struct Endpoint {
    /// Where to connect (the endpoint's sidecar for meshed endpoints).
    pub address: Address,
    /// The SPIFFE ID it runs as, when known.
    #[serde(serialize_with = "display_opt")]
    pub identity: Option<SpiffeId>,
    /// Whether a sidecar terminates mTLS there.
    pub has_sidecar: bool,
    /// How to connect to it (resolved by the control plane).
    pub tls: TlsMode,
    /// Why this mode (for errors and dumps).
    pub tls_source: String,
}

/// How to reach one chosen endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Route {
    /// mTLS to `address`, accepting only a server named in `expected`.
    Mtls {
        /// Where to connect.
        address: Address,
        /// Accepted server identities (never empty).
        expected: Vec<SpiffeId>,
    },
    /// Plaintext to `address`.
    Plain {
        /// Where to connect.
        address: Address,
    },
    /// TLS origination to an external server (DestinationRule SIMPLE or MUTUAL).
    Originate {
        /// Where to connect.
        address: Address,
        /// How.
        tls: Arc<Origination>,
    },
}

impl Route {
    /// The address connected to.
    pub fn address(&self) -> &Address {
        match self {
            Self::Mtls { address, .. }
            | Self::Plain { address }
            | Self::Originate { address, .. } => address,
        }
    }
}

impl ServicePort {
    /// A service port; `next` starts at the first endpoint.
    pub fn new(port: u16, subject_alt_names: Vec<SpiffeId>, endpoints: Vec<Endpoint>) -> Self {
        Self {
            port,
            subject_alt_names,
            endpoints,
            origination: None,
            policy: Arc::default(),
            subsets: BTreeMap::new(),
            next: AtomicUsize::new(0),
        }
    }

    /// Picks the next endpoint (round robin) and decides how to reach it.
    pub fn route(&self) -> Result<Route, ResolveError> {
        if self.endpoints.is_empty() {
            return Err(ResolveError::NoEndpoints);
        }
        self.route_to(self.next_index(self.endpoints.len()))
    }

    /// A rising counter modulo `n` (round robin over `n` choices).
    pub fn next_index(&self, n: usize) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % n.max(1)
    }

    /// How to reach endpoint `i`.
    pub fn route_to(&self, i: usize) -> Result<Route, ResolveError> {
        let ep = self.endpoints.get(i).ok_or(ResolveError::NoEndpoints)?;
        let mtls = match ep.tls {
            TlsMode::IstioMutual => true,
            TlsMode::Disable => false,
            TlsMode::Auto => ep.has_sidecar,
            TlsMode::Originate => {
                // The view is checked to carry settings for every originating endpoint.
                let tls = self
                    .origination
                    .clone()
                    .ok_or_else(|| ResolveError::NoOrigination(ep.tls_source.clone()))?;
                return Ok(Route::Originate {
                    address: ep.address.clone(),
                    tls,
                });
            }
        };
        if !mtls {
            return Ok(Route::Plain {
                address: ep.address.clone(),
            });
        }
        let expected = if self.subject_alt_names.is_empty() {
            ep.identity.iter().cloned().collect()
        } else {
            self.subject_alt_names.clone()
        };
        if expected.is_empty() {
            // Deny when in doubt: mTLS to a server whose identity nobody stated proves nothing.
            return Err(ResolveError::NoExpectedIdentity(ep.address.clone()));
        }
        Ok(Route::Mtls {
            address: ep.address.clone(),
            expected,
        })
    }
}

impl View {
    /// The mode of an inbound port, `None` when the port is not served.
    pub fn inbound_mode(&self, port: u16) -> Option<MtlsMode> {
        self.inbound.get(&port).copied()
    }
}

fn display<T: std::fmt::Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn display_opt<T: std::fmt::Display, S: Serializer>(
    v: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

fn display_all<T: std::fmt::Display, S: Serializer>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(ToString::to_string))
}
