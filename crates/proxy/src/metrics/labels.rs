//! Istio's standard metric labels, computed once per connection from the view and the verified
//! peer, never from request data: every value is a workload, service or principal the view (or
//! a trusted certificate) names, a status code, or one of a few fixed words.
//!
//! [`ConnLabels`] carries what is fixed for a connection (reporter, both workloads, both
//! principals, security policy) with a hash computed once, so a request only adds its status
//! code and flags to find its series.

use std::collections::HashMap;
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::{Arc, LazyLock};

use meshward_identity::SpiffeId;
use prometheus_client::encoding::{EncodeLabel, LabelSetEncoder};
use serde::Serialize;

/// Istio's value for a label nobody knows.
pub const UNKNOWN: &str = "unknown";

/// Which sidecar reports: the client's (`source`, outbound) or the server's (`destination`,
/// inbound).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reporter {
    /// The client sidecar.
    Source,
    /// The server sidecar.
    Destination,
}

impl Reporter {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Destination => "destination",
        }
    }
}

/// `connection_security_policy`: `mutual_tls` or `none` on the server side, `unknown` on the
/// client side (as Istio reports it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityPolicy {
    /// The server terminated mesh mTLS.
    MutualTls,
    /// The server received plaintext.
    None,
    /// The client side never says.
    Unknown,
}

impl SecurityPolicy {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MutualTls => "mutual_tls",
            Self::None => "none",
            Self::Unknown => UNKNOWN,
        }
    }
}

/// `request_protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestProtocol {
    /// HTTP/1 or HTTP/2.
    Http,
    /// gRPC (`content-type: application/grpc…`).
    Grpc,
    /// Anything carried as bytes.
    Tcp,
}

impl RequestProtocol {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Grpc => "grpc",
            Self::Tcp => "tcp",
        }
    }
}

/// A label value shared by every series that carries it.
pub type Value = Arc<str>;

fn value(s: &str) -> Value {
    if s.is_empty() {
        unknown()
    } else {
        Arc::from(s)
    }
}

/// The shared `unknown`.
pub fn unknown() -> Value {
    static UNKNOWN_VALUE: LazyLock<Value> = LazyLock::new(|| Arc::from(UNKNOWN));
    Arc::clone(&UNKNOWN_VALUE)
}

/// What the labels say about one workload (source or destination).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct WorkloadLabels {
    /// `*_workload`.
    pub workload: Value,
    /// `*_workload_namespace`.
    pub namespace: Value,
    /// `*_app`.
    pub app: Value,
    /// `*_version`.
    pub version: Value,
    /// `*_canonical_service`.
    pub canonical_service: Value,
    /// `*_canonical_revision`.
    pub canonical_revision: Value,
}

impl WorkloadLabels {
    /// A workload nobody knows.
    pub fn unknown() -> Arc<Self> {
        static UNKNOWN_WORKLOAD: LazyLock<Arc<WorkloadLabels>> = LazyLock::new(|| {
            Arc::new(WorkloadLabels {
                workload: unknown(),
                namespace: unknown(),
                app: unknown(),
                version: unknown(),
                canonical_service: unknown(),
                canonical_revision: unknown(),
            })
        });
        Arc::clone(&UNKNOWN_WORKLOAD)
    }

    /// From the view's strings; empty ones are `unknown`.
    pub fn new(
        workload: &str,
        namespace: &str,
        app: &str,
        version: &str,
        canonical_service: &str,
        canonical_revision: &str,
    ) -> Self {
        Self {
            workload: value(workload),
            namespace: value(namespace),
            app: value(app),
            version: value(version),
            canonical_service: value(canonical_service),
            canonical_revision: value(canonical_revision),
        }
    }

    /// Only what a workload's name and namespace say (standalone proxies).
    pub fn named(workload: &str, namespace: &str) -> Self {
        Self::new(workload, namespace, "", "", "", "")
    }

