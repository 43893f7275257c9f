//! What `meshward up` prints once the mesh runs: the workloads, and who can talk to whom and
//! how — each line checked by a live probe, not predicted.

use std::{fmt::Write as _, net::SocketAddr, time::Duration};

use meshward_config::{
    Mesh,
    resolve::{endpoints::Destination, tls::Client},
    resources::destination_rule::ClientTlsMode,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::{
    plan::{Plan, PlannedService, PlannedWorkload},
    probe,
    state::RunningMesh,
};

/// Both tables, as text.
pub async fn render(plan: &Plan, running: &RunningMesh) -> String {
    let mut out = String::new();
    let mut rows = vec![vec![
        "NAMESPACE".to_owned(),
        "NAME".into(),
        "ADDRESS".into(),
        "IDENTITY".into(),
        "SIDECAR".into(),
        "PORTS".into(),
    ]];
    let td = &plan.mesh.config().trust_domain;
    for w in &running.workloads {
        let ports = w
            .ports
            .iter()
            .map(|p| match (w.sidecar, instance(&plan.mesh, w)) {
                (true, Some(instance)) => {
                    format!(
                        "{p}/{}",
                        plan.mesh.peer_authentication(instance, *p).mode.as_str()
                    )
                }
                _ => format!("{p}/plaintext"),
            })
            .collect::<Vec<_>>()
            .join(",");
        rows.push(vec![
            w.namespace.clone(),
            w.name.clone(),
            w.address.to_string(),
            format!("spiffe://{td}/ns/{}/sa/{}", w.namespace, w.service_account),
            if w.sidecar { "yes" } else { "no" }.into(),
            ports,
        ]);
    }
    out.push_str(&table(&rows));
    out.push('\n');

    let mut rows = vec![vec![
        "FROM".to_owned(),
        "TO".into(),
        "HOW".into(),
        "RESULT".into(),
    ]];
    for client in &running.workloads {
        for service in &running.services {
            for port in service.ports.keys() {
                let how = how(&plan.mesh, client, service, *port);
                let outcome = probe_pair(client, service, *port).await;
                let result = match outcome {
                    probe::Outcome::Allowed(line) => format!("allowed ({line})"),
                    probe::Outcome::Denied(line) => {
                        format!("denied by AuthorizationPolicy ({line})")
                    }
                    probe::Outcome::Refused(why) => format!("refused ({why})"),
                };
                rows.push(vec![
                    client.id(),
                    format!("{}:{port}", service.host),
                    how,
                    result,
                ]);
            }
        }
    }
    out.push_str(&table(&rows));
    out
}

/// Probes `service:port` from `client`, through its sidecar when it has one.
pub async fn probe_pair(
    client: &PlannedWorkload,
    service: &PlannedService,
    port: u16,
) -> probe::Outcome {
    if let Some(netns) = &client.netns {
        let addr = SocketAddr::from((service.address, port));
        probe::from_netns(netns, addr, &service.name_in(&client.namespace)).await
    } else if client.sidecar {
        probe::via_sidecar(
            SocketAddr::from((client.address, 15001)),
            &service.name_in(&client.namespace),
            port,
        )
        .await
    } else {
        probe::direct(SocketAddr::from((service.address, port)), &service.host).await
    }
}

/// How `client` connects to `service:port`: mTLS or plaintext, and why.
pub fn how(mesh: &Mesh, client: &PlannedWorkload, service: &PlannedService, port: u16) -> String {
    if !client.sidecar {
        return "plaintext (client has no sidecar)".into();
    }
    let Some(instance) = instance(mesh, client) else {
        return "unknown".into();
    };
    let Some(entry) = mesh
        .services()
        .iter()
        .find(|s| s.object.metadata.name == service.name && s.namespace() == service.namespace)
    else {
        return "unknown".into();
    };
    let destination = Destination::Service(entry);
    let Some(endpoint) = mesh.endpoints(&destination, port).into_iter().next() else {
        return "no endpoints".into();
    };
    let caller = Client {
        namespace: &instance.namespace,
        labels: &instance.labels,
    };
    let decision = mesh.client_tls(
        caller,
        &service.host,
        Some(&service.namespace),
        port,
        None,
        &endpoint,
    );
    let mode = match decision.mode {
        ClientTlsMode::IstioMutual => "mTLS",
        ClientTlsMode::Disable => "plaintext",
        ClientTlsMode::Simple => "TLS",
        ClientTlsMode::Mutual => "mTLS (own certificates)",
    };
    format!("{mode} ({})", decision.source)
}

fn instance<'a>(
    mesh: &'a Mesh,
    w: &PlannedWorkload,
) -> Option<&'a meshward_config::WorkloadInstance> {
    mesh.workload(&w.namespace, &w.name)
}

/// Whether `GET path` on `addr` answers 200 (bounded in time and size).
pub async fn http_ok(addr: SocketAddr, path: &str) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        std::io::Result::Ok(head.ends_with(b" 200") || &head[9..12] == b"200")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), attempt).await,
        Ok(Ok(true))
    )
}

/// Left-aligned columns separated by three spaces, as kubectl prints them.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let _ = write!(line, "{cell:<width$}   ", width = widths[c]);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

impl PlannedService {
    /// The name a client in `namespace` uses: the short name in its own namespace, else
    /// `name.namespace`.
    pub fn name_in(&self, namespace: &str) -> String {
        if self.namespace == namespace {
            self.name.clone()
        } else {
            format!("{}.{}", self.name, self.namespace)
        }
    }
}
