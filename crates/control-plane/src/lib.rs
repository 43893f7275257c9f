//! `meshward control-plane`: the certificate authority's front door and the source of every
//! proxy's configuration.
//!
//! One process serves, on port 15012 over TLS, three gRPC services (`proto/meshward/v1`):
//! `Certificates` signs CSRs for the identity a join token or a current SVID proves,
//! `Discovery` pushes each proxy the view compiled for its workload and records its ACKs, and
//! `Admin` lets the administrator apply and read configuration. Port 15014 serves health and
//! Prometheus metrics. Everything it knows lives in its data directory: a restart loses nothing.

mod compile;
pub mod context;
mod credentials;
mod files;
mod grpc;
mod http;
mod hub;
mod metrics;
pub mod registry;
mod tls;
pub mod tokens;
mod trust;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use meshward_api::v1::{
    admin_server::AdminServer, certificates_server::CertificatesServer,
    discovery_server::DiscoveryServer, trust_server::TrustServer,
};
use meshward_ca::{CONTROL_PLANE_NAMESPACE, CONTROL_PLANE_SERVICE_ACCOUNT, SigningPolicy};
use meshward_identity::{SpiffeId, TrustDomain};
use meshward_store::FileStore;
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;
use tracing::{info, warn};

pub use context::Context;

use crate::{hub::Hub, metrics::Metrics, registry::Registry, tokens::JoinTokens};

/// Namespace of the control plane's own identities.
pub const SYSTEM_NAMESPACE: &str = CONTROL_PLANE_NAMESPACE;
/// Service account of the control plane's server certificate.
pub const CONTROL_PLANE_ACCOUNT: &str = CONTROL_PLANE_SERVICE_ACCOUNT;
/// Service account of the administrator's client certificate.
pub const ADMIN_ACCOUNT: &str = "meshward-admin";

/// How the control plane is started.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the CA, the applied resources and the tokens live.
    pub data_dir: PathBuf,
    /// gRPC over TLS (15012).
    pub grpc_addr: SocketAddr,
    /// Health and metrics (15014).
    pub http_addr: SocketAddr,
    /// The mesh's trust domain.
    pub trust_domain: TrustDomain,
    /// Lifetime of workload certificates when the proxy asks for none.
    pub workload_cert_ttl: Duration,
    /// Where to write the context file for the CLI (`None`: do not write one).
    pub context_path: Option<PathBuf>,
}

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory is unusable.
    #[error("data directory {path}: {reason}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The certificate authority could not be loaded or created.
    #[error("certificate authority: {0}")]
    Ca(String),
    /// The store could not be opened (or is locked by another control plane).
    #[error("store: {0}")]
    Store(String),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        reason: String,
    },
    /// The control plane's TLS identity could not be built.
    #[error("TLS: {0}")]
    Tls(String),
}

/// State shared by every service.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) trust_domain: TrustDomain,
    /// The CA in force, revocations, and the root rotation.
    pub(crate) ca: trust::Ca,
    pub(crate) tokens: Arc<JoinTokens>,
    pub(crate) store: FileStore,
    pub(crate) registry: Registry,
    pub(crate) hub: Hub,
    pub(crate) metrics: Metrics,
    pub(crate) admin_identity: SpiffeId,
    /// The last configuration compiled, for checks that need the whole mesh.
    pub(crate) mesh: std::sync::RwLock<Arc<meshward_config::Mesh>>,
}

impl Shared {
    /// Checks that `identity` may receive the view of `workload` (`name.namespace`): the
    /// workload must be registered and run as exactly that namespace and service account.
    pub(crate) fn authorize_workload(
        &self,
        identity: &SpiffeId,
        workload: &str,
    ) -> Result<(), tonic::Status> {
        let (name, namespace) = workload.split_once('.').ok_or_else(|| {
            tonic::Status::invalid_argument(format!("workload {workload:?} is not name.namespace"))
        })?;
        let mesh = self.mesh.read().unwrap_or_else(|p| p.into_inner()).clone();
        let registered = mesh.workload(namespace, name).ok_or_else(|| {
            tonic::Status::permission_denied(format!("workload {workload} is not registered"))
        })?;
        let expected = SpiffeId::istio(
            &self.ca.domains().mesh,
            &registered.namespace,
            &registered.service_account,
        )
        .map_err(|e| tonic::Status::internal(e.to_string()))?;
        // Under any of the mesh's names: a proxy still holds its old name until it renews.
        let same = identity.path() == expected.path()
            && self.ca.domains().is_local(identity.trust_domain());
        if !same {
            return Err(tonic::Status::permission_denied(format!(
                "{identity} may not act as workload {workload}, which runs as {expected}"
            )));
        }
        Ok(())
    }
}

