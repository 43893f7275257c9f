//! `meshward analyze [-f DIR|FILE|-]`: cross-resource findings in `istioctl analyze`'s format
//! (`Level [CODE] (Kind ns/name file:line) message`) on files, or without `-f` on the running
//! control plane's configuration; exit 1 when any finding is an Error.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use meshward_config::analyze::{Finding, analyze, schema_findings, sort};
use meshward_config::{Limits, Severity, parse_stream};
use serde::Serialize;

use crate::client::{ServerArgs, fetch_documents};
use crate::cmd::runtime;
use crate::sources;

/// Arguments of `analyze`.
#[derive(Debug, Args)]
pub(crate) struct AnalyzeArgs {
    /// Files, directories (recursive) or `-` for standard input; without, the running control
    /// plane's configuration.
    #[arg(short = 'f', long = "filename")]
    files: Vec<PathBuf>,
    #[command(flatten)]
    server: ServerArgs,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Log)]
    output: Format,
}

/// Output formats: istioctl's log lines, or JSON.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Log,
    Json,
}

/// One finding as `istioctl analyze -o json` prints it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonFinding<'a> {
    code: &'a str,
    level: String,
    origin: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reference: Option<String>,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    documentation_url: Option<String>,
}

impl<'a> From<&'a Finding> for JsonFinding<'a> {
    fn from(finding: &'a Finding) -> Self {
        JsonFinding {
            code: finding.code,
            level: finding.level.to_string(),
            origin: &finding.origin,
            reference: finding
                .location
                .as_ref()
                .map(|l| format!("{}:{}", l.source, l.line)),
            message: &finding.message,
            documentation_url: finding.code.starts_with("IST").then(|| {
                format!(
                    "https://istio.io/latest/docs/reference/config/analysis/{}/",
                    finding.code.to_ascii_lowercase()
                )
            }),
        }
    }
}

pub(crate) fn run(args: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    let mut findings = Vec::new();
    let mut documents = Vec::new();
    if args.files.is_empty() {
        // Applied resources passed validation already: only cross-resource findings remain.
        documents = runtime()?.block_on(async {
            let mut admin = args.server.admin().await.context(
                "reaching the control plane (name manifests with -f to analyze them offline)",
            )?;
            fetch_documents(&mut admin).await
        })?;
    }
    for source in sources::read_all(&args.files)? {
        let stream = parse_stream(&source.name, &source.content, &Limits::default());
        findings.extend(schema_findings(&stream));
        documents.extend(stream.documents.into_iter().filter_map(|d| d.document));
    }
    // Two documents defining one resource stop the analysis; what was found so far still prints.
    let stopped = match analyze(&documents) {
        Ok(more) => {
            findings.extend(more);
            None
        }
        Err(err) => Some(err),
    };
    sort(&mut findings);
    match args.output {
        Format::Json => {
            let json: Vec<JsonFinding<'_>> = findings.iter().map(JsonFinding::from).collect();
            println!("{}", serde_json::to_string_pretty(&json)?);
        }
        Format::Log => {
            for finding in &findings {
                println!("{finding}");
            }
            if findings.is_empty() && stopped.is_none() {
                eprintln!(
                    "✔ No validation issues found when analyzing {} document(s).",
                    documents.len()
                );
            }
        }
    }
    if let Some(err) = stopped {
        return Err(err).context("cross-resource analysis stopped");
    }
    let failed = findings.iter().any(|f| f.level == Severity::Error);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
