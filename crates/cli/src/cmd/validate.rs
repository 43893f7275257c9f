//! `meshward validate -f FILE|DIR|-`: parse and validate manifests offline, with a verdict per
//! document; exit 1 when any document is invalid.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use meshward_config::{Limits, Severity, parse_stream};
use serde::Serialize;

use crate::sources;

/// Arguments of `validate`.
#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    /// Files, directories (recursive) or `-` for standard input.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Text)]
    output: Format,
}

/// Output formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Debug, Serialize)]
struct Verdict {
    location: String,
    resource: Option<String>,
    valid: bool,
    diagnostics: Vec<meshward_config::Diagnostic>,
}

pub(crate) fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let mut verdicts = Vec::new();
    for source in sources::read_all(&args.files)? {
        let stream = parse_stream(&source.name, &source.content, &Limits::default());
        for error in &stream.errors {
            verdicts.push(Verdict {
                location: error
                    .location
                    .as_ref()
                    .map_or_else(|| source.name.clone(), ToString::to_string),
                resource: None,
                valid: false,
                diagnostics: vec![error.clone()],
            });
        }
        for document in stream.documents {
            verdicts.push(Verdict {
                location: document.location.to_string(),
                valid: document.is_valid(),
                resource: document.resource,
                diagnostics: document.diagnostics,
            });
        }
    }
    match args.output {
        Format::Json => println!("{}", serde_json::to_string_pretty(&verdicts)?),
        Format::Text => {
            for verdict in &verdicts {
                let name = verdict.resource.as_deref().unwrap_or("document");
                let word = if verdict.valid { "valid" } else { "INVALID" };
                println!("{}: {name}: {word}", verdict.location);
                for diagnostic in &verdict.diagnostics {
                    println!("  {diagnostic}");
                }
            }
        }
    }
    let invalid = verdicts.iter().filter(|v| !v.valid).count();
    let warnings = verdicts
        .iter()
        .flat_map(|v| &v.diagnostics)
        .filter(|d| d.severity == Severity::Warning)
        .count();
    eprintln!(
        "{} document(s), {invalid} invalid, {warnings} warning(s)",
        verdicts.len()
    );
    Ok(if invalid == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
