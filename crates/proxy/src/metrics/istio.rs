//! Istio's standard metrics, with Istio's names, types, labels and buckets:
//!
//! - HTTP: `istio_requests_total`, `istio_request_duration_milliseconds`,
//!   `istio_request_bytes`, `istio_response_bytes`;
//! - TCP: `istio_tcp_connections_opened_total`, `istio_tcp_connections_closed_total`,
//!   `istio_tcp_sent_bytes_total`, `istio_tcp_received_bytes_total`.
//!
//! One map per kind, from the full label set to the series; a connection looks its series up
//! once (TCP) or once per distinct status (HTTP, cached per connection by the caller), then
//! every update is a relaxed atomic add. `istio_requests_total` is the duration histogram's
//! count, so a request costs one add per histogram bucket and sum, nothing more.

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, LabelSetEncoder, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;

use super::histogram::{BYTES, DURATION_MS, Histogram};
use super::labels::{ConnLabels, RequestProtocol, ServiceLabels, encode};

/// Most series per kind; past it, observations are counted in
/// `meshward_metrics_series_overflow_total` and not exported (memory stays bounded whatever
/// the mesh does).
pub const MAX_SERIES: usize = 10_000;

/// Envoy's `%RESPONSE_FLAGS%` for "nothing to report".
pub const NO_FLAGS: &str = "-";

/// The labels of one HTTP series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpKey {
    /// Fixed per connection.
    pub conn: Arc<ConnLabels>,
    /// `destination_service*`.
    pub service: Arc<ServiceLabels>,
    /// `http` or `grpc`.
    pub protocol: RequestProtocol,
    /// `response_code` (0: no response was sent).
    pub code: u16,
    /// `grpc_response_status`, gRPC only.
    pub grpc: Option<u8>,
    /// `response_flags`.
    pub flags: &'static str,
}

impl Hash for HttpKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.conn.hash(state);
        self.service.hash(state);
        self.protocol.hash(state);
        state.write_u16(self.code);
        self.grpc.hash(state);
        self.flags.hash(state);
    }
}

impl EncodeLabelSet for HttpKey {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> fmt::Result {
        encode(
            encoder,
            &self.conn,
            &self.service,
            self.protocol,
            Some((self.code, self.grpc)),
            self.flags,
        )
    }
}

/// One HTTP series: the request count is the duration histogram's.
#[derive(Debug)]
pub struct HttpSeries {
    /// `istio_request_duration_milliseconds`, observed in microseconds.
    pub duration: Histogram,
    /// `istio_request_bytes`.
    pub request_bytes: Histogram,
    /// `istio_response_bytes`.
    pub response_bytes: Histogram,
}

impl Default for HttpSeries {
    fn default() -> Self {
        Self {
            duration: Histogram::new(DURATION_MS, 1000.0),
            request_bytes: Histogram::new(BYTES, 1.0),
            response_bytes: Histogram::new(BYTES, 1.0),
        }
    }
}

/// The labels of one TCP series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpKey {
    /// Fixed per connection.
    pub conn: Arc<ConnLabels>,
    /// `destination_service*`.
    pub service: Arc<ServiceLabels>,
    /// `response_flags`.
    pub flags: &'static str,
}

impl Hash for TcpKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.conn.hash(state);
        self.service.hash(state);
        self.flags.hash(state);
    }
}

impl EncodeLabelSet for TcpKey {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> fmt::Result {
        encode(
            encoder,
            &self.conn,
            &self.service,
            RequestProtocol::Tcp,
            None,
            self.flags,
        )
    }
}

/// One TCP series.
#[derive(Debug, Default)]
pub struct TcpSeries {
    /// `istio_tcp_connections_opened_total`.
    pub opened: AtomicU64,
    /// `istio_tcp_connections_closed_total`.
    pub closed: AtomicU64,
    /// `istio_tcp_sent_bytes_total`: server → client.
    pub sent: AtomicU64,
    /// `istio_tcp_received_bytes_total`: client → server.
    pub received: AtomicU64,
}

type Map<K, V> = RwLock<HashMap<K, Arc<V>>>;

