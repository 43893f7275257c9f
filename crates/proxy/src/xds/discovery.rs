//! `Discovery.Stream`: say Hello, then apply each `ProxyView` that validates (ACK) and keep
//! the last good one for any that does not (NACK with the reason). Reconnects with backoff;
//! the view in force never goes away because the control plane did.

use std::sync::Arc;

use meshward_api::v1::discovery_client::DiscoveryClient;
use meshward_api::v1::discovery_request::Kind;
use meshward_api::v1::{Ack, DiscoveryRequest, Hello};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;

use super::{Backoff, ControlPlane, XdsError};
use crate::admin::Status;
use crate::config::WorkloadName;
use crate::creds::CredsReceiver;
use crate::view::View;
use crate::view::proto::from_proto;

/// What the discovery loop updates.
#[derive(Debug)]
pub struct Discovery {
    /// Where to connect.
    pub control_plane: ControlPlane,
    /// The workload this proxy serves.
    pub workload: WorkloadName,
    /// The SVID that authenticates the stream.
    pub creds: CredsReceiver,
    /// The view in force.
    pub view: watch::Sender<Arc<View>>,
    /// Readiness inputs.
    pub status: watch::Sender<Status>,
}

impl Discovery {
    /// Follows the control plane until `stop`.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut backoff = Backoff::new();
        loop {
            // The stream is authenticated by the SVID: wait for the first one.
            tokio::select! {
                () = stop.cancelled() => return,
                r = self.creds.wait_for(Option::is_some) => if r.is_err() { return },
            }
            match self.session(&mut backoff, &stop).await {
                Ok(()) => tracing::info!("control-plane stream ended; reconnecting"),
                Err(err) => {
                    tracing::warn!(%err, "control-plane stream failed; keeping the last view")
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }

    async fn session(
        &mut self,
        backoff: &mut Backoff,
        stop: &CancellationToken,
    ) -> Result<(), XdsError> {
        let current = self.creds.borrow().clone();
        let channel = self.control_plane.channel(current.as_deref()).await?;
        let (tx, rx) = mpsc::channel(4);
        let hello = DiscoveryRequest {
            kind: Some(Kind::Hello(Hello {
                workload: self.workload.to_string(),
                version: self.view.borrow().version,
            })),
        };
        // The receiver is alive: it was created just above.
        let _ = tx.send(hello).await;
        let mut views = DiscoveryClient::new(channel)
            .stream(ReceiverStream::new(rx))
            .await?
            .into_inner();
        loop {
            let message = tokio::select! {
                () = stop.cancelled() => return Ok(()),
                m = views.message() => m?,
            };
            let Some(proto) = message else {
                return Ok(());
            };
            backoff.reset();
            let version = proto.version;
            let nack_reason = match from_proto(proto, &self.workload.name, &self.workload.namespace)
            {
                Ok(view) => {
                    tracing::info!(version, "configuration applied");
                    self.view.send_replace(Arc::new(view));
                    self.status.send_modify(|s| s.has_view = true);
                    String::new()
                }
                Err(err) => {
                    tracing::warn!(version, %err, "configuration refused (NACK); keeping the last good view");
                    err.to_string()
                }
            };
            let ack = DiscoveryRequest {
                kind: Some(Kind::Ack(Ack {
                    version,
                    nack_reason,
                })),
            };
            if tx.send(ack).await.is_err() {
                return Ok(());
            }
        }
    }
}
