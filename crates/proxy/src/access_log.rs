//! Access logs: one line per HTTP request and per TCP connection (at close), on standard
//! output, in Envoy's default text format or as JSON.
//!
//! The format comes from the view (MeshConfig `accessLogFile`/`accessLogEncoding`, or the
//! workload's `meshward.io/access-log` annotation) unless `--access-log` forces one. Lines are
//! formatted on the data path and handed to a bounded queue that one thread writes out in
//! batches; when the queue is full the line is dropped and counted
//! (`meshward_access_log_dropped_total`): logging never blocks a request.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

/// Lines waiting for the writer, at most.
pub const QUEUE: usize = 4096;
/// Lines written per `write` at most.
const BATCH: usize = 64;
/// Longest value taken from a request (path, headers); longer ones are cut.
pub const MAX_FIELD: usize = 2048;

/// How access log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    /// No access logs.
    Off,
    /// Envoy's default text format.
    Text,
    /// One JSON object per line.
    Json,
}

impl FromStr for AccessLogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "off" => Ok(Self::Off),
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err(format!(
                "unknown access log format `{s}` (expected off, text or json)"
            )),
        }
    }
}

impl AccessLogFormat {
    fn code(self) -> u8 {
        match self {
            Self::Off => 0,
            Self::Text => 1,
            Self::Json => 2,
        }
    }

    fn from_code(code: u8) -> Self {
        match code {
            1 => Self::Text,
            2 => Self::Json,
            _ => Self::Off,
        }
    }
}

/// Where lines go: standard output, or a channel (tests, embedding).
#[derive(Debug, Clone, Default)]
pub enum AccessLogSink {
    /// The process's standard output, written by a dedicated thread.
    #[default]
    Stdout,
    /// A bounded channel; full means dropped.
    Channel(SyncSender<String>),
}

/// The access log of one proxy.
#[derive(Debug, Default)]
pub struct AccessLog {
    forced: Option<AccessLogFormat>,
    current: AtomicU8,
    sink: AccessLogSink,
    stdout: OnceLock<Option<SyncSender<String>>>,
}

impl AccessLog {
    /// An access log writing to `sink`; `forced` wins over every view.
    pub fn new(forced: Option<AccessLogFormat>, sink: AccessLogSink) -> Self {
        Self {
            current: AtomicU8::new(forced.unwrap_or(AccessLogFormat::Off).code()),
            forced,
            sink,
            stdout: OnceLock::new(),
        }
    }

    /// Applies the view's format, unless a format is forced.
    pub fn follow(&self, from_view: AccessLogFormat) {
        if self.forced.is_none() {
            self.current.store(from_view.code(), Ordering::Relaxed);
        }
    }

    /// The format in force.
    pub fn format(&self) -> AccessLogFormat {
        AccessLogFormat::from_code(self.current.load(Ordering::Relaxed))
    }

    /// Whether lines are written at all.
    pub fn enabled(&self) -> bool {
        self.format() != AccessLogFormat::Off
    }

    /// Formats and queues one entry; `false` when it was dropped (queue full or no writer).
    pub fn write(&self, entry: &Entry<'_>) -> bool {
        let line = match self.format() {
            AccessLogFormat::Off => return true,
            AccessLogFormat::Text => entry.text(),
            AccessLogFormat::Json => entry.json(),
        };
        let tx = match &self.sink {
            AccessLogSink::Channel(tx) => Some(tx),
            AccessLogSink::Stdout => self.stdout.get_or_init(stdout_writer).as_ref(),
        };
        match tx.map(|tx| tx.try_send(line)) {
            Some(Ok(())) => true,
            Some(Err(TrySendError::Full(_) | TrySendError::Disconnected(_))) | None => false,
        }
    }
}

/// Starts the thread that writes queued lines to standard output, a batch per `write`.
fn stdout_writer() -> Option<SyncSender<String>> {
    let (tx, rx) = sync_channel::<String>(QUEUE);
    let spawned = std::thread::Builder::new()
        .name("access-log".to_owned())
        .spawn(move || {
            let mut batch = Vec::with_capacity(16 * 1024);
            while let Ok(first) = rx.recv() {
                batch.clear();
                let mut next = Some(first);
                let mut lines = 0;
                while let Some(line) = next.take() {
                    batch.extend_from_slice(line.as_bytes());
                    batch.push(b'\n');
                    lines += 1;
                    if lines < BATCH {
                        next = rx.try_recv().ok();
                    }
                }
                let mut out = std::io::stdout().lock();
                // A closed stdout loses the lines; the queue keeps draining so nobody waits.
                let _ = out.write_all(&batch).and_then(|()| out.flush());
            }
        });
    match spawned {
        Ok(_) => Some(tx),
        Err(err) => {
            tracing::warn!(%err, "cannot start the access log writer; access logs are dropped");
            None
        }
    }
}

