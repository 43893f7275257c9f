//! `meshward cert inspect|verify|sign`: look at certificates, run the proxy's own SVID
//! verifier on a chain, and sign a CSR offline with a CA directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use meshward_ca::{Authority, fingerprint_sha256, read_bounded};
use meshward_identity::{
    AllowedPeers, CertInfo, Side, SpiffeId, TrustBundle, TrustBundleSet, TrustDomain, describe,
    peer_spiffe_id, verify_svid_chain,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};
use serde_json::json;

use super::duration::parse_duration;

/// `meshward cert …`
#[derive(Debug, Subcommand)]
pub(crate) enum CertCommand {
    /// Show subject, SPIFFE ID, SANs, issuer, serial, validity, key type, usages and CA flag.
    Inspect(InspectArgs),
    /// Verify a chain exactly as the proxy does; exit 0 if accepted, 1 if rejected.
    Verify(VerifyArgs),
    /// Sign a CSR with a CA directory for the given identity (offline, for VMs and tests).
    Sign(SignArgs),
    /// Every workload certificate of the running mesh, soonest expiry first; exit 1 if any
    /// expires within the warning threshold.
    Monitor(MonitorArgs),
}

/// `meshward cert monitor`
#[derive(Debug, Args)]
pub(crate) struct MonitorArgs {
    /// Warn about certificates that expire within this long.
    #[arg(long, default_value = "2h", value_parser = super::duration::parse_duration)]
    warn: Duration,
    #[command(flatten)]
    server: crate::client::ServerArgs,
}

/// Output format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    /// Human-readable text.
    Text,
    /// One JSON array of certificates.
    Json,
}

/// `meshward cert inspect`
#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// PEM files (chains are shown certificate by certificate).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "text")]
    output: Format,
}

/// Which side presented the chain: a client needs EKU clientAuth, a server serverAuth.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum AsSide {
    /// A client certificate, as the server-side proxy checks it.
    Client,
    /// A server certificate, as the client-side proxy checks it.
    Server,
}

/// `meshward cert verify`
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// PEM roots to trust.
    #[arg(long)]
    bundle: PathBuf,
    /// The side that presented the chain.
    #[arg(long = "as", value_enum, default_value = "client")]
    side: AsSide,
    /// Trust domain of the bundle's roots (default: the one the leaf claims).
    #[arg(long)]
    trust_domain: Option<String>,
    /// PEM chain: leaf first, then intermediates.
    chain: PathBuf,
}

/// `meshward cert sign`
#[derive(Debug, Args)]
pub(crate) struct SignArgs {
    /// CA directory made by `meshward ca init`.
    #[arg(long)]
    ca_dir: PathBuf,
    /// PKCS#10 CSR, PEM or DER.
    #[arg(long)]
    csr: PathBuf,
    /// The identity to certify, `spiffe://<td>/ns/<ns>/sa/<sa>` (the CSR's names are ignored).
    #[arg(long)]
    identity: String,
    /// Lifetime, e.g. `24h` (default 24h; above the CA's maximum is refused).
    #[arg(long, value_parser = parse_duration)]
    ttl: Option<Duration>,
    /// Trust domain of the CA, when its directory does not record one.
    #[arg(long)]
    trust_domain: Option<String>,
    /// Write the chain (leaf, intermediates, root) here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub(crate) fn run(command: CertCommand) -> anyhow::Result<ExitCode> {
    match command {
        CertCommand::Inspect(args) => inspect(args),
        CertCommand::Verify(args) => verify(args),
        CertCommand::Sign(args) => sign(args),
        CertCommand::Monitor(args) => monitor(args),
    }
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    Ok(read_bounded(path)?)
}

