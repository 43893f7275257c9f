//! What `meshward up` will run: every workload of a directory with its loopback addresses,
//! every Service with its virtual address, and the manifests to apply with those addresses
//! filled in. Pure: manifests in, plan out.
//!
//! Addresses come from one `/16` of 127.0.0.0/8 (`--subnet`, default `127.0`): workloads get
//! `S.1.N` (the "pod IP", where the sidecar listens), their apps `S.2.N` (a private address
//! only the sidecar forwards to), Services `S.3.N` (the "ClusterIP"), the control plane `S.0.1`.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
};

use meshward_config::{
    Document, Limits, Mesh, Resource, parse_stream,
    resolve::{endpoints::Destination, names::service_fqdn},
};
use serde::{Deserialize, Serialize};

/// Why a directory cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A manifest is invalid; every error is listed with its file:line:column.
    #[error("invalid manifests:\n{0}")]
    Invalid(String),
    /// The resources contradict each other.
    #[error("{0}")]
    Mesh(String),
    /// More workloads or services than one subnet holds.
    #[error("too many {0}: at most 254 fit in one subnet")]
    TooMany(&'static str),
    /// `--subnet` is not two octets inside 127/8.
    #[error("subnet {0:?} is not of the form 127.X")]
    Subnet(String),
    /// No workload to run.
    #[error("no Workload found: add meshward.io/v1alpha1 Workload documents")]
    Empty,
}

/// The `/16` inside 127.0.0.0/8 a mesh runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet(pub u8);

impl Subnet {
    /// Parses `127.X`.
    pub fn parse(text: &str) -> Result<Self, PlanError> {
        text.strip_prefix("127.")
            .and_then(|x| x.parse().ok())
            .map(Self)
            .ok_or_else(|| PlanError::Subnet(text.to_owned()))
    }

    /// `127.X.block.host`.
    pub fn addr(self, block: u8, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, self.0, block, host)
    }

    /// Where the embedded control plane listens.
    pub fn control_plane(self) -> Ipv4Addr {
        self.addr(0, 1)
    }
}

/// Where a mesh's addresses live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Layout {
    /// One `/16` of 127.0.0.0/8 on this host: workloads `S.1.N`, apps `S.2.N`, Services
    /// `S.3.N`, control plane `S.0.1`; outbound through each sidecar's forward proxy.
    Loopback(Subnet),
    /// One network namespace per workload (`--netns`): workloads `10.253.1.N+1` on a bridge
    /// whose `.1` is the node (control plane), apps on `127.0.0.1` inside their namespace,
    /// Services `10.96.0.N`; traffic captured by iptables into each sidecar.
    Netns,
}

impl Layout {
    /// Where the control plane listens.
    pub fn control_plane(self) -> Ipv4Addr {
        match self {
            Self::Loopback(subnet) => subnet.control_plane(),
            Self::Netns => Ipv4Addr::from(NETNS_SUBNET_NODE),
        }
    }

    /// The `n`-th workload's address (`n` from 1).
    fn workload(self, n: u8) -> Ipv4Addr {
        match self {
            Self::Loopback(subnet) => subnet.addr(1, n),
            Self::Netns => {
                let [a, b, c, _] = NETNS_SUBNET_NODE;
                Ipv4Addr::new(a, b, c, n.saturating_add(1))
            }
        }
    }

    /// Where the `n`-th workload's app listens.
    fn app(self, n: u8, sidecar: bool) -> Ipv4Addr {
        match (self, sidecar) {
            (_, false) => self.workload(n),
            (Self::Loopback(subnet), true) => subnet.addr(2, n),
            (Self::Netns, true) => Ipv4Addr::LOCALHOST,
        }
    }

    /// The `n`-th Service's virtual address.
    fn service(self, n: u8) -> Ipv4Addr {
        match self {
            Self::Loopback(subnet) => subnet.addr(3, n),
            Self::Netns => Ipv4Addr::new(10, 96, 0, n),
        }
    }

