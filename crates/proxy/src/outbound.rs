//! Outbound: how the app reaches the mesh. An HTTP/1.1 forward proxy with `CONNECT`
//! ([`http_proxy`]) and static upstream listeners ([`upstream`]), both over [`connect`], which
//! originates mTLS with this proxy's SVID and refuses any server whose SPIFFE ID is not the
//! expected one before a byte of the request is sent.

pub mod http_proxy;
mod pool;
pub mod upstream;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::StatusCode;
use rustls_pki_types::ServerName;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::either::Either;

use self::pool::Pool;
use crate::config::Timeouts;
use crate::creds::{CredsError, CredsReceiver};
use crate::drain::Drain;
use crate::view::{Route, View};

/// A connection to an upstream: plaintext or mTLS.
pub type MeshStream = Either<TcpStream, TlsStream<TcpStream>>;

/// Why an upstream connection was not made. Each maps to the status the client sees.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// No certificate yet: mTLS cannot be originated.
    #[error("no workload certificate yet")]
    NoCredentials,
    /// The client config cannot be built.
    #[error("TLS configuration: {0}")]
    Creds(#[from] CredsError),
    /// TCP connect failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// Upstream address.
        addr: SocketAddr,
        /// The I/O error.
        source: io::Error,
    },
    /// TCP connect or TLS handshake took too long.
    #[error("timed out connecting to {0}")]
    Timeout(SocketAddr),
    /// The TLS handshake failed, e.g. the server is not the expected identity.
    #[error("mTLS handshake with {addr} failed: {reason}")]
    Handshake {
        /// Upstream address.
        addr: SocketAddr,
        /// Why, naming the rejected identity when that is the reason.
        reason: String,
    },
}

impl ConnectError {
    /// The HTTP status a forward-proxy client gets: 502 when the upstream answered wrongly
    /// (bad identity, failed handshake), 503 when it could not be reached or we are not ready.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Handshake { .. } => StatusCode::BAD_GATEWAY,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// Shared state of the outbound side.
#[derive(Debug)]
pub struct Outbound {
    /// The workload address connections are made from, so servers see the caller's own
    /// address as `source.ip` (as a pod IP), not the machine's.
    source: IpAddr,
    creds: CredsReceiver,
    view: watch::Receiver<Arc<View>>,
    timeouts: Timeouts,
    drain: Drain,
    pool: Arc<Pool>,
}

impl Outbound {
    /// Outbound for the workload at `source`, with the given credentials and view.
    pub fn new(
        source: IpAddr,
        creds: CredsReceiver,
        view: watch::Receiver<Arc<View>>,
        timeouts: Timeouts,
        drain: Drain,
    ) -> Arc<Self> {
        Arc::new(Self {
            source,
            creds,
            view,
            timeouts,
            drain,
            pool: Arc::default(),
        })
    }

    /// Connects along `route`, offering `alpn` when it is mTLS.
    pub async fn connect(&self, route: &Route, alpn: &[u8]) -> Result<MeshStream, ConnectError> {
        let tls = match route {
            Route::Plain { .. } => None,
            Route::Mtls { expected, .. } => {
                // Credentials first: without them nothing is sent at all.
                let creds = self
                    .creds
                    .borrow()
                    .clone()
                    .ok_or(ConnectError::NoCredentials)?;
                Some(creds.client_config(expected, alpn)?)
            }
        };
        let addr = route.address();
        let tcp = tokio::time::timeout(self.timeouts.connect, self.dial(addr))
            .await
            .map_err(|_| ConnectError::Timeout(addr))?
            .map_err(|source| ConnectError::Connect { addr, source })?;
        let _ = tcp.set_nodelay(true);
        let Some(config) = tls else {
            return Ok(Either::Left(tcp));
        };
        // The server name is the IP: no SNI is sent, and the SPIFFE verifier checks the
        // identity instead of a name.
        let name = ServerName::IpAddress(addr.ip().into());
        let handshake = TlsConnector::from(config).connect(name, tcp);
        let tls = tokio::time::timeout(self.timeouts.handshake, handshake)
            .await
            .map_err(|_| ConnectError::Timeout(addr))?
            .map_err(|err| ConnectError::Handshake {
                addr,
                reason: handshake_reason(&err),
            })?;
        Ok(Either::Right(tls))
    }
}

impl Outbound {
    /// A TCP connection to `addr` from the workload address when it can route there (same
    /// family, both loopback or both not), from any address otherwise.
    async fn dial(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        let source = self.source;
        let routable = source.is_ipv4() == addr.is_ipv4()
            && source.is_loopback() == addr.ip().is_loopback()
            && !source.is_unspecified();
        if !routable {
            return TcpStream::connect(addr).await;
        }
        let socket = if source.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.bind(SocketAddr::new(source, 0))?;
        socket.connect(addr).await
    }
}

/// The most precise reason of a failed handshake: the SPIFFE verifier's own message (e.g.
/// "`spiffe://…/sa/x` is not among the allowed identities") when it refused the server.
fn handshake_reason(err: &io::Error) -> String {
    let tls = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls {
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))) => {
            format!("server certificate refused: {}", other.0)
        }
        Some(tls) => tls.to_string(),
        None => err.to_string(),
    }
}
