//! `meshward ca …`: create a built-in CA or adopt an Istio `cacerts` directory (`init`), look
//! at the CA in force (`status`), revoke identities and certificates (`revoke`, `unrevoke`,
//! `revocations`) and rotate the root in stages (`rotate`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{ArgGroup, Args, Subcommand};
use meshward_api::v1::{
    AbortRotationRequest, CaStatusRequest, ListRevocationsRequest, RevocationsResponse,
    RevokeRequest, RotateRequest, RotationStatus, RotationStatusRequest, revoke_request,
    trust_client::TrustClient,
};
use meshward_ca::{Authority, InitOptions, fingerprint_sha256};
use meshward_identity::{TrustDomain, describe};
use tonic::transport::Channel;

use super::cert::{now_unix, time_left};
use super::duration::parse_duration;
use crate::client::ServerArgs;

/// `meshward ca …`
#[derive(Debug, Subcommand)]
pub(crate) enum CaCommand {
    /// Create a CA (self-signed ECDSA P-256 root) or adopt a plug-in one; print its root.
    Init(InitArgs),
    /// Show the CA's chain — root and intermediates — with validity, time left, and which
    /// certificate signs (live from the control plane, or from a CA directory with --dir).
    Status(StatusArgs),
    /// Revoke an identity (every certificate naming it) or one certificate (--serial): every
    /// proxy refuses it within seconds and closes its open connections; a revoked identity
    /// cannot enroll again, join token or not, until `ca unrevoke`.
    Revoke(RevokeArgs),
    /// Lift a revocation.
    Unrevoke(RevokeArgs),
    /// List the revocations in force.
    Revocations(ServerOnly),
    /// Rotate the root in four stages gated on every proxy: add the new root, switch signing,
    /// re-issue every certificate, remove the old root.
    Rotate(RotateArgs),
}

/// Only the control plane to talk to.
#[derive(Debug, Args)]
pub(crate) struct ServerOnly {
    #[command(flatten)]
    server: ServerArgs,
}

/// `meshward ca revoke|unrevoke`
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["identity", "serial"])))]
pub(crate) struct RevokeArgs {
    /// The SPIFFE ID, e.g. spiffe://cluster.local/ns/team-app/sa/client.
    identity: Option<String>,
    /// One certificate's serial number (hex, as `meshward cert inspect` or openssl print it).
    #[arg(long)]
    serial: Option<String>,
    /// Why (recorded and listed).
    #[arg(long, default_value = "")]
    reason: String,
    #[command(flatten)]
    server: ServerArgs,
}

/// `meshward ca rotate`
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("action").required(true).args(["plan", "apply", "status", "abort"])))]
pub(crate) struct RotateArgs {
    /// Say what would happen and which proxies would hold a stage up; change nothing.
    #[arg(long)]
    plan: bool,
    /// Start (or resume) the rotation and follow it until it completes.
    #[arg(long)]
    apply: bool,
    /// Show where the rotation stands and who it waits for.
    #[arg(long)]
    status: bool,
    /// Walk back to the old CA from the stage in force, and follow it until it is done.
    #[arg(long)]
    abort: bool,
    /// Let the control plane generate the new root (ECDSA P-256, ten years).
    #[arg(long, conflicts_with_all = ["new_root", "new_key"])]
    generate: bool,
    /// The new root certificate (PEM), read by the control plane.
    #[arg(long, requires = "new_key", value_name = "FILE")]
    new_root: Option<PathBuf>,
    /// The new root's private key (PEM), read by the control plane and not copied.
    #[arg(long, requires = "new_root", value_name = "FILE")]
    new_key: Option<PathBuf>,
    /// How long --apply and --abort follow the rotation before giving up waiting (the rotation
    /// goes on in the control plane; `--status` or `--apply` pick it up again).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    server: ServerArgs,
}

/// `meshward ca status`
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// The CA directory (default: the running control plane's, from the context file).
    #[arg(long)]
    dir: Option<PathBuf>,
    #[command(flatten)]
    server: ServerArgs,
}