    /// The most workloads a plan holds.
    fn max_workloads(self) -> u8 {
        match self {
            Self::Loopback(_) => 254,
            Self::Netns => 253,
        }
    }
}

/// The node's address in network-namespace mode; workloads follow it in its /24.
pub const NETNS_SUBNET_NODE: [u8; 4] = [10, 253, 1, 1];

/// One workload to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedWorkload {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Service account (its identity).
    pub service_account: String,
    /// Its address (where its sidecar, or the app itself without one, listens).
    pub address: Ipv4Addr,
    /// Where the app listens: private with a sidecar, the workload address without.
    pub app_address: Ipv4Addr,
    /// Whether a sidecar runs beside it.
    pub sidecar: bool,
    /// The app's command (empty: no app process).
    pub command: Vec<String>,
    /// The app's environment.
    pub env: BTreeMap<String, String>,
    /// Its ports.
    pub ports: Vec<u16>,
    /// The network namespace it runs in (`--netns`), `None` on loopback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
}

impl PlannedWorkload {
    /// `name.namespace`.
    pub fn id(&self) -> String {
        format!("{}.{}", self.name, self.namespace)
    }
}

/// One Service: its virtual address and, per port, the endpoints behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedService {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Fully qualified name.
    pub host: String,
    /// Virtual address.
    pub address: Ipv4Addr,
    /// Service port → workload addresses and target ports.
    pub ports: BTreeMap<u16, Vec<SocketAddr>>,
}

/// Everything `meshward up` runs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Where the addresses live.
    pub layout: Layout,
    /// Workloads, sorted by namespace and name.
    pub workloads: Vec<PlannedWorkload>,
    /// Services, sorted by namespace and name.
    pub services: Vec<PlannedService>,
    /// The manifests to apply, addresses filled in.
    pub sources: Vec<(String, String)>,
    /// The resolved mesh, as the control plane will see it.
    pub mesh: Mesh,
}

/// Plans `files` (`(name, text)` pairs) in `subnet`.
pub fn plan(files: &[(String, String)], subnet: Subnet) -> Result<Plan, PlanError> {
    plan_in(files, Layout::Loopback(subnet))
}

