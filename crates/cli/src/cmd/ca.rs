//! `meshward ca init`: create a built-in CA, or adopt an Istio `cacerts` directory, in a
//! directory the control plane (and `meshward cert sign`) will load.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use meshward_ca::{Authority, InitOptions, fingerprint_sha256};
use meshward_identity::{TrustDomain, describe};

use super::cert::{now_unix, time_left};
use super::duration::parse_duration;

/// `meshward ca …`
#[derive(Debug, Subcommand)]
pub(crate) enum CaCommand {
    /// Create a CA (self-signed ECDSA P-256 root) or adopt a plug-in one; print its root.
    Init(InitArgs),
    /// Show the CA's chain — root and intermediates — with validity, time left, and which
    /// certificate signs.
    Status(StatusArgs),
}

/// `meshward ca status`
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// The CA directory (default: the running control plane's, from the context file).
    #[arg(long)]
    dir: Option<PathBuf>,
    #[command(flatten)]
    server: crate::client::ServerArgs,
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
    root_ttl: Option<std::time::Duration>,
}

pub(crate) fn run(command: CaCommand) -> anyhow::Result<ExitCode> {
    match command {
        CaCommand::Init(args) => init(args),
        CaCommand::Status(args) => status(args),
    }
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
    let dir = match args.dir {
        Some(dir) => dir,
        None => args.server.context()?.data_dir.join("ca"),
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
