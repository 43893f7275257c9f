//! `meshward authn readiness [WORKLOAD.NS] [-n NS] [--window 24h]`: "is it safe to switch to
//! STRICT?" answered from what the sidecars saw, not from configuration. Every sidecar counts
//! its inbound connections per port by mTLS and plaintext and remembers the last plaintext
//! sources (`GET :15000/stats/inbound`); a port is safe when no plaintext client reached it
//! within the window. Exit 1 when some PERMISSIVE port still has plaintext clients.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::client::ServerArgs;
use crate::cmd::duration::parse_duration;
use crate::cmd::proxy_config::admin_request;
use crate::cmd::runtime;
use crate::output;

/// Arguments of `authn readiness`.
#[derive(Debug, Args)]
pub(crate) struct ReadinessArgs {
    /// One workload, `name.namespace`.
    target: Option<String>,
    /// Only the workloads of this namespace.
    #[arg(short = 'n', long = "namespace")]
    namespace: Option<String>,
    /// How far back a plaintext client counts, e.g. `24h`, `30m`.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    window: Duration,
    /// The sidecars' admin port.
    #[arg(long, default_value_t = 15000)]
    admin_port: u16,
    /// Output format: table or json.
    #[arg(short = 'o', long = "output", default_value = "table")]
    output: String,
    #[command(flatten)]
    server: ServerArgs,
}

/// What a sidecar answers on `/stats/inbound`.
#[derive(Debug, Deserialize)]
struct InboundReport {
    since: String,
    ports: Vec<PortReport>,
}

#[derive(Debug, Deserialize)]
struct PortReport {
    port: u16,
    mode: Option<String>,
    mtls: Counts,
    plaintext: Counts,
    plaintext_sources: Vec<Source>,
}

