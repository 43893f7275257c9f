//! Which proxies are connected, which view version each was sent and acknowledged, and the
//! certificate each holds: the data behind `meshward proxy-status` and the rollout gates.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use meshward_api::v1;

/// One proxy's sync state.
#[derive(Debug, Clone, Default)]
pub struct ProxyRecord {
    /// `name.namespace` of the workload.
    pub workload: String,
    /// The SPIFFE ID it authenticated with.
    pub identity: String,
    /// Last view version sent to it.
    pub version_sent: u64,
    /// Last view version it acknowledged.
    pub version_acked: u64,
    /// Reason of its last NACK, empty when its last answer was an ACK.
    pub nack_reason: String,
    /// Expiry of its current certificate, Unix seconds (0 when unknown).
    pub cert_not_after: i64,
    /// Whether its discovery stream is open now.
    pub connected: bool,
    /// When a view was last sent to it, Unix milliseconds (0: never).
    pub last_sent_ms: i64,
    /// When it last acknowledged a view, Unix milliseconds (0: never).
    pub last_acked_ms: i64,
}

/// The registry, shared by the discovery and admin services.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    proxies: Arc<Mutex<BTreeMap<String, ProxyRecord>>>,
}

impl Registry {
    /// Records a change to the proxy of `workload`, creating its record on first sight.
    pub fn update(&self, workload: &str, change: impl FnOnce(&mut ProxyRecord)) {
        let mut proxies = self.lock();
        let record = proxies
            .entry(workload.to_owned())
            .or_insert_with(|| ProxyRecord {
                workload: workload.to_owned(),
                ..ProxyRecord::default()
            });
        change(record);
    }

    /// Every proxy ever seen since start, sorted by workload.
    pub fn snapshot(&self) -> Vec<ProxyRecord> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, ProxyRecord>> {
        // Records are plain values updated in one closure; a poisoned lock holds no torn state.
        self.proxies.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Now, Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl From<ProxyRecord> for v1::ProxyStatus {
    fn from(r: ProxyRecord) -> Self {
        let (workload, namespace) = match r.workload.split_once('.') {
            Some((w, n)) => (w.to_owned(), n.to_owned()),
            None => (r.workload.clone(), String::new()),
        };
        Self {
            workload,
            namespace,
            identity: r.identity,
            version_sent: r.version_sent,
            version_acked: r.version_acked,
            nack_reason: r.nack_reason,
            cert_not_after: r.cert_not_after,
            connected: r.connected,
            last_sent_ms: r.last_sent_ms,
            last_acked_ms: r.last_acked_ms,
        }
    }
}
