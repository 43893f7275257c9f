//! `meshward-load`: the load generator of the proxy benchmark (`bench/mesh/run.sh`).
//!
//! Plain HTTP/1.1 over blocking sockets, standard library only, so that it costs little CPU
//! and its behaviour is easy to read:
//!
//! - `rate`: a fixed request rate over keep-alive connections, open loop. Request `i` is due at
//!   `start + i / rate`; its latency is measured from that due time, not from when it was sent,
//!   so a stalled server is charged for the requests that queued behind the stall (no
//!   coordinated omission, the same correction as wrk2). Every sample is kept and sorted, so
//!   the percentiles are exact.
//! - `conn`: a new connection per request (`Connection: close`), closed loop; connections/s.
//! - `bulk`: one keep-alive connection downloading a large body again and again; MB/s.
//! - `idle`: opens N connections, makes one request on each, then holds them idle.
//! - `report`: medians of repeated runs and ratios, as one Markdown table.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meshward-load: {e}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "usage:
  meshward-load rate --target ADDR --rate N --duration S [--warmup S] [--connections N] [--path P]
  meshward-load conn --target ADDR --duration S [--concurrency N] [--path P]
  meshward-load bulk --target ADDR --duration S [--path P]
  meshward-load idle --target ADDR --connections N --hold S [--path P]
  meshward-load report RESULTS.tsv";

/// Flags as `--name value` pairs.
struct Flags(BTreeMap<String, String>);

impl Flags {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut map = BTreeMap::new();
        let mut it = args.iter();
        while let Some(name) = it.next() {
            let key = name
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument `{name}`\n{USAGE}"))?;
            let value = it.next().ok_or_else(|| format!("--{key} needs a value"))?;
            map.insert(key.to_owned(), value.clone());
        }
        Ok(Self(map))
    }

    fn get<T: std::str::FromStr>(&self, key: &str, default: Option<T>) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        match self.0.get(key) {
            Some(v) => v.parse().map_err(|e| format!("--{key} `{v}`: {e}")),
            None => default.ok_or_else(|| format!("--{key} is required\n{USAGE}")),
        }
    }

    fn secs(&self, key: &str, default: Option<f64>) -> Result<Duration, String> {
        let s: f64 = self.get(key, default)?;
        Duration::try_from_secs_f64(s).map_err(|e| format!("--{key}: {e}"))
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let (cmd, rest) = args.split_first().ok_or(USAGE)?;
    if cmd == "report" {
        let path = rest.first().ok_or(USAGE)?;
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        print!("{}", report(&text));
        return Ok(());
    }
    let flags = Flags::parse(rest)?;
    let target: SocketAddr = flags.get("target", None)?;
    let path: String = flags.get("path", Some("/".to_owned()))?;
    match cmd.as_str() {
        "rate" => rate(
            target,
            &path,
            flags.get("rate", None)?,
            flags.secs("duration", None)?,
            flags.secs("warmup", Some(1.0))?,
            flags.get("connections", Some(32))?,
        ),
        "conn" => conn(
            target,
            &path,
            flags.secs("duration", None)?,
            flags.get("concurrency", Some(4))?,
        ),
        "bulk" => bulk(target, &path, flags.secs("duration", None)?),
        "idle" => idle(
            target,
            &path,
            flags.get("connections", None)?,
            flags.secs("hold", None)?,
        ),
        _ => Err(USAGE.to_owned()),
    }
}

/// Read size for large bodies.
const BODY_CHUNK: usize = 256 * 1024;

/// One HTTP/1.1 client connection.
struct Client {
    reader: BufReader<TcpStream>,
    request: Vec<u8>,
    /// The server said `Connection: close`: the next request needs a new connection.
    closed: bool,
    /// Scratch space for response bodies.
    body: Vec<u8>,
}

