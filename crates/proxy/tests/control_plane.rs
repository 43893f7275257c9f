//! The control-plane client against an in-process control plane speaking `meshward.v1`: the
//! first certificate with the join token, renewal over mTLS without it, ACK of a good view, NACK
//! of a bad one while the last good view stays in force.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

#[path = "support/pki.rs"]
mod pki;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use meshward_api::v1::certificates_server::{Certificates, CertificatesServer};
use meshward_api::v1::discovery_request::Kind;
use meshward_api::v1::discovery_server::{Discovery, DiscoveryServer};
use meshward_api::v1::{
    Ack, DiscoveryRequest, InboundPort, MtlsMode, ProxyView, SignRequest, SignResponse,
    WorkloadMeta, WorkloadView,
};
use meshward_proxy::Proxy;
use meshward_proxy::config::{IdentitySource, WorkloadName};
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::StreamExt;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use pki::{Pki, proxy_config};

const TOKEN: &str = "join-me";
const PROXY_ID: &str = "spiffe://cluster.local/ns/test/sa/sleep";

/// What the fake control plane saw: per Sign call, (had a token, had a client certificate).
#[derive(Clone)]
struct FakeCp {
    pki: Arc<Pki>,
    signs: Arc<Mutex<Vec<(bool, bool)>>>,
    views: Arc<Mutex<Option<mpsc::Receiver<ProxyView>>>>,
    acks: mpsc::UnboundedSender<Ack>,
    hellos: Arc<Mutex<Vec<String>>>,
}

#[tonic::async_trait]
impl Certificates for FakeCp {
    async fn sign(&self, req: Request<SignRequest>) -> Result<Response<SignResponse>, Status> {
        let has_cert = req.peer_certs().is_some_and(|c| !c.is_empty());
        let req = req.into_inner();
        let has_token = req.join_token == TOKEN;
        self.signs.lock().unwrap().push((has_token, has_cert));
        if !has_token && !has_cert {
            return Err(Status::unauthenticated("no credential"));
        }
        Ok(Response::new(SignResponse {
            cert_chain_pem: self
                .pki
                .sign_csr(&req.csr_der, PROXY_ID, Duration::from_secs(4)),
            trust_bundle_pem: self.pki.root_pem.clone(),
            identity: PROXY_ID.into(),
        }))
    }
}

#[tonic::async_trait]
impl Discovery for FakeCp {
    type StreamStream = ReceiverStream<Result<ProxyView, Status>>;

    async fn stream(
        &self,
        req: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let mut inbound = req.into_inner();
        let Some(Ok(DiscoveryRequest {
            kind: Some(Kind::Hello(hello)),
        })) = inbound.next().await
        else {
            return Err(Status::invalid_argument("Hello first"));
        };
        self.hellos.lock().unwrap().push(hello.workload);
        let acks = self.acks.clone();
        tokio::spawn(async move {
            // Acks, and the trust reports the proxy sends besides.
            while let Some(Ok(request)) = inbound.next().await {
                if let Some(Kind::Ack(ack)) = request.kind {
                    let _ = acks.send(ack);
                }
            }
        });
        let mut views = self
            .views
            .lock()
            .unwrap()
            .take()
            .ok_or_else(|| Status::unavailable("once"))?;
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            while let Some(view) = views.recv().await {
                if tx.send(Ok(view)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

fn view(version: u64, workload: &str) -> ProxyView {
    ProxyView {
        version,
        workload: Some(WorkloadView {
            name: workload.into(),
            namespace: "test".into(),
            service_account: "sleep".into(),
            address: "127.0.76.2".into(),
            ports: vec![InboundPort {
                port: 8080,
                mode: MtlsMode::Permissive as i32,
                mode_source: String::new(),
                name: "http".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        trust_domain: "cluster.local".into(),
        ..Default::default()
    }
}

/// Serves the fake control plane on `addr` over TLS with the control plane's SVID.
async fn serve(cp: FakeCp, addr: &str) {
    let files = cp.pki.issue("istio-system", "meshward-control-plane", "cp");
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&files.key).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(cp.pki.root_path()).unwrap())
        .unwrap();
    // The join-token call has no client certificate; renewals do.
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(addr).await.unwrap();
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let _ = tx.send(Ok::<_, std::io::Error>(tls)).await;
                }
            });
        }
    });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(CertificatesServer::new(cp.clone()))
            .add_service(DiscoveryServer::new(cp))
            .serve_with_incoming(ReceiverStream::new(rx)),
    );
}

