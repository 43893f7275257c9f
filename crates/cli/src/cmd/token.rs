//! `meshward token create`: a one-time join token for one workload identity.

use std::{process::ExitCode, time::Duration};

use clap::{Args, Subcommand};
use meshward_api::v1::CreateTokenRequest;

use crate::{
    client::ServerArgs,
    cmd::{duration::parse_duration, runtime},
};

/// `meshward token …`
#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Create a join token bound to a namespace and service account.
    Create(CreateArgs),
}

/// Flags of `meshward token create`.
#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// Namespace of the workload the token admits.
    #[arg(long, short = 'n')]
    namespace: String,
    /// Service account of the workload the token admits.
    #[arg(long)]
    service_account: String,
    /// How long the token stays valid.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    ttl: Duration,
    #[command(flatten)]
    server: ServerArgs,
}

pub(crate) fn run(command: TokenCommand) -> anyhow::Result<ExitCode> {
    let TokenCommand::Create(args) = command;
    runtime()?.block_on(async {
        let mut admin = args.server.admin().await?;
        let token = admin
            .create_token(CreateTokenRequest {
                namespace: args.namespace,
                service_account: args.service_account,
                ttl_seconds: args.ttl.as_secs(),
            })
            .await?
            .into_inner();
        println!("{}", token.token);
        Ok(ExitCode::SUCCESS)
    })
}