/// `meshward ca init`
#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// Directory to create the CA in (missing or empty; written atomically, files mode 0600).
    #[arg(long)]
    dir: PathBuf,
    /// Trust domain the CA vouches for.
    #[arg(long, default_value = "cluster.local")]
    trust_domain: String,
    /// Adopt this Istio `cacerts` directory (ca-cert.pem, ca-key.pem, root-cert.pem,
    /// cert-chain.pem) instead of creating a root.
    #[arg(long, value_name = "CACERTS_DIR")]
    plugin_certs: Option<PathBuf>,
    /// Sign with an intermediate under the new root (built-in CA only).
    #[arg(long, conflicts_with = "plugin_certs")]
    intermediate: bool,
    /// Lifetime of the new root, e.g. `3650d` (built-in CA only).
    #[arg(long, value_parser = parse_duration, conflicts_with = "plugin_certs")]
    root_ttl: Option<Duration>,
}

pub(crate) fn run(command: CaCommand) -> anyhow::Result<ExitCode> {
    match command {
        CaCommand::Init(args) => init(args),
        CaCommand::Status(args) => status(args),
        CaCommand::Revoke(args) => revoke(args, true),
        CaCommand::Unrevoke(args) => revoke(args, false),
        CaCommand::Revocations(args) => revocations(&args.server),
        CaCommand::Rotate(args) => rotate(args),
    }
}

/// A fresh client: the administrator's files are read again, since a root rotation replaces
/// them.
async fn client(server: &ServerArgs) -> anyhow::Result<TrustClient<Channel>> {
    let context = server.context()?;
    Ok(TrustClient::new(crate::client::channel(&context).await?))
}

fn revoke(args: RevokeArgs, revoke: bool) -> anyhow::Result<ExitCode> {
    let target = match (args.identity, args.serial) {
        (Some(id), None) => revoke_request::Target::Identity(id),
        (None, Some(serial)) => revoke_request::Target::Serial(serial),
        _ => anyhow::bail!("name either a SPIFFE ID or --serial N"),
    };
    let request = RevokeRequest {
        target: Some(target),
        reason: args.reason,
    };
    crate::cmd::runtime()?.block_on(async {
        let mut client = client(&args.server).await?;
        let response = if revoke {
            client.revoke(request).await
        } else {
            client.unrevoke(request).await
        }
        .map_err(status_error)?
        .into_inner();
        println!("{}", response.result);
        Ok(ExitCode::SUCCESS)
    })
}

fn revocations(server: &ServerArgs) -> anyhow::Result<ExitCode> {
    crate::cmd::runtime()?.block_on(async {
        let response = client(server)
            .await?
            .list_revocations(ListRevocationsRequest {})
            .await
            .map_err(status_error)?
            .into_inner();
        print_revocations(&response);
        Ok(ExitCode::SUCCESS)
    })
}

fn print_revocations(response: &RevocationsResponse) {
    if response.revocations.is_empty() {
        println!("nothing is revoked");
        return;
    }
    let mut table = crate::output::table(["KIND", "REVOKED", "REASON", "SINCE"]);
    for r in &response.revocations {
        table.add_row([
            r.kind.clone(),
            r.value.clone(),
            r.reason.clone(),
            rfc3339(r.revoked_at),
        ]);
    }
    print!("{}", crate::output::render(&mut table));
}

/// `2026-12-01T22:05:00Z` for Unix seconds (UTC, proleptic Gregorian).
fn rfc3339(unix: i64) -> String {
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// The message of a gRPC error, without tonic's decoration.
fn status_error(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}", status.message())
}

