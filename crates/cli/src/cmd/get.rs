//! `meshward get KIND [NAME] [-n NS | -A] [-o table|wide|yaml|json]` and `meshward delete`,
//! against the running control plane, with the columns kubectl shows.

use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, ValueEnum};
use meshward_api::v1::{DeleteRequest, ListRequest, Resource};
use meshward_config::Kind;
use serde_json::Value;

use crate::{client::ServerArgs, cmd::runtime, output};

/// Output formats of `get`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    Table,
    Wide,
    Yaml,
    Json,
}

/// Flags of `meshward get`.
#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    /// Resource kind: peerauthentication (pa), authorizationpolicy (ap), destinationrule (dr),
    /// serviceentry (se), gateway (gw), workloadentry (we), service (svc), namespace (ns),
    /// workload.
    kind: String,
    /// Only this resource.
    name: Option<String>,
    /// Namespace (default: `default`).
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    all_namespaces: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(flatten)]
    server: ServerArgs,
}

/// Flags of `meshward delete`.
#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// Resource kind (as for `get`).
    kind: String,
    /// Name of the resource.
    name: String,
    /// Namespace (default: `default`).
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    #[command(flatten)]
    server: ServerArgs,
}

/// The kind for a kubectl-style name, plural or short form.
fn canonical_kind(name: &str) -> anyhow::Result<&'static str> {
    match Kind::from_name(name) {
        Some(kind) => Ok(kind.as_str()),
        None => bail!(
            "unknown kind {name:?}: use peerauthentication (pa), authorizationpolicy (ap), destinationrule (dr), virtualservice (vs), serviceentry (se), gateway (gw), workloadentry (we), service (svc), namespace (ns) or workload"
        ),
    }
}