    /// What two workloads with the same identity have in common; fields that differ become
    /// `unknown` (several workloads run as one service account).
    fn common(&self, other: &Self) -> Self {
        let pick = |a: &Value, b: &Value| if a == b { Arc::clone(a) } else { unknown() };
        Self {
            workload: pick(&self.workload, &other.workload),
            namespace: pick(&self.namespace, &other.namespace),
            app: pick(&self.app, &other.app),
            version: pick(&self.version, &other.version),
            canonical_service: pick(&self.canonical_service, &other.canonical_service),
            canonical_revision: pick(&self.canonical_revision, &other.canonical_revision),
        }
    }

    /// With the namespace taken from `principal` (`…/ns/<ns>/sa/…`) when it is unknown.
    fn with_namespace_of(self: Arc<Self>, principal: Option<&SpiffeId>) -> Arc<Self> {
        match principal.and_then(SpiffeId::namespace) {
            Some(ns) if &*self.namespace == UNKNOWN => {
                let mut labels = Self::clone(&self);
                labels.namespace = value(ns);
                Arc::new(labels)
            }
            _ => self,
        }
    }
}

/// The mesh's workloads by identity and by address, for the labels of a peer.
#[derive(Debug, Default, Serialize)]
pub struct Peers {
    /// Identity → what every workload with it has in common.
    by_identity: HashMap<String, Arc<WorkloadLabels>>,
    /// Workload address → its identity and labels.
    #[serde(skip)]
    by_address: HashMap<IpAddr, (String, Arc<WorkloadLabels>)>,
}

impl Peers {
    /// Adds one workload running as `identity` at `address`.
    pub fn insert(&mut self, identity: &str, address: Option<IpAddr>, labels: WorkloadLabels) {
        let labels = Arc::new(labels);
        if let Some(ip) = address {
            self.by_address
                .insert(ip, (identity.to_owned(), Arc::clone(&labels)));
        }
        if identity.is_empty() {
            return;
        }
        match self.by_identity.get_mut(identity) {
            Some(known) => *known = Arc::new(known.common(&labels)),
            None => {
                self.by_identity.insert(identity.to_owned(), labels);
            }
        }
    }

    /// Workloads known.
    pub fn len(&self) -> usize {
        self.by_identity.len().max(self.by_address.len())
    }

    /// Whether no workload is known.
    pub fn is_empty(&self) -> bool {
        self.by_identity.is_empty() && self.by_address.is_empty()
    }

    /// The peer with the verified `identity` at `ip`: the workload at that address when it runs
    /// as that identity, else what the identity's workloads have in common, else only the
    /// namespace the identity names.
    pub fn caller(&self, identity: &SpiffeId, ip: IpAddr) -> Arc<WorkloadLabels> {
        let id = identity.to_string();
        let found = match self.by_address.get(&ip) {
            Some((known, labels)) if *known == id => Some(Arc::clone(labels)),
            _ => self.by_identity.get(&id).cloned(),
        };
        found
            .unwrap_or_else(WorkloadLabels::unknown)
            .with_namespace_of(Some(identity))
    }

    /// The endpoint at `ip`, when it is a workload of the view (and runs as `identity` when
    /// that is known).
    pub fn endpoint(&self, ip: IpAddr, identity: Option<&SpiffeId>) -> Arc<WorkloadLabels> {
        let found = match (self.by_address.get(&ip), identity) {
            (Some((known, labels)), Some(id)) if *known == id.to_string() => {
                Some(Arc::clone(labels))
            }
            (Some((_, labels)), None) => Some(Arc::clone(labels)),
            (_, Some(id)) => self.by_identity.get(&id.to_string()).cloned(),
            (None, None) => None,
        };
        found
            .unwrap_or_else(WorkloadLabels::unknown)
            .with_namespace_of(identity)
    }
}

/// `destination_service`, `destination_service_name`, `destination_service_namespace`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceLabels {
    /// Fully qualified name.
    pub host: Value,
    /// Short name.
    pub name: Value,
    /// Namespace.
    pub namespace: Value,
    #[serde(skip)]
    hash: u64,
}

impl Hash for ServiceLabels {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl ServiceLabels {
    /// A service; empty strings are `unknown`.
    pub fn new(host: &str, name: &str, namespace: &str) -> Self {
        let (host, name, namespace) = (value(host), value(name), value(namespace));
        let mut h = DefaultHasher::new();
        (&host, &name, &namespace).hash(&mut h);
        Self {
            host,
            name,
            namespace,
            hash: h.finish(),
        }
    }

