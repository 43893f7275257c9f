//! What `mtls verify` and `mtls debug` read from a mesh started with `meshward up`: what runs
//! (`mesh.json`), the administrator's context, the configuration in force and every proxy's
//! status — read once, at the start.

use anyhow::Context as _;
use meshward_api::v1::{ProxyStatus, ProxyStatusRequest};
use meshward_config::{Mesh, resources::peer_authentication::MtlsMode};
use meshward_control_plane::Context;
use meshward_identity::{AllowedPeers, SpiffeId, TrustDomain};
use meshward_local::{Layout, RunningMesh, StateDir, plan::PlannedWorkload};

use crate::{client::ServerArgs, cmd::cert::now_unix};

/// A running mesh as the control plane and `mesh.json` describe it.
pub(super) struct Live {
    /// What `meshward up` runs.
    pub(super) running: RunningMesh,
    /// The administrator's context.
    pub(super) context: Context,
    /// The mesh's trust domain.
    pub(super) trust_domain: TrustDomain,
    /// The configuration in force.
    pub(super) mesh: Mesh,
    /// Every proxy connected (or once connected) to the control plane.
    pub(super) proxies: Vec<ProxyStatus>,
    /// When this was read, Unix seconds.
    pub(super) now: i64,
}

impl Live {
    /// Reads everything; fails when no mesh runs here or the control plane cannot be reached.
    pub(super) async fn gather(server: &ServerArgs, verb: &str) -> anyhow::Result<Self> {
        let running = StateDir::default_location().running().with_context(|| {
            format!("no mesh is running here: `{verb}` probes a mesh started with `meshward up`")
        })?;

        let context = server.context()?;
        let trust_domain = TrustDomain::new(&context.trust_domain)?;
        let mut admin = server.admin().await?;
        let mesh = crate::client::fetch_mesh(&mut admin).await?;
        let proxies = admin
            .proxy_status(ProxyStatusRequest {})
            .await?
            .into_inner()
            .proxies;
        Ok(Self {
            running,
            context,
            trust_domain,
            mesh,
            proxies,
            now: now_unix(),
        })
    }

    /// The status of `w`'s proxy, if it ever connected.
    pub(super) fn proxy(&self, w: &PlannedWorkload) -> Option<&ProxyStatus> {
        self.proxies
            .iter()
            .find(|p| p.workload == w.name && p.namespace == w.namespace)
    }

    /// The SPIFFE ID `w` runs as.
    pub(super) fn identity(&self, w: &PlannedWorkload) -> anyhow::Result<SpiffeId> {
        Ok(SpiffeId::istio(
            &self.trust_domain,
            &w.namespace,
            &w.service_account,
        )?)
    }

    /// The effective PeerAuthentication mode of `w`'s `port`; none without a sidecar.
    pub(super) fn policy(&self, w: &PlannedWorkload, port: u16) -> Option<MtlsMode> {
        let instance = self.mesh.workload(&w.namespace, &w.name)?;
        w.sidecar
            .then(|| self.mesh.peer_authentication(instance, port).mode)
    }

    /// A client TLS config presenting the administrator's certificate, as a peer sidecar
    /// would present its own, and accepting only a server that proves to be `server` under
    /// the current trust bundle.
    pub(super) fn mtls_config(&self, server: SpiffeId) -> anyhow::Result<rustls::ClientConfig> {
        crate::client::mtls_client_config(&self.context, AllowedPeers::default().with_id(server))
    }
}

/// For a mesh started with `meshward up --netns`, moves this process into its node's network
/// namespace, where workload addresses are reachable, as a probe from a host of the cluster.
/// Call before any thread starts.
pub(super) fn enter_mesh_network() -> anyhow::Result<()> {
    let Some(running) = StateDir::default_location().running() else {
        return Ok(());
    };
    if running.layout == Layout::Netns {
        let node = meshward_local::netns::node_name(running.pid);
        meshward_local::netns::enter(&node).with_context(|| {
            format!("entering the mesh's network namespace {node} (needs root)")
        })?;
    }
    Ok(())
}