/// Which side of the proxy an entry describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// A caller reached this workload.
    Inbound,
    /// This workload called out.
    Outbound,
}

/// One access log entry: Envoy's default fields, plus what Istio's text format lacks (TLS
/// details, the verified peer, the deciding policy), which JSON carries.
#[derive(Debug, Clone, Serialize)]
pub struct Entry<'a> {
    /// When the request (or connection) started.
    #[serde(rename = "start_time", serialize_with = "rfc3339")]
    pub start: SystemTime,
    /// `:method`.
    pub method: Option<&'a str>,
    /// `:path`, after normalization.
    pub path: Option<&'a str>,
    /// `HTTP/1.1`, `HTTP/2`; none for TCP.
    pub protocol: Option<&'a str>,
    /// The status sent; 0 for TCP or when no response was sent.
    pub response_code: u16,
    /// Envoy's flags (`-`, `UF`, `NR`, `DC`, …).
    pub response_flags: &'a str,
    /// `via_upstream`, `rbac_access_denied_matched_policy[…]`, …
    pub response_code_details: Option<&'a str>,
    /// Why the proxy closed the connection (TCP denials).
    pub connection_termination_details: Option<&'a str>,
    /// Why the upstream connection failed.
    pub upstream_transport_failure_reason: Option<&'a str>,
    /// Body bytes (HTTP) or bytes (TCP) from the client.
    pub bytes_received: u64,
    /// Body bytes (HTTP) or bytes (TCP) to the client.
    pub bytes_sent: u64,
    /// Milliseconds from start to the last byte.
    #[serde(rename = "duration")]
    pub duration_ms: u64,
    /// Milliseconds until the upstream's response head.
    #[serde(rename = "upstream_service_time")]
    pub upstream_service_time_ms: Option<u64>,
    /// `X-Forwarded-For`.
    pub x_forwarded_for: Option<&'a str>,
    /// `User-Agent`.
    pub user_agent: Option<&'a str>,
    /// `X-Request-Id`.
    pub request_id: Option<&'a str>,
    /// `:authority` / `Host`.
    pub authority: Option<&'a str>,
    /// The upstream address (the app, or the endpoint).
    pub upstream_host: Option<SocketAddr>,
    /// Istio's cluster name: `inbound|8080||`, `outbound|8000||httpbin.ns.svc.cluster.local`.
    pub upstream_cluster: Option<&'a str>,
    /// The local address of the upstream connection.
    pub upstream_local_address: Option<SocketAddr>,
    /// The address the client reached.
    pub downstream_local_address: Option<SocketAddr>,
    /// The client's address.
    pub downstream_remote_address: Option<SocketAddr>,
    /// SNI of the mesh TLS connection.
    pub requested_server_name: Option<&'a str>,
    /// Istio's route name (`default` outbound).
    pub route_name: Option<&'a str>,
    /// Inbound or outbound.
    pub direction: Direction,
    /// The destination service (FQDN).
    pub upstream_service: Option<&'a str>,
    /// TLS version of the mesh connection.
    pub tls_version: Option<&'a str>,
    /// Its cipher suite.
    pub tls_cipher_suite: Option<&'a str>,
    /// The verified SPIFFE ID of the peer sidecar.
    pub peer_principal: Option<&'a str>,
    /// The AuthorizationPolicy that denied, `ns/name` (`none`: no ALLOW policy matched).
    pub authz_policy: Option<&'a str>,
    /// The rule of that policy.
    pub authz_rule: Option<usize>,
}

