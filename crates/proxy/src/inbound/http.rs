//! Inbound HTTP: requests are forwarded to the app with `X-Forwarded-Client-Cert` set to the
//! verified caller (Istio's format, `By=<own id>;URI=<peer id>`) on mTLS, and removed on
//! plaintext, so no client can forge an identity header that reaches the app. Upgrades
//! (WebSocket) are passed through: after `101 Switching Protocols` the bytes are spliced.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::{http1 as client1, http2 as client2};
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use super::authorize::Authorizer;
use crate::drain::Drain;
use crate::io::splice;
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
    /// Decides each request before it is forwarded.
    pub authorizer: Authorizer,
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

/// Opens an HTTP/1 connection to the app (upgrades allowed, so `101 Switching Protocols`
/// hands the connection over).
async fn open_app(target: &AppTarget) -> Result<client1::SendRequest<Incoming>, String> {
    let tcp = connect_app(target).await?;
    let (sender, conn) = client1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(err) = conn.with_upgrades().await {
            tracing::debug!(%err, "app connection ended");
        }
    });
    Ok(sender)
}

/// An upgrade (WebSocket and the like) on its own app connection: when the app answers
/// `101 Switching Protocols`, both sides are spliced as bytes from then on.
async fn upgrade(mut req: Request<Incoming>, target: &AppTarget, drain: &Drain) -> Response<Body> {
    let mut sender = match open_app(target).await {
        Ok(sender) => sender,
        Err(reason) => return unavailable(reason),
    };
    let client_side = hyper::upgrade::on(&mut req);
    let mut resp = match sender.send_request(req).await {
        Ok(resp) => resp,
        Err(err) => return reply(StatusCode::BAD_GATEWAY, format!("app error: {err}")),
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let app_side = hyper::upgrade::on(&mut resp);
        drain.spawn(async move {
            match tokio::try_join!(client_side, app_side) {
                Ok((client, app)) => {
                    let (mut client, mut app) = (TokioIo::new(client), TokioIo::new(app));
                    if let Err(err) = splice(&mut client, &mut app).await {
                        tracing::debug!(%err, "upgraded connection ended");
                    }
                }
                Err(err) => tracing::debug!(%err, "upgrade failed"),
            }
        });
    }
    resp.map(|b| b.boxed())
}

/// Serves HTTP/1 on `io`, forwarding each request over one HTTP/1 connection to the app
/// (opened on the first request, reopened if the app closes it); upgrades get their own.
pub async fn serve_http1<S>(io: S, target: AppTarget, drain: Drain)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let target = Arc::new(target);
    let app: Arc<Mutex<Option<client1::SendRequest<Incoming>>>> = Arc::default();
    let upgrades = drain.clone();
    let svc = service_fn(move |mut req: Request<Incoming>| {
        let target = Arc::clone(&target);
        let app = Arc::clone(&app);
        let drain = upgrades.clone();
        async move {
            sanitize(&mut req, target.xfcc.as_ref());
            if let Err(refused) = target.authorizer.check_request(&mut req) {
                return Ok(*refused);
            }
            if req.headers().contains_key(header::UPGRADE) {
                return Ok(upgrade(req, &target, &drain).await);
            }
            // HTTP/1 serves one request at a time per connection: the lock is never contended.
            let mut slot = app.lock().await;
            let reusable = slot.as_ref().is_some_and(|s| !s.is_closed());
            if !reusable {
                match open_app(&target).await {
                    Ok(sender) => *slot = Some(sender),
                    Err(reason) => return Ok(unavailable(reason)),
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
    let conn = http1_server()
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
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
    let authorizer = target.authorizer.clone();
    let svc = service_fn(move |mut req: Request<Incoming>| {
        let mut sender = sender.clone();
        let xfcc = xfcc.clone();
        let authorizer = authorizer.clone();
        async move {
            sanitize(&mut req, xfcc.as_ref());
            if let Err(refused) = authorizer.check_request(&mut req) {
                return Ok(*refused);
            }
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
