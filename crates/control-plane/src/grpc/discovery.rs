//! `Discovery.Stream`: pushes each proxy its view, and records what it acknowledges.

use std::{pin::Pin, sync::Arc};

use meshward_api::v1::{
    Ack, DiscoveryRequest, ProxyView, discovery_request::Kind, discovery_server::Discovery,
};
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use crate::{Shared, tls};

/// The discovery service.
#[derive(Debug, Clone)]
pub(crate) struct DiscoveryService(pub(crate) Arc<Shared>);

type ViewStream = Pin<Box<dyn Stream<Item = Result<ProxyView, Status>> + Send>>;

/// How long a proxy may take to say hello before the stream is closed.
const HELLO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

#[tonic::async_trait]
impl Discovery for DiscoveryService {
    type StreamStream = ViewStream;

    async fn stream(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let identity = tls::require_identity(&request)?;
        let cert_not_after = tls::peer_not_after(&request).unwrap_or_default();
        let mut inbound = request.into_inner();
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.next()).await {
            Ok(Some(Ok(DiscoveryRequest {
                kind: Some(Kind::Hello(hello)),
            }))) => hello,
            Ok(Some(Err(status))) => return Err(status),
            Ok(_) | Err(_) => {
                return Err(Status::invalid_argument(
                    "the first message must be a Hello",
                ));
            }
        };
        let workload = hello.workload;
        self.0.authorize_workload(&identity, &workload)?;
        info!(%workload, %identity, "proxy connected");

        let shared = self.0.clone();
        let registry = shared.registry.clone();
        registry.update(&workload, |r| {
            r.identity = identity.to_string();
            r.cert_not_after = cert_not_after;
            r.connected = true;
            r.version_acked = r.version_acked.max(hello.version);
        });
        shared.metrics.connected_proxies.inc();
        let mut views = shared.hub.subscribe(&workload);
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            'push: loop {
                let view = views.borrow_and_update().clone();
                if let Some(view) = view {
                    registry.update(&workload, |r| r.version_sent = view.version);
                    if tx.send(Ok(view.as_ref().clone())).await.is_err() {
                        break;
                    }
                }
                // Record acks until the view changes or the stream ends.
                loop {
                    tokio::select! {
                        changed = views.changed() => match changed {
                            Ok(()) => continue 'push,
                            Err(_) => break 'push,
                        },
                        message = inbound.next() => match message {
                            Some(Ok(DiscoveryRequest { kind: Some(Kind::Ack(ack)) })) => {
                                record_ack(&registry, &workload, ack);
                            }
                            _ => break 'push,
                        },
                    }
                }
            }
            registry.update(&workload, |r| r.connected = false);
            shared.metrics.connected_proxies.dec();
            info!(%workload, "proxy disconnected");
        });
        Ok(Response::new(
            Box::pin(ReceiverStream::new(rx)) as ViewStream
        ))
    }
}

fn record_ack(registry: &crate::registry::Registry, workload: &str, ack: Ack) {
    if ack.nack_reason.is_empty() {
        debug!(%workload, version = ack.version, "view acknowledged");
    } else {
        warn!(%workload, version = ack.version, reason = %ack.nack_reason, "view refused (NACK)");
    }
    registry.update(workload, |r| {
        if ack.nack_reason.is_empty() {
            r.version_acked = ack.version;
        }
        r.nack_reason = ack.nack_reason;
    });
}
