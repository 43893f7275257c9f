//! Port 15014: `/healthz`, `/ready` and `/metrics` over plain HTTP, for probes and Prometheus.
//! `/ready` answers 503 with the reasons while the CA needs attention (the trust watchdog);
//! `/bundle` serves this mesh's roots in the SPIFFE bundle format (a bundle endpoint).

use std::{convert::Infallible, sync::Arc};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tracing::debug;

use crate::{Shared, metrics};

/// How long one monitoring connection may stay open.
const CONNECTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves the monitoring endpoints on `listener` until the task is dropped.
pub(crate) async fn serve(listener: TcpListener, registry: Arc<Registry>, shared: Arc<Shared>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let registry = registry.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let registry = registry.clone();
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(route(&req, &registry, &shared)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Ok(Err(e)) = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
                debug!(%peer, error = %e, "monitoring connection failed");
            }
        });
    }
}

fn route(req: &Request<Incoming>, registry: &Registry, shared: &Shared) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/bundle" => {
            let mut response = text(StatusCode::OK, crate::trust::spiffe_bundle(shared));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            response
        }
        "/ready" => match crate::trust::not_ready(shared).as_slice() {
            [] => text(StatusCode::OK, "ok\n".into()),
            reasons => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {}\n", reasons.join("; ")),
            ),
        },
        "/metrics" => match metrics::render(registry) {
            Ok(body) => {
                let mut response = text(StatusCode::OK, body);
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static(metrics::CONTENT_TYPE),
                );
                response
            }
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        },
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}
