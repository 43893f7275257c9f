//! Health and admin HTTP: `/healthz/ready` on the readiness port, `/stats/prometheus` on the
//! stats port (Istio's 15090, for any scraper), and on the admin port (to loopback clients
//! only) `/config_dump`, `/certs`, `/stats/prometheus`, `/stats/inbound` (STRICT readiness),
//! `/logging?level=` and `/quitquitquit`.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::creds::CredsReceiver;
use crate::drain::Drain;
use crate::io::accept_until;
use crate::metrics::Metrics;
use crate::outbound::Outbound;
use crate::view::View;
use crate::web::{Body, full, http1_server, reply, serve_until};

/// Changes the log filter at runtime (`/logging?level=`); returns the filter now in force. An
/// empty spec changes nothing (`GET /logging` reads the filter).
pub type LogControl = Arc<dyn Fn(&str) -> Result<String, String> + Send + Sync>;

/// Below this fraction of its lifetime left, a certificate whose renewal is failing makes the
/// proxy not ready.
const RENEWAL_GRACE: f64 = 0.1;

/// What the control-plane client reports about itself.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// Whether a first view has been applied.
    pub has_view: bool,
    /// The last renewal error, cleared by a successful renewal.
    pub renewal_error: Option<String>,
}

/// Readiness: a valid certificate, a first view, not draining, and renewal not failing near
/// expiry.
#[derive(Debug, Clone)]
pub struct Health {
    /// Current credentials.
    pub creds: CredsReceiver,
    /// Control-plane status.
    pub status: watch::Receiver<Status>,
    /// The proxy's drain.
    pub drain: Drain,
    /// The view in force.
    pub view: watch::Receiver<Arc<View>>,
    /// The inbound ports with a listener.
    pub listening: watch::Receiver<BTreeSet<u16>>,
}

impl Health {
    /// `Ok` when ready, else why not.
    pub fn check(&self) -> Result<(), String> {
        if self.drain.is_signaled() {
            return Err("draining".to_owned());
        }
        let Some(creds) = self.creds.borrow().clone() else {
            return Err("no certificate yet".to_owned());
        };
        let now = SystemTime::now();
        if creds.is_expired(now) {
            return Err("certificate expired".to_owned());
        }
        let status = self.status.borrow().clone();
        if !status.has_view {
            return Err("no configuration from the control plane yet".to_owned());
        }
        let listening = self.listening.borrow();
        if let Some(port) = self
            .view
            .borrow()
            .inbound
            .keys()
            .find(|p| !listening.contains(p))
        {
            return Err(format!("inbound port {port} is not listening"));
        }
        if let Some(err) = status.renewal_error {
            let life = creds
                .not_after()
                .duration_since(creds.not_before())
                .unwrap_or_default();
            let left = creds.not_after().duration_since(now).unwrap_or_default();
            if left.as_secs_f64() < life.as_secs_f64() * RENEWAL_GRACE {
                return Err(format!("certificate renewal keeps failing: {err}"));
            }
        }
        Ok(())
    }

    /// Waits until ready (or the drain), checking whenever credentials or status change.
    pub async fn wait_ready(&self) -> bool {
        let mut creds = self.creds.clone();
        let mut status = self.status.clone();
        let mut view = self.view.clone();
        let mut listening = self.listening.clone();
        loop {
            if self.check().is_ok() {
                return true;
            }
            tokio::select! {
                () = self.drain.signaled() => return false,
                r = creds.changed() => if r.is_err() { return false },
                r = status.changed() => if r.is_err() { return false },
                r = view.changed() => if r.is_err() { return false },
                r = listening.changed() => if r.is_err() { return false },
            }
        }
    }
}

