//! `meshward apply -f FILE|DIR|-`: sends manifests to the control plane, all or nothing.

use std::{path::PathBuf, process::ExitCode};

use clap::Args;
use meshward_api::v1::{ApplyRequest, SourceFile};

use crate::{client::ServerArgs, cmd::runtime, sources};

/// Flags of `meshward apply`.
#[derive(Debug, Args)]
pub(crate) struct ApplyArgs {
    /// A YAML/JSON file, a directory of them (recursively), or `-` for standard input.
    #[arg(short = 'f', long = "filename", required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    server: ServerArgs,
}

pub(crate) fn run(args: ApplyArgs) -> anyhow::Result<ExitCode> {
    let files = sources::read_all(&args.files)?
        .into_iter()
        .map(|s| SourceFile {
            name: s.name,
            content: s.content,
        })
        .collect();
    runtime()?.block_on(async {
        let mut admin = args.server.admin().await?;
        match admin.apply(ApplyRequest { files }).await {
            Ok(response) => {
                for line in response.into_inner().results {
                    println!("{line}");
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(status) => {
                // The server's message lists every invalid document with file:line:column.
                eprintln!("error: nothing applied:\n{}", status.message());
                Ok(ExitCode::FAILURE)
            }
        }
    })
}
