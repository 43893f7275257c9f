//! A stand-in control plane speaking `meshward.v1` over TLS: it signs every CSR for one
//! identity and pushes whatever view the test sets, recording the proxy's ACKs and NACKs. Views
//! carry AuthorizationPolicies compiled from YAML by `meshward-config`, as the real control
//! plane compiles them.

#![allow(dead_code)] // Each test crate uses a different part of the support code.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meshward_api::v1::certificates_server::{Certificates, CertificatesServer};
use meshward_api::v1::discovery_request::Kind;
use meshward_api::v1::discovery_server::{Discovery, DiscoveryServer};
use meshward_api::v1::{
    Ack, DiscoveryRequest, InboundPort, MtlsMode, ProxyView, SignRequest, SignResponse,
    WorkloadView,
};
use meshward_proxy::config::{IdentitySource, WorkloadName};
use rcgen::{ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, SanType};
use rustls::pki_types::{CertificateDer, CertificateSigningRequestDer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tonic::codegen::tokio_stream::StreamExt;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::forge::{Ca, leaf_params};

/// The workload every view is for.
pub(crate) const WORKLOAD: &str = "httpbin.test";
/// The identity every CSR is signed for.
pub(crate) const IDENTITY: &str = "spiffe://cluster.local/ns/test/sa/httpbin";

/// A running fake control plane; stops when dropped.
pub(crate) struct FakeCp {
    pub(crate) addr: SocketAddr,
    pub(crate) root: PathBuf,
    views: watch::Sender<Option<ProxyView>>,
    acks: Arc<Mutex<Vec<Ack>>>,
    pub(crate) signs: Arc<Mutex<usize>>,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for FakeCp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[derive(Clone)]
struct Service {
    ca: Arc<Ca>,
    views: watch::Receiver<Option<ProxyView>>,
    acks: Arc<Mutex<Vec<Ack>>>,
    signs: Arc<Mutex<usize>>,
    stop: CancellationToken,
}

/// Signs a CSR for `id`, valid one hour: the leaf, then the CA's chain, PEM.
fn sign(ca: &Ca, csr_der: &[u8], id: &str) -> Result<String, Status> {
    let der = CertificateSigningRequestDer::from(csr_der.to_vec());
    let mut csr = rcgen::CertificateSigningRequestParams::from_der(&der)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    let profile = leaf_params(id);
    csr.params.subject_alt_names = vec![SanType::URI(id.try_into().unwrap())];
    csr.params.is_ca = IsCa::ExplicitNoCa;
    csr.params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    csr.params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    csr.params.not_before = profile.not_before;
    csr.params.not_after = profile.not_after;
    Ok(ca.sign_csr(csr))
}

#[tonic::async_trait]
impl Certificates for Service {
    async fn sign(&self, req: Request<SignRequest>) -> Result<Response<SignResponse>, Status> {
        *self.signs.lock().unwrap() += 1;
        let req = req.into_inner();
        Ok(Response::new(SignResponse {
            cert_chain_pem: sign(&self.ca, &req.csr_der, IDENTITY)?,
            trust_bundle_pem: self.ca.root_pem.clone(),
            identity: IDENTITY.into(),
        }))
    }
}

#[tonic::async_trait]
impl Discovery for Service {
    type StreamStream = ReceiverStream<Result<ProxyView, Status>>;

    async fn stream(
        &self,
        req: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let mut inbound = req.into_inner();
        let Some(Ok(DiscoveryRequest {
            kind: Some(Kind::Hello(_)),
        })) = inbound.next().await
        else {
            return Err(Status::invalid_argument("Hello first"));
        };
        let acks = Arc::clone(&self.acks);
        let stop = self.stop.clone();
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    () = stop.cancelled() => return,
                    m = inbound.next() => m,
                };
                match message {
                    Some(Ok(DiscoveryRequest {
                        kind: Some(Kind::Ack(ack)),
                    })) => acks.lock().unwrap().push(ack),
                    Some(Ok(_)) => {}
                    _ => return,
                }
            }
        });
        let mut views = self.views.clone();
        let stop = self.stop.clone();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            loop {
                let view = views.borrow_and_update().clone();
                if let Some(view) = view
                    && tx.send(Ok(view)).await.is_err()
                {
                    return;
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    changed = views.changed() => if changed.is_err() { return },
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

impl FakeCp {
    /// Serves on `addr` with a certificate from `ca`, pushing `view` (if any) to every stream.
    pub(crate) async fn start(addr: &str, ca: Arc<Ca>, view: Option<ProxyView>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cp-root.pem");
        std::fs::write(&root, &ca.root_pem).unwrap();
        let server = ca.leaf(&leaf_params(
            "spiffe://cluster.local/ns/istio-system/sa/meshward-control-plane",
        ));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(ca.root_der.clone()))
            .unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(server.chain.clone(), server.key.clone_key())
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let (tx, rx) = mpsc::channel(16);
        let accept_stop = stop.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = accept_stop.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((tcp, _)) = accepted else { continue };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        let _ = tx.send(Ok::<_, std::io::Error>(tls)).await;
                    }
                });
            }
        });
        let (views, views_rx) = watch::channel(view);
        let service = Service {
            ca,
            views: views_rx,
            acks: Arc::default(),
            signs: Arc::default(),
            stop: stop.clone(),
        };
        let (acks, signs) = (Arc::clone(&service.acks), Arc::clone(&service.signs));
        let serve_stop = stop.clone();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(CertificatesServer::new(service.clone()))
                .add_service(DiscoveryServer::new(service))
                .serve_with_incoming_shutdown(
                    ReceiverStream::new(rx),
                    serve_stop.cancelled_owned(),
                ),
        );
        Self {
            addr,
            root,
            views,
            acks,
            signs,
            stop,
            _dir: dir,
        }
    }

    /// Pushes `view` to every open stream (and to later ones).
    pub(crate) fn push(&self, view: ProxyView) {
        self.views.send_replace(Some(view));
    }

    /// Every ACK or NACK so far.
    pub(crate) fn acks(&self) -> Vec<Ack> {
        self.acks.lock().unwrap().clone()
    }

    /// Waits (at most 10 s) until the proxy answered view `version`; its NACK reason ("" for
    /// an ACK).
    pub(crate) async fn answer(&self, version: u64) -> String {
        for _ in 0..200 {
            if let Some(ack) = self.acks().into_iter().find(|a| a.version == version) {
                return ack.nack_reason;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("version {version} was never answered: {:?}", self.acks());
    }

    /// The identity source of a proxy using this control plane.
    pub(crate) fn identity(&self) -> IdentitySource {
        IdentitySource::ControlPlane {
            address: self.addr.to_string(),
            root: self.root.clone(),
            join_token: "token".into(),
        }
    }
}

/// The workload name of the proxies under test.
pub(crate) fn workload() -> WorkloadName {
    WORKLOAD.parse().unwrap()
}

/// A view of `version` for `httpbin.test`: inbound ports with their modes, the
/// AuthorizationPolicies of `policies` (YAML, compiled as the control plane does) and the
/// MeshConfig path normalization of `normalization` (JSON, e.g. `"BASE"`; empty for the
/// default).
pub(crate) fn view(
    version: u64,
    ports: &[(u16, MtlsMode)],
    policies: &str,
    normalization: &str,
) -> ProxyView {
    ProxyView {
        version,
        workload: Some(WorkloadView {
            name: "httpbin".into(),
            namespace: "test".into(),
            service_account: "httpbin".into(),
            ports: ports
                .iter()
                .map(|(port, mode)| InboundPort {
                    port: u32::from(*port),
                    mode: *mode as i32,
                    name: "http".into(),
                    ..Default::default()
                })
                .collect(),
            authorization_json: compile(policies),
            path_normalization_json: normalization.to_owned(),
            ..Default::default()
        }),
        trust_domain: "cluster.local".into(),
        ..Default::default()
    }
}

/// The AuthorizationPolicies of `yaml` that select `httpbin.test` (labels `app: httpbin`),
/// compiled to the JSON a view carries; empty when there are none.
pub(crate) fn compile(yaml: &str) -> String {
    if yaml.trim().is_empty() {
        return String::new();
    }
    let workload = "apiVersion: meshward.io/v1alpha1
kind: Workload
metadata: {name: httpbin, namespace: test, labels: {app: httpbin}}
spec: {serviceAccount: httpbin}
---
";
    let stream = meshward_config::parse_stream(
        "policies.yaml",
        &format!("{workload}{yaml}"),
        &meshward_config::Limits::default(),
    );
    let documents = stream.into_documents().unwrap();
    let mesh = meshward_config::Mesh::new(documents).unwrap();
    let w = mesh.workload("test", "httpbin").unwrap();
    let compiled = mesh.compiled_authz(w).unwrap();
    serde_json::to_string(&compiled).unwrap()
}