impl Entry<'_> {
    /// An entry with nothing but its start and direction.
    pub fn new(start: SystemTime, direction: Direction) -> Self {
        Self {
            start,
            method: None,
            path: None,
            protocol: None,
            response_code: 0,
            response_flags: "-",
            response_code_details: None,
            connection_termination_details: None,
            upstream_transport_failure_reason: None,
            bytes_received: 0,
            bytes_sent: 0,
            duration_ms: 0,
            upstream_service_time_ms: None,
            x_forwarded_for: None,
            user_agent: None,
            request_id: None,
            authority: None,
            upstream_host: None,
            upstream_cluster: None,
            upstream_local_address: None,
            downstream_local_address: None,
            downstream_remote_address: None,
            requested_server_name: None,
            route_name: None,
            direction,
            upstream_service: None,
            tls_version: None,
            tls_cipher_suite: None,
            peer_principal: None,
            authz_policy: None,
            authz_rule: None,
        }
    }

    /// Envoy's default format (Istio's `accessLogEncoding: TEXT`), without the newline:
    ///
    /// ```text
    /// [%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE%
    /// %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS%
    /// "%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION%
    /// %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%"
    /// "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW%
    /// %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS%
    /// %REQUESTED_SERVER_NAME% %ROUTE_NAME%
    /// ```
    pub fn text(&self) -> String {
        let mut out = String::with_capacity(256);
        out.push('[');
        push_time(&mut out, self.start);
        out.push_str("] \"");
        field(&mut out, self.method);
        out.push(' ');
        field(&mut out, self.path);
        out.push(' ');
        field(&mut out, self.protocol);
        out.push_str("\" ");
        let _ = write!(out, "{} ", self.response_code);
        field(&mut out, Some(self.response_flags));
        out.push(' ');
        field(&mut out, self.response_code_details);
        out.push(' ');
        field(&mut out, self.connection_termination_details);
        out.push_str(" \"");
        field(&mut out, self.upstream_transport_failure_reason);
        let _ = write!(
            out,
            "\" {} {} {} ",
            self.bytes_received, self.bytes_sent, self.duration_ms
        );
        match self.upstream_service_time_ms {
            Some(ms) => {
                let _ = write!(out, "{ms}");
            }
            None => out.push('-'),
        }
        for value in [
            self.x_forwarded_for,
            self.user_agent,
            self.request_id,
            self.authority,
        ] {
            out.push_str(" \"");
            field(&mut out, value);
            out.push('"');
        }
        out.push_str(" \"");
        addr(&mut out, self.upstream_host);
        out.push_str("\" ");
        field(&mut out, self.upstream_cluster);
        for value in [
            self.upstream_local_address,
            self.downstream_local_address,
            self.downstream_remote_address,
        ] {
            out.push(' ');
            addr(&mut out, value);
        }
        out.push(' ');
        field(&mut out, self.requested_server_name);
        out.push(' ');
        field(&mut out, self.route_name);
        out
    }

    /// One JSON object.
    pub fn json(&self) -> String {
        // Plain data: serializing cannot fail; were it to, the line says so.
        serde_json::to_string(self)
            .unwrap_or_else(|_| r#"{"error":"access log entry not serializable"}"#.to_owned())
    }
}

/// A value as Envoy prints it: `-` when missing or empty; control characters replaced so one
/// entry stays one line.
fn field(out: &mut String, value: Option<&str>) {
    match value {
        Some(v) if !v.is_empty() => {
            out.extend(v.chars().map(|c| if c.is_control() { '?' } else { c }));
        }
        _ => out.push('-'),
    }
}

fn addr(out: &mut String, value: Option<SocketAddr>) {
    match value {
        Some(a) => {
            let _ = write!(out, "{a}");
        }
        None => out.push('-'),
    }
}

/// Cuts a value taken from a request to [`MAX_FIELD`] bytes (on a character boundary).
pub fn bounded(value: &str) -> &str {
    if value.len() <= MAX_FIELD {
        return value;
    }
    let mut end = MAX_FIELD;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

fn rfc3339<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    let mut out = String::with_capacity(24);
    push_time(&mut out, *t);
    s.serialize_str(&out)
}