/// What the admin endpoints read and control.
#[derive(Clone)]
pub struct Admin {
    /// Readiness inputs (and the credentials and view).
    pub health: Health,
    /// The workload served, `name.ns`, if known.
    pub workload: Option<String>,
    /// Runtime log filter control.
    pub log: Option<LogControl>,
    /// Cancelled by `/quitquitquit`.
    pub quit: CancellationToken,
    /// Served at `/stats/prometheus`.
    pub metrics: Arc<Metrics>,
    /// Its traffic-policy state, served at `/clusters`.
    pub outbound: Arc<Outbound>,
}

/// What a listener of [`Admin::serve`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything, to loopback clients only.
    Admin,
    /// `/healthz/ready`, to anyone.
    Ready,
    /// `/stats/prometheus`, to anyone.
    Stats,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Ready => "readiness",
            Self::Stats => "stats",
        }
    }
}

/// The metrics page in the OpenMetrics text format, which is what the encoder writes (counter
/// families typed under their name, samples with `_total`, `# EOF`).
fn metrics_reply(metrics: &Metrics) -> Response<Body> {
    let mut resp = Response::new(full(metrics.render()));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
    );
    resp
}

fn json_reply(value: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(full(format!("{value:#}\n")));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// `/certs`: the summary of the current certificate, and each certificate of the chain and of
/// the trust bundle in Envoy's `/certs` shape (`cert_chain`, `ca_cert`) with its serial
/// number, subject, SANs and validity.
fn certs_dump(creds: Option<&crate::creds::Credentials>) -> serde_json::Value {
    let Some(creds) = creds else {
        return json!({ "certificate": null, "certificates": [] });
    };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let chain: Vec<_> = creds
        .chain()
        .iter()
        .map(|der| cert_details(der, now, None))
        .collect();
    let roots: Vec<_> = creds
        .bundles()
        .iter()
        .flat_map(|bundle| {
            let domain = bundle.trust_domain().to_string();
            bundle
                .roots()
                .iter()
                .map(move |der| cert_details(der, now, Some(&domain)))
        })
        .collect();
    json!({
        "certificate": creds.summary(),
        "certificates": [{ "cert_chain": chain, "ca_cert": roots }],
    })
}

/// One certificate as Envoy's `/certs` describes it (serial number in hex without leading
/// zeros, validity in RFC 3339), plus its subject, its validity in Unix seconds and, for a
/// root, its trust domain.
fn cert_details(
    der: &rustls_pki_types::CertificateDer<'_>,
    now: i64,
    trust_domain: Option<&str>,
) -> serde_json::Value {
    let info = match meshward_identity::describe(der) {
        Ok(info) => info,
        Err(e) => return json!({ "error": e.to_string() }),
    };
    let serial: String = info.serial.chars().filter(|c| *c != ':').collect();
    let serial = match serial.trim_start_matches('0') {
        "" => "0".to_owned(),
        trimmed => trimmed.to_owned(),
    };
    let sans: Vec<_> = info
        .sans
        .iter()
        .map(|san| match san.split_once(':') {
            Some(("URI", v)) => json!({ "uri": v }),
            Some(("DNS", v)) => json!({ "dns": v }),
            Some(("IP", v)) => json!({ "ip_address": v }),
            _ => json!({ "other": san }),
        })
        .collect();
    let mut details = json!({
        "serial_number": serial,
        "subject": info.subject,
        "issuer": info.issuer,
        "subject_alt_names": sans,
        "valid_from": info.not_before,
        "expiration_time": info.not_after,
        "days_until_expiration": ((info.not_after_unix - now) / 86_400).max(0),
        "expiration_time_unix": info.not_after_unix,
    });
    if let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) {
        details["valid_from_unix"] = json!(cert.validity().not_before.timestamp());
    }
    if let Some(domain) = trust_domain {
        details["trust_domain"] = json!(domain);
    }
    details
}