fn rotate(args: RotateArgs) -> anyhow::Result<ExitCode> {
    crate::cmd::runtime()?.block_on(async {
        if args.status {
            let status = client(&args.server)
                .await?
                .rotation_status(RotationStatusRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            print_status(&status);
            return Ok(ExitCode::SUCCESS);
        }
        let started = Instant::now();
        let first = if args.abort {
            client(&args.server)
                .await?
                .abort_rotation(AbortRotationRequest {})
                .await
        } else {
            client(&args.server)
                .await?
                .rotate(RotateRequest {
                    plan: args.plan,
                    generate: args.generate,
                    new_root_file: path_arg(args.new_root.as_ref())?,
                    new_key_file: path_arg(args.new_key.as_ref())?,
                })
                .await
        }
        .map_err(status_error)?
        .into_inner();
        for line in &first.plan {
            println!("{line}");
        }
        if args.plan {
            if !first.proxies.is_empty() {
                println!();
                print_proxies(&first);
            }
            return Ok(ExitCode::SUCCESS);
        }
        follow(&args.server, first, started, args.timeout).await
    })
}

/// Paths are read by the control plane: make them absolute first.
fn path_arg(path: Option<&PathBuf>) -> anyhow::Result<String> {
    let Some(path) = path else {
        return Ok(String::new());
    };
    let absolute = std::path::absolute(path)
        .with_context(|| format!("{}: cannot make the path absolute", path.display()))?;
    Ok(absolute.to_string_lossy().into_owned())
}

/// Prints each phase as it is entered and who holds it up, until the rotation is over or
/// `timeout` has passed.
async fn follow(
    server: &ServerArgs,
    mut status: RotationStatus,
    started: Instant,
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    const POLL: Duration = Duration::from_millis(250);
    // Transient errors (the administrator's certificate is replaced mid-rotation) are retried
    // this long.
    const TOLERATE: Duration = Duration::from_secs(15);
    let deadline = started + timeout;
    let mut printed = 0;
    let mut last_blocked = Vec::new();
    let mut failing_since: Option<Instant> = None;
    let origin = status.history.first().map_or(0, |s| s.at_ms);
    loop {
        // Every phase entered since the last look, with the control plane's own times: a
        // phase may come and go between two looks.
        for step in status.history.iter().skip(printed) {
            let stage = match step.stage {
                0 => String::new(),
                n => format!("stage {n}/4 "),
            };
            println!(
                "[{:>6.1}s] {stage}{}: {}",
                (step.at_ms - origin) as f64 / 1000.0,
                step.phase,
                step.description
            );
            printed += 1;
            last_blocked.clear();
        }
        if status.finished {
            let verb = if status.phase == "complete" {
                "completed"
            } else {
                "ended"
            };
            println!(
                "rotation {verb} ({}) in {:.1}s",
                status.phase,
                status.elapsed_ms as f64 / 1000.0
            );
            return Ok(if status.phase == "complete" {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        let blocked: Vec<String> = status
            .proxies
            .iter()
            .filter(|p| !p.passed)
            .map(|p| format!("{}: {}", p.workload, p.detail))
            .collect();
        if blocked != last_blocked && !blocked.is_empty() {
            println!(
                "          waiting for {} of {} proxies ({})",
                blocked.len(),
                status.proxies.len(),
                status.gate
            );
            for line in &blocked {
                println!("            {line}");
            }
        }
        last_blocked = blocked;
        if Instant::now() >= deadline {
            println!(
                "still at {} after {:.0?}; the rotation goes on in the control plane                  (`meshward ca rotate --status`, or --apply to follow it again)",
                status.phase,
                started.elapsed()
            );
            return Ok(ExitCode::FAILURE);
        }
        tokio::time::sleep(POLL).await;
        let polled = async {
            client(server)
                .await?
                .rotation_status(RotationStatusRequest {})
                .await
                .map_err(status_error)
        }
        .await;
        match polled {
            Ok(next) => {
                failing_since = None;
                status = next.into_inner();
            }
            Err(e) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() > TOLERATE {
                    return Err(e.context("following the rotation"));
                }
            }
        }
    }
}

fn print_status(status: &RotationStatus) {
    if !status.exists {
        println!("no root rotation was ever started");
        return;
    }
    let stage = match status.stage {
        0 => String::new(),
        n => format!(" (stage {n}/4)"),
    };
    println!("phase:    {}{stage}: {}", status.phase, status.description);
    println!(
        "elapsed:  {:.1}s{}",
        status.elapsed_ms as f64 / 1000.0,
        if status.finished { " (finished)" } else { "" }
    );
    println!("old root: {}", status.old_roots);
    println!("new root: {}", status.new_root);
    if !status.gate.is_empty() {
        println!("waits:    {}", status.gate);
    }
    if !status.proxies.is_empty() {
        print_proxies(status);
    }
    let origin = status.history.first().map_or(0, |s| s.at_ms);
    println!("history:");
    for step in &status.history {
        println!(
            "  +{:>7.1}s  {}",
            (step.at_ms - origin) as f64 / 1000.0,
            step.phase
        );
    }
}

fn print_proxies(status: &RotationStatus) {
    let mut table = crate::output::table(["PROXY", "GATE", "DETAIL"]);
    for p in &status.proxies {
        table.add_row([
            p.workload.clone(),
            if p.passed { "passed" } else { "waiting" }.to_owned(),
            p.detail.clone(),
        ]);
    }
    print!("{}", crate::output::render(&mut table));
}

fn init(args: InitArgs) -> anyhow::Result<ExitCode> {
    let trust_domain = TrustDomain::new(&args.trust_domain)
        .with_context(|| format!("--trust-domain {:?}", args.trust_domain))?;
    let ca = match &args.plugin_certs {
        Some(plugin) => Authority::adopt(plugin, &args.dir, &trust_domain)?,
        None => {
            let mut options = InitOptions::new(trust_domain);
            if args.intermediate {
                options = options.with_intermediate();
            }
            if let Some(ttl) = args.root_ttl {
                options.root_ttl = ttl;
            }
            Authority::init(&args.dir, &options)?
        }
    };
    let root = ca.root().context("the CA has no root")?;
    let info = describe(root)?;
    let now = now_unix();
    println!("CA ready in {}", args.dir.display());
    println!("trust domain:       {}", ca.trust_domain());
    println!("root subject:       {}", info.subject);
    println!(
        "root fingerprint:   SHA256 {}",
        fingerprint_sha256(root.as_ref())
    );
    println!(
        "root expires:       {} ({})",
        info.not_after,
        time_left(info.not_after_unix - now)
    );
    let signer = if ca.signing_cert() == root {
        "the root".to_owned()
    } else {
        describe(ca.signing_cert())?.subject
    };
    println!("signs with:         {signer}");
    Ok(ExitCode::SUCCESS)
}

fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let Some(dir) = args.dir else {
        return live_status(&args.server);
    };
    let ca = Authority::load(&dir, None)
        .with_context(|| format!("loading the CA in {}", dir.display()))?;
    let now = now_unix();
    let mut table = crate::output::table(["ROLE", "SUBJECT", "NOT AFTER", "TIME LEFT", "SIGNS"]);
    let mut chain = vec![ca.signing_cert().clone()];
    for cert in ca.trust_bundle().roots() {
        if cert != ca.signing_cert() {
            chain.push(cert.clone());
        }
    }
    for cert in &chain {
        let info = describe(cert)?;
        let is_root = ca.trust_bundle().roots().contains(cert);
        table.add_row([
            if is_root { "root" } else { "intermediate" }.to_owned(),
            info.subject,
            info.not_after,
            time_left(info.not_after_unix - now),
            if cert == ca.signing_cert() { "yes" } else { "" }.to_owned(),
        ]);
    }
    println!("trust domain: {}", ca.trust_domain());
    print!("{}", crate::output::render(&mut table));
    Ok(ExitCode::SUCCESS)
}

/// `ca status` against the running control plane: the chain in force (during a rotation, the
/// new intermediate, its cross-signed twin and both roots), whether the files on disk are what
/// is loaded, and why the control plane would not be ready.
fn live_status(server: &ServerArgs) -> anyhow::Result<ExitCode> {
    crate::cmd::runtime()?.block_on(async {
        let status = client(server)
            .await?
            .ca_status(CaStatusRequest {})
            .await
            .map_err(status_error)?
            .into_inner();
        let now = now_unix();
        println!("trust domain: {}", status.trust_domain);
        let mut table = crate::output::table([
            "ROLE",
            "SUBJECT",
            "SERIAL",
            "NOT AFTER",
            "TIME LEFT",
            "SIGNS",
        ]);
        for cert in &status.certificates {
            table.add_row([
                cert.role.clone(),
                cert.subject.clone(),
                cert.serial.replace(':', ""),
                rfc3339(cert.not_after),
                time_left(cert.not_after - now),
                if cert.signs { "yes" } else { "" }.to_owned(),
            ]);
        }
        print!("{}", crate::output::render(&mut table));
        if !status.rotation_phase.is_empty() {
            println!("root rotation: {}", status.rotation_phase);
        }
        println!("revocations: {}", status.revocations);
        if status.load_error.is_empty() {
            println!("CA files: loaded");
        } else {
            println!("CA files: NOT loaded: {}", status.load_error);
        }
        if status.not_ready.is_empty() {
            println!("ready: yes");
            Ok(ExitCode::SUCCESS)
        } else {
            for reason in &status.not_ready {
                println!("ready: no: {reason}");
            }
            Ok(ExitCode::FAILURE)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn formats_unix_seconds_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_162_400), "2026-12-01T22:00:00Z");
    }
}