/// `2025-11-15T10:00:00.000Z` (UTC, milliseconds), Envoy's `%START_TIME%`.
pub fn push_time(out: &mut String, t: SystemTime) {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    );
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant's
/// algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    #[test]
    fn times_are_rfc3339_utc_with_millis() {
        let mut s = String::new();
        push_time(&mut s, at(0, 0));
        assert_eq!(s, "1970-01-01T00:00:00.000Z");
        s.clear();
        // 2025-11-15T10:00:00.015Z
        push_time(&mut s, at(1_763_200_800, 15));
        assert_eq!(s, "2025-11-15T10:00:00.015Z");
        s.clear();
        // 2024-02-29T23:59:59.999Z (leap day)
        push_time(&mut s, at(1_709_251_199, 999));
        assert_eq!(s, "2024-02-29T23:59:59.999Z");
    }

    fn request() -> Entry<'static> {
        let mut e = Entry::new(at(1_763_200_800, 0), Direction::Inbound);
        e.method = Some("GET");
        e.path = Some("/status/418");
        e.protocol = Some("HTTP/1.1");
        e.response_code = 418;
        e.response_code_details = Some("via_upstream");
        e.bytes_sent = 135;
        e.duration_ms = 4;
        e.upstream_service_time_ms = Some(4);
        e.user_agent = Some("curl/8.0");
        e.request_id = Some("84961386-6d84-929d-98bd-c5aee93b5c88");
        e.authority = Some("httpbin:8000");
        e.upstream_host = Some("127.0.11.2:8000".parse().unwrap());
        e.upstream_cluster = Some("inbound|8000||");
        e.downstream_local_address = Some("127.0.10.2:8000".parse().unwrap());
        e.downstream_remote_address = Some("127.0.10.1:46520".parse().unwrap());
        e.requested_server_name = Some("outbound_.8000_._.httpbin.ns.svc.cluster.local");
        e.peer_principal = Some("spiffe://cluster.local/ns/ns/sa/sleep");
        e.tls_version = Some("TLSv1.3");
        e
    }

    #[test]
    fn text_is_envoys_default_format() {
        assert_eq!(
            request().text(),
            "[2025-11-15T10:00:00.000Z] \"GET /status/418 HTTP/1.1\" 418 - via_upstream - \"-\" \
             0 135 4 4 \"-\" \"curl/8.0\" \"84961386-6d84-929d-98bd-c5aee93b5c88\" \
             \"httpbin:8000\" \"127.0.11.2:8000\" inbound|8000|| - 127.0.10.2:8000 \
             127.0.10.1:46520 outbound_.8000_._.httpbin.ns.svc.cluster.local -"
        );
        let mut tcp = Entry::new(at(0, 0), Direction::Outbound);
        tcp.bytes_received = 4;
        tcp.bytes_sent = 8;
        tcp.user_agent = Some("evil\nline");
        let line = tcp.text();
        assert!(
            line.starts_with("[1970-01-01T00:00:00.000Z] \"- - -\" 0 - - - \"-\" 4 8 0 -"),
            "{line}"
        );
        assert!(!line.contains('\n') && line.contains("evil?line"), "{line}");
    }

    #[test]
    fn json_has_the_seed_fields() {
        let json: serde_json::Value = serde_json::from_str(&request().json()).unwrap();
        assert_eq!(json["start_time"], "2025-11-15T10:00:00.000Z");
        assert_eq!(json["method"], "GET");
        assert_eq!(json["path"], "/status/418");
        assert_eq!(json["response_code"], 418);
        assert_eq!(json["duration"], 4);
        assert_eq!(json["tls_version"], "TLSv1.3");
        assert_eq!(
            json["peer_principal"],
            "spiffe://cluster.local/ns/ns/sa/sleep"
        );
        assert_eq!(json["upstream_host"], "127.0.11.2:8000");
        assert_eq!(json["direction"], "inbound");
        assert!(json["authz_policy"].is_null());
    }

    #[test]
    fn formats_parse_and_bounded_cuts_on_a_boundary() {
        assert_eq!("JSON".parse::<AccessLogFormat>(), Ok(AccessLogFormat::Json));
        assert!("xml".parse::<AccessLogFormat>().is_err());
        let long = "é".repeat(MAX_FIELD);
        assert!(bounded(&long).len() <= MAX_FIELD);
        assert!(bounded("short") == "short");
    }

    #[test]
    fn forced_format_wins_and_a_full_queue_drops() {
        let (tx, rx) = sync_channel(1);
        let log = AccessLog::new(Some(AccessLogFormat::Json), AccessLogSink::Channel(tx));
        log.follow(AccessLogFormat::Off);
        assert_eq!(log.format(), AccessLogFormat::Json);
        assert!(log.write(&request()));
        assert!(!log.write(&request()), "the queue holds one line");
        assert!(rx.recv().unwrap().starts_with('{'));
        let followed = AccessLog::new(None, AccessLogSink::Stdout);
        assert!(!followed.enabled());
        followed.follow(AccessLogFormat::Text);
        assert_eq!(followed.format(), AccessLogFormat::Text);
    }
}
