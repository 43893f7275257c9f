//! `meshward proxy-status`: one row per proxy — is it in sync with the control plane, when was
//! it last sent a view and when did it last acknowledge one, and when does its certificate
//! expire.

use std::{process::ExitCode, time::SystemTime};

use clap::Args;
use meshward_api::v1::{ProxyStatus, ProxyStatusRequest};

use crate::{client::ServerArgs, cmd::runtime, output};

/// Flags of `meshward proxy-status`.
#[derive(Debug, Args)]
pub(crate) struct ProxyStatusArgs {
    #[command(flatten)]
    server: ServerArgs,
}

pub(crate) fn run(args: ProxyStatusArgs) -> anyhow::Result<ExitCode> {
    let response = runtime()?.block_on(async {
        let mut admin = args.server.admin().await?;
        anyhow::Ok(
            admin
                .proxy_status(ProxyStatusRequest {})
                .await?
                .into_inner(),
        )
    })?;
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let now = now_ms / 1000;
    let mut table = output::table([
        "NAME",
        "NAMESPACE",
        "IDENTITY",
        "STATUS",
        "SENT",
        "ACKED",
        "LAST SENT",
        "LAST ACKED",
        "CERT EXPIRES",
    ]);
    for proxy in &response.proxies {
        table.add_row([
            proxy.workload.clone(),
            proxy.namespace.clone(),
            proxy.identity.clone(),
            status(proxy),
            proxy.version_sent.to_string(),
            proxy.version_acked.to_string(),
            ago(proxy.last_sent_ms, now_ms),
            ago(proxy.last_acked_ms, now_ms),
            expires_in(proxy.cert_not_after, now),
        ]);
    }
    print!("{}", output::render(&mut table));
    Ok(ExitCode::SUCCESS)
}

/// SYNCED when the last version sent was acknowledged; NACKED with the reason; STALE while an
/// acknowledgement is pending; DISCONNECTED when the stream is closed.
pub(crate) fn status(proxy: &ProxyStatus) -> String {
    if !proxy.nack_reason.is_empty() {
        format!("NACKED ({})", proxy.nack_reason)
    } else if !proxy.connected {
        "DISCONNECTED".into()
    } else if proxy.version_sent == 0 {
        "NOT SENT".into()
    } else if proxy.version_acked == proxy.version_sent {
        "SYNCED".into()
    } else {
        "STALE".into()
    }
}

fn expires_in(not_after: i64, now: i64) -> String {
    match not_after - now {
        _ if not_after == 0 => "unknown".into(),
        left if left <= 0 => "EXPIRED".into(),
        left if left < 3600 => format!("in {}m", left / 60),
        left => format!("in {}h", left / 3600),
    }
}

/// How long ago `at_ms` (Unix milliseconds) was, as istioctl writes ages: `4m52s ago`; `never`
/// for 0.
fn ago(at_ms: i64, now_ms: i64) -> String {
    if at_ms == 0 {
        return "never".into();
    }
    let secs = (now_ms - at_ms).max(0) / 1000;
    let age = match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        s => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
    };
    format!("{age} ago")
}

#[cfg(test)]
mod tests {
    use super::ago;

    #[test]
    fn ages_read_like_istioctl() {
        assert_eq!(ago(0, 5_000), "never");
        assert_eq!(ago(1_000, 5_500), "4s ago");
        assert_eq!(ago(1, 292_001), "4m52s ago");
        assert_eq!(ago(1, 7_201_000), "2h0m ago");
        assert_eq!(ago(10_000, 5_000), "0s ago");
    }
}
