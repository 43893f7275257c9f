//! One module per verb, and the plumbing they share.

pub(crate) mod analyze;
pub(crate) mod apply;
pub(crate) mod authn;
pub(crate) mod ca;
pub(crate) mod cert;
pub(crate) mod control_plane;
pub(crate) mod demo;
pub(crate) mod duration;
pub(crate) mod get;
pub(crate) mod mtls;
pub(crate) mod proxy;
pub(crate) mod proxy_status;
pub(crate) mod token;
pub(crate) mod up;
pub(crate) mod validate;

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
