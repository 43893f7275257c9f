//! Live probes: does a request from one workload reach a service port, and how.
//!
//! A probe sends a small HTTP request — through the client's sidecar (HTTP CONNECT on its
//! outbound port) when it has one, straight to the service's virtual address when it has not —
//! and waits for the first bytes back. Any answer (an HTTP response, or the echo of the request)
//! means the connection was let through; a close without a byte means it was refused.

use std::{net::SocketAddr, time::Duration};

use rustls_pki_types::CertificateDer;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Every step of a probe is bounded by this.
const STEP_TIMEOUT: Duration = Duration::from_secs(3);

/// What a probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Bytes came back: the first line of the answer.
    Allowed(String),
    /// The server's sidecar let the connection in but an AuthorizationPolicy denied the
    /// request (`403 RBAC: access denied`): the first line of the answer.
    Denied(String),
    /// The connection was closed or reset before any answer.
    Refused(String),
}

impl Outcome {
    /// Whether the request got through to the app.
    pub fn allowed(&self) -> bool {
        matches!(self, Self::Allowed(_))
    }

    /// Whether the connection got through the server's mTLS mode (the app answered, or an
    /// authorization policy did).
    pub fn admitted(&self) -> bool {
        matches!(self, Self::Allowed(_) | Self::Denied(_))
    }
}

/// Probes `host:port` through the sidecar outbound listener at `proxy`.
pub async fn via_sidecar(proxy: SocketAddr, host: &str, port: u16) -> Outcome {
    let attempt = async {
        let mut stream = connect(proxy).await?;
        let connect = format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n");
        stream.write_all(connect.as_bytes()).await?;
        let head = read_head(&mut stream).await?;
        if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
            // The sidecar says why in the body of its refusal, when it arrived with the head.
            let why = body_of(&head).lines().next().unwrap_or_default().trim();
            let why = if why.is_empty() {
                String::new()
            } else {
                format!(": {why}")
            };
            return Ok(Outcome::Refused(format!(
                "sidecar: {}{why}",
                first_line(&head)
            )));
        }
        request(stream, host).await
    };
    finish(attempt.await)
}

/// Probes `addr` with mesh mTLS (ALPN `istio`), presenting the certificate in `config` and
/// requiring the server identity its verifier allows — as a peer sidecar would.
pub async fn mtls(addr: SocketAddr, host: &str, config: rustls::ClientConfig) -> Outcome {
    let attempt = async {
        let mut tls = handshake(addr, config).await?;
        tls.write_all(get_request("/get", host).as_bytes()).await?;
        let mut buf = vec![0u8; 1024];
        let n = tokio::time::timeout(STEP_TIMEOUT, tls.read(&mut buf))
            .await
            .map_err(|_| timed_out("answer"))??;
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        Ok(if n == 0 {
            Outcome::Refused("closed after the handshake".into())
        } else {
            answered(&text)
        })
    };
    finish(attempt.await)
}

/// The certificate chain the server at `addr` presents in a mesh mTLS handshake (ALPN
/// `istio`), once the verifier of `config` has accepted it; the error says why the handshake
/// failed. Nothing is sent after the handshake.
pub async fn peer_chain(
    addr: SocketAddr,
    config: rustls::ClientConfig,
) -> std::io::Result<Vec<CertificateDer<'static>>> {
    let tls = handshake(addr, config).await?;
    let (_, session) = tls.get_ref();
    Ok(session
        .peer_certificates()
        .map(|chain| chain.iter().map(|c| c.clone().into_owned()).collect())
        .unwrap_or_default())
}

/// `GET path` on `addr` in plaintext (an admin endpoint), from inside network namespace `netns`
/// when given: the status line and the body, read to the end of the connection (64 KiB at
/// most, every read bounded in time).
pub async fn get(
    netns: Option<&str>,
    addr: SocketAddr,
    path: &str,
) -> std::io::Result<(String, String)> {
    let mut stream = connect_from(netns, addr).await?;
    stream
        .write_all(get_request(path, &addr.to_string()).as_bytes())
        .await?;
    let text = read_bounded(&mut stream, 64 * 1024, false).await?;
    Ok((first_line(&text).to_owned(), body_of(&text).to_owned()))
}

