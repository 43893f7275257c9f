//! One module per verb, and the plumbing they share.

use std::path::PathBuf;

use anyhow::{Context, bail};
use meshward_config::{Limits, Mesh, parse_stream};

use crate::client::ServerArgs;
use crate::sources;

pub(crate) mod analyze;
pub(crate) mod apply;
pub(crate) mod authn;
pub(crate) mod ca;
pub(crate) mod cert;
pub(crate) mod control_plane;
pub(crate) mod demo;
pub(crate) mod duration;
pub(crate) mod get;
pub(crate) mod iptables;
pub(crate) mod mtls;
pub(crate) mod proxy;
pub(crate) mod proxy_config;
pub(crate) mod proxy_status;
pub(crate) mod token;
pub(crate) mod up;
pub(crate) mod validate;
pub(crate) mod x;

/// The mesh a check runs on: the manifests of `files` when any are named (offline), else every
/// resource applied to the running control plane.
pub(crate) fn load_mesh(files: &[PathBuf], server: &ServerArgs) -> anyhow::Result<Mesh> {
    if !files.is_empty() {
        return mesh_from_files(files);
    }
    runtime()?.block_on(async {
        let mut admin = server
            .admin()
            .await
            .context("reaching the control plane (name manifests with -f to check them offline)")?;
        crate::client::fetch_mesh(&mut admin).await
    })
}

/// The manifests of `files` as one [`Mesh`], all or nothing: every invalid document is printed
/// to standard error before the one error is returned.
pub(crate) fn mesh_from_files(files: &[PathBuf]) -> anyhow::Result<Mesh> {
    let mut documents = Vec::new();
    let mut errors = Vec::new();
    for source in sources::read_all(files)? {
        match parse_stream(&source.name, &source.content, &Limits::default()).into_documents() {
            Ok(valid) => documents.extend(valid),
            Err(invalid) => errors.extend(invalid),
        }
    }
    for error in &errors {
        eprintln!("{error}");
    }
    if !errors.is_empty() {
        bail!(
            "{} error(s) in the manifests: fix them first (`meshward validate`)",
            errors.len()
        );
    }
    Mesh::new(documents).context("building the mesh from the manifests")
}

/// A multi-threaded runtime for verbs that do network I/O.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub(crate) async fn shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result?,
        _ = term.recv() => {}
    }
    Ok(())
}
