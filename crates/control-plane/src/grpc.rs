//! The gRPC side of port 15012: TLS accept, then the three services.

pub(crate) mod admin;
pub(crate) mod certificates;
pub(crate) mod discovery;
pub(crate) mod trust;

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

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
/// At most this many of them from one source address; a connection beyond is closed at once,
/// so one client holding silent connections cannot take the handshakes everyone else needs.
const MAX_HANDSHAKES_PER_SOURCE: usize = 32;

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
    let sources = Arc::new(Sources::default());
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
            let Some(source) = Sources::enter(&sources, peer.ip()) else {
                debug!(%peer, "connection closed: {MAX_HANDSHAKES_PER_SOURCE} TLS handshakes from this address are already running");
                continue;
            };
            let acceptor = TlsAcceptor::from(configs.borrow().clone());
            let tx = tx.clone();
            tokio::spawn(async move {
                let _permits = (permit, source);
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

/// Handshakes running per source address.
#[derive(Default)]
struct Sources(Mutex<HashMap<IpAddr, usize>>);

/// One running handshake of `ip`, counted until dropped.
struct Source {
    sources: Arc<Sources>,
    ip: IpAddr,
}

impl Sources {
    /// Counts a handshake from `ip`, unless [`MAX_HANDSHAKES_PER_SOURCE`] already run.
    fn enter(sources: &Arc<Self>, ip: IpAddr) -> Option<Source> {
        let mut running = sources.0.lock().unwrap_or_else(PoisonError::into_inner);
        let count = running.entry(ip).or_default();
        if *count >= MAX_HANDSHAKES_PER_SOURCE {
            return None;
        }
        *count += 1;
        Some(Source {
            sources: Arc::clone(sources),
            ip,
        })
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        let mut running = self
            .sources
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = running.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                running.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_source_gets_a_bounded_share_of_the_handshakes() {
        let sources = Arc::new(Sources::default());
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let held: Vec<Source> = (0..MAX_HANDSHAKES_PER_SOURCE)
            .map(|_| Sources::enter(&sources, a).unwrap())
            .collect();
        assert!(
            Sources::enter(&sources, a).is_none(),
            "one more from a is refused"
        );
        assert!(
            Sources::enter(&sources, b).is_some(),
            "another source is not"
        );
        drop(held);
        assert!(
            Sources::enter(&sources, a).is_some(),
            "finished handshakes free their places"
        );
        assert!(
            sources.0.lock().unwrap().len() <= 1,
            "idle sources are forgotten"
        );
    }
}
