//! `meshward x …`: experimental verbs, as istioctl's `x`. Their flags and output may still
//! change.

use std::process::ExitCode;

use clap::Subcommand;

mod authz;

/// `meshward x …`
#[derive(Debug, Subcommand)]
pub(crate) enum XCommand {
    /// AuthorizationPolicy checks.
    #[command(subcommand)]
    Authz(authz::AuthzCommand),
}

pub(crate) fn run(command: XCommand) -> anyhow::Result<ExitCode> {
    match command {
        XCommand::Authz(command) => authz::run(command),
    }
}