async fn get(addr: &str, path: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.unwrap();
    out
}

async fn next_ack(acks: &mut mpsc::UnboundedReceiver<Ack>) -> Ack {
    tokio::time::timeout(Duration::from_secs(10), acks.recv())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn certificate_renewal_ack_and_nack() {
    let pki = Arc::new(Pki::new());
    let (views_tx, views_rx) = mpsc::channel(4);
    let (acks_tx, mut acks) = mpsc::unbounded_channel();
    let cp = FakeCp {
        pki: Arc::clone(&pki),
        signs: Arc::default(),
        views: Arc::new(Mutex::new(Some(views_rx))),
        acks: acks_tx,
        hellos: Arc::default(),
    };
    serve(cp.clone(), "127.0.76.1:15012").await;

    let svid = pki.issue("test", "unused", "unused");
    let mut config = proxy_config("127.0.76.2", "127.0.76.12", &svid, &[], &[]);
    config.workload = Some("sleep.test".parse::<WorkloadName>().unwrap());
    config.identity = IdentitySource::ControlPlane {
        address: "127.0.76.1:15012".into(),
        root: pki.root_path(),
        join_token: TOKEN.into(),
    };
    config.admin_port = 15000;
    config.ready_port = 15021;
    let _proxy = Proxy::start(config, None).await.unwrap();

    views_tx.send(view(1, "sleep")).await.unwrap();
    let ack = next_ack(&mut acks).await;
    assert_eq!((ack.version, ack.nack_reason.as_str()), (1, ""));
    assert_eq!(*cp.hellos.lock().unwrap(), ["sleep.test"]);
    assert_eq!(
        cp.signs.lock().unwrap()[0],
        (true, false),
        "first certificate: token, no client cert"
    );

    views_tx.send(view(2, "other")).await.unwrap();
    let nack = next_ack(&mut acks).await;
    assert_eq!(nack.version, 2);
    assert!(
        nack.nack_reason.contains("other.test"),
        "{}",
        nack.nack_reason
    );
    let dump = get("127.0.76.2:15000", "/config_dump").await;
    assert!(
        dump.contains("\"version\": 1"),
        "the last good view stays: {dump}"
    );

    // A view within the item bounds but over gRPC's default 4 MiB message is taken.
    let mut big = view(3, "sleep");
    let long = |c: &str| c.repeat(200);
    big.workloads = (0..9_000u32)
        .map(|i| WorkloadMeta {
            name: format!("w{i}"),
            namespace: "test".into(),
            identity: format!("spiffe://cluster.local/ns/test/sa/w{i}"),
            address: format!("10.1.{}.{}", i / 250, i % 250 + 1),
            app: long("a"),
            version: long("v"),
            canonical_service: long("s"),
            canonical_revision: long("r"),
        })
        .collect();
    assert!(prost::Message::encoded_len(&big) > 4 << 20);
    views_tx.send(big).await.unwrap();
    let ack = next_ack(&mut acks).await;
    assert_eq!((ack.version, ack.nack_reason.as_str()), (3, ""));
    assert!(
        get("127.0.76.2:15021", "/healthz/ready")
            .await
            .starts_with("HTTP/1.1 200")
    );

    // 4-second certificates: renewed after about 2 s, over mTLS and without the token.
    for _ in 0..60 {
        if cp.signs.lock().unwrap().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(cp.signs.lock().unwrap().get(1), Some(&(false, true)));
}
