//! HTTP plumbing shared by inbound, outbound and admin: the body type, local replies, and the
//! HTTP/1 server settings (bounded header buffer, header read timeout).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper_util::rt::TokioTimer;

/// Every body the proxy sends: the peer's streamed through, or a local reply.
pub(crate) type Body = BoxBody<Bytes, hyper::Error>;

/// Largest HTTP/1 head buffered per connection.
const MAX_HEAD: usize = 64 * 1024;
/// How long a client may take to send a request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A local reply with a text body, for errors the proxy itself decides.
pub(crate) fn reply(status: StatusCode, text: impl Into<String>) -> Response<Body> {
    let mut text = text.into();
    text.push('\n');
    let mut resp = Response::new(full(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// A complete body.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// An HTTP/1 server builder with the proxy's limits.
pub(crate) fn http1_server() -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEAD);
    builder
}

/// Drives a hyper connection; when `stop` resolves first, asks it to finish gracefully
/// (in-flight requests complete, idle keep-alive ends) and waits for that. `what` names the
/// connection in logs.
pub(crate) async fn serve_until<C, E>(
    conn: C,
    stop: impl Future<Output = ()>,
    graceful: impl FnOnce(Pin<&mut C>),
    what: &'static str,
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = stop => {
            graceful(conn.as_mut());
            conn.await
        }
    };
    if let Err(err) = result {
        tracing::debug!(%err, connection = what, "HTTP connection ended");
    }
}
