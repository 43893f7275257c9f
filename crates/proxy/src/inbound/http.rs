//! Inbound HTTP: requests are forwarded to the app with `X-Forwarded-Client-Cert` set to the
//! verified caller (Istio's format, `By=<own id>;URI=<peer id>`) on mTLS, and removed on
//! plaintext, so no client can forge an identity header that reaches the app. Upgrades
//! (WebSocket) are passed through: after `101 Switching Protocols` the bytes are spliced.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use hyper::body::{Body as HttpBody, Incoming};
use hyper::client::conn::{http1 as client1, http2 as client2};
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use super::authorize::{Authorizer, Refusal};
use crate::access_log::Direction;
use crate::drain::Drain;
use crate::io::splice;
use crate::telemetry::{CountedBody, Exchange, Link, Telemetry};
use crate::web::{Body, http1_server, reply, serve_until};

/// Istio's header naming the client certificate's identity.
pub const XFCC: HeaderName = HeaderName::from_static("x-forwarded-client-cert");

/// Envoy's details for a response the app never started.
const CONNECT_FAILED: &str = "upstream_reset_before_response_started{connection_failure}";
const CONNECTION_ENDED: &str = "upstream_reset_before_response_started{connection_termination}";

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
    /// Where requests are recorded.
    pub telemetry: Telemetry,
    /// The connection's labels and log details.
    pub link: Arc<Link>,
    /// The address the client reached.
    pub local: SocketAddr,
    /// The client's address.
    pub remote: SocketAddr,
}

impl AppTarget {
    fn exchange<B>(&self, req: &Request<B>) -> Exchange {
        let mut ex = Exchange::begin(
            &self.telemetry,
            Direction::Inbound,
            req,
            Some(self.local),
            Some(self.remote),
        );
        ex.set_link(Arc::clone(&self.link));
        ex
    }
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

/// 503 for an app that cannot be reached (`UF`).
fn unavailable(mut ex: Exchange, reason: String) -> Response<Body> {
    tracing::warn!(%reason, "inbound request failed");
    ex.local("UF", CONNECT_FAILED);
    ex.transport_failure(reason.clone());
    ex.respond(reply(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("upstream connect error: {reason}"),
    ))
}

/// 502 for an app that failed the request (`UC`).
fn app_error(mut ex: Exchange, err: &hyper::Error) -> Response<Body> {
    ex.local("UC", CONNECTION_ENDED);
    ex.respond(reply(StatusCode::BAD_GATEWAY, format!("app error: {err}")))
}

/// The refusal, recorded with its reason (and deciding policy).
fn refuse(mut ex: Exchange, refused: Refusal) -> Response<Body> {
    match refused.policy {
        Some((policy, rule)) => ex.denied(policy, rule, Some(refused.details)),
        None => ex.local("-", refused.details),
    }
    ex.respond(refused.response)
}

/// Opens an HTTP/1 connection to the app (upgrades allowed, so `101 Switching Protocols`
/// hands the connection over).
async fn open_app<B>(target: &AppTarget) -> Result<client1::SendRequest<B>, String>
where
    B: HttpBody + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
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
async fn upgrade(
    mut req: Request<Incoming>,
    target: &AppTarget,
    drain: &Drain,
    mut ex: Exchange,
) -> Response<Body> {
    let mut sender = match open_app::<Incoming>(target).await {
        Ok(sender) => sender,
        Err(reason) => return unavailable(ex, reason),
    };
    let client_side = hyper::upgrade::on(&mut req);
    let mut resp = match sender.send_request(req).await {
        Ok(resp) => resp,
        Err(err) => return app_error(ex, &err),
    };
    ex.upstream_responded();
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
    ex.respond(resp)
}

/// The app connection of one inbound HTTP/1 connection (opened on the first request).
type AppSlot = Mutex<Option<client1::SendRequest<CountedBody>>>;

/// One HTTP/1 request: sanitized, authorized, forwarded, recorded.
async fn serve_one(
    mut req: Request<Incoming>,
    target: &AppTarget,
    app: &AppSlot,
    drain: &Drain,
) -> Response<Body> {
    let ex = target.exchange(&req);
    sanitize(&mut req, target.xfcc.as_ref());
    if let Err(refused) = target.authorizer.check_request(&mut req) {
        return refuse(ex, *refused);
    }
    let mut ex = ex;
    ex.set_path(req.uri());
    if req.headers().contains_key(header::UPGRADE) {
        return upgrade(req, target, drain, ex).await;
    }
    // HTTP/1 serves one request at a time per connection: the lock is never contended.
    let mut slot = app.lock().await;
    let reusable = slot.as_ref().is_some_and(|s| !s.is_closed());
    if !reusable {
        match open_app(target).await {
            Ok(sender) => *slot = Some(sender),
            Err(reason) => return unavailable(ex, reason),
        }
    }
    let Some(sender) = slot.as_mut() else {
        return unavailable(ex, "no app connection".to_owned());
    };
    let result = match sender.ready().await {
        Ok(()) => sender.send_request(ex.count_request(req)).await,
        Err(err) => Err(err),
    };
    match result {
        Ok(resp) => {
            ex.upstream_responded();
            ex.respond(resp)
        }
        Err(err) => {
            *slot = None;
            app_error(ex, &err)
        }
    }
}

/// Serves HTTP/1 on `io`, forwarding each request over one HTTP/1 connection to the app
/// (opened on the first request, reopened if the app closes it); upgrades get their own.
pub async fn serve_http1<S>(io: S, target: AppTarget, drain: Drain)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let target = Arc::new(target);
    let app: Arc<AppSlot> = Arc::default();
    let upgrades = drain.clone();
    let svc = service_fn(move |req: Request<Incoming>| {
        let target = Arc::clone(&target);
        let app = Arc::clone(&app);
        let drain = upgrades.clone();
        async move { Ok::<_, Infallible>(serve_one(req, &target, &app, &drain).await) }
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
    let sender: client2::SendRequest<CountedBody> =
        match client2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await {
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
    let target = Arc::new(target);
    let svc = service_fn(move |mut req: Request<Incoming>| {
        let mut sender = sender.clone();
        let target = Arc::clone(&target);
        async move {
            let ex = target.exchange(&req);
            sanitize(&mut req, target.xfcc.as_ref());
            if let Err(refused) = target.authorizer.check_request(&mut req) {
                return Ok(refuse(ex, *refused));
            }
            let mut ex = ex;
            ex.set_path(req.uri());
            Ok::<_, Infallible>(match sender.send_request(ex.count_request(req)).await {
                Ok(resp) => {
                    ex.upstream_responded();
                    ex.respond(resp)
                }
                Err(err) => app_error(ex, &err),
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
