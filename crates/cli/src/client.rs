//! How CLI verbs reach a running control plane: `--server` / `MESHWARD_SERVER` for the address,
//! the context file for the administrator's credential, and one mTLS channel.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use anyhow::{Context as _, bail};
use clap::Args;
use meshward_api::v1::{ListRequest, admin_client::AdminClient};
use meshward_config::{Document, Kind, Limits, Mesh, parse_stream};
use meshward_control_plane::{CONTROL_PLANE_ACCOUNT, Context, SYSTEM_NAMESPACE};
use meshward_identity::{AllowedPeers, SpiffeId, TrustBundle, TrustBundleSet, TrustDomain};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tonic::transport::Channel;

/// Flags shared by every verb that talks to a control plane.
#[derive(Debug, Clone, Args)]
pub(crate) struct ServerArgs {
    /// Control plane address (host:port); default: the one in the context file.
    #[arg(long, env = "MESHWARD_SERVER", global = true)]
    server: Option<SocketAddr>,
    /// Context file written by `meshward control-plane` / `meshward up`.
    #[arg(long, env = "MESHWARD_CONTEXT", global = true)]
    context: Option<PathBuf>,
}

impl ServerArgs {
    /// The context in force: the file, with `--server` overriding its address.
    pub(crate) fn context(&self) -> anyhow::Result<Context> {
        let path = self.context.clone().unwrap_or_else(Context::default_path);
        let mut context = Context::load(&path)?;
        if let Some(server) = self.server {
            context.server = server.to_string();
        }
        Ok(context)
    }

    /// An admin client to the control plane.
    pub(crate) async fn admin(&self) -> anyhow::Result<AdminClient<Channel>> {
        let context = self.context()?;
        Ok(AdminClient::new(channel(&context).await?))
    }
}

/// Opens the administrator's mTLS channel described by `context`.
pub(crate) async fn channel(context: &Context) -> anyhow::Result<Channel> {
    let addr: SocketAddr = context
        .server
        .parse()
        .with_context(|| format!("server address {:?} is not host:port", context.server))?;
    let td = TrustDomain::new(&context.trust_domain)
        .with_context(|| format!("trust domain {:?}", context.trust_domain))?;
    let server = SpiffeId::istio(&td, SYSTEM_NAMESPACE, CONTROL_PLANE_ACCOUNT)?;
    let config = mtls_client_config(context, AllowedPeers::default().with_id(server))?;
    Ok(meshward_api::connect(addr, config).await?)
}

/// A client TLS config presenting the administrator's certificate and accepting servers
/// `allowed` under the mesh's roots.
pub(crate) fn mtls_client_config(
    context: &Context,
    allowed: AllowedPeers,
) -> anyhow::Result<rustls::ClientConfig> {
    let td = TrustDomain::new(&context.trust_domain)
        .with_context(|| format!("trust domain {:?}", context.trust_domain))?;
    let roots = std::fs::read(&context.root_cert)
        .with_context(|| format!("reading {}", context.root_cert.display()))?;
    let (bundle, skipped) = TrustBundle::from_pem(td, &roots)
        .with_context(|| format!("loading roots from {}", context.root_cert.display()))?;
    if let Some(bad) = skipped.first() {
        bail!("{}: {bad}", context.root_cert.display());
    }
    let mut bundles = TrustBundleSet::new();
    bundles.insert(bundle);
    let chain = CertificateDer::pem_file_iter(&context.admin_cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading {}", context.admin_cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&context.admin_key)
        .with_context(|| format!("reading {}", context.admin_key.display()))?;
    Ok(meshward_identity::client_config(
        Arc::new(bundles),
        allowed,
        chain,
        key,
    )?)
}

/// Every resource applied to the control plane, resolved into a [`Mesh`] — so that the
/// offline checks run unchanged against the live configuration.
pub(crate) async fn fetch_mesh(admin: &mut AdminClient<Channel>) -> anyhow::Result<Mesh> {
    Ok(Mesh::new(fetch_documents(admin).await?)?)
}

/// Every resource applied to the control plane, as parsed documents.
pub(crate) async fn fetch_documents(
    admin: &mut AdminClient<Channel>,
) -> anyhow::Result<Vec<Document>> {
    let mut documents = Vec::new();
    for kind in Kind::ALL {
        let listed = admin
            .list(ListRequest {
                kind: kind.as_str().to_owned(),
                ..ListRequest::default()
            })
            .await?
            .into_inner();
        for resource in listed.resources {
            let name = format!("{}/{}/{}", resource.kind, resource.namespace, resource.name);
            let parsed = parse_stream(&name, &resource.json, &Limits::default())
                .into_documents()
                .map_err(|errors| {
                    anyhow::anyhow!(
                        "{name}: {}",
                        errors.first().map(ToString::to_string).unwrap_or_default()
                    )
                })?;
            documents.extend(parsed);
        }
    }
    Ok(documents)
}