impl Client {
    fn connect(target: SocketAddr, path: &str, close: bool) -> io::Result<Self> {
        let stream = TcpStream::connect(target)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let connection = if close { "close" } else { "keep-alive" };
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: {connection}\r\n\r\n")
                .into_bytes();
        Ok(Self {
            reader: BufReader::with_capacity(16 * 1024, stream),
            request,
            closed: false,
            body: Vec::new(),
        })
    }

    /// Sends one request and reads the whole response; returns the body length.
    fn request(&mut self) -> io::Result<u64> {
        self.reader.get_mut().write_all(&self.request)?;
        let mut line = String::new();
        let mut status = None;
        let mut length = None;
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before the response head ended",
                ));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if status.is_none() {
                status = l.split(' ').nth(1).map(str::to_owned);
            } else if let Some((name, value)) = l.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<u64>().ok();
                } else if name.eq_ignore_ascii_case("connection")
                    && value.trim().eq_ignore_ascii_case("close")
                {
                    self.closed = true;
                }
            }
        }
        if status.as_deref() != Some("200") {
            return Err(io::Error::other(format!("status {status:?}")));
        }
        let length = length.ok_or_else(|| io::Error::other("no Content-Length"))?;
        // Large reads straight from the socket once the buffer is drained, so that the bulk
        // test measures the proxies and not this client.
        let mut left = length;
        if self.body.is_empty() && left > 16 * 1024 {
            self.body = vec![0; BODY_CHUNK];
        }
        while left > 0 {
            if self.body.is_empty() {
                // Small bodies: through the buffer, no scratch space held per idle connection.
                let copied = io::copy(&mut (&mut self.reader).take(left), &mut io::sink())?;
                if copied != left {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short body"));
                }
                break;
            }
            let want = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(self.body.len());
            let n = self.reader.read(&mut self.body[..want])?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short body"));
            }
            left -= n as u64;
        }
        Ok(length)
    }

    /// Whether this connection can carry another request.
    fn reusable(&self) -> bool {
        !self.closed
    }
}