impl Admin {
    fn route(&self, req: &Request<Incoming>) -> Response<Body> {
        let certs = || self.health.creds.borrow().as_ref().map(|c| c.summary());
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/healthz/ready") => self.ready(),
            (&Method::GET, "/config_dump") => {
                let view = self.health.view.borrow().clone();
                json_reply(&json!({
                    "workload": self.workload,
                    "view": &*view,
                    "certs": certs(),
                    "ready": self.health.check().err().unwrap_or_else(|| "ready".to_owned()),
                }))
            }
            (&Method::GET, "/certs") => {
                let creds = self.health.creds.borrow().clone();
                json_reply(&certs_dump(creds.as_deref()))
            }
            (&Method::GET, "/stats/prometheus") => metrics_reply(&self.metrics),
            (&Method::GET, "/clusters") => json_reply(&self.outbound.clusters_report()),
            (&Method::GET, "/stats/inbound") => {
                let view = self.health.view.borrow().clone();
                json_reply(&json!(self.metrics.inbound.report(&view.inbound)))
            }
            (&Method::POST | &Method::GET, "/logging") => self.logging(req),
            (&Method::POST, "/quitquitquit") => {
                self.quit.cancel();
                reply(StatusCode::OK, "OK")
            }
            (_, "/quitquitquit") => reply(StatusCode::METHOD_NOT_ALLOWED, "use POST"),
            _ => reply(StatusCode::NOT_FOUND, "unknown admin path"),
        }
    }

    fn ready(&self) -> Response<Body> {
        match self.health.check() {
            Ok(()) => reply(StatusCode::OK, "ready"),
            Err(reason) => reply(StatusCode::SERVICE_UNAVAILABLE, reason),
        }
    }

    fn logging(&self, req: &Request<Incoming>) -> Response<Body> {
        let Some(log) = &self.log else {
            return reply(
                StatusCode::NOT_IMPLEMENTED,
                "log level is not adjustable here",
            );
        };
        let level = req
            .uri()
            .query()
            .unwrap_or("")
            .split('&')
            .find_map(|kv| kv.strip_prefix("level="));
        match level {
            Some(level) => match log(level) {
                Ok(now) => reply(StatusCode::OK, format!("log filter: {now}")),
                Err(err) => reply(StatusCode::BAD_REQUEST, err),
            },
            // `GET /logging`: the filter in force, unchanged.
            None if req.method() == Method::GET => match log("") {
                Ok(now) => reply(StatusCode::OK, format!("log filter: {now}")),
                Err(err) => reply(StatusCode::INTERNAL_SERVER_ERROR, err),
            },
            None => reply(
                StatusCode::BAD_REQUEST,
                "usage: /logging?level=info|debug|...",
            ),
        }
    }

    /// Serves `role` until `stop`: the admin port answers loopback peers only, the readiness
    /// and stats ports answer their one path to anyone.
    pub async fn serve(self, listener: TcpListener, role: Role, stop: CancellationToken) {
        accept_until(listener, stop.clone(), role.name(), move |tcp, peer| {
            tokio::spawn(self.clone().serve_conn(tcp, peer, role, stop.clone()));
        })
        .await;
    }

    async fn serve_conn(
        self,
        tcp: tokio::net::TcpStream,
        peer: SocketAddr,
        role: Role,
        stop: CancellationToken,
    ) {
        let svc = service_fn(move |req: Request<Incoming>| {
            let resp = match role {
                Role::Ready if req.uri().path() == "/healthz/ready" => self.ready(),
                Role::Ready => reply(StatusCode::NOT_FOUND, "only /healthz/ready here"),
                Role::Stats if req.uri().path() == "/stats/prometheus" => {
                    metrics_reply(&self.metrics)
                }
                Role::Stats => reply(StatusCode::NOT_FOUND, "only /stats/prometheus here"),
                Role::Admin if !peer.ip().is_loopback() => {
                    reply(StatusCode::FORBIDDEN, "admin is for loopback clients only")
                }
                Role::Admin => self.route(&req),
            };
            async move { Ok::<_, Infallible>(resp) }
        });
        let conn = http1_server().serve_connection(TokioIo::new(tcp), svc);
        serve_until(conn, stop.cancelled(), |c| c.graceful_shutdown(), "admin").await;
    }
}

#[cfg(test)]
mod tests;