pub(crate) fn run(args: GetArgs) -> anyhow::Result<ExitCode> {
    let kind = canonical_kind(&args.kind)?;
    let namespace = match (&args.namespace, args.all_namespaces || kind == "Namespace") {
        (_, true) => String::new(),
        (Some(ns), false) => ns.clone(),
        (None, false) => "default".into(),
    };
    let resources = runtime()?.block_on(async {
        let mut admin = args.server.admin().await?;
        let response = admin
            .list(ListRequest {
                kind: kind.into(),
                namespace: namespace.clone(),
                name: args.name.clone().unwrap_or_default(),
            })
            .await?;
        anyhow::Ok(response.into_inner().resources)
    })?;
    if resources.is_empty() {
        match (&args.name, namespace.as_str()) {
            (Some(name), _) => {
                eprintln!("Error from server (NotFound): {kind} {name:?} not found");
                return Ok(ExitCode::FAILURE);
            }
            (None, "") => eprintln!("No resources found"),
            (None, ns) => eprintln!("No resources found in {ns} namespace."),
        }
        return Ok(ExitCode::SUCCESS);
    }
    print!(
        "{}",
        render(kind, &resources, args.output, args.all_namespaces)?
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn run_delete(args: DeleteArgs) -> anyhow::Result<ExitCode> {
    let kind = canonical_kind(&args.kind)?;
    runtime()?.block_on(async {
        let mut admin = args.server.admin().await?;
        match admin
            .delete(DeleteRequest {
                kind: kind.into(),
                namespace: args.namespace.clone(),
                name: args.name.clone(),
            })
            .await
        {
            Ok(_) => {
                println!("{} \"{}\" deleted", kind.to_ascii_lowercase(), args.name);
                Ok(ExitCode::SUCCESS)
            }
            Err(status) => {
                eprintln!("error: {}", status.message());
                Ok(ExitCode::FAILURE)
            }
        }
    })
}

/// Renders `resources` of `kind` in `output` format.
fn render(
    kind: &str,
    resources: &[Resource],
    output: Output,
    all_namespaces: bool,
) -> anyhow::Result<String> {
    let values = resources
        .iter()
        .map(|r| serde_json::from_str::<Value>(&r.json))
        .collect::<Result<Vec<_>, _>>()?;
    match output {
        Output::Json => {
            let doc = if values.len() == 1 {
                values.into_iter().next().unwrap_or_default()
            } else {
                serde_json::json!({"apiVersion": "v1", "kind": "List", "items": values})
            };
            Ok(serde_json::to_string_pretty(&doc)? + "\n")
        }
        Output::Yaml => {
            let mut out = String::new();
            for (i, value) in values.iter().enumerate() {
                if i > 0 {
                    out.push_str("---\n");
                }
                out.push_str(&serde_saphyr::to_string(value)?);
            }
            Ok(out)
        }
        Output::Table | Output::Wide => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let extra = columns(kind, output == Output::Wide);
            let mut header = Vec::new();
            if all_namespaces && kind != "Namespace" {
                header.push("NAMESPACE".to_owned());
            }
            header.push("NAME".to_owned());
            header.extend(extra.iter().map(|(h, _)| (*h).to_owned()));
            header.push("AGE".to_owned());
            let mut table = output::table(header);
            for (resource, value) in resources.iter().zip(&values) {
                let mut row = Vec::new();
                if all_namespaces && kind != "Namespace" {
                    row.push(resource.namespace.clone());
                }
                row.push(resource.name.clone());
                row.extend(extra.iter().map(|(_, path)| field(value, path)));
                row.push(age(now - resource.created));
                table.add_row(row);
            }
            Ok(output::render(&mut table))
        }
    }
}

/// kubectl's extra columns per kind: header and JSON path.
fn columns(kind: &str, wide: bool) -> Vec<(&'static str, &'static str)> {
    let mut columns = match kind {
        "PeerAuthentication" => vec![("MODE", "/spec/mtls/mode")],
        "AuthorizationPolicy" => vec![("ACTION", "/spec/action")],
        "DestinationRule" => vec![("HOST", "/spec/host")],
        "VirtualService" => vec![("GATEWAYS", "/spec/gateways"), ("HOSTS", "/spec/hosts")],
        "ServiceEntry" => vec![
            ("HOSTS", "/spec/hosts"),
            ("LOCATION", "/spec/location"),
            ("RESOLUTION", "/spec/resolution"),
        ],
        "Service" => vec![
            ("CLUSTER-IP", "/spec/clusterIP"),
            ("PORT(S)", "/spec/ports"),
        ],
        "Workload" => vec![("SERVICE-ACCOUNT", "/spec/serviceAccount")],
        _ => Vec::new(),
    };
    if wide {
        match kind {
            "Workload" => columns.push(("IP", "/spec/address")),
            "DestinationRule" => columns.push(("TLS", "/spec/trafficPolicy/tls/mode")),
            _ => {}
        }
    }
    columns
}

fn field(value: &Value, path: &str) -> String {
    match value.pointer(path) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => s.clone(),
                Value::Object(o) => match (o.get("port"), o.get("protocol")) {
                    (Some(p), Some(Value::String(proto))) => format!("{p}/{proto}"),
                    (Some(p), _) => format!("{p}/TCP"),
                    _ => i.to_string(),
                },
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    }
}

/// kubectl's compact age: `45s`, `12m`, `5h`, `3d`.
fn age(seconds: i64) -> String {
    match seconds.max(0) {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_kind_names() {
        for (name, kind) in [
            ("pa", "PeerAuthentication"),
            ("peerauthentications", "PeerAuthentication"),
            ("PeerAuthentication", "PeerAuthentication"),
            ("authorizationpolicies", "AuthorizationPolicy"),
            ("dr", "DestinationRule"),
            ("vs", "VirtualService"),
            ("serviceentries", "ServiceEntry"),
            ("svc", "Service"),
            ("ns", "Namespace"),
            ("workloads", "Workload"),
            ("workload", "Workload"),
        ] {
            assert_eq!(canonical_kind(name).unwrap(), kind, "{name}");
        }
        assert!(canonical_kind("sidecar").is_err());
    }

    #[test]
    fn peer_authentication_table_has_kubectl_columns() {
        let resource = Resource {
            kind: "PeerAuthentication".into(),
            namespace: "team-app".into(),
            name: "mutual-tls-auth".into(),
            json: r#"{"spec":{"mtls":{"mode":"STRICT"}}}"#.into(),
            created: 0,
            ..Resource::default()
        };
        let out = render("PeerAuthentication", &[resource], Output::Table, true).unwrap();
        let lines: Vec<_> = out
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .collect();
        assert_eq!(lines[0], ["NAMESPACE", "NAME", "MODE", "AGE"]);
        assert_eq!(lines[1][..3], ["team-app", "mutual-tls-auth", "STRICT"]);
    }
}