    /// No known service.
    pub fn unknown() -> Arc<Self> {
        static UNKNOWN_SERVICE: LazyLock<Arc<ServiceLabels>> =
            LazyLock::new(|| Arc::new(ServiceLabels::new("", "", "")));
        Arc::clone(&UNKNOWN_SERVICE)
    }
}

/// The labels fixed for one connection.
#[derive(Debug, Clone)]
pub struct ConnLabels {
    /// `reporter`.
    pub reporter: Reporter,
    /// `source_*`.
    pub source: Arc<WorkloadLabels>,
    /// `source_principal`.
    pub source_principal: Value,
    /// `destination_*` (workload part).
    pub destination: Arc<WorkloadLabels>,
    /// `destination_principal`.
    pub destination_principal: Value,
    /// `connection_security_policy`.
    pub security: SecurityPolicy,
    hash: u64,
}

impl PartialEq for ConnLabels {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
            || (self.hash == other.hash
                && self.reporter == other.reporter
                && self.security == other.security
                && self.source_principal == other.source_principal
                && self.destination_principal == other.destination_principal
                && (Arc::ptr_eq(&self.source, &other.source) || self.source == other.source)
                && (Arc::ptr_eq(&self.destination, &other.destination)
                    || self.destination == other.destination))
    }
}

impl Eq for ConnLabels {}