/// Probes `addr` directly, in plaintext, as a client without a sidecar would.
pub async fn direct(addr: SocketAddr, host: &str) -> Outcome {
    let attempt = async { request(connect(addr).await?, host).await };
    finish(attempt.await)
}

/// Probes `addr` from inside network namespace `netns` (`meshward up --netns`), as a process
/// there would: the connection is made by a thread of its own that enters the namespace, so
/// the namespace's capture rules and sidecar apply.
pub async fn from_netns(netns: &str, addr: SocketAddr, host: &str) -> Outcome {
    let attempt = async { request(connect_from(Some(netns), addr).await?, host).await };
    finish(attempt.await)
}

/// A TCP connection to `addr`, made from inside network namespace `netns` when given (by a
/// thread of its own: entering a namespace is per thread, and that one ends there), bounded in
/// time.
pub async fn connect_from(netns: Option<&str>, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let Some(netns) = netns else {
        return connect(addr).await;
    };
    let netns = netns.to_owned();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(connect_in(&netns, addr));
    });
    let stream = rx
        .await
        .map_err(|_| std::io::Error::other("probe thread ended"))??;
    TcpStream::from_std(stream)
}

/// Enters network namespace `netns` (this thread only) and connects to `addr`.
fn connect_in(netns: &str, addr: SocketAddr) -> std::io::Result<std::net::TcpStream> {
    crate::netns::enter(netns).map_err(|e| std::io::Error::other(e.to_string()))?;
    let stream = std::net::TcpStream::connect_timeout(&addr, STEP_TIMEOUT)?;
    stream.set_nonblocking(true)?;
    Ok(stream)
}

/// A mesh mTLS handshake (ALPN `istio`) with `addr`, bounded in time.
async fn handshake(
    addr: SocketAddr,
    mut config: rustls::ClientConfig,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    config.alpn_protocols = vec![b"istio".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = connect(addr).await?;
    let name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
    tokio::time::timeout(STEP_TIMEOUT, connector.connect(name, tcp))
        .await
        .map_err(|_| timed_out("TLS handshake"))?
}

async fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| timed_out("connect"))?
}

async fn request(mut stream: TcpStream, host: &str) -> std::io::Result<Outcome> {
    stream
        .write_all(get_request("/get", host).as_bytes())
        .await?;
    let head = read_head(&mut stream).await?;
    Ok(if head.is_empty() {
        Outcome::Refused("connection closed without an answer".into())
    } else {
        answered(&head)
    })
}

/// An answer: denied when it is the sidecar's authorization refusal, allowed otherwise.
fn answered(text: &str) -> Outcome {
    let line = first_line(text).to_owned();
    let status_403 = line.starts_with("HTTP/1.1 403") || line.starts_with("HTTP/1.0 403");
    if status_403 && body_of(text).starts_with("RBAC: access denied") {
        Outcome::Denied(line)
    } else {
        Outcome::Allowed(line)
    }
}

/// Reads until the end of an HTTP head, 4 KiB, EOF or the timeout.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    read_bounded(stream, 4096, true).await
}

/// Reads `limit` bytes at most — only up to the end of an HTTP head when `head_only` — until
/// EOF; every read is bounded in time.
async fn read_bounded(
    stream: &mut TcpStream,
    limit: usize,
    head_only: bool,
) -> std::io::Result<String> {
    let mut buf = vec![0u8; limit];
    let mut len = 0;
    while len < buf.len() {
        let n = tokio::time::timeout(STEP_TIMEOUT, stream.read(&mut buf[len..]))
            .await
            .map_err(|_| timed_out("answer"))??;
        if n == 0 {
            break;
        }
        len += n;
        if head_only && buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&buf[..len]).into_owned())
}

/// `GET path` for `host`, asking the server to close after its answer.
fn get_request(path: &str, host: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

fn finish(result: std::io::Result<Outcome>) -> Outcome {
    result.unwrap_or_else(|e| Outcome::Refused(e.to_string()))
}

/// What follows the head of an HTTP message (empty when nothing does).
fn body_of(text: &str) -> &str {
    text.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default().trim()
}

fn timed_out(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{what} timed out"))
}
