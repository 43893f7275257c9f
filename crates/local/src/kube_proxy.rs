//! Service virtual addresses, as kube-proxy provides them: plain TCP from `ClusterIP:port` to
//! the service's workload addresses, round robin. It adds no TLS and no policy — a client
//! without a sidecar reaches the workload's sidecar exactly as in Kubernetes, so STRICT can
//! refuse it.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{io::copy_bidirectional, net::TcpListener, net::TcpStream, task::JoinSet};
use tracing::debug;

use crate::plan::PlannedService;

/// Connecting to an endpoint may take this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds every service port and forwards until the returned set is dropped.
pub async fn start(services: &[PlannedService]) -> std::io::Result<JoinSet<()>> {
    let mut tasks = JoinSet::new();
    for service in services {
        for (port, endpoints) in &service.ports {
            let addr = SocketAddr::from((service.address, *port));
            let listener = TcpListener::bind(addr).await.map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("service {}: cannot listen on {addr}: {e}", service.host),
                )
            })?;
            tasks.spawn(forward(listener, Arc::new(endpoints.clone())));
        }
    }
    Ok(tasks)
}

async fn forward(listener: TcpListener, endpoints: Arc<Vec<SocketAddr>>) {
    let next = Arc::new(AtomicUsize::new(0));
    loop {
        let Ok((mut inbound, peer)) = listener.accept().await else {
            continue;
        };
        if endpoints.is_empty() {
            // No endpoint: refuse, as kube-proxy's REJECT rule does.
            continue;
        }
        let target = endpoints[next.fetch_add(1, Ordering::Relaxed) % endpoints.len()];
        tokio::spawn(async move {
            let Ok(Ok(mut outbound)) =
                tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await
            else {
                debug!(%peer, %target, "service endpoint unreachable");
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            if let Err(e) = copy_bidirectional(&mut inbound, &mut outbound).await {
                debug!(%peer, %target, error = %e, "service connection ended");
            }
        });
    }
}