impl Hash for ConnLabels {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// A principal as a label value.
pub fn principal(id: Option<&SpiffeId>) -> Value {
    id.map_or_else(unknown, |id| Arc::from(id.to_string()))
}

impl ConnLabels {
    /// The labels of one connection.
    pub fn new(
        reporter: Reporter,
        source: Arc<WorkloadLabels>,
        source_principal: Value,
        destination: Arc<WorkloadLabels>,
        destination_principal: Value,
        security: SecurityPolicy,
    ) -> Self {
        let mut h = DefaultHasher::new();
        (
            reporter,
            security,
            &*source,
            &source_principal,
            &*destination,
            &destination_principal,
        )
            .hash(&mut h);
        Self {
            reporter,
            source,
            source_principal,
            destination,
            destination_principal,
            security,
            hash: h.finish(),
        }
    }
}

/// Writes one label.
fn label(encoder: &mut LabelSetEncoder<'_>, key: &str, value: &str) -> fmt::Result {
    (key, value).encode(encoder.encode_label())
}

/// Writes Istio's labels in Istio's order; `http` adds `response_code` and
/// `grpc_response_status` (HTTP metrics only).
pub(crate) fn encode(
    encoder: &mut LabelSetEncoder<'_>,
    conn: &ConnLabels,
    service: &ServiceLabels,
    protocol: RequestProtocol,
    http: Option<(u16, Option<u8>)>,
    flags: &str,
) -> fmt::Result {
    let (src, dst) = (&conn.source, &conn.destination);
    label(encoder, "reporter", conn.reporter.as_str())?;
    label(encoder, "source_workload", &src.workload)?;
    label(encoder, "source_canonical_service", &src.canonical_service)?;
    label(
        encoder,
        "source_canonical_revision",
        &src.canonical_revision,
    )?;
    label(encoder, "source_workload_namespace", &src.namespace)?;
    label(encoder, "source_principal", &conn.source_principal)?;
    label(encoder, "source_app", &src.app)?;
    label(encoder, "source_version", &src.version)?;
    label(encoder, "source_cluster", UNKNOWN)?;
    label(encoder, "destination_workload", &dst.workload)?;
    label(encoder, "destination_workload_namespace", &dst.namespace)?;
    label(
        encoder,
        "destination_principal",
        &conn.destination_principal,
    )?;
    label(encoder, "destination_app", &dst.app)?;
    label(encoder, "destination_version", &dst.version)?;
    label(encoder, "destination_service", &service.host)?;
    label(
        encoder,
        "destination_canonical_service",
        &dst.canonical_service,
    )?;
    label(
        encoder,
        "destination_canonical_revision",
        &dst.canonical_revision,
    )?;
    label(encoder, "destination_service_name", &service.name)?;
    label(encoder, "destination_service_namespace", &service.namespace)?;
    label(encoder, "destination_cluster", UNKNOWN)?;
    label(encoder, "request_protocol", protocol.as_str())?;
    if let Some((code, grpc)) = http {
        let mut buf = itoa_u16(code);
        label(encoder, "response_code", buf.as_str())?;
        match grpc {
            Some(status) => {
                buf = itoa_u16(u16::from(status));
                label(encoder, "grpc_response_status", buf.as_str())?;
            }
            None => label(encoder, "grpc_response_status", "")?,
        }
    }
    label(encoder, "response_flags", flags)?;
    label(
        encoder,
        "connection_security_policy",
        conn.security.as_str(),
    )
}

/// A small number as text without allocating.
struct SmallNumber {
    buf: [u8; 5],
    len: usize,
}

impl SmallNumber {
    fn as_str(&self) -> &str {
        // Only ASCII digits are ever written.
        std::str::from_utf8(&self.buf[self.buf.len() - self.len..]).unwrap_or("0")
    }
}

fn itoa_u16(mut n: u16) -> SmallNumber {
    let mut out = SmallNumber {
        buf: [b'0'; 5],
        len: 0,
    };
    loop {
        out.len += 1;
        let at = out.buf.len() - out.len;
        out.buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SpiffeId {
        s.parse().unwrap()
    }

    #[test]
    fn small_numbers() {
        for n in [0u16, 7, 200, 503, 65535] {
            assert_eq!(itoa_u16(n).as_str(), n.to_string());
        }
    }

    #[test]
    fn peers_by_address_then_identity_then_namespace() {
        let mut peers = Peers::default();
        let web = "spiffe://cluster.local/ns/shop/sa/web";
        peers.insert(
            web,
            Some("127.0.10.1".parse().unwrap()),
            WorkloadLabels::new("web-1", "shop", "web", "v1", "web", "v1"),
        );
        peers.insert(
            web,
            Some("127.0.10.2".parse().unwrap()),
            WorkloadLabels::new("web-2", "shop", "web", "v2", "web", "v2"),
        );
        // The address tells the replicas apart.
        let one = peers.caller(&id(web), "127.0.10.1".parse().unwrap());
        assert_eq!(&*one.workload, "web-1");
        // Elsewhere, only what both share.
        let any = peers.caller(&id(web), "10.0.0.9".parse().unwrap());
        assert_eq!((&*any.workload, &*any.app), (UNKNOWN, "web"));
        // An address does not lend its labels to another identity.
        let other = peers.caller(
            &id("spiffe://cluster.local/ns/ops/sa/admin"),
            "127.0.10.1".parse().unwrap(),
        );
        assert_eq!((&*other.workload, &*other.namespace), (UNKNOWN, "ops"));
        // Endpoints: by address, checked against the identity when there is one.
        let ep = peers.endpoint("127.0.10.2".parse().unwrap(), None);
        assert_eq!(&*ep.version, "v2");
        let ep = peers.endpoint("127.0.10.2".parse().unwrap(), Some(&id(web)));
        assert_eq!(&*ep.workload, "web-2");
        assert_eq!(
            &*peers.endpoint("10.9.9.9".parse().unwrap(), None).workload,
            UNKNOWN
        );
    }

    #[test]
    fn equal_labels_hash_alike_whoever_built_them() {
        let build = || {
            ConnLabels::new(
                Reporter::Destination,
                Arc::new(WorkloadLabels::named("a", "ns")),
                Arc::from("spiffe://cluster.local/ns/ns/sa/a"),
                Arc::new(WorkloadLabels::named("b", "ns")),
                Arc::from("spiffe://cluster.local/ns/ns/sa/b"),
                SecurityPolicy::MutualTls,
            )
        };
        let (a, b) = (build(), build());
        assert_eq!(a, b);
        let hash = |c: &ConnLabels| {
            let mut h = DefaultHasher::new();
            c.hash(&mut h);
            h.finish()
        };
        assert_eq!(hash(&a), hash(&b));
        let mut c = build();
        c = ConnLabels::new(
            Reporter::Source,
            c.source,
            c.source_principal,
            c.destination,
            c.destination_principal,
            SecurityPolicy::Unknown,
        );
        assert_ne!(a, c);
    }
}
