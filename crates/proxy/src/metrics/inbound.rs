//! STRICT readiness: per inbound port, how many connections arrived over mesh mTLS and how many
//! without it (plaintext, the app's own TLS, or silence), and whether the port admitted them;
//! plus the last few distinct addresses that sent non-mTLS traffic, so an operator sees who
//! would break before turning a port STRICT.
//!
//! Counted once per connection, when its transport is known: the counters of a port are
//! resolved when its listener starts, so a connection costs one relaxed atomic add (and, for
//! non-mTLS only, a short lock on the port's list of recent sources).

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Serialize;

use crate::config::MtlsMode;

/// Distinct non-mTLS source addresses remembered per port.
pub const RECENT_SOURCES: usize = 16;
/// Ports tracked at most (the view bounds them; this bounds what removed ports leave behind).
pub const MAX_PORTS: usize = 1024;

/// `port`, `transport` (`mtls`, `plaintext`), `result` (`accepted`, `refused`).
pub(crate) type InboundLabels = [(&'static str, String); 3];

/// The counters of every inbound port.
#[derive(Debug)]
pub struct InboundStats {
    family: Family<InboundLabels, Counter>,
    ports: RwLock<BTreeMap<u16, Arc<PortStats>>>,
    since: SystemTime,
    /// Counts nothing: for ports past [`MAX_PORTS`].
    untracked: Arc<PortStats>,
}

impl InboundStats {
    pub(crate) fn new(family: Family<InboundLabels, Counter>) -> Self {
        Self {
            family,
            ports: RwLock::new(BTreeMap::new()),
            since: SystemTime::now(),
            untracked: Arc::new(PortStats::detached(0)),
        }
    }

    /// The counters of `port`, created on first use.
    pub fn port(&self, port: u16) -> Arc<PortStats> {
        if let Some(stats) = self
            .ports
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&port)
        {
            return Arc::clone(stats);
        }
        let mut ports = self.ports.write().unwrap_or_else(|p| p.into_inner());
        if ports.len() >= MAX_PORTS && !ports.contains_key(&port) {
            return Arc::clone(&self.untracked);
        }
        let family = &self.family;
        Arc::clone(ports.entry(port).or_insert_with(|| {
            let counter = |transport: &str, result: &str| {
                family.get_or_create_owned(&[
                    ("port", port.to_string()),
                    ("transport", transport.to_owned()),
                    ("result", result.to_owned()),
                ])
            };
            Arc::new(PortStats {
                port,
                mtls_accepted: counter("mtls", "accepted"),
                mtls_refused: counter("mtls", "refused"),
                plaintext_accepted: counter("plaintext", "accepted"),
                plaintext_refused: counter("plaintext", "refused"),
                sources: Mutex::new(VecDeque::with_capacity(RECENT_SOURCES)),
            })
        }))
    }

    /// What `GET /stats/inbound` shows: every port of `modes` (the view's) and every port
    /// that saw a connection, in port order.
    pub fn report(&self, modes: &BTreeMap<u16, MtlsMode>) -> InboundReport {
        let known: Vec<Arc<PortStats>> = self
            .ports
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let mut ports: BTreeMap<u16, PortReport> = known
            .iter()
            .map(|s| (s.port, s.report(modes.get(&s.port).copied())))
            .collect();
        for (port, mode) in modes {
            ports
                .entry(*port)
                .or_insert_with(|| PortStats::detached(*port).report(Some(*mode)));
        }
        InboundReport {
            since: timestamp(self.since),
            ports: ports.into_values().collect(),
        }
    }
}

/// The counters of one inbound port.
#[derive(Debug)]
pub struct PortStats {
    port: u16,
    mtls_accepted: Counter,
    mtls_refused: Counter,
    plaintext_accepted: Counter,
    plaintext_refused: Counter,
    /// Most recent first, distinct addresses.
    sources: Mutex<VecDeque<Source>>,
}

#[derive(Debug, Clone, Copy)]
struct Source {
    address: IpAddr,
    last_seen: SystemTime,
    accepted: u64,
    refused: u64,
}

impl PortStats {
    /// Counters registered nowhere.
    fn detached(port: u16) -> Self {
        Self {
            port,
            mtls_accepted: Counter::default(),
            mtls_refused: Counter::default(),
            plaintext_accepted: Counter::default(),
            plaintext_refused: Counter::default(),
            sources: Mutex::new(VecDeque::new()),
        }
    }

    /// A connection over mesh mTLS: its handshake succeeded (`accepted`) or not.
    pub fn mtls(&self, accepted: bool) {
        if accepted {
            self.mtls_accepted.inc();
        } else {
            self.mtls_refused.inc();
        }
    }

    /// A connection without mesh mTLS from `source`: forwarded (`accepted`) or closed.
    pub fn plaintext(&self, source: IpAddr, accepted: bool) {
        if accepted {
            self.plaintext_accepted.inc();
        } else {
            self.plaintext_refused.inc();
        }
        let now = SystemTime::now();
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        let mut entry = sources
            .iter()
            .position(|s| s.address == source)
            .and_then(|i| sources.remove(i))
            .unwrap_or(Source {
                address: source,
                last_seen: now,
                accepted: 0,
                refused: 0,
            });
        entry.last_seen = now;
        if accepted {
            entry.accepted += 1;
        } else {
            entry.refused += 1;
        }
        sources.push_front(entry);
        sources.truncate(RECENT_SOURCES);
    }

    fn report(&self, mode: Option<MtlsMode>) -> PortReport {
        let sources = self
            .sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|s| SourceReport {
                address: s.address,
                last_seen: timestamp(s.last_seen),
                last_seen_unix_ms: unix_ms(s.last_seen),
                accepted: s.accepted,
                refused: s.refused,
            })
            .collect();
        PortReport {
            port: self.port,
            mode,
            mtls: Counts {
                accepted: self.mtls_accepted.get(),
                refused: self.mtls_refused.get(),
            },
            plaintext: Counts {
                accepted: self.plaintext_accepted.get(),
                refused: self.plaintext_refused.get(),
            },
            plaintext_sources: sources,
        }
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn timestamp(t: SystemTime) -> String {
    let mut out = String::with_capacity(24);
    crate::access_log::push_time(&mut out, t);
    out
}

/// `GET /stats/inbound`.
#[derive(Debug, Clone, Serialize)]
pub struct InboundReport {
    /// When counting started (the proxy's start), RFC 3339 UTC.
    pub since: String,
    /// One entry per port, in port order.
    pub ports: Vec<PortReport>,
}

/// One inbound port.
#[derive(Debug, Clone, Serialize)]
pub struct PortReport {
    /// The port.
    pub port: u16,
    /// Its PeerAuthentication mode now; `null` once the port left the view.
    pub mode: Option<MtlsMode>,
    /// Connections over mesh mTLS.
    pub mtls: Counts,
    /// Connections without mesh mTLS (plaintext, the app's own TLS, silence).
    pub plaintext: Counts,
    /// The last distinct addresses that connected without mesh mTLS, most recent first.
    pub plaintext_sources: Vec<SourceReport>,
}

/// Accepted and refused connections.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Counts {
    /// Admitted by the port's mode (for mTLS: the handshake succeeded).
    pub accepted: u64,
    /// Closed by the port's mode (for mTLS: the handshake failed).
    pub refused: u64,
}

/// One address that connected without mesh mTLS.
#[derive(Debug, Clone, Serialize)]
pub struct SourceReport {
    /// The source IP.
    pub address: IpAddr,
    /// Its last connection, RFC 3339 UTC.
    pub last_seen: String,
    /// The same, Unix milliseconds.
    pub last_seen_unix_ms: u64,
    /// Its connections the port admitted.
    pub accepted: u64,
    /// Its connections the port refused.
    pub refused: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_ports_and_remembers_recent_distinct_sources() {
        let stats = InboundStats::new(Family::default());
        let port = stats.port(8080);
        assert!(Arc::ptr_eq(&port, &stats.port(8080)), "resolved once");
        port.mtls(true);
        port.mtls(false);
        for i in 0..20u8 {
            port.plaintext(IpAddr::from([10, 0, 0, i]), false);
        }
        port.plaintext(IpAddr::from([10, 0, 0, 19]), true);
        let modes = BTreeMap::from([(8080, MtlsMode::Strict), (9090, MtlsMode::Permissive)]);
        let report = stats.report(&modes);
        assert_eq!(report.ports.len(), 2);
        let p = &report.ports[0];
        assert_eq!((p.port, p.mode), (8080, Some(MtlsMode::Strict)));
        assert_eq!((p.mtls.accepted, p.mtls.refused), (1, 1));
        assert_eq!((p.plaintext.accepted, p.plaintext.refused), (1, 20));
        assert_eq!(p.plaintext_sources.len(), RECENT_SOURCES);
        let latest = &p.plaintext_sources[0];
        assert_eq!(latest.address, IpAddr::from([10, 0, 0, 19]));
        assert_eq!((latest.accepted, latest.refused), (1, 1));
        // The oldest addresses were forgotten.
        assert!(
            p.plaintext_sources
                .iter()
                .all(|s| s.address != IpAddr::from([10, 0, 0, 0]))
        );
        // A port of the view without traffic is listed with zeros.
        let quiet = &report.ports[1];
        assert_eq!((quiet.port, quiet.plaintext.accepted), (9090, 0));
        // A port that left the view keeps its counts, without a mode.
        let gone = stats.report(&BTreeMap::new());
        assert_eq!(gone.ports[0].mode, None);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["ports"][0]["mode"], "STRICT");
        assert_eq!(
            json["ports"][0]["plaintext_sources"][0]["address"],
            "10.0.0.19"
        );
    }
}
