//! The standard Prometheus process metrics of the proxy — `process_resident_memory_bytes`,
//! `process_cpu_seconds_total`, `process_open_fds`, `process_start_time_seconds` — read from
//! `/proc/self` when scraped (nothing is sampled in between), so dashboards show each
//! sidecar's memory and CPU as they do for any exporter.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Clock ticks per second in `/proc/<pid>/stat`: `USER_HZ`, fixed at 100 in Linux's
/// user-space ABI whatever the kernel's internal tick rate.
const USER_HZ: f64 = 100.0;

/// Reads `/proc/self` on every scrape; a figure that cannot be read is left out.
#[derive(Debug, Default)]
pub(crate) struct ProcessCollector;

/// What one scrape reads.
#[derive(Debug, Default, PartialEq)]
struct Sample {
    rss_bytes: Option<f64>,
    cpu_seconds: Option<f64>,
    start_seconds: Option<f64>,
    open_fds: Option<f64>,
}

impl Sample {
    fn read() -> Sample {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let boot = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|dir| dir.count() as f64);
        Sample {
            rss_bytes: rss_bytes(&status),
            cpu_seconds: cpu_seconds(&stat),
            start_seconds: start_seconds(&stat, &boot),
            open_fds,
        }
    }
}

/// `VmRSS:  1234 kB` of `/proc/self/status`, in bytes.
fn rss_bytes(status: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}

/// The fields of `/proc/self/stat` after the command name (which may hold spaces).
fn stat_fields(stat: &str) -> Vec<&str> {
    stat.rfind(')')
        .and_then(|end| stat.get(end + 1..))
        .map(|rest| rest.split_whitespace().collect())
        .unwrap_or_default()
}

/// utime + stime (fields 14 and 15), in seconds.
fn cpu_seconds(stat: &str) -> Option<f64> {
    let fields = stat_fields(stat);
    // fields[0] is field 3 (state).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// Boot time (`btime` of `/proc/stat`) plus the start time in ticks (field 22), in Unix seconds.
fn start_seconds(stat: &str, proc_stat: &str) -> Option<f64> {
    let ticks: f64 = stat_fields(stat).get(19)?.parse().ok()?;
    let boot: f64 = proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(boot + ticks / USER_HZ)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let sample = Sample::read();
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                sample.rss_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                sample.open_fds,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds",
                sample.start_seconds,
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(value) = value {
                let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
                ConstGauge::new(value).encode(metric)?;
            }
        }
        if let Some(seconds) = sample.cpu_seconds {
            // Registered without `_total`; the encoder appends it to counters.
            let metric = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(seconds).encode(metric)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat = "4242 (meshward (x) y) S 1 4242 4242 0 -1 4194560 300 0 0 0 250 150 0 0 20 0 \
                    9 0 123456 12345678 1000 18446744073709551615";
        assert_eq!(cpu_seconds(stat), Some(4.0));
        assert_eq!(
            start_seconds(stat, "cpu 1 2\nbtime 1700000000\n"),
            Some(1_700_001_234.56)
        );
        assert_eq!(
            rss_bytes("Name:\tx\nVmRSS:\t    2048 kB\n"),
            Some(2_097_152.0)
        );
        assert_eq!(cpu_seconds("garbage"), None);
        assert_eq!(rss_bytes(""), None);
    }

    #[test]
    fn this_process_is_readable() {
        let sample = Sample::read();
        assert!(sample.rss_bytes.is_some_and(|b| b > 0.0));
        assert!(sample.cpu_seconds.is_some());
        assert!(sample.open_fds.is_some_and(|n| n > 0.0));
        assert!(sample.start_seconds.is_some_and(|s| s > 1.0e9));
    }
}
