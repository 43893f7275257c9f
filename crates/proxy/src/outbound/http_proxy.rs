//! The explicit outbound proxy on port 15001: HTTP/1.1 absolute-form requests
//! (`GET http://host:port/path`) and `CONNECT host:port`, so `HTTP_PROXY=` works.
//!
//! Names resolve against the view only (see [`View::resolve`](crate::view::View::resolve)); a
//! host that is not a mesh service gets 502 and nothing is sent anywhere: the proxy never
//! passes traffic to an address it cannot vouch for.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1 as client1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

use super::Outbound;
use super::pool::PooledBody;
use crate::io::{accept_until, splice};
use crate::tls::{ALPN_HTTP1, ALPN_TCP};
use crate::view::Route;
use crate::web::{Body, full, http1_server, reply, serve_until};

/// Hop-by-hop headers meant for this proxy, never forwarded (the upstream connection has its
/// own lifecycle: it is reused when the protocol allows).
const HOP_HEADERS: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
];
/// How long an idle pooled connection may take to be ready for the next request.
const POOL_READY: Duration = Duration::from_secs(1);

impl Outbound {
    /// Accepts on `listener` until the drain.
    pub async fn serve_http_proxy(self: Arc<Self>, listener: TcpListener) {
        let me = Arc::clone(&self);
        accept_until(
            listener,
            self.drain.token().clone(),
            "outbound",
            move |tcp, _| {
                let me2 = Arc::clone(&me);
                me.drain.spawn(me2.serve_conn(tcp));
            },
        )
        .await;
    }

    async fn serve_conn(self: Arc<Self>, tcp: TcpStream) {
        let me = Arc::clone(&self);
        let svc = service_fn(move |req| Arc::clone(&me).handle(req));
        let conn = http1_server()
            .serve_connection(TokioIo::new(tcp), svc)
            .with_upgrades();
        serve_until(
            conn,
            self.drain.signaled(),
            |c| c.graceful_shutdown(),
            "outbound",
        )
        .await;
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
        let resp = if req.method() == Method::CONNECT {
            self.tunnel(req).await
        } else {
            self.forward(req).await
        };
        Ok(resp.unwrap_or_else(|(status, reason)| {
            tracing::info!(%status, %reason, "outbound request refused");
            reply(status, reason)
        }))
    }

    /// Resolves `authority` to a route, or the refusal the client gets.
    fn route(
        &self,
        authority: &Authority,
        default_port: u16,
    ) -> Result<Route, (StatusCode, String)> {
        let port = authority.port_u16().unwrap_or(default_port);
        let view = self.view.borrow().clone();
        view.resolve(authority.host(), port)
            .and_then(|p| p.route())
            .map_err(|e| (StatusCode::BAD_GATEWAY, e.to_string()))
    }

    async fn tunnel(
        &self,
        mut req: Request<Incoming>,
    ) -> Result<Response<Body>, (StatusCode, String)> {
        let authority = req.uri().authority().cloned().ok_or((
            StatusCode::BAD_REQUEST,
            "CONNECT needs host:port".to_owned(),
        ))?;
        if authority.port_u16().is_none() {
            return Err((
                StatusCode::BAD_REQUEST,
                "CONNECT needs host:port".to_owned(),
            ));
        }
        let route = self.route(&authority, 0)?;
        let mut server = self
            .connect(&route, ALPN_TCP)
            .await
            .map_err(|e| (e.status(), e.to_string()))?;
        let upgrade = hyper::upgrade::on(&mut req);
        self.drain.spawn(async move {
            match upgrade.await {
                Ok(upgraded) => {
                    if let Err(err) = splice(&mut TokioIo::new(upgraded), &mut server).await {
                        tracing::debug!(%err, "CONNECT tunnel ended");
                    }
                }
                Err(err) => tracing::debug!(%err, "CONNECT upgrade failed"),
            }
        });
        Ok(Response::new(full("")))
    }

    async fn forward(
        &self,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, (StatusCode, String)> {
        let (mut parts, body) = req.into_parts();
        let authority = match (parts.uri.scheme(), parts.uri.authority()) {
            (Some(s), Some(a)) if *s == Scheme::HTTP => a.clone(),
            (Some(_), Some(_)) => {
                return Err((
                    StatusCode::BAD_REQUEST,
                    "only http:// URLs are forwarded; use CONNECT for TLS".to_owned(),
                ));
            }
            _ => {
                return Err((
                    StatusCode::BAD_REQUEST,
                    "this is a forward proxy: send an absolute URL (http://host:port/path) or CONNECT"
                        .to_owned(),
                ));
            }
        };
        let route = self.route(&authority, 80)?;

        // Origin form upstream; Host keeps the name the client used.
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        parts.uri = Uri::from(path);
        for name in HOP_HEADERS {
            parts.headers.remove(name);
        }
        if !parts.headers.contains_key(header::HOST)
            && let Ok(host) = HeaderValue::from_str(authority.as_str())
        {
            parts.headers.insert(header::HOST, host);
        }
        let mut req = Request::from_parts(parts, body);

        // An idle connection first; a request it could not even send is retried on the next.
        while let Some(mut sender) = self.pool.take(&route) {
            if !matches!(
                tokio::time::timeout(POOL_READY, sender.ready()).await,
                Ok(Ok(()))
            ) {
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok(self.pooled(resp, route, sender)),
                Err(mut err) => match err.take_message() {
                    Some(unsent) => req = unsent,
                    None => {
                        return Err((
                            StatusCode::BAD_GATEWAY,
                            format!("upstream request failed: {}", err.into_error()),
                        ));
                    }
                },
            }
        }

        let server = self
            .connect(&route, ALPN_HTTP1)
            .await
            .map_err(|e| (e.status(), e.to_string()))?;
        let (mut sender, conn) = client1::handshake(TokioIo::new(server))
            .await
            .map_err(|e| {
                (
                    StatusCode::BAD_GATEWAY,
                    format!("upstream HTTP handshake: {e}"),
                )
            })?;
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(%err, "upstream HTTP connection ended");
            }
        });
        let resp = sender.send_request(req).await.map_err(|e| {
            (
                StatusCode::BAD_GATEWAY,
                format!("upstream request failed: {e}"),
            )
        })?;
        Ok(self.pooled(resp, route, sender))
    }

    fn pooled(
        &self,
        resp: Response<Incoming>,
        route: Route,
        sender: client1::SendRequest<Incoming>,
    ) -> Response<Body> {
        let pool = Arc::clone(&self.pool);
        resp.map(|body| PooledBody::new(body, pool, route, sender).boxed())
    }
}
