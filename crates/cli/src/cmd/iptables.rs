//! `meshward iptables`: the init step of transparent mode, as Istio's `istio-iptables`. Installs,
//! checks or removes the capture rules of the current network namespace, with Istio's flags
//! (`-p 15001 -z 15006 -u 1337 -i '*' -b '*' -d 15090,15021,15020`), or prints them
//! (`--dry-run`).

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use meshward_proxy::capture::{self, CaptureConfig, Installed, rules};

/// What to do with the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Action {
    /// Install (replacing any earlier capture); nothing is written when already in place.
    Install,
    /// Exit 0 when exactly these rules are installed, 1 (with the differences) otherwise.
    Check,
    /// Remove every capture rule and chain.
    Remove,
}

/// Flags of `meshward iptables`, named as `istio-iptables` names them.
#[derive(Debug, Args)]
pub(crate) struct IptablesArgs {
    /// What to do.
    #[arg(value_enum, default_value = "install")]
    action: Action,
    /// Port outbound TCP is redirected to (the sidecar's outbound port).
    #[arg(
        short = 'p',
        long,
        visible_alias = "envoy-port",
        default_value_t = 15001
    )]
    proxy_port: u16,
    /// Port inbound TCP is redirected to (the sidecar's inbound capture port).
    #[arg(short = 'z', long, default_value_t = 15006)]
    inbound_capture_port: u16,
    /// User ids whose connections are never captured (the proxy's), comma-separated.
    #[arg(short = 'u', long, default_value = "1337")]
    proxy_uid: String,
    /// Group ids whose connections are never captured; default: the same as --proxy-uid.
    #[arg(short = 'g', long)]
    proxy_gid: Option<String>,
    /// Inbound interception mode; only REDIRECT.
    #[arg(short = 'm', long, default_value = "REDIRECT")]
    inbound_interception_mode: String,
    /// Inbound ports captured, comma-separated; `*` for all, empty for none.
    #[arg(
        short = 'b',
        long,
        visible_alias = "istio-inbound-ports",
        default_value = "*"
    )]
    inbound_ports: String,
    /// Inbound ports never captured when --inbound-ports is `*` (Istio's sidecars pass
    /// 15090,15021,15020).
    #[arg(
        short = 'd',
        long,
        visible_alias = "istio-local-exclude-ports",
        default_value = ""
    )]
    local_exclude_ports: String,
    /// Outbound destinations captured, CIDRs comma-separated; `*` for all, empty for none.
    #[arg(
        short = 'i',
        long,
        visible_alias = "istio-service-cidr",
        default_value = "*"
    )]
    outbound_ip_ranges: String,
    /// Outbound destinations never captured, CIDRs comma-separated.
    #[arg(
        short = 'x',
        long,
        visible_alias = "istio-service-exclude-cidr",
        default_value = ""
    )]
    outbound_exclude_ip_ranges: String,
    /// Outbound ports captured whatever the destination, comma-separated.
    #[arg(
        short = 'q',
        long,
        visible_alias = "istio-outbound-ports",
        default_value = ""
    )]
    outbound_ports: String,
    /// Outbound ports never captured, comma-separated.
    #[arg(
        short = 'o',
        long,
        visible_alias = "istio-local-outbound-ports-exclude",
        default_value = ""
    )]
    outbound_exclude_ports: String,
    /// Print the `iptables-restore` input for a fresh namespace and change nothing.
    #[arg(short = 'n', long)]
    dry_run: bool,
}

impl IptablesArgs {
    fn config(&self) -> anyhow::Result<CaptureConfig> {
        anyhow::ensure!(
            self.inbound_interception_mode
                .eq_ignore_ascii_case("REDIRECT"),
            "--inbound-interception-mode `{}`: only REDIRECT is supported (TPROXY is not)",
            self.inbound_interception_mode
        );
        for (flag, port) in [
            ("--proxy-port", self.proxy_port),
            ("--inbound-capture-port", self.inbound_capture_port),
        ] {
            anyhow::ensure!(port != 0, "{flag} 0: not a port");
        }
        let uids = rules::ids("--proxy-uid", &self.proxy_uid)?;
        let gids = match &self.proxy_gid {
            Some(gid) => rules::ids("--proxy-gid", gid)?,
            None => uids.clone(),
        };
        let exclude_ranges = match rules::cidrs(
            "--outbound-exclude-ip-ranges",
            &self.outbound_exclude_ip_ranges,
            false,
        )? {
            capture::Selection::Only(ranges) => ranges,
            capture::Selection::All => Vec::new(),
        };
        Ok(CaptureConfig {
            proxy_port: self.proxy_port,
            inbound_capture_port: self.inbound_capture_port,
            proxy_uids: uids,
            proxy_gids: gids,
            inbound_ports: rules::ports("--inbound-ports", &self.inbound_ports, true)?,
            local_exclude_ports: rules::port_list(
                "--local-exclude-ports",
                &self.local_exclude_ports,
            )?,
            outbound_ip_ranges: rules::cidrs(
                "--outbound-ip-ranges",
                &self.outbound_ip_ranges,
                true,
            )?,
            outbound_exclude_ip_ranges: exclude_ranges,
            outbound_ports: rules::port_list("--outbound-ports", &self.outbound_ports)?,
            outbound_exclude_ports: rules::port_list(
                "--outbound-exclude-ports",
                &self.outbound_exclude_ports,
            )?,
        })
    }
}

pub(crate) fn run(args: IptablesArgs) -> anyhow::Result<ExitCode> {
    let config = args.config()?;
    if args.dry_run {
        match args.action {
            Action::Install | Action::Check => print!("{}", config.restore_script(&[], &[])),
            Action::Remove => {
                let chains: Vec<String> = rules::CHAINS.iter().map(|c| (*c).to_owned()).collect();
                let jumps: Vec<_> = CaptureConfig::default()
                    .rules()
                    .into_iter()
                    .filter(|r| !rules::CHAINS.contains(&r.chain.as_str()))
                    .collect();
                print!(
                    "{}",
                    rules::removal_script(&jumps, &chains).unwrap_or_default()
                );
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    match args.action {
        Action::Install => {
            match capture::install(&config).context("installing the capture rules")? {
                Installed::Changed => eprintln!("capture installed"),
                Installed::AlreadyInPlace => eprintln!("capture already installed: unchanged"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Action::Check => {
            let differences = capture::check(&config).context("reading the capture rules")?;
            if differences.is_empty() {
                println!("capture installed as configured");
                return Ok(ExitCode::SUCCESS);
            }
            for difference in differences {
                println!("{difference}");
            }
            Ok(ExitCode::FAILURE)
        }
        Action::Remove => {
            if capture::remove().context("removing the capture rules")? {
                eprintln!("capture removed");
            } else {
                eprintln!("no capture rules: nothing to remove");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
