//! A TCP echo server: every byte received is sent back, half-close included.

use std::{net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tracing::debug;

/// An idle connection is closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Serves echo on `listener` forever.
pub async fn serve(listener: TcpListener) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            if let Err(e) = echo(stream).await {
                debug!(%peer, error = %e, "echo connection ended");
            }
        });
    }
}

async fn echo(mut stream: TcpStream) -> std::io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::time::timeout(IDLE_TIMEOUT, stream.read(&mut buf))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "idle"))??;
        if n == 0 {
            return stream.shutdown().await;
        }
        stream.write_all(&buf[..n]).await?;
    }
}

/// Binds `addr` and serves echo on it.
pub async fn run(addr: SocketAddr) -> std::io::Result<()> {
    serve(TcpListener::bind(addr).await?).await;
    Ok(())
}
