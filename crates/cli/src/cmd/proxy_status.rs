//! `meshward proxy-status`: one row per proxy — is it in sync with the control plane, and
//! when does its certificate expire.

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
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut table = output::table([
        "NAME",
        "NAMESPACE",
        "IDENTITY",
        "STATUS",
        "SENT",
        "ACKED",
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