/// Plans `files` (`(name, text)` pairs) with the addresses of `layout`; in
/// [`Layout::Netns`], each workload gets the namespace name `netns(workload id)`.
pub fn plan_in(files: &[(String, String)], layout: Layout) -> Result<Plan, PlanError> {
    let documents = parse_all(files)?;
    let first = Mesh::new(documents.clone()).map_err(|e| PlanError::Mesh(e.to_string()))?;
    if first.workloads().is_empty() {
        return Err(PlanError::Empty);
    }

    let mut workload_ips = BTreeMap::new();
    let mut order: Vec<_> = first.workloads().iter().collect();
    order.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    for (i, w) in order.iter().enumerate() {
        let host = u8::try_from(i + 1).map_err(|_| PlanError::TooMany("workloads"))?;
        if host > layout.max_workloads() {
            return Err(PlanError::TooMany("workloads"));
        }
        workload_ips.insert((w.namespace.clone(), w.name.clone()), host);
    }
    let mut service_ips = BTreeMap::new();
    let mut services: Vec<_> = first.services().iter().collect();
    services.sort_by(|a, b| {
        (a.namespace(), &a.object.metadata.name).cmp(&(b.namespace(), &b.object.metadata.name))
    });
    for (i, s) in services.iter().enumerate() {
        let host = u8::try_from(i + 1).map_err(|_| PlanError::TooMany("services"))?;
        if host == 255 {
            return Err(PlanError::TooMany("services"));
        }
        service_ips.insert(
            (s.namespace().to_owned(), s.object.metadata.name.clone()),
            layout.service(host),
        );
    }

    // Rewrite Workload and Service documents with their addresses; keep the rest verbatim.
    let mut sources = Vec::new();
    for doc in &documents {
        let key = doc.resource.key();
        let fill = match &doc.resource {
            Resource::Workload(_) => workload_ips
                .get(&(key.namespace.clone(), key.name.clone()))
                .map(|host| ("address", layout.workload(*host))),
            Resource::Service(_) => service_ips
                .get(&(key.namespace.clone(), key.name.clone()))
                .map(|ip| ("clusterIP", *ip)),
            _ => None,
        };
        let text = match fill {
            Some((field, ip)) => with_field(&doc.text, field, &ip.to_string())?,
            None => doc.text.clone(),
        };
        sources.push((doc.location.source.to_string(), text));
    }
    let mesh = Mesh::new(parse_all(&sources)?).map_err(|e| PlanError::Mesh(e.to_string()))?;

    let mut workloads: Vec<PlannedWorkload> = mesh
        .workloads()
        .iter()
        .filter_map(|w| {
            let host = *workload_ips.get(&(w.namespace.clone(), w.name.clone()))?;
            Some(PlannedWorkload {
                name: w.name.clone(),
                namespace: w.namespace.clone(),
                service_account: w.service_account.clone(),
                address: layout.workload(host),
                app_address: layout.app(host, w.sidecar),
                sidecar: w.sidecar,
                command: w.command.clone(),
                env: w.env.clone(),
                ports: w.ports.iter().filter_map(|p| p.port.valid()).collect(),
                netns: (layout == Layout::Netns)
                    .then(|| crate::netns::owned_name(&format!("{}.{}", w.name, w.namespace))),
            })
        })
        .collect();
    workloads.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));

    let mut planned_services = Vec::new();
    for entry in mesh.services() {
        let name = entry.object.metadata.name.clone();
        let namespace = entry.namespace().to_owned();
        let Some(address) = service_ips.get(&(namespace.clone(), name.clone())).copied() else {
            continue;
        };
        let destination = Destination::Service(entry);
        let ports = destination
            .ports()
            .into_iter()
            .map(|port| {
                let endpoints = mesh
                    .endpoints(&destination, port)
                    .into_iter()
                    .filter_map(|ep| {
                        let ip: Ipv4Addr = ep.address.as_deref()?.parse().ok()?;
                        Some(SocketAddr::from((ip, ep.port)))
                    })
                    .collect();
                (port, endpoints)
            })
            .collect();
        planned_services.push(PlannedService {
            host: service_fqdn(&name, &namespace),
            name,
            namespace,
            address,
            ports,
        });
    }
    planned_services.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));

    Ok(Plan {
        layout,
        workloads,
        services: planned_services,
        sources,
        mesh,
    })
}

fn parse_all(files: &[(String, String)]) -> Result<Vec<Document>, PlanError> {
    let mut documents = Vec::new();
    let mut errors = Vec::new();
    for (name, text) in files {
        match parse_stream(name, text, &Limits::default()).into_documents() {
            Ok(docs) => documents.extend(docs),
            Err(diagnostics) => errors.extend(diagnostics.iter().map(ToString::to_string)),
        }
    }
    if errors.is_empty() {
        Ok(documents)
    } else {
        Err(PlanError::Invalid(errors.join("\n")))
    }
}

/// The document `text` with `spec.<field>` set to `value`, as JSON (a valid YAML document).
fn with_field(text: &str, field: &str, value: &str) -> Result<String, PlanError> {
    let mut doc: serde_json::Value =
        serde_saphyr::from_str(text).map_err(|e| PlanError::Invalid(e.to_string()))?;
    if let Some(spec) = doc.get_mut("spec").and_then(|s| s.as_object_mut()) {
        spec.insert(
            field.to_owned(),
            serde_json::Value::String(value.to_owned()),
        );
    }
    serde_json::to_string_pretty(&doc).map_err(|e| PlanError::Invalid(e.to_string()))
}
