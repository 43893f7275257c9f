//! `Discovery.Stream`: pushes each proxy its view, and records what it acknowledges.

use std::{collections::VecDeque, pin::Pin, sync::Arc, time::Instant};

use meshward_api::v1::{
    Ack, DiscoveryRequest, ProxyView, discovery_request::Kind, discovery_server::Discovery,
};
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use crate::{
    Shared,
    hub::Published,
    metrics::{TypeLabel, VersionLabel},
    tls,
};

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
        let clients = VersionLabel {
            version: env!("CARGO_PKG_VERSION"),
        };
        shared.metrics.xds_clients.get_or_create(&clients).inc();
        let opened = Instant::now();
        let mut views = shared.hub.subscribe(&workload);
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let metrics = &shared.metrics;
            let mut last: Option<Arc<ProxyView>> = None;
            let mut pending: VecDeque<Pending> = VecDeque::new();
            'push: loop {
                let published = views.borrow_and_update().clone();
                if let Some(Published { view, changed_at }) = published {
                    let types = push_types(last.as_deref(), &view);
                    for &ty in &types {
                        metrics
                            .xds_pushes
                            .get_or_create(&TypeLabel { r#type: ty })
                            .inc();
                    }
                    // Only a change made while the stream was open measures convergence; the
                    // first view of a new stream measures the connection, not the change.
                    let since = (changed_at >= opened).then_some(changed_at);
                    if pending.len() == MAX_PENDING {
                        pending.pop_front();
                    }
                    pending.push_back(Pending {
                        version: view.version,
                        types,
                        since,
                    });
                    registry.update(&workload, |r| {
                        r.version_sent = view.version;
                        r.last_sent_ms = crate::registry::now_ms();
                    });
                    if tx.send(Ok(view.as_ref().clone())).await.is_err() {
                        break;
                    }
                    last = Some(view);
                }
                // Record acks until the view changes or the stream ends.
                loop {
                    tokio::select! {
                        changed = views.changed() => match changed {
                            Ok(()) => continue 'push,
                            Err(_) => break 'push,
                        },
                        message = inbound.next() => match message {
                            Some(Ok(DiscoveryRequest { kind: Some(Kind::Trust(report)) })) => {
                                shared.ca.record_report(&workload, &report);
                            }
                            Some(Ok(DiscoveryRequest { kind: Some(Kind::Ack(ack)) })) => {
                                settle(&shared, &mut pending, &ack);
                                record_ack(&registry, &workload, ack);
                            }
                            _ => break 'push,
                        },
                    }
                }
            }
            registry.update(&workload, |r| r.connected = false);
            shared.metrics.connected_proxies.dec();
            shared.metrics.xds_clients.get_or_create(&clients).dec();
            info!(%workload, "proxy disconnected");
        });
        Ok(Response::new(
            Box::pin(ReceiverStream::new(rx)) as ViewStream
        ))
    }
}

/// At most this many pushes await an answer on one stream; older ones are forgotten.
const MAX_PENDING: usize = 64;

/// A view sent and not answered yet.
#[derive(Debug)]
struct Pending {
    version: u64,
    /// What it changed, as xDS types.
    types: Vec<&'static str>,
    /// The configuration change it carries, when that happened while the stream was open.
    since: Option<Instant>,
}

/// What a view changes for the proxy, named as the xDS types Envoy would receive: `lds` for
/// the inbound side (ports, modes, policies), `cds` for the services and their TLS, `eds` for
/// their endpoints, `sds` for the trust bundle. Everything for the first view of a stream.
fn push_types(last: Option<&ProxyView>, view: &ProxyView) -> Vec<&'static str> {
    let Some(last) = last else {
        return vec!["lds", "cds", "eds", "sds"];
    };
    let without_endpoints = |v: &ProxyView| {
        let mut services = v.services.clone();
        for port in services.iter_mut().flat_map(|s| s.ports.iter_mut()) {
            port.endpoints.clear();
        }
        services
    };
    fn endpoints(v: &ProxyView) -> Vec<&Vec<meshward_api::v1::Endpoint>> {
        v.services
            .iter()
            .flat_map(|s| s.ports.iter().map(|p| &p.endpoints))
            .collect()
    }
    let mut types = Vec::new();
    if last.workload != view.workload {
        types.push("lds");
    }
    if without_endpoints(last) != without_endpoints(view) {
        types.push("cds");
    }
    if endpoints(last) != endpoints(view) {
        types.push("eds");
    }
    if last.trust_bundle_pem != view.trust_bundle_pem || last.trust_domain != view.trust_domain {
        types.push("sds");
    }
    if types.is_empty() {
        // A field none of the above covers: the proxy's own settings.
        types.push("lds");
    }
    types
}

/// Settles the push that `ack` answers: an ACK observes its convergence time, a NACK counts as
/// a rejection of every type it changed.
fn settle(shared: &Shared, pending: &mut VecDeque<Pending>, ack: &Ack) {
    let Some(at) = pending.iter().position(|p| p.version == ack.version) else {
        return;
    };
    let answered: Vec<Pending> = pending.drain(..=at).collect();
    let Some(push) = answered.last() else {
        return;
    };
    if ack.nack_reason.is_empty() {
        if let Some(since) = answered.iter().filter_map(|p| p.since).min() {
            shared
                .metrics
                .convergence_time
                .observe(since.elapsed().as_secs_f64());
        }
    } else {
        for &ty in &push.types {
            shared
                .metrics
                .xds_rejects
                .get_or_create(&TypeLabel { r#type: ty })
                .inc();
        }
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
            r.last_acked_ms = crate::registry::now_ms();
        }
        r.nack_reason = ack.nack_reason;
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshward_api::v1::{Endpoint, ServicePort, ServiceView, WorkloadView};

    fn view(mode_source: &str, endpoint: &str, bundle: &str) -> ProxyView {
        ProxyView {
            workload: Some(WorkloadView {
                address: mode_source.into(),
                ..WorkloadView::default()
            }),
            services: vec![ServiceView {
                host: "svc".into(),
                ports: vec![ServicePort {
                    port: 80,
                    endpoints: vec![Endpoint {
                        address: endpoint.into(),
                        ..Endpoint::default()
                    }],
                    ..ServicePort::default()
                }],
                ..ServiceView::default()
            }],
            trust_bundle_pem: bundle.into(),
            ..ProxyView::default()
        }
    }

    #[test]
    fn push_types_name_what_changed() {
        let base = view("a", "1", "root");
        assert_eq!(push_types(None, &base), ["lds", "cds", "eds", "sds"]);
        assert_eq!(push_types(Some(&base), &view("b", "1", "root")), ["lds"]);
        assert_eq!(push_types(Some(&base), &view("a", "2", "root")), ["eds"]);
        assert_eq!(push_types(Some(&base), &view("a", "1", "new")), ["sds"]);
        let mut renamed = base.clone();
        renamed.services[0].host = "other".into();
        assert_eq!(push_types(Some(&base), &renamed), ["cds"]);
        let mut versioned = base.clone();
        versioned.version = 9;
        assert_eq!(push_types(Some(&base), &versioned), ["lds"]);
    }
}
