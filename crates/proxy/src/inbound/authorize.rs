//! Inbound authorization: the workload's AuthorizationPolicies, compiled by the control plane,
//! decide every TCP connection when it opens (before a byte reaches the app) and every HTTP
//! request before it is forwarded.
//!
//! On a connection that carries HTTP the decision is taken per request, with the request's
//! attributes; on anything else it is taken once, with HTTP-only fields following Istio's TCP
//! rule (an ALLOW rule never matches them, a DENY rule treats them as matched) — so sending
//! non-HTTP bytes to an HTTP port can only ever be denied more, never less. Each decision reads
//! the newest view, and [`Authorizer::allows_connection`] lets open TCP connections be
//! re-checked when the policies change.
//!
//! A denied HTTP request gets Envoy's answer, 403 `RBAC: access denied` (gRPC: status 7
//! PERMISSION_DENIED); a denied TCP connection is closed. Every denial, AUDIT match and dry-run
//! result is logged under the `meshward::rbac` target with the policy and rule that decided.

use std::sync::Arc;

use http::{HeaderValue, Request, Response, StatusCode, header};
use meshward_config::authz::{Decision, HttpAttrs, RequestAttrs, evaluate, normalize_path};
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::view::View;
use crate::web::{Body, full, reply};

/// The answer sent instead of forwarding a refused request, and why (for access logs).
#[derive(Debug)]
pub struct Refusal {
    /// What the client gets.
    pub response: Response<Body>,
    /// Envoy's response code details (`rbac_access_denied_matched_policy[…]`,
    /// `path_normalization_failed`).
    pub details: String,
    /// The deciding policy (`ns/name`, `none`) and rule, when a policy denied.
    pub policy: Option<(String, Option<usize>)>,
}

impl Refusal {
    fn bad_request(text: impl Into<String>) -> Box<Self> {
        Box::new(Self {
            response: reply(StatusCode::BAD_REQUEST, text),
            details: "path_normalization_failed".to_owned(),
            policy: None,
        })
    }
}

/// The deciding policy of a denial, `ns/name` (`none` when no ALLOW policy matched), and rule.
pub fn deciding_policy(decision: &Decision) -> (String, Option<usize>) {
    (
        decision
            .policy
            .as_ref()
            .map_or_else(|| "none".to_owned(), ToString::to_string),
        decision.rule,
    )
}

/// Envoy's body for a request denied by RBAC.
pub const ACCESS_DENIED: &str = "RBAC: access denied";

/// Decides for one inbound connection: its peer and addresses are fixed, the policies are the
/// current view's.
#[derive(Debug, Clone)]
pub struct Authorizer {
    view: watch::Receiver<Arc<View>>,
    conn: Arc<RequestAttrs>,
    metrics: Arc<Metrics>,
}

impl Authorizer {
    /// An authorizer for the connection described by `conn` (no HTTP attributes), counting
    /// its decisions in `metrics`.
    pub fn new(
        view: watch::Receiver<Arc<View>>,
        conn: RequestAttrs,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            view,
            conn: Arc::new(conn),
            metrics,
        }
    }

    /// The decision for the connection as TCP under the current policies; logs it.
    pub fn check_connection(&self) -> Decision {
        let view = Arc::clone(&self.view.borrow());
        let decision = evaluate(&view.authz, &self.conn);
        report(&decision, &self.conn);
        self.metrics.record_authz(&decision, false);
        decision
    }

    /// Whether `view` still admits this TCP connection (for re-checks on policy changes).
    pub fn allows_connection(&self, view: &View) -> bool {
        evaluate(&view.authz, &self.conn).allowed
    }

    /// Normalizes the request's path in place (the app receives what the policies matched)
    /// and decides; `Err` is the reply to send instead of forwarding: 400 for a path that
    /// cannot be normalized safely, 403 (or gRPC 7) when denied.
    pub fn check_request<B>(&self, req: &mut Request<B>) -> Result<(), Box<Refusal>> {
        let view = Arc::clone(&self.view.borrow());
        let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        // `OPTIONS *` and CONNECT's authority form have no path to normalize or match.
        let asterisk = target == "*" || req.method() == http::Method::CONNECT;
        if !asterisk {
            let normalized = normalize_path(target, view.path_normalization).map_err(|e| {
                tracing::info!(target: "meshward::rbac", path = %target, error = %e, "request refused: path cannot be normalized");
                Refusal::bad_request(format!("bad request path: {e}"))
            })?;
            if normalized != target {
                set_path(req, &normalized)?;
            }
        }
        if view.authz.policies.is_empty() {
            return Ok(());
        }
        let attrs = RequestAttrs::clone(&self.conn).with_http(http_attrs(req));
        let decision = evaluate(&view.authz, &attrs);
        report(&decision, &attrs);
        self.metrics.record_authz(&decision, true);
        if decision.allowed {
            Ok(())
        } else {
            Err(Box::new(Refusal {
                response: denied(req),
                details: decision
                    .response_code_details()
                    .unwrap_or_else(|| "rbac_access_denied".to_owned()),
                policy: Some(deciding_policy(&decision)),
            }))
        }
    }
}

/// Replaces the path (and query) of the request's URI.
fn set_path<B>(req: &mut Request<B>, path_and_query: &str) -> Result<(), Box<Refusal>> {
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = Some(
        path_and_query
            .parse()
            .map_err(|_| Refusal::bad_request("bad request path"))?,
    );
    *req.uri_mut() =
        http::Uri::from_parts(parts).map_err(|_| Refusal::bad_request("bad request target"))?;
    Ok(())
}

/// The request attributes policies match: `Host` (or the HTTP/2 authority), method, the
/// (normalized) path without its query, and the headers.
fn http_attrs<B>(req: &Request<B>) -> HttpAttrs {
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    HttpAttrs {
        host,
        method: req.method().as_str().to_owned(),
        path: req.uri().path().to_owned(),
        headers: req
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
    }
}

/// What a denied client receives: gRPC status 7 for a gRPC request (HTTP 200, trailers only,
/// the standard HTTP 403 → gRPC mapping), 403 `RBAC: access denied` otherwise.
fn denied<B>(req: &Request<B>) -> Response<Body> {
    let grpc = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if !grpc {
        return reply(StatusCode::FORBIDDEN, ACCESS_DENIED);
    }
    let mut resp = Response::new(full(""));
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert("grpc-status", HeaderValue::from_static("7"));
    headers.insert("grpc-message", HeaderValue::from_static(ACCESS_DENIED));
    resp
}

/// Logs denials, AUDIT matches and dry-run results with the attributes that matter.
fn report(decision: &Decision, attrs: &RequestAttrs) {
    let principal = attrs.source_principal.as_deref().unwrap_or("-");
    let (method, path) = attrs
        .http
        .as_ref()
        .map_or(("-", "-"), |h| (h.method.as_str(), h.path.as_str()));
    if !decision.allowed {
        tracing::info!(
            target: "meshward::rbac",
            decision = %decision,
            details = decision.response_code_details().unwrap_or_default(),
            source.principal = principal,
            source.ip = %attrs.source_ip,
            destination.port = attrs.destination_port,
            method,
            path,
            "denied"
        );
    } else if !decision.audit.is_empty() || !decision.dry_run.is_empty() {
        tracing::info!(
            target: "meshward::rbac",
            decision = %decision,
            source.principal = principal,
            source.ip = %attrs.source_ip,
            destination.port = attrs.destination_port,
            method,
            path,
            "allowed"
        );
    }
}