/// Every certificate of a PEM file; a malformed one is an error naming the file.
fn read_chain(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .enumerate()
        .map(|(i, cert)| {
            cert.with_context(|| {
                format!(
                    "{}: certificate #{} is malformed PEM",
                    path.display(),
                    i + 1
                )
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if certs.is_empty() {
        bail!("{}: no PEM certificate found", path.display());
    }
    Ok(certs)
}

pub(crate) fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `3d 4h left`, `5h 12m left` or `expired 2d ago`.
pub(crate) fn time_left(seconds: i64) -> String {
    let abs = seconds.unsigned_abs();
    let (days, hours, minutes) = (abs / 86_400, abs % 86_400 / 3600, abs % 3600 / 60);
    let span = if days > 0 {
        format!("{days}d {hours}h")
    } else {
        format!("{hours}h {minutes}m")
    };
    if seconds < 0 {
        format!("expired {span} ago")
    } else {
        format!("{span} left")
    }
}

fn inspect(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let now = now_unix();
    let mut described: Vec<(String, usize, CertInfo, String)> = Vec::new();
    for path in &args.files {
        for (i, der) in read_chain(path)?.iter().enumerate() {
            let info = describe(der)
                .with_context(|| format!("{}: certificate #{}", path.display(), i + 1))?;
            described.push((
                path.display().to_string(),
                i + 1,
                info,
                fingerprint_sha256(der.as_ref()),
            ));
        }
    }
    match args.output {
        Format::Json => {
            let items: Vec<_> = described
                .iter()
                .map(|(file, position, info, fingerprint)| {
                    json!({
                        "file": file,
                        "position": position,
                        "subject": info.subject,
                        "spiffe_id": info.spiffe_id,
                        "sans": info.sans,
                        "issuer": info.issuer,
                        "serial": info.serial,
                        "not_before": info.not_before,
                        "not_after": info.not_after,
                        "seconds_left": info.not_after_unix - now,
                        "key_type": info.key_type.to_string(),
                        "key_usage": info.key_usage,
                        "extended_key_usage": info.extended_key_usage,
                        "is_ca": info.is_ca,
                        "fingerprint_sha256": fingerprint,
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&items)?);
        }
        Format::Text => {
            for (file, position, info, fingerprint) in &described {
                println!("{file} #{position}");
                println!("  subject:      {}", info.subject);
                println!(
                    "  spiffe id:    {}",
                    info.spiffe_id.as_deref().unwrap_or("-")
                );
                println!("  sans:         {}", info.sans.join(", "));
                println!("  issuer:       {}", info.issuer);
                println!("  serial:       {}", info.serial);
                println!("  not before:   {}", info.not_before);
                println!(
                    "  not after:    {} ({})",
                    info.not_after,
                    time_left(info.not_after_unix - now)
                );
                println!("  key:          {}", info.key_type);
                println!("  key usage:    {}", info.key_usage.join(", "));
                println!("  ext. usage:   {}", info.extended_key_usage.join(", "));
                println!("  CA:           {}", info.is_ca);
                println!("  sha256:       {fingerprint}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let chain = read_chain(&args.chain)?;
    let roots = read(&args.bundle)?;
    let trust_domain = match &args.trust_domain {
        Some(td) => TrustDomain::new(td).with_context(|| format!("--trust-domain {td:?}"))?,
        // The roots vouch for whatever domain the leaf claims; the verifier still checks it.
        None => match peer_spiffe_id(&chain) {
            Ok(id) => id.trust_domain().clone(),
            Err(err) => {
                println!("rejected: {err}");
                return Ok(ExitCode::FAILURE);
            }
        },
    };
    let (bundle, skipped) = TrustBundle::from_pem(trust_domain, &roots)
        .with_context(|| format!("{}: unusable trust bundle", args.bundle.display()))?;
    for skip in &skipped {
        eprintln!("warning: {}: skipped {skip}", args.bundle.display());
    }
    let side = match args.side {
        AsSide::Client => Side::Client,
        AsSide::Server => Side::Server,
    };
    let bundles = TrustBundleSet::from(bundle);
    match verify_svid_chain(
        &chain,
        side,
        &bundles,
        &AllowedPeers::any(),
        UnixTime::now(),
    ) {
        Ok(id) => {
            println!("accepted: {id}");
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            println!("rejected: {err}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn sign(args: SignArgs) -> anyhow::Result<ExitCode> {
    let identity: SpiffeId = args
        .identity
        .parse()
        .with_context(|| format!("--identity {:?}", args.identity))?;
    let trust_domain = args
        .trust_domain
        .as_deref()
        .map(TrustDomain::new)
        .transpose()
        .context("--trust-domain")?;
    let csr = read(&args.csr)?;
    let ca = Authority::load(&args.ca_dir, trust_domain.as_ref())?;
    let svid = ca
        .sign(&csr, &identity, args.ttl)
        .with_context(|| format!("{}: not signed", args.csr.display()))?;
    match &args.out {
        Some(out) => {
            fs::write(out, svid.chain_pem())
                .with_context(|| format!("cannot write {}", out.display()))?;
            eprintln!(
                "signed {identity} (serial {}) into {}",
                svid.serial,
                out.display()
            );
        }
        None => print!("{}", svid.chain_pem()),
    }
    Ok(ExitCode::SUCCESS)
}

fn monitor(args: MonitorArgs) -> anyhow::Result<ExitCode> {
    let proxies = super::runtime()?.block_on(async {
        let mut admin = args.server.admin().await?;
        let request = meshward_api::v1::ProxyStatusRequest {};
        anyhow::Ok(admin.proxy_status(request).await?.into_inner().proxies)
    })?;
    let mut proxies: Vec<_> = proxies
        .into_iter()
        .filter(|p| p.cert_not_after > 0)
        .collect();
    proxies.sort_by_key(|p| p.cert_not_after);
    let now = now_unix();
    let warn = i64::try_from(args.warn.as_secs()).unwrap_or(i64::MAX);
    let mut table = crate::output::table(["WORKLOAD", "IDENTITY", "EXPIRES IN", "STATUS"]);
    let mut warnings = 0;
    for p in &proxies {
        let left = p.cert_not_after - now;
        let status = if left <= 0 {
            "EXPIRED"
        } else if left <= warn {
            "WARN"
        } else {
            "OK"
        };
        if status != "OK" {
            warnings += 1;
        }
        table.add_row([
            format!("{}.{}", p.workload, p.namespace),
            p.identity.clone(),
            time_left(left),
            status.to_owned(),
        ]);
    }
    print!("{}", crate::output::render(&mut table));
    Ok(if warnings == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "{warnings} certificate(s) expire within {}",
            time_left(warn).trim_end_matches(" left")
        );
        ExitCode::FAILURE
    })
}