#[derive(Debug, Deserialize)]
struct Counts {
    accepted: u64,
    refused: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Source {
    address: IpAddr,
    last_seen: String,
    last_seen_unix_ms: u64,
}

/// One row of the answer.
#[derive(Debug, Serialize)]
struct Row {
    workload: String,
    port: u16,
    mode: String,
    mtls: u64,
    plaintext: u64,
    counted_since: String,
    /// Plaintext clients seen within the window, most recent first.
    recent_plaintext: Vec<Source>,
    safe: bool,
    verdict: String,
}

pub(crate) fn run(args: ReadinessArgs) -> anyhow::Result<ExitCode> {
    let rows = runtime()?.block_on(collect(&args))?;
    if args.output == "json" {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        let mut table = output::table([
            "WORKLOAD",
            "PORT",
            "MODE",
            "MTLS",
            "PLAINTEXT",
            "LAST PLAINTEXT SOURCE",
            "VERDICT",
        ]);
        for row in &rows {
            let last = row.recent_plaintext.first().map_or("-".to_owned(), |s| {
                format!("{} at {}", s.address, s.last_seen)
            });
            table.add_row(vec![
                row.workload.clone(),
                row.port.to_string(),
                row.mode.clone(),
                row.mtls.to_string(),
                row.plaintext.to_string(),
                last,
                row.verdict.clone(),
            ]);
        }
        print!("{}", output::render(&mut table));
        let unsafe_ports = rows.iter().filter(|r| !r.safe).count();
        println!(
            "\n{} port(s) checked, {unsafe_ports} with plaintext clients in the last {}; counts are since each sidecar started",
            rows.len(),
            humantime(args.window)
        );
    }
    Ok(if rows.iter().all(|r| r.safe) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn collect(args: &ReadinessArgs) -> anyhow::Result<Vec<Row>> {
    let mut admin = args
        .server
        .admin()
        .await
        .context("reaching the control plane")?;
    let mesh = crate::client::fetch_mesh(&mut admin).await?;
    let wanted = |name: &str, namespace: &str| match (&args.target, &args.namespace) {
        (Some(target), _) => *target == format!("{name}.{namespace}"),
        (None, Some(ns)) => ns == namespace,
        (None, None) => true,
    };
    let workloads: Vec<_> = mesh
        .workloads()
        .iter()
        .filter(|w| w.sidecar && wanted(&w.name, &w.namespace))
        .collect();
    if workloads.is_empty() {
        bail!("no workload with a sidecar matches: `meshward get workloads -A` lists them");
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let window_ms = u64::try_from(args.window.as_millis()).unwrap_or(u64::MAX);
    let mut rows = Vec::new();
    for w in workloads {
        let id = format!("{}.{}", w.name, w.namespace);
        let address: IpAddr = w
            .address
            .as_deref()
            .and_then(|a| a.parse().ok())
            .with_context(|| format!("workload {id} has no address"))?;
        let addr = SocketAddr::new(address, args.admin_port);
        let (code, body) = admin_request(None, addr, "GET", "/stats/inbound")
            .await
            .with_context(|| format!("asking the sidecar of {id} at {addr}"))?;
        if code != 200 {
            bail!("the sidecar of {id} answered /stats/inbound with {code}");
        }
        let report: InboundReport = serde_json::from_str(&body)
            .with_context(|| format!("the sidecar of {id} answered /stats/inbound with no JSON"))?;
        for port in report.ports {
            rows.push(row(&id, &report.since, port, now_ms, window_ms));
        }
    }
    Ok(rows)
}

/// The verdict for one port: STRICT already, safe (no plaintext client within the window), or
/// the plaintext clients that STRICT would cut off.
fn row(id: &str, since: &str, port: PortReport, now_ms: u64, window_ms: u64) -> Row {
    let recent: Vec<Source> = port
        .plaintext_sources
        .into_iter()
        .filter(|s| now_ms.saturating_sub(s.last_seen_unix_ms) <= window_ms)
        .collect();
    let mode = port.mode.unwrap_or_else(|| "(removed)".to_owned());
    let clients = || {
        recent
            .iter()
            .map(|s| s.address.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (safe, verdict) = match mode.as_str() {
        "STRICT" if recent.is_empty() => (true, "STRICT".to_owned()),
        "STRICT" => (
            true,
            format!(
                "STRICT; refused {} plaintext client(s): {}",
                recent.len(),
                clients()
            ),
        ),
        _ if recent.is_empty() => (true, "safe to switch to STRICT".to_owned()),
        _ => (
            false,
            format!("{} plaintext client(s): {}", recent.len(), clients()),
        ),
    };
    Row {
        workload: id.to_owned(),
        port: port.port,
        mode,
        mtls: port.mtls.accepted + port.mtls.refused,
        plaintext: port.plaintext.accepted + port.plaintext.refused,
        counted_since: since.to_owned(),
        recent_plaintext: recent,
        safe,
        verdict,
    }
}

fn humantime(window: Duration) -> String {
    let secs = window.as_secs();
    match secs {
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(mode: &str, sources: &[(&str, u64)]) -> PortReport {
        PortReport {
            port: 8080,
            mode: Some(mode.to_owned()),
            mtls: Counts {
                accepted: 5,
                refused: 0,
            },
            plaintext: Counts {
                accepted: 2,
                refused: 1,
            },
            plaintext_sources: sources
                .iter()
                .map(|(a, ms)| Source {
                    address: a.parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
                    last_seen: String::new(),
                    last_seen_unix_ms: *ms,
                })
                .collect(),
        }
    }

    #[test]
    fn verdicts() {
        let now = 100_000_000;
        let hour = 3_600_000;
        let cases = [
            ("PERMISSIVE", vec![], true, "safe to switch to STRICT"),
            // A client seen before the window does not count.
            (
                "PERMISSIVE",
                vec![("10.0.0.9", now - 2 * hour)],
                true,
                "safe to switch to STRICT",
            ),
            (
                "PERMISSIVE",
                vec![("10.0.0.9", now - 1000)],
                false,
                "1 plaintext client(s): 10.0.0.9",
            ),
            ("STRICT", vec![], true, "STRICT"),
            (
                "STRICT",
                vec![("10.0.0.9", now)],
                true,
                "STRICT; refused 1 plaintext client(s): 10.0.0.9",
            ),
        ];
        for (mode, sources, safe, verdict) in cases {
            let r = row("web.shop", "", port(mode, &sources), now, hour);
            assert_eq!(
                (r.safe, r.verdict.as_str()),
                (safe, verdict),
                "{mode} {sources:?}"
            );
        }
    }
}
