//! Assembly: binds every listener, starts the credential source, and runs until a shutdown,
//! then drains.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::access_log::AccessLog;
pub use crate::admin::LogControl;
use crate::admin::{Admin, Health, Role, Status};
use crate::config::{IdentitySource, ProxyConfig};
use crate::creds::{CredsStore, FileError, load_files, watch_files};
use crate::drain::Drain;
use crate::inbound::Inbound;
use crate::metrics::Metrics;
use crate::metrics::labels::WorkloadLabels;
use crate::outbound::Outbound;
use crate::telemetry::Telemetry;
use crate::view::{TelemetryView, View};
use crate::xds::discovery::Discovery;
use crate::xds::{ControlPlane, XdsError, certify};

/// Why the proxy cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A listener cannot be bound.
    #[error("{what}: cannot bind {addr}: {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// Its address.
        addr: SocketAddr,
        /// The I/O error.
        source: io::Error,
    },
    /// An inbound port cannot be bound.
    #[error("{0}")]
    Inbound(io::Error),
    /// The static identity files cannot be used.
    #[error("identity: {0}")]
    Identity(#[from] FileError),
    /// The control-plane settings cannot be used.
    #[error("control plane: {0}")]
    ControlPlane(#[from] XdsError),
    /// Flags that do not go together.
    #[error("{0}")]
    Config(&'static str),
}

/// The addresses the proxy listens on.
#[derive(Debug, Clone, Default)]
pub struct Bound {
    /// Inbound service ports.
    pub inbound: Vec<SocketAddr>,
    /// The outbound forward proxy.
    pub outbound: Option<SocketAddr>,
    /// Static upstream listeners, in flag order.
    pub upstreams: Vec<SocketAddr>,
    /// Admin.
    pub admin: Option<SocketAddr>,
    /// Readiness.
    pub ready: Option<SocketAddr>,
    /// Istio's stats port.
    pub stats: Option<SocketAddr>,
}

/// A running proxy.
#[derive(Debug)]
pub struct Proxy {
    bound: Bound,
    /// Kept so readiness watchers never see a closed channel in standalone mode.
    _status: watch::Sender<Status>,
    _view: watch::Sender<Arc<View>>,
    drain: Drain,
    quit: CancellationToken,
    stop_admin: CancellationToken,
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { what, addr, source })
}

impl Proxy {
    /// Loads the identity, binds every listener and starts serving. Returns once everything is
    /// bound; readiness follows when a certificate and a view are in place.
    pub async fn start(config: ProxyConfig, log: Option<LogControl>) -> Result<Self, Error> {
        let drain = Drain::new();
        let quit = CancellationToken::new();
        let stop_admin = CancellationToken::new();
        let store = CredsStore::new();
        let creds = store.subscribe();

        let namespace = config
            .workload
            .as_ref()
            .map_or_else(|| "default".to_owned(), |w| w.namespace.clone());
        let workload = config
            .workload
            .as_ref()
            .map_or_else(WorkloadLabels::unknown, |w| {
                Arc::new(WorkloadLabels::named(&w.name, &w.namespace))
            });
        let view = View {
            telemetry: TelemetryView {
                workload,
                ..TelemetryView::default()
            },
            authz: Default::default(),
            path_normalization: Default::default(),
            outbound_policy: None,
            opaque: Default::default(),
            version: 0,
            namespace,
            trust_domain: config.trust_domain.clone(),
            inbound: config
                .inbound
                .iter()
                .map(|p| (p.port, p.mode))
                .collect::<BTreeMap<_, _>>(),
            services: Vec::new(),
        };
        let (view_tx, view_rx) = watch::channel(Arc::new(view));
        let (status_tx, status_rx) = watch::channel(Status::default());
        let metrics = Arc::new(Metrics::default());
        metrics.watch_certificate(creds.clone());
        let telemetry = Telemetry::new(
            Arc::clone(&metrics),
            AccessLog::new(config.access_log, config.access_log_sink.clone()),
        );
        tokio::spawn(follow_access_log(
            view_rx.clone(),
            telemetry.clone(),
            drain.token().clone(),
        ));

        match &config.identity {
            IdentitySource::Files { cert, key, bundle } => {
                store.publish(load_files(cert, key, bundle, &config.trust_domain).await?);
                tokio::spawn(watch_files(
                    store.clone(),
                    cert.clone(),
                    key.clone(),
                    bundle.clone(),
                    config.trust_domain.clone(),
                    drain.token().clone(),
                ));
                // Standalone: the flags are the whole configuration.
                status_tx.send_modify(|s| s.has_view = true);
            }
            IdentitySource::ControlPlane {
                address,
                root,
                join_token,
            } => {
                let workload = config.workload.clone().ok_or(Error::Config(
                    "--workload NAME.NS is required with --control-plane",
                ))?;
                if !config.inbound.is_empty() {
                    return Err(Error::Config(
                        "--inbound ports come from the control plane; do not combine them with --control-plane",
                    ));
                }
                let cp = ControlPlane::new(address.clone(), root, &config.trust_domain).await?;
                tokio::spawn(certify::run(
                    cp.clone(),
                    join_token.clone(),
                    store.clone(),
                    status_tx.clone(),
                    Arc::clone(&metrics),
                    drain.token().clone(),
                ));
                let discovery = Discovery {
                    control_plane: cp,
                    workload,
                    creds: creds.clone(),
                    store: store.clone(),
                    view: view_tx.clone(),
                    status: status_tx.clone(),
                };
                tokio::spawn(discovery.run(drain.token().clone()));
            }
        }

        let mut bound = Bound::default();
        let inbound = Inbound::new(
            config.address,
            config.app_address,
            creds.clone(),
            view_rx.clone(),
            config.timeouts,
            drain.clone(),
            telemetry.clone(),
        );
        // Transparent mode listens on every address of the network namespace: REDIRECT sends
        // inbound connections to the interface's address and the app's own to 127.0.0.1.
        let any = if config.address.is_ipv4() {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        };
        if let Some(mode) = &config.transparent {
            let addr = SocketAddr::new(any, mode.inbound_capture_port);
            let listener = bind("inbound capture", addr).await?;
            bound.inbound = vec![listener.local_addr().unwrap_or(addr)];
            inbound.start_redirected(listener);
        } else {
            bound.inbound = inbound.start().await.map_err(Error::Inbound)?;
        }

        let outbound = Outbound::new(
            config.address,
            creds.clone(),
            view_rx.clone(),
            config.timeouts,
            drain.clone(),
            telemetry,
        );
        if config.outbound_port != 0 {
            let ip = if config.transparent.is_some() {
                any
            } else {
                config.address
            };
            let addr = SocketAddr::new(ip, config.outbound_port);
            let listener = bind("outbound", addr).await?;
            bound.outbound = Some(listener.local_addr().unwrap_or(addr));
            match config.transparent {
                Some(mode) => tokio::spawn(Arc::clone(&outbound).serve_captured(listener, mode)),
                None => tokio::spawn(Arc::clone(&outbound).serve_http_proxy(listener)),
            };
        }
        for upstream in &config.upstreams {
            let listener = bind("upstream", upstream.listen).await?;
            bound
                .upstreams
                .push(listener.local_addr().unwrap_or(upstream.listen));
            tokio::spawn(Arc::clone(&outbound).serve_upstream(upstream.clone(), listener));
        }

        let health = Health {
            creds,
            status: status_rx,
            drain: drain.clone(),
            view: view_rx,
            listening: inbound.listening(),
        };
        let admin = Admin {
            health: health.clone(),
            workload: config.workload.as_ref().map(ToString::to_string),
            log,
            quit: quit.clone(),
            metrics,
            outbound,
        };
        for (what, port, role) in [
            ("admin", config.admin_port, Role::Admin),
            ("readiness", config.ready_port, Role::Ready),
            ("stats", config.stats_port, Role::Stats),
        ] {
            if port == 0 {
                continue;
            }
            // Transparent mode: admin on the namespace's own loopback, as Envoy's.
            let ip = match role {
                Role::Admin if config.transparent.is_some() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                _ => config.address,
            };
            let addr = SocketAddr::new(ip, port);
            let listener = bind(what, addr).await?;
            let local = Some(listener.local_addr().unwrap_or(addr));
            match role {
                Role::Admin => bound.admin = local,
                Role::Ready => bound.ready = local,
                Role::Stats => bound.stats = local,
            }
            tokio::spawn(admin.clone().serve(listener, role, stop_admin.clone()));
        }

        let summary = format!("{bound:?}");
        tokio::spawn(async move {
            if health.wait_ready().await {
                tracing::info!(listeners = %summary, "proxy ready");
            }
        });
        Ok(Self {
            bound,
            _status: status_tx,
            _view: view_tx,
            drain,
            quit,
            stop_admin,
        })
    }

    /// Where the proxy listens.
    pub fn bound(&self) -> &Bound {
        &self.bound
    }

    /// Resolves when `/quitquitquit` was called.
    pub async fn quit_requested(&self) {
        self.quit.cancelled().await;
    }

    /// Turns not-ready, stops accepting, and waits up to `timeout` for in-flight connections.
    /// Returns whether everything finished in time.
    pub async fn shutdown(self, timeout: Duration) -> bool {
        tracing::info!(?timeout, "draining");
        let clean = self.drain.drain(timeout).await;
        self.stop_admin.cancel();
        clean
    }
}

/// Applies the access log format of each view (unless `--access-log` forced one).
async fn follow_access_log(
    mut view: watch::Receiver<Arc<View>>,
    telemetry: Telemetry,
    stop: CancellationToken,
) {
    loop {
        if let Some(format) = view.borrow_and_update().telemetry.access_log {
            telemetry.access_log().follow(format);
        }
        tokio::select! {
            () = stop.cancelled() => return,
            changed = view.changed() => if changed.is_err() { return },
        }
    }
}