/// The `p`-th percentile (0..=100) of sorted samples.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn rate(
    target: SocketAddr,
    path: &str,
    rate: f64,
    duration: Duration,
    warmup: Duration,
    connections: usize,
) -> Result<(), String> {
    if rate <= 0.0 || connections == 0 {
        return Err("--rate and --connections must be positive".to_owned());
    }
    let interval = 1e9 / rate;
    let total = ((warmup + duration).as_secs_f64() * rate) as u64;
    let skip = (warmup.as_secs_f64() * rate) as u64;
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let samples = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
    let start = Instant::now() + Duration::from_millis(50);
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let (next, errors, sent, samples) =
                (next.clone(), errors.clone(), sent.clone(), samples.clone());
            let path = path.to_owned();
            thread::spawn(move || {
                let mut mine = Vec::new();
                let mut client = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let due = start + Duration::from_nanos((i as f64 * interval) as u64);
                    let now = Instant::now();
                    if due > now {
                        thread::sleep(due - now);
                    }
                    if client.as_ref().is_some_and(|c: &Client| !c.reusable()) {
                        client = None;
                    }
                    let result = match client.as_mut() {
                        Some(c) => Client::request(c),
                        None => Client::connect(target, &path, false).and_then(|mut c| {
                            let r = c.request();
                            client = Some(c);
                            r
                        }),
                    };
                    if result.is_err() {
                        errors.fetch_add(1, Ordering::Relaxed);
                        client = None;
                        continue;
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                    if i >= skip {
                        mine.push(due.elapsed().as_nanos() as u64);
                    }
                }
                if let Ok(mut all) = samples.lock() {
                    all.extend(mine);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().map_err(|_| "a worker panicked".to_owned())?;
    }
    let elapsed = start.elapsed().as_secs_f64() - warmup.as_secs_f64();
    let mut all = std::mem::take(&mut *samples.lock().map_err(|_| "poisoned")?);
    all.sort_unstable();
    let us = |p| percentile(&all, p) as f64 / 1000.0;
    println!(
        "sent={} requests={} errors={} achieved_rps={:.0} p50_us={:.1} p90_us={:.1} p99_us={:.1} p999_us={:.1} max_us={:.1}",
        sent.load(Ordering::Relaxed),
        all.len(),
        errors.load(Ordering::Relaxed),
        all.len() as f64 / elapsed,
        us(50.0),
        us(90.0),
        us(99.0),
        us(99.9),
        us(100.0),
    );
    Ok(())
}

fn conn(
    target: SocketAddr,
    path: &str,
    duration: Duration,
    concurrency: usize,
) -> Result<(), String> {
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + duration;
    let start = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (done, errors) = (done.clone(), errors.clone());
            let path = path.to_owned();
            thread::spawn(move || {
                while Instant::now() < end {
                    match Client::connect(target, &path, true).and_then(|mut c| c.request()) {
                        Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                        Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    for w in workers {
        w.join().map_err(|_| "a worker panicked".to_owned())?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    println!(
        "connections={n} errors={} conns_per_s={:.0}",
        errors.load(Ordering::Relaxed),
        n as f64 / elapsed
    );
    Ok(())
}

fn bulk(target: SocketAddr, path: &str, duration: Duration) -> Result<(), String> {
    let mut client = Client::connect(target, path, false).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut bytes = 0;
    let mut responses = 0;
    while start.elapsed() < duration || responses == 0 {
        if !client.reusable() {
            client = Client::connect(target, path, false).map_err(|e| e.to_string())?;
        }
        bytes += client.request().map_err(|e| format!("bulk: {e}"))?;
        responses += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "responses={responses} bytes={bytes} mb_per_s={:.0}",
        bytes as f64 / elapsed / 1e6
    );
    Ok(())
}

fn idle(target: SocketAddr, path: &str, connections: usize, hold: Duration) -> Result<(), String> {
    let mut held = Vec::with_capacity(connections);
    for i in 0..connections {
        let c = Client::connect(target, path, false)
            .and_then(|mut c| c.request().map(|_| c))
            .map_err(|e| format!("idle connection {i}: {e}"))?;
        held.push(c);
    }
    println!("held={connections}");
    io::stdout().flush().map_err(|e| e.to_string())?;
    thread::sleep(hold);
    drop(held);
    Ok(())
}

/// What each metric of the results file is called in the table, in table order. Unknown
/// metrics follow, under their own names.
const METRICS: &[(&str, &str)] = &[
    ("lat1k_p50_us", "latency p50 at 1 000 req/s (µs)"),
    ("lat1k_p90_us", "latency p90 at 1 000 req/s (µs)"),
    ("lat1k_p99_us", "latency p99 at 1 000 req/s (µs)"),
    ("lat1k_p999_us", "latency p99.9 at 1 000 req/s (µs)"),
    ("lat5k_p50_us", "latency p50 at 5 000 req/s (µs)"),
    ("lat5k_p90_us", "latency p90 at 5 000 req/s (µs)"),
    ("lat5k_p99_us", "latency p99 at 5 000 req/s (µs)"),
    ("lat5k_p999_us", "latency p99.9 at 5 000 req/s (µs)"),
    ("max_rps", "max req/s, keep-alive (wrk)"),
    ("conn_per_s", "new connections/s (one request each)"),
    ("bulk_mb_s", "bulk download (MB/s)"),
    (
        "cpu_pct_per_1k",
        "CPU of the pair at 5 000 req/s (% of a core per 1 000 req/s)",
    ),
    ("rss_idle_client_kib", "RSS idle, client-side proxy (KiB)"),
    ("rss_idle_server_kib", "RSS idle, server-side proxy (KiB)"),
    (
        "anon_idle_client_kib",
        "of which anonymous (heap, stacks), client side (KiB)",
    ),
    (
        "anon_idle_server_kib",
        "of which anonymous (heap, stacks), server side (KiB)",
    ),
    (
        "rss_load_client_kib",
        "RSS under load, client-side proxy (KiB)",
    ),
    (
        "rss_load_server_kib",
        "RSS under load, server-side proxy (KiB)",
    ),
    (
        "conn_client_b",
        "RSS per idle connection, client-side proxy (bytes)",
    ),
    (
        "conn_server_b",
        "RSS per idle connection, server-side proxy (bytes)",
    ),
    (
        "syscalls_per_req",
        "system calls of the pair per request at 5 000 req/s (perf, last run)",
    ),
    (
        "cswitch_per_req",
        "context switches of the pair per request at 5 000 req/s (perf, last run)",
    ),
    ("errors", "failed requests (all runs, summed)"),
];

/// The proxies Meshward is compared with.
const PEERS: [&str; 2] = ["haproxy", "nginx"];

/// Per-run results: `(contender, metric)` → values.
type Runs = BTreeMap<(String, String), Vec<f64>>;

/// Lines `contender<TAB>metric<TAB>value`, one per run, become one Markdown table of medians
/// with ratios to `direct` (d) and to `haproxy` (h), then the targets for `meshward`.
fn report(text: &str) -> String {
    let mut runs: Runs = BTreeMap::new();
    let mut contenders: Vec<String> = Vec::new();
    let mut metrics: Vec<String> = METRICS.iter().map(|(m, _)| (*m).to_owned()).collect();
    for line in text.lines() {
        let mut f = line.split('\t');
        let (Some(c), Some(m), Some(v)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let Ok(v) = v.trim().parse::<f64>() else {
            continue;
        };
        if !contenders.iter().any(|x| x == c) {
            contenders.push(c.to_owned());
        }
        if !metrics.iter().any(|x| x == m) {
            metrics.push(m.to_owned());
        }
        runs.entry((c.to_owned(), m.to_owned()))
            .or_default()
            .push(v);
    }
    let mut out = String::from("| metric |");
    for c in &contenders {
        out.push_str(&format!(" {c} |"));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(contenders.len()));
    out.push('\n');
    for m in &metrics {
        if !contenders
            .iter()
            .any(|c| runs.contains_key(&(c.clone(), m.clone())))
        {
            continue;
        }
        let label = METRICS
            .iter()
            .find(|(k, _)| k == m)
            .map_or(m.as_str(), |(_, l)| l);
        out.push_str(&format!("| {label} |"));
        let direct = median(&runs, "direct", m);
        let haproxy = median(&runs, "haproxy", m);
        for c in &contenders {
            let Some(v) = median(&runs, c, m) else {
                out.push_str(" – |");
                continue;
            };
            let mut cell = if m == "errors" {
                format!("{v:.0}")
            } else {
                fmt_value(v)
            };
            if m != "errors" {
                let mut ratios = Vec::new();
                if let Some(d) = direct.filter(|d| *d > 0.0 && c != "direct") {
                    ratios.push(format!("{:.2}× d", v / d));
                }
                if let Some(h) = haproxy.filter(|h| *h > 0.0 && c != "haproxy" && c != "direct") {
                    ratios.push(format!("{:.2}× h", v / h));
                }
                if !ratios.is_empty() {
                    cell.push_str(&format!(" ({})", ratios.join(", ")));
                }
            }
            out.push_str(&format!(" {cell} |"));
        }
        out.push('\n');
    }
    let runs_per = runs
        .iter()
        .filter(|((_, m), _)| m != "errors")
        .map(|(_, v)| v.len())
        .max()
        .unwrap_or(0);
    out.push_str(&format!(
        "\nMedians of {runs_per} run(s); d = ratio to direct, h = ratio to haproxy.\n"
    ));
    if let Some(targets) = targets(&runs) {
        out.push('\n');
        out.push_str(&targets);
    }
    out
}

/// The median of one contender's runs of one metric (the sum for `errors`).
fn median(runs: &Runs, contender: &str, metric: &str) -> Option<f64> {
    let v = runs.get(&(contender.to_owned(), metric.to_owned()))?;
    if metric == "errors" {
        return Some(v.iter().sum());
    }
    let mut v = v.clone();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// The targets for Meshward, each with the figure, what it had to be, and the verdict.
fn targets(runs: &Runs) -> Option<String> {
    let m = |c: &str, k: &str| median(runs, c, k);
    m("meshward", "lat1k_p99_us")?;
    let mut out = String::from(
        "| target | meshward | best peer | needed | verdict |\n|---|---|---|---|---|\n",
    );
    let mut row = |name: &str,
                   ours: Option<f64>,
                   peer: Option<(f64, &str)>,
                   needed: Option<f64>,
                   higher: bool| {
        let (Some(ours), Some(needed)) = (ours, needed) else {
            return;
        };
        let met = if higher {
            ours >= needed
        } else {
            ours <= needed
        };
        let verdict = if met {
            "met".to_owned()
        } else if higher {
            format!("missed: {:.0} % short", (1.0 - ours / needed) * 100.0)
        } else {
            format!("missed: {:.0} % over", (ours / needed - 1.0) * 100.0)
        };
        let peer = peer.map_or("–".to_owned(), |(v, who)| {
            format!("{} ({who})", fmt_value(v))
        });
        let cmp = if higher { "≥" } else { "≤" };
        out.push_str(&format!(
            "| {name} | {} | {peer} | {cmp} {} | {verdict} |\n",
            fmt_value(ours),
            fmt_value(needed)
        ));
    };
    // The best peer: lowest or highest median among the peers that ran.
    let best = |higher: bool, f: &dyn Fn(&str) -> Option<f64>| -> Option<(f64, &'static str)> {
        PEERS
            .iter()
            .filter_map(|p| f(p).map(|v| (v, *p)))
            .reduce(|a, b| if (b.0 > a.0) == higher { b } else { a })
    };
    for (rate, key) in [("1 000", "lat1k_p99_us"), ("5 000", "lat5k_p99_us")] {
        let added = |c: &str| Some(m(c, key)? - m("direct", key)?);
        let peer = best(false, &added);
        row(
            &format!("added p99 at {rate} req/s (µs) ≤ 0.5× best peer's"),
            added("meshward"),
            peer,
            peer.map(|(v, _)| 0.5 * v),
            false,
        );
    }
    let peer = best(true, &|c| m(c, "max_rps"));
    row(
        "max req/s ≥ 1.3× best peer",
        m("meshward", "max_rps"),
        peer,
        peer.map(|(v, _)| 1.3 * v),
        true,
    );
    let peer = best(true, &|c| m(c, "bulk_mb_s"));
    row(
        "bulk MB/s ≥ 1.5× best peer",
        m("meshward", "bulk_mb_s"),
        peer,
        peer.map(|(v, _)| 1.5 * v),
        true,
    );
    let larger = |a: &str, b: &str| match (m("meshward", a), m("meshward", b)) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    };
    let peer_larger = |a: &'static str, b: &'static str| {
        best(false, &move |c| match (m(c, a), m(c, b)) {
            (Some(x), Some(y)) => Some(x.max(y)),
            (x, y) => x.or(y),
        })
    };
    row(
        "idle sidecar RSS (KiB, larger of the pair) ≤ 5 MiB",
        larger("rss_idle_client_kib", "rss_idle_server_kib"),
        peer_larger("rss_idle_client_kib", "rss_idle_server_kib"),
        Some(5120.0),
        false,
    );
    row(
        "RSS per idle connection (bytes, larger of the pair) ≤ 4 KiB",
        larger("conn_client_b", "conn_server_b"),
        peer_larger("conn_client_b", "conn_server_b"),
        Some(4096.0),
        false,
    );
    Some(out)
}

fn fmt_value(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}
