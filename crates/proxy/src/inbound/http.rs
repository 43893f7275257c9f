//! Inbound HTTP: requests are forwarded to the app with `X-Forwarded-Client-Cert` set to the
//! verified caller (Istio's format, `By=<own id>;URI=<peer id>`) on mTLS, and removed on
//! plaintext, so no client can forge an identity header that reaches the app.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::{http1 as client1, http2 as client2};
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::drain::Drain;
use crate::web::{Body, http1_server, reply, serve_until};

/// Istio's header naming the client certificate's identity.
pub const XFCC: HeaderName = HeaderName::from_static("x-forwarded-client-cert");

/// Where requests go and what the app is told about the caller.
#[derive(Debug, Clone)]
pub struct AppTarget {
    /// The app's private address for this port.
    pub address: SocketAddr,
    /// TCP connect timeout to the app.
    pub connect_timeout: Duration,
    /// The XFCC value for a verified caller; `None` on plaintext (the header is removed).
    pub xfcc: Option<HeaderValue>,
}

/// Removes any client-supplied XFCC and sets ours.
pub fn sanitize<B>(req: &mut Request<B>, xfcc: Option<&HeaderValue>) {
    req.headers_mut().remove(XFCC);
    if let Some(value) = xfcc {
        req.headers_mut().insert(XFCC, value.clone());
    }
}

async fn connect_app(target: &AppTarget) -> Result<TcpStream, String> {
    let tcp = tokio::time::timeout(target.connect_timeout, TcpStream::connect(target.address))
        .await
        .map_err(|_| format!("timed out connecting to the app at {}", target.address))?
        .map_err(|e| format!("cannot connect to the app at {}: {e}", target.address))?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

fn unavailable(reason: String) -> Response<Body> {
    tracing::warn!(%reason, "inbound request failed");
    reply(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("upstream connect error: {reason}"),
    )
}

/// Serves HTTP/1 on `io`, forwarding each request over one HTTP/1 connection to the app
/// (opened on the first request, reopened if the app closes it).
pub async fn serve_http1<S>(io: S, target: AppTarget, drain: Drain)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let target = Arc::new(target);
    let app: Arc<Mutex<Option<client1::SendRequest<Incoming>>>> = Arc::default();
    let svc = service_fn(move |mut req: Request<Incoming>| {
        let target = Arc::clone(&target);
        let app = Arc::clone(&app);
        async move {
            sanitize(&mut req, target.xfcc.as_ref());
            // HTTP/1 serves one request at a time per connection: the lock is never contended.
            let mut slot = app.lock().await;
            let reusable = slot.as_ref().is_some_and(|s| !s.is_closed());
            if !reusable {
                let tcp = match connect_app(&target).await {
                    Ok(tcp) => tcp,
                    Err(reason) => return Ok(unavailable(reason)),
                };
                match client1::handshake(TokioIo::new(tcp)).await {
                    Ok((sender, conn)) => {
                        tokio::spawn(async move {
                            if let Err(err) = conn.await {
                                tracing::debug!(%err, "app connection ended");
                            }
                        });
                        *slot = Some(sender);
                    }
                    Err(err) => return Ok(unavailable(err.to_string())),
                }
            }
            let Some(sender) = slot.as_mut() else {
                return Ok(unavailable("no app connection".to_owned()));
            };
            let result = match sender.ready().await {
                Ok(()) => sender.send_request(req).await,
                Err(err) => Err(err),
            };
            Ok::<_, hyper::Error>(match result {
                Ok(resp) => resp.map(|b| b.boxed()),
                Err(err) => {
                    *slot = None;
                    reply(StatusCode::BAD_GATEWAY, format!("app error: {err}"))
                }
            })
        }
    });
    let conn = http1_server().serve_connection(TokioIo::new(io), svc);
    serve_until(
        conn,
        drain.signaled(),
        |c| c.graceful_shutdown(),
        "inbound HTTP/1",
    )
    .await;
}

/// Serves HTTP/2 (prior knowledge) on `io` over one HTTP/2 connection to the app.
pub async fn serve_http2<S>(io: S, target: AppTarget, drain: Drain)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let tcp = match connect_app(&target).await {
        Ok(tcp) => tcp,
        Err(reason) => {
            tracing::warn!(%reason, "inbound HTTP/2 connection refused");
            return;
        }
    };
    let sender = match client2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await {
        Ok((sender, conn)) => {
            tokio::spawn(async move {
                if let Err(err) = conn.await {
                    tracing::debug!(%err, "app HTTP/2 connection ended");
                }
            });
            sender
        }
        Err(err) => {
            tracing::warn!(%err, "app refused HTTP/2");
            return;
        }
    };
    let xfcc = target.xfcc.clone();
    let svc = service_fn(move |mut req: Request<Incoming>| {
        let mut sender = sender.clone();
        let xfcc = xfcc.clone();
        async move {
            sanitize(&mut req, xfcc.as_ref());
            Ok::<_, hyper::Error>(match sender.send_request(req).await {
                Ok(resp) => resp.map(|b| b.boxed()),
                Err(err) => reply(StatusCode::BAD_GATEWAY, format!("app error: {err}")),
            })
        }
    });
    let conn = http2::Builder::new(TokioExecutor::new())
        .max_header_list_size(64 * 1024)
        .serve_connection(TokioIo::new(io), svc);
    serve_until(
        conn,
        drain.signaled(),
        |c| c.graceful_shutdown(),
        "inbound HTTP/2",
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_xfcc_is_replaced_or_removed() {
        let mut req = Request::builder()
            .header(
                "X-Forwarded-Client-Cert",
                "By=a;URI=spiffe://evil/ns/x/sa/y",
            )
            .header("x-forwarded-client-cert", "URI=spiffe://evil/ns/x/sa/z")
            .body(())
            .unwrap();
        let ours = HeaderValue::from_static("By=spiffe://td/ns/a/sa/b;URI=spiffe://td/ns/c/sa/d");
        sanitize(&mut req, Some(&ours));
        let all: Vec<_> = req.headers().get_all(XFCC).iter().collect();
        assert_eq!(all, vec![&ours]);
        sanitize(&mut req, None);
        assert!(req.headers().get(XFCC).is_none());
    }
}
