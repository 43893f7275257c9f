//! `meshward`: the one binary. Every verb of the product is a subcommand here; each lives in its
//! own module under `cmd/` and returns an exit code, so errors print once, here, with context.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

/// A zero-trust service mesh that speaks Istio's YAML.
#[derive(Debug, Parser)]
#[command(name = "meshward", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the version.
    Version,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: anyhow::Result<ExitCode> = match cli.command {
        Command::Version => {
            println!("meshward {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
