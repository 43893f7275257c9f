//! `meshward authn tls-check [WORKLOAD.NS|SERVICE] [-f DIR]`: the effective mTLS of every server
//! port and every client → server pair — offline on files, or on the running control plane's
//! configuration without `-f` — and whether a namespace can be switched to STRICT without
//! cutting clients off. Exit 1 when any pair conflicts.

mod readiness;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use meshward_config::tls_check::{Readiness, Scope, Status, TlsCheck, tls_check};

use crate::client::ServerArgs;
use crate::cmd::load_mesh;
use crate::output;

/// `authn` verbs.
#[derive(Debug, Subcommand)]
pub(crate) enum AuthnCommand {
    /// Effective mTLS per server port and per client → server pair; exit 1 on any CONFLICT.
    TlsCheck(TlsCheckArgs),
    /// Is it safe to switch to STRICT? Per sidecar port: mTLS and plaintext connections seen
    /// and the last plaintext clients; exit 1 when a non-STRICT port still has some.
    Readiness(readiness::ReadinessArgs),
}

/// Arguments of `authn tls-check`.
#[derive(Debug, Args)]
pub(crate) struct TlsCheckArgs {
    /// Limit the report to one workload (`name.namespace`) or one service (`name.namespace`,
    /// a full name or a ServiceEntry host).
    target: Option<String>,
    /// Files, directories (recursive) or `-` for standard input; without, the running control
    /// plane's configuration.
    #[arg(short = 'f', long = "filename")]
    files: Vec<PathBuf>,
    #[command(flatten)]
    server: ServerArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table)]
    output: Format,
}

/// Output formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
}

pub(crate) fn run(command: AuthnCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuthnCommand::TlsCheck(args) => tls_check_verb(args),
        AuthnCommand::Readiness(args) => readiness::run(args),
    }
}

fn tls_check_verb(args: TlsCheckArgs) -> anyhow::Result<ExitCode> {
    let mesh = load_mesh(&args.files, &args.server)?;
    let scope = match &args.target {
        None => Scope::All,
        Some(target) => Scope::resolve(&mesh, target).with_context(|| {
            format!("no workload `name.namespace` or service named `{target}` in the manifests")
        })?,
    };
    let report = tls_check(&mesh, &scope);
    match args.output {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Table => print!("{}", render(&report)),
    }
    Ok(if report.conflicts() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn render(report: &TlsCheck) -> String {
    let mut servers = output::table(["SERVER", "PORT", "MODE", "SET BY"]);
    for server in &report.servers {
        let (mode, source) = match (&server.mode, &server.source) {
            (Some(mode), Some(source)) => (mode.as_str().to_owned(), source.to_string()),
            _ => (
                "-".to_owned(),
                "no sidecar: the application receives what is sent".to_owned(),
            ),
        };
        servers.add_row(vec![
            server.workload.clone(),
            server.port.to_string(),
            mode,
            source,
        ]);
    }
    let mut pairs = output::table([
        "CLIENT",
        "SERVICE",
        "SERVER",
        "CLIENT TLS",
        "BY",
        "SERVER MODE",
        "STATUS",
        "REASON",
    ]);
    for pair in &report.pairs {
        pairs.add_row(vec![
            pair.client.clone(),
            format!("{}:{}", pair.service, pair.service_port),
            format!("{}:{}", pair.server, pair.server_port),
            pair.originates.as_str().to_owned(),
            pair.by.clone(),
            pair.server_mode
                .map_or("no sidecar", |m| m.as_str())
                .to_owned(),
            match pair.verdict.status {
                Status::Ok => "OK",
                Status::Conflict => "CONFLICT",
            }
            .to_owned(),
            pair.verdict.reason.clone(),
        ]);
    }
    let mut out = if report.servers.is_empty() {
        "no server ports in scope\n".to_owned()
    } else {
        output::render(&mut servers)
    };
    out.push('\n');
    if report.pairs.is_empty() {
        out.push_str("no client → server pairs in these manifests\n");
    } else {
        out.push_str(&output::render(&mut pairs));
    }
    out.push('\n');
    for readiness in &report.readiness {
        out.push_str(&summary(readiness));
    }
    out.push_str(&format!(
        "{} pair(s), {} conflict(s)\n",
        report.pairs.len(),
        report.conflicts()
    ));
    out
}

/// `safe to switch namespace X to STRICT: yes/no — N plaintext client(s): …`, or, when every
/// port is STRICT already, the clients it rejects today.
fn summary(readiness: &Readiness) -> String {
    let clients = &readiness.plaintext_clients;
    let subject = &readiness.subject;
    let mut line = if readiness.strict_ports == readiness.ports {
        format!(
            "{subject} is STRICT on all {} sidecar port(s): {} plaintext client(s) rejected",
            readiness.ports,
            clients.len()
        )
    } else {
        format!(
            "safe to switch {subject} to STRICT: {} — {} plaintext client(s) ({} of {} sidecar port(s) STRICT today)",
            if readiness.safe { "yes" } else { "no" },
            clients.len(),
            readiness.strict_ports,
            readiness.ports,
        )
    };
    if !clients.is_empty() {
        line.push_str(": ");
        line.push_str(&clients.join(", "));
    }
    line.push('\n');
    line
}
