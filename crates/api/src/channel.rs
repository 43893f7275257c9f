//! A gRPC channel to the control plane over Meshward's mutual TLS.
//!
//! Shared by the proxy and the CLI so that both speak to port 15012 the same way: TLS 1.3 with
//! ALPN `h2`, the server's SPIFFE ID checked by the caller's rustls config.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};

/// How long connecting (TCP + TLS) to the control plane may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a channel could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The control plane could not be reached or the handshake failed.
    #[error("cannot connect to the control plane at {addr}: {reason}")]
    Connect {
        /// The address dialled.
        addr: SocketAddr,
        /// What failed.
        reason: String,
    },
}

/// Opens a channel to `addr`. `config` carries the client certificate (if any) and the
/// verifier that checks the control plane's identity; its ALPN is set to `h2` here.
pub async fn connect(addr: SocketAddr, mut config: ClientConfig) -> Result<Channel, ChannelError> {
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = TlsConnector::from(Arc::new(config));
    let error = |reason: String| ChannelError::Connect { addr, reason };
    // The URI is only a label for tonic; the connector below decides where to dial.
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| error(e.to_string()))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(Duration::from_secs(30));
    endpoint
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let connector = connector.clone();
            async move {
                let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
                    .await
                    .map_err(|_| {
                        std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
                    })??;
                tcp.set_nodelay(true)?;
                // The name is not checked (the SPIFFE verifier checks the URI SAN instead) but
                // must be valid; the IP form never sends SNI.
                let name = ServerName::IpAddress(addr.ip().into());
                let tls = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp))
                    .await
                    .map_err(|_| {
                        std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
                    })??;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        }))
        .await
        .map_err(|e| error(format!("{e}: {}", source_chain(&e))))
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push(s.to_string());
        cur = s.source();
    }
    out.join(": ")
}
