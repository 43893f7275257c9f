//! The gRPC side of port 15012: TLS accept, then the three services.

pub(crate) mod admin;
pub(crate) mod certificates;
pub(crate) mod discovery;
pub(crate) mod trust;

use std::{sync::Arc, time::Duration};

use rustls::ServerConfig;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{Semaphore, mpsc, watch},
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_stream::wrappers::ReceiverStream;
use tracing::debug;

/// A TLS handshake that takes longer than this is abandoned.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this many handshakes run at once; more connections wait in the accept queue.
const MAX_CONCURRENT_HANDSHAKES: usize = 256;

/// Accepts TCP connections on `listener` and yields those whose TLS handshake completes.
///
/// Handshakes run in their own tasks, so one slow or silent client never delays the others.
/// Each one takes the TLS config in force when it starts (trust changes rebuild it).
pub(crate) fn incoming(
    listener: TcpListener,
    configs: watch::Receiver<Arc<ServerConfig>>,
) -> ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    let permits = Arc::new(Semaphore::new(MAX_CONCURRENT_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    debug!(error = %e, "accept failed");
                    continue;
                }
            };
            let acceptor = TlsAcceptor::from(configs.borrow().clone());
            let tx = tx.clone();
            tokio::spawn(async move {
                let _permit = permit;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
