//! `meshward mtls enable|verify|debug`: the operational scripts operators wrote around Istio,
//! as commands. `verify` does not trust configuration: it probes every port of every workload
//! in plaintext and with mesh mTLS and compares what happened with what the policy says.
//! `debug` walks one client → service path and says where it breaks (`mtls/debug.rs`).

use std::{net::SocketAddr, process::ExitCode};

use clap::{Args, Subcommand, ValueEnum};
use meshward_api::v1::{ApplyRequest, ListRequest, SourceFile, admin_client::AdminClient};
use meshward_config::resources::peer_authentication::MtlsMode;
use meshward_local::probe;
use tonic::transport::Channel;

use self::live::Live;
use crate::{client::ServerArgs, cmd::runtime, output};

mod debug;
mod live;

/// `meshward mtls …`
#[derive(Debug, Subcommand)]
pub(crate) enum MtlsCommand {
    /// Set a namespace's mTLS mode (writes its PeerAuthentication `default`).
    Enable(EnableArgs),
    /// Probe every port of every workload of a namespace in plaintext and with mTLS, and
    /// compare with the policy; exit 1 on any surprise.
    Verify(VerifyArgs),
    /// Walk one client → service path step by step (client, name, endpoints, policy on both
    /// sides, certificates, a live request) and say where it breaks; exit 1 if it does.
    Debug(debug::DebugArgs),
}

/// The modes `mtls enable` sets.
#[derive(Debug, Clone, Copy, ValueEnum)]
#[value(rename_all = "UPPER")]
pub(crate) enum Mode {
    Strict,
    Permissive,
    Disable,
}

/// Flags of `meshward mtls enable`.
#[derive(Debug, Args)]
pub(crate) struct EnableArgs {
    /// The namespace.
    namespace: String,
    /// STRICT, PERMISSIVE or DISABLE.
    #[arg(value_enum, ignore_case = true)]
    mode: Mode,
    #[command(flatten)]
    server: ServerArgs,
}

/// Flags of `meshward mtls verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The namespace.
    namespace: String,
    #[command(flatten)]
    server: ServerArgs,
}

pub(crate) fn run(command: MtlsCommand) -> anyhow::Result<ExitCode> {
    match command {
        MtlsCommand::Enable(args) => enable(args),
        MtlsCommand::Verify(args) => verify(args),
        MtlsCommand::Debug(args) => debug::run(args),
    }
}

fn enable(args: EnableArgs) -> anyhow::Result<ExitCode> {
    let mode = match args.mode {
        Mode::Strict => "STRICT",
        Mode::Permissive => "PERMISSIVE",
        Mode::Disable => "DISABLE",
    };
    runtime()?.block_on(async {
        let mut admin = args.server.admin().await?;
        let manifest = namespace_policy(&mut admin, &args.namespace, mode).await?;
        let response = admin
            .apply(ApplyRequest {
                files: vec![SourceFile {
                    name: format!("mtls enable {} {mode}", args.namespace),
                    content: manifest,
                }],
            })
            .await
            .map_err(|status| anyhow::anyhow!("{}", status.message()))?;
        for line in response.into_inner().results {
            println!("{line}");
        }
        println!("namespace {} is now {mode}", args.namespace);
        Ok(ExitCode::SUCCESS)
    })
}

/// The namespace-wide PeerAuthentication with `mode`: the one in force (Istio: the oldest
/// selector-less policy of the namespace) updated in place, or a new `default`. Writing a second
/// one would change nothing, since the oldest wins.
async fn namespace_policy(
    admin: &mut AdminClient<Channel>,
    namespace: &str,
    mode: &str,
) -> anyhow::Result<String> {
    let listed = admin
        .list(ListRequest {
            kind: "PeerAuthentication".into(),
            namespace: namespace.to_owned(),
            name: String::new(),
        })
        .await?
        .into_inner()
        .resources;
    let in_force = listed
        .iter()
        .filter_map(|r| Some((r, serde_json::from_str::<serde_json::Value>(&r.json).ok()?)))
        .filter(|(_, v)| v.pointer("/spec/selector").is_none())
        .min_by_key(|(r, _)| (r.created, r.name.clone()));
    Ok(match in_force {
        Some((_, mut policy)) => {
            policy["spec"]["mtls"] = serde_json::json!({ "mode": mode });
            serde_json::to_string_pretty(&policy)?
        }
        None => format!(
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: default\n  namespace: {namespace}\nspec:\n  mtls:\n    mode: {mode}\n"
        ),
    })
}

fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    live::enter_mesh_network()?;
    runtime()?.block_on(async {
        let live = Live::gather(&args.server, "mtls verify").await?;
        let (mesh, now) = (&live.mesh, live.now);
        let mut table = output::table([
            "WORKLOAD",
            "PORT",
            "SIDECAR",
            "CERT",
            "POLICY",
            "PLAINTEXT",
            "MTLS",
            "RESULT",
        ]);
        let mut surprises = 0;
        for w in live
            .running
            .workloads
            .iter()
            .filter(|w| w.namespace == args.namespace)
        {
            let proxy = live.proxy(w);
            let cert = match proxy {
                None => "none".to_owned(),
                Some(p) if p.cert_not_after > now => {
                    format!("valid {}h", (p.cert_not_after - now) / 3600)
                }
                Some(_) => "EXPIRED".to_owned(),
            };
            let server_id = live.identity(w)?;
            for port in &w.ports {
                let policy = live.policy(w, *port);
                let addr = SocketAddr::from((w.address, *port));
                let plaintext = probe::direct(addr, &w.name).await;
                let config = live.mtls_config(server_id.clone())?;
                let mtls = probe::mtls(addr, &w.name, config).await;
                let (expect_plain, expect_mtls) = match policy {
                    Some(MtlsMode::Strict) => (false, true),
                    Some(MtlsMode::Disable) => (true, false),
                    Some(_) => (true, true),
                    None => (true, false),
                };
                let mut problems = Vec::new();
                // Authorization may still deny the request: the mode is about admission.
                if plaintext.admitted() != expect_plain {
                    problems.push(if expect_plain {
                        "plaintext refused"
                    } else {
                        "plaintext ACCEPTED"
                    });
                }
                if mtls.admitted() != expect_mtls {
                    problems.push(if expect_mtls {
                        "mTLS refused"
                    } else {
                        "mTLS accepted"
                    });
                }
                if w.sidecar && proxy.is_none_or(|p| p.cert_not_after <= now) {
                    problems.push("no valid certificate");
                }
                if !w.sidecar
                    && mesh
                        .namespace_labels(&w.namespace)
                        .is_some_and(|l| l.get("istio-injection").is_some_and(|v| v == "enabled"))
                {
                    // An opt-out pod in an injected namespace is allowed, but worth showing.
                    problems.push("no sidecar (opted out)");
                }
                let hard = problems.iter().any(|p| *p != "no sidecar (opted out)");
                if hard {
                    surprises += 1;
                }
                table.add_row([
                    w.id(),
                    port.to_string(),
                    if w.sidecar { "yes" } else { "no" }.to_owned(),
                    if w.sidecar {
                        cert.clone()
                    } else {
                        "-".to_owned()
                    },
                    policy.map_or("none (no sidecar)".to_owned(), |m| m.as_str().to_owned()),
                    verdict(&plaintext),
                    verdict(&mtls),
                    if problems.is_empty() {
                        "OK".to_owned()
                    } else {
                        problems.join(", ")
                    },
                ]);
            }
        }
        print!("{}", output::render(&mut table));
        if surprises == 0 {
            println!(
                "\nnamespace {}: every port behaves as its policy says",
                args.namespace
            );
            Ok(ExitCode::SUCCESS)
        } else {
            println!(
                "\nnamespace {}: {surprises} port(s) do not behave as their policy says",
                args.namespace
            );
            Ok(ExitCode::FAILURE)
        }
    })
}

fn verdict(outcome: &probe::Outcome) -> String {
    match outcome {
        probe::Outcome::Allowed(_) => "accepted",
        probe::Outcome::Denied(_) => "accepted, denied by AuthorizationPolicy",
        probe::Outcome::Refused(_) => "refused",
    }
    .to_owned()
}