/// Every Istio series of one proxy.
#[derive(Debug, Default)]
pub struct IstioSeries {
    http: Map<HttpKey, HttpSeries>,
    tcp: Map<TcpKey, TcpSeries>,
    /// Where observations go once a map is full (never exported).
    http_overflow: Arc<HttpSeries>,
    tcp_overflow: Arc<TcpSeries>,
    /// How many series could not be created.
    pub(super) overflow: AtomicU64,
}

/// Finds or creates the series for `key`; the lock is held for the lookup only.
fn series<K, V>(map: &Map<K, V>, key: &K, overflow: &Arc<V>, full: &AtomicU64) -> Arc<V>
where
    K: Hash + Eq + Clone,
    V: Default,
{
    {
        let read = map.read().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = read.get(key) {
            return Arc::clone(s);
        }
    }
    let mut write = map.write().unwrap_or_else(|p| p.into_inner());
    if write.len() >= MAX_SERIES && !write.contains_key(key) {
        full.fetch_add(1, Ordering::Relaxed);
        return Arc::clone(overflow);
    }
    Arc::clone(write.entry(key.clone()).or_default())
}

fn snapshot<K: Clone, V>(map: &Map<K, V>) -> Vec<(K, Arc<V>)> {
    map.read()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(k, v)| (k.clone(), Arc::clone(v)))
        .collect()
}

impl IstioSeries {
    /// The HTTP series for `key`.
    pub fn http(&self, key: &HttpKey) -> Arc<HttpSeries> {
        series(&self.http, key, &self.http_overflow, &self.overflow)
    }

    /// The TCP series for `key`.
    pub fn tcp(&self, key: &TcpKey) -> Arc<TcpSeries> {
        series(&self.tcp, key, &self.tcp_overflow, &self.overflow)
    }
}

fn counter<K: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: &[(K, u64)],
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (key, value) in rows {
        family
            .encode_family(key)?
            .encode_counter::<NoLabelSet, u64, u64>(value, None)?;
    }
    Ok(())
}

fn histogram(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: &[(HttpKey, Arc<HttpSeries>)],
    pick: fn(&HttpSeries) -> &Histogram,
) -> fmt::Result {
    let mut family: MetricEncoder<'_> =
        encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (key, series) in rows {
        let (sum, count, buckets) = pick(series).snapshot();
        family
            .encode_family(key)?
            .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
    }
    Ok(())
}

impl Collector for IstioSeries {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let http = snapshot(&self.http);
        let requests: Vec<(HttpKey, u64)> = http
            .iter()
            .map(|(k, s)| (k.clone(), s.duration.snapshot().1))
            .collect();
        // Registered without `_total`: the encoder appends it to counters.
        counter(
            &mut encoder,
            "istio_requests",
            "Requests, by Istio's standard labels",
            &requests,
        )?;
        histogram(
            &mut encoder,
            "istio_request_duration_milliseconds",
            "Request duration in milliseconds",
            &http,
            |s| &s.duration,
        )?;
        histogram(
            &mut encoder,
            "istio_request_bytes",
            "Request sizes in bytes (headers and body)",
            &http,
            |s| &s.request_bytes,
        )?;
        histogram(
            &mut encoder,
            "istio_response_bytes",
            "Response sizes in bytes (headers and body)",
            &http,
            |s| &s.response_bytes,
        )?;

        let tcp = snapshot(&self.tcp);
        let column = |pick: fn(&TcpSeries) -> &AtomicU64| -> Vec<(TcpKey, u64)> {
            tcp.iter()
                .map(|(k, s)| (k.clone(), pick(s).load(Ordering::Relaxed)))
                .collect()
        };
        counter(
            &mut encoder,
            "istio_tcp_connections_opened",
            "TCP connections opened",
            &column(|s| &s.opened),
        )?;
        counter(
            &mut encoder,
            "istio_tcp_connections_closed",
            "TCP connections closed",
            &column(|s| &s.closed),
        )?;
        counter(
            &mut encoder,
            "istio_tcp_sent_bytes",
            "Bytes sent to the client on TCP connections (response direction)",
            &column(|s| &s.sent),
        )?;
        counter(
            &mut encoder,
            "istio_tcp_received_bytes",
            "Bytes received from the client on TCP connections (request direction)",
            &column(|s| &s.received),
        )
    }
}