/// Largest Admin request: one apply (16 MiB of manifests, as many as `meshward apply` reads)
/// and its framing. gRPC's default of 4 MiB would refuse applies the documented limits allow.
const MAX_ADMIN_MESSAGE: usize = 17 * 1024 * 1024;
/// Largest Sign request: a CSR (at most `MAX_CSR_BYTES`), a join token and a TTL.
const MAX_SIGN_MESSAGE: usize = 256 * 1024;

/// Identities no join token may be issued or signed for.
pub(crate) fn reserved_identity(id: &SpiffeId) -> bool {
    id.namespace() == Some(SYSTEM_NAMESPACE)
        && matches!(
            id.service_account(),
            Some(CONTROL_PLANE_ACCOUNT | ADMIN_ACCOUNT)
        )
}

/// A started control plane.
#[derive(Debug)]
pub struct ControlPlane {
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: tokio::task::JoinSet<()>,
}

impl ControlPlane {
    /// Opens the data directory (creating the CA and the admin credential on first start),
    /// binds both listeners and starts serving.
    pub async fn start(settings: Settings) -> Result<Self, StartError> {
        let data_dir = settings.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(|e| StartError::DataDir {
            path: data_dir.clone(),
            reason: e.to_string(),
        })?;
        let trust_domain = settings.trust_domain.clone();
        let ca = trust::Ca::open(
            &data_dir,
            &trust_domain,
            SigningPolicy {
                default_ttl: settings.workload_cert_ttl,
                ..SigningPolicy::default()
            },
        )?;
        let tokens = JoinTokens::open(&data_dir).map_err(|e| StartError::DataDir {
            path: data_dir.clone(),
            reason: e.to_string(),
        })?;
        let store = FileStore::open(data_dir.join("store"))
            .map_err(|e| StartError::Store(e.to_string()))?;

        let server_id = system_identity(&trust_domain, CONTROL_PLANE_ACCOUNT)?;
        let admin_identity = system_identity(&trust_domain, ADMIN_ACCOUNT)?;
        let admin_files = credentials::ensure_admin(&ca.current(), &data_dir, &admin_identity)?;
        let (server_tls, tls_follower) = trust::serving_configs(&ca, &server_id)?;

        let grpc = bind(settings.grpc_addr).await?;
        let http = bind(settings.http_addr).await?;
        let grpc_addr = local_addr(&grpc)?;
        let http_addr = local_addr(&http)?;

        let metrics = Metrics::default();
        if let Some(not_after) = ca.root().and_then(|root| not_after(&root)) {
            metrics.root_cert_expiry_timestamp.set(not_after);
        }
        let mut prometheus = prometheus_client::registry::Registry::default();
        metrics.register(&mut prometheus);
        let watchdog = Arc::new(trust::watchdog::Watchdog::default());
        watchdog.register(&mut prometheus);
        let shared = Arc::new(Shared {
            trust_domain: trust_domain.clone(),
            ca,
            tokens: Arc::new(tokens),
            store,
            registry: Registry::default(),
            hub: Hub::default(),
            metrics,
            admin_identity,
            mesh: std::sync::RwLock::default(),
        });
        if let Some(path) = &settings.context_path {
            let context = Context {
                server: grpc_addr.to_string(),
                monitoring: http_addr.to_string(),
                root_cert: admin_files.root_cert,
                admin_cert: admin_files.cert,
                admin_key: admin_files.key,
                trust_domain: trust_domain.to_string(),
                data_dir: data_dir.clone(),
            };
            context.store(path).map_err(|e| StartError::DataDir {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        }

        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(http::serve(http, Arc::new(prometheus), shared.clone()));
        tasks.spawn(compile::run(shared.clone()));
        tasks.spawn(trust::run(shared.clone(), tls_follower));
        tasks.spawn(trust::rotation::drive(shared.clone()));
        tasks.spawn(trust::cafiles::run(shared.clone()));
        tasks.spawn(trust::watchdog::run(shared.clone(), watchdog));
        let incoming = grpc::incoming(grpc, server_tls);
        // Only the administrator may send an Admin request, checked before its body is read:
        // an apply may be large, and nobody else gets to make the control plane buffer one.
        let admin = shared.admin_identity.clone();
        let only_admin = move |request: tonic::Request<()>| {
            let caller = tls::require_identity(&request)?;
            if caller != admin {
                return Err(tonic::Status::permission_denied(format!(
                    "{caller} is not the administrator"
                )));
            }
            Ok(request)
        };
        let router = tonic::transport::Server::builder()
            .add_service(
                CertificatesServer::new(grpc::certificates::CertificateService(shared.clone()))
                    .max_decoding_message_size(MAX_SIGN_MESSAGE),
            )
            .add_service(DiscoveryServer::new(grpc::discovery::DiscoveryService(
                shared.clone(),
            )))
            .add_service(InterceptedService::new(
                AdminServer::new(grpc::admin::AdminService(shared.clone()))
                    .max_decoding_message_size(MAX_ADMIN_MESSAGE),
                only_admin,
            ));
        let router =
            router.add_service(TrustServer::new(grpc::trust::TrustService(shared.clone())));
        tasks.spawn(async move {
            if let Err(e) = router.serve_with_incoming(incoming).await {
                warn!(error = %e, "gRPC server stopped");
            }
        });
        info!(%grpc_addr, %http_addr, %trust_domain, "control plane ready");
        Ok(Self {
            grpc_addr,
            http_addr,
            shared,
            tasks,
        })
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The bound monitoring address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Applies manifests (`(file name, text)` pairs) all or nothing, as `meshward apply` does;
    /// for a control plane embedded in `meshward up`. Returns kubectl-style result lines, or
    /// every error with its file:line:column.
    pub fn apply(&self, files: Vec<(String, String)>) -> Result<Vec<String>, String> {
        let files: Vec<_> = files
            .into_iter()
            .map(|(name, content)| meshward_api::v1::SourceFile { name, content })
            .collect();
        grpc::admin::apply_files(&self.shared, &files)
            .map(|r| r.results)
            .map_err(|status| status.message().to_owned())
    }

    /// The join-token registry, for a supervisor that starts proxies beside the control
    /// plane and needs a fresh token for each start.
    pub fn token_source(&self) -> Arc<JoinTokens> {
        self.shared.tokens.clone()
    }

    /// The sync state of every proxy seen since start.
    pub fn proxy_status(&self) -> Vec<registry::ProxyRecord> {
        self.shared.registry.snapshot()
    }

    /// The roots of the mesh (PEM), for proxies started beside the control plane.
    pub fn roots_pem(&self) -> String {
        self.shared.ca.roots_pem()
    }

    /// Runs until a task stops (which only happens on a fatal error).
    pub async fn wait(&mut self) {
        self.tasks.join_next().await;
    }
}

fn system_identity(td: &TrustDomain, account: &str) -> Result<SpiffeId, StartError> {
    SpiffeId::istio(td, SYSTEM_NAMESPACE, account).map_err(|e| StartError::Tls(e.to_string()))
}

/// A certificate's expiry, Unix seconds.
pub(crate) fn not_after(der: &[u8]) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|e| StartError::Bind {
        addr,
        reason: e.to_string(),
    })
}

fn local_addr(listener: &TcpListener) -> Result<SocketAddr, StartError> {
    listener
        .local_addr()
        .map_err(|e| StartError::Tls(e.to_string()))
}

/// The roots file in a data directory, for proxies started beside the control plane.
pub fn root_cert_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin").join("root-cert.pem")
}
