//! Test apps behind the proxies: an HTTP app that reports the XFCC header it received, and a
//! TCP app that echoes until end of stream, then says `done` (to observe half-close).

#![allow(dead_code)] // Each test crate uses a different part of the support code.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What an app saw.
#[derive(Debug, Default, Clone)]
pub(crate) struct Seen {
    /// Accepted connections.
    pub(crate) connections: Arc<Mutex<usize>>,
    /// The XFCC headers of each HTTP request (all values).
    pub(crate) requests: Arc<Mutex<Vec<Vec<String>>>>,
}

impl Seen {
    pub(crate) fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }
    pub(crate) fn requests(&self) -> Vec<Vec<String>> {
        self.requests.lock().unwrap().clone()
    }
}

/// An HTTP/1 app whose body is `xfcc=<values joined by |>`.
pub(crate) async fn http_app(addr: SocketAddr) -> Seen {
    let listener = TcpListener::bind(addr).await.unwrap();
    let seen = Seen::default();
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            *s.connections.lock().unwrap() += 1;
            let s = s.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let xfcc: Vec<String> = req
                        .headers()
                        .get_all("x-forwarded-client-cert")
                        .iter()
                        .map(|v| v.to_str().unwrap().to_owned())
                        .collect();
                    s.requests.lock().unwrap().push(xfcc.clone());
                    let body = format!("xfcc={}", xfcc.join("|"));
                    async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    seen
}

/// A TCP app: echoes every byte, and after the client's end of stream writes `done` and closes.
pub(crate) async fn echo_app(addr: SocketAddr) -> Seen {
    let listener = TcpListener::bind(addr).await.unwrap();
    let seen = Seen::default();
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            *s.connections.lock().unwrap() += 1;
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                loop {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if tcp.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = tcp.write_all(b"done").await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    seen
}

/// Sends a raw HTTP/1.1 request on a new connection to `addr`; returns the whole response, or
/// the error if the connection failed or was reset.
pub(crate) async fn raw_http(addr: SocketAddr, extra_headers: &str) -> std::io::Result<String> {
    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
    let req = format!("GET /get HTTP/1.1\r\nHost: app\r\nConnection: close\r\n{extra_headers}\r\n");
    tcp.write_all(req.as_bytes()).await?;
    let mut out = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tcp.read_to_end(&mut out),
    )
    .await
    .map_err(|_| std::io::Error::other("timed out"))??;
    Ok(String::from_utf8_lossy(&out).into_owned())
}
