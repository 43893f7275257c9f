//! `meshward demo httpbin|echo|sleep`: the built-in demo workloads, so that examples need
//! nothing installed.

use std::{net::SocketAddr, process::ExitCode};

use clap::Subcommand;

use crate::cmd::runtime;

/// `meshward demo …`
#[derive(Debug, Subcommand)]
pub(crate) enum DemoCommand {
    /// An httpbin-like HTTP server: /get, /headers, /ip, /env, /status/{code}.
    Httpbin {
        /// Address to listen on (repeat for several ports).
        #[arg(long, required = true)]
        listen: Vec<SocketAddr>,
    },
    /// A TCP echo server.
    Echo {
        /// Address to listen on.
        #[arg(long)]
        listen: SocketAddr,
    },
    /// Does nothing until stopped: a client workload's process (`sleep infinity`).
    Sleep,
}

pub(crate) fn run(command: DemoCommand) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let serve = async {
            match command {
                DemoCommand::Httpbin { listen } => {
                    let mut servers = tokio::task::JoinSet::new();
                    for addr in listen {
                        servers.spawn(meshward_local::apps::httpbin::run(addr));
                    }
                    match servers.join_next().await {
                        Some(Ok(result)) => result,
                        _ => Ok(()),
                    }
                }
                DemoCommand::Echo { listen } => meshward_local::apps::echo::run(listen).await,
                DemoCommand::Sleep => std::future::pending().await,
            }
        };
        tokio::select! {
            result = serve => result?,
            signal = crate::cmd::shutdown_signal() => signal?,
        }
        Ok(ExitCode::SUCCESS)
    })
}
