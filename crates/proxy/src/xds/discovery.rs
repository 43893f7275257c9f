//! `Discovery.Stream`: say Hello, then apply each `ProxyView` that validates (ACK) and keep
//! the last good one for any that does not (NACK with the reason). A pushed trust bundle that
//! differs from the current one replaces it (root rotation) once it verifies our own chain.
//! Reconnects with backoff; the view in force never goes away because the control plane did.

use std::sync::Arc;

use meshward_api::v1::discovery_client::DiscoveryClient;
use meshward_api::v1::discovery_request::Kind;
use meshward_api::v1::{Ack, DiscoveryRequest, Hello};
use meshward_identity::{TrustBundle, TrustBundleSet};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;

use super::{Backoff, ControlPlane, XdsError};
use crate::admin::Status;
use crate::config::WorkloadName;
use crate::creds::{Credentials, CredsReceiver, CredsStore};
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
    /// Where a pushed trust bundle is installed.
    pub store: CredsStore,
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

    /// Installs the view's trust bundle (root rotation) when it differs from the current one:
    /// the current certificate is re-validated against it first, so a bundle that would not
    /// trust this proxy's own chain is refused with the view.
    fn apply_bundle(&self, view: &View, pem: &str) -> Result<(), String> {
        if pem.is_empty() {
            return Ok(());
        }
        let Some(current) = self.creds.borrow().clone() else {
            return Ok(());
        };
        let (bundle, _) = TrustBundle::from_pem(view.trust_domain.clone(), pem.as_bytes())
            .map_err(|e| format!("trust bundle: {e}"))?;
        let unchanged = current
            .bundles()
            .get(&view.trust_domain)
            .is_some_and(|b| b.roots() == bundle.roots());
        if unchanged {
            return Ok(());
        }
        let creds = Credentials::new(
            current.chain().to_vec(),
            current.key().clone_key(),
            Arc::new(TrustBundleSet::from(bundle)),
        )
        .map_err(|e| format!("trust bundle does not verify this proxy's certificate: {e}"))?;
        tracing::info!("trust bundle updated from the control plane");
        self.store.publish(creds);
        Ok(())
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
            let Some(mut proto) = message else {
                return Ok(());
            };
            backoff.reset();
            let version = proto.version;
            let bundle_pem = std::mem::take(&mut proto.trust_bundle_pem);
            let applied = from_proto(proto, &self.workload.name, &self.workload.namespace)
                .map_err(|e| e.to_string())
                .and_then(|view| {
                    self.apply_bundle(&view, &bundle_pem)?;
                    Ok(view)
                });
            let nack_reason = match applied {
                Ok(view) => {
                    tracing::info!(version, "configuration applied");
                    self.view.send_replace(Arc::new(view));
                    self.status.send_modify(|s| s.has_view = true);
                    String::new()
                }
                Err(err) => {
                    tracing::warn!(version, %err, "configuration refused (NACK); keeping the last good view");
                    err
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
