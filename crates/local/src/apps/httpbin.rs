//! An httpbin-like HTTP server: `/get`, `/post` and `/anything[/…]` (which echo the body as
//! `data`), `/headers`, `/ip`, `/env`, `/status/{code}`, and `/`.
//!
//! Responses are JSON, as httpbin's are. Every response also says who called: the SPIFFE ID
//! the sidecar passed on in `X-Forwarded-Client-Cert` (`URI=` field), so a demo shows at a
//! glance whether the request came over mTLS and from whom.

use std::{collections::BTreeMap, convert::Infallible, net::SocketAddr, time::Duration};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tracing::debug;

/// The largest request body read.
const MAX_BODY: usize = 1 << 20;
/// How long a request body may take.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection is closed after this long, whatever it does.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(300);

/// Serves httpbin on `listener` forever.
pub async fn serve(listener: TcpListener) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| async move {
                let (parts, body) = req.into_parts();
                let read =
                    tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY).collect())
                        .await;
                Ok::<_, Infallible>(match read {
                    Ok(Ok(body)) => respond(&Request::from_parts(parts, body.to_bytes()), peer),
                    _ => with_status(
                        StatusCode::BAD_REQUEST,
                        json!({"error": "request body too large or too slow"}),
                    ),
                })
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Ok(Err(e)) = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
                debug!(%peer, error = %e, "httpbin connection failed");
            }
        });
    }
}

/// Binds `addr` and serves httpbin on it.
pub async fn run(addr: SocketAddr) -> std::io::Result<()> {
    serve(TcpListener::bind(addr).await?).await;
    Ok(())
}

/// The response to one request (pure, apart from reading the environment for `/env`).
pub fn respond(req: &Request<Bytes>, peer: SocketAddr) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let caller = caller_identity(req.headers());
    let body = match path {
        p if matches!(p, "/get" | "/" | "/anything" | "/post") || p.starts_with("/anything/") => {
            echo(req, peer, caller)
        }
        "/headers" => json!({ "headers": headers(req.headers()), "caller": caller }),
        "/ip" => json!({ "origin": peer.ip().to_string(), "caller": caller }),
        "/env" => json!({
            "env": std::env::vars().collect::<BTreeMap<_, _>>(),
            "caller": caller,
        }),
        _ => match path.strip_prefix("/status/").map(str::parse::<u16>) {
            Some(Ok(code)) => match StatusCode::from_u16(code) {
                Ok(status) => return with_status(status, json!({ "caller": caller })),
                Err(_) => {
                    return with_status(
                        StatusCode::BAD_REQUEST,
                        json!({"error": "invalid status code"}),
                    );
                }
            },
            Some(Err(_)) => {
                return with_status(
                    StatusCode::BAD_REQUEST,
                    json!({"error": "invalid status code"}),
                );
            }
            None => return with_status(StatusCode::NOT_FOUND, json!({"error": "not found"})),
        },
    };
    with_status(StatusCode::OK, body)
}

/// httpbin's echo of a request: its query, headers, address, URL, method and body.
fn echo(req: &Request<Bytes>, peer: SocketAddr, caller: Option<String>) -> Value {
    json!({
            "args": query_args(req.uri().query()),
            "headers": headers(req.headers()),
            "origin": peer.ip().to_string(),
            "url": req.uri().to_string(),
            "method": req.method().as_str(),
            "data": String::from_utf8_lossy(req.body()),
            "caller": caller,
    })
}

fn with_status(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut text = serde_json::to_string_pretty(&body).unwrap_or_default();
    text.push('\n');
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// The `URI=` of the `X-Forwarded-Client-Cert` element added last (by our own sidecar).
pub fn caller_identity(headers: &HeaderMap) -> Option<String> {
    let xfcc = headers.get("x-forwarded-client-cert")?.to_str().ok()?;
    let last = xfcc.rsplit(',').next()?;
    last.split(';')
        .find_map(|kv| kv.trim().strip_prefix("URI="))
        .map(|uri| uri.trim_matches('"').to_owned())
}

fn headers(map: &HeaderMap) -> BTreeMap<String, String> {
    map.iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

fn query_args(query: Option<&str>) -> BTreeMap<String, String> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (kv.to_owned(), String::new()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, xfcc: Option<&str>) -> (StatusCode, Value) {
        let mut builder = Request::get(path);
        if let Some(x) = xfcc {
            builder = builder.header("x-forwarded-client-cert", x);
        }
        let req = builder.body(Bytes::new()).unwrap();
        let response = respond(&req, "127.0.0.9:4000".parse().unwrap());
        let status = response.status();
        let body = futures_body(response);
        (status, serde_json::from_slice(&body).unwrap())
    }

    fn futures_body(response: Response<Full<Bytes>>) -> Bytes {
        use http_body_util::BodyExt;
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(response.into_body().collect())
            .unwrap()
            .to_bytes()
    }

    #[test]
    fn get_echoes_request_and_caller() {
        let xfcc = "By=spiffe://cluster.local/ns/team-app/sa/httpbin;URI=spiffe://cluster.local/ns/team-app/sa/client";
        let (status, body) = get("/get?a=1", Some(xfcc));
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["args"]["a"], "1");
        assert_eq!(body["origin"], "127.0.0.9");
        assert_eq!(
            body["caller"],
            "spiffe://cluster.local/ns/team-app/sa/client"
        );
    }

    #[test]
    fn plaintext_caller_is_null_and_status_codes_echo() {
        let (_, body) = get("/headers", None);
        assert_eq!(body["caller"], Value::Null);
        assert_eq!(get("/status/418", None).0, StatusCode::IM_A_TEAPOT);
        assert_eq!(get("/status/abc", None).0, StatusCode::BAD_REQUEST);
        assert_eq!(get("/status/1000", None).0, StatusCode::BAD_REQUEST);
        assert_eq!(get("/nope", None).0, StatusCode::NOT_FOUND);
    }
}
