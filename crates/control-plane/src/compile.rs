//! From the applied resources to one [`ProxyView`] per workload with a sidecar.
//!
//! [`views`] is pure: the mesh snapshot in, the views out. [`run`] re-runs it on every store
//! change (debounced) and hands the result to the hub, which pushes only what changed.

use std::{collections::HashMap, sync::Arc, time::Duration};

use meshward_api::v1::{
    Endpoint, InboundPort, MtlsMode as WireMtls, ProxyView, ServicePort, ServiceView,
    TlsMode as WireTls, WorkloadView,
};
use meshward_config::{
    Mesh, WorkloadInstance,
    authz::{AuthzAction, CompiledAuthz, CompiledPolicy},
    resolve::{
        endpoints::Destination,
        names::service_fqdn,
        protocol::{PortProtocol, port_protocol},
        tls::Client,
    },
    resources::{destination_rule::ClientTlsMode, peer_authentication::MtlsMode},
};
use meshward_store::Store;
use tracing::{info, warn};

use crate::Shared;

/// Changes closer together than this are compiled once.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// Recompiles and publishes the views whenever the store's revision moves.
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut seen = None;
    loop {
        let revision = shared.store.revision();
        if seen != Some(revision) {
            tokio::time::sleep(DEBOUNCE).await;
            match shared.store.snapshot() {
                Ok((revision, documents)) => {
                    compile(&shared, revision.0, documents);
                    seen = Some(revision);
                }
                Err(e) => warn!(error = %e, "cannot read the store; keeping the last views"),
            }
        }
        let waiter = shared.clone();
        let after = seen.unwrap_or_default();
        // The store's wait is blocking; a timeout bounds how long the thread is held.
        let _ = tokio::task::spawn_blocking(move || {
            waiter.store.wait_for_change(after, Duration::from_secs(5))
        })
        .await;
    }
}

fn compile(shared: &Shared, revision: u64, documents: Vec<meshward_config::Document>) {
    match Mesh::new(documents) {
        Ok(mesh) => {
            let mesh = Arc::new(mesh);
            *shared.mesh.write().unwrap_or_else(|p| p.into_inner()) = mesh.clone();
            let views = views(&mesh, shared.trust_domain.as_str(), &shared.ca.roots_pem());
            let changed = shared.hub.publish(views);
            info!(revision, changed, "configuration compiled");
        }
        // The store holds only validated streams, so this means a cross-resource conflict:
        // keep serving the last good views.
        Err(e) => {
            warn!(revision, error = %e, "cannot compile the configuration; keeping the last views")
        }
    }
    shared
        .metrics
        .config_revision
        .set(i64::try_from(revision).unwrap_or(i64::MAX));
}

/// The view of every workload that has a sidecar, keyed by `name.namespace`.
pub(crate) fn views(
    mesh: &Mesh,
    trust_domain: &str,
    bundle_pem: &str,
) -> HashMap<String, ProxyView> {
    mesh.workloads()
        .iter()
        .filter(|w| w.sidecar)
        .map(|w| {
            let view = ProxyView {
                version: 0,
                workload: Some(workload_view(mesh, w)),
                services: services_for(mesh, w),
                trust_bundle_pem: bundle_pem.to_owned(),
                trust_domain: trust_domain.to_owned(),
            };
            (format!("{}.{}", w.name, w.namespace), view)
        })
        .collect()
}

fn workload_view(mesh: &Mesh, w: &WorkloadInstance) -> WorkloadView {
    WorkloadView {
        authorization_json: authorization_json(mesh, w),
        path_normalization_json: mesh
            .config()
            .path_normalization
            .and_then(|p| serde_json::to_string(&p.normalization).ok())
            .unwrap_or_default(),
        name: w.name.clone(),
        namespace: w.namespace.clone(),
        service_account: w.service_account.clone(),
        address: w.address.clone().unwrap_or_default(),
        ports: w
            .ports
            .iter()
            .filter_map(|p| {
                let port = p.port.valid()?;
                let effective = mesh.peer_authentication(w, port);
                let protocol = port_protocol(p.protocol.as_deref(), p.name.as_deref());
                Some(InboundPort {
                    port: u32::from(port),
                    mode: wire_mtls(effective.mode) as i32,
                    mode_source: effective.source.to_string(),
                    name: p.name.clone().unwrap_or_default(),
                    opaque: protocol == PortProtocol::Tcp,
                })
            })
            .collect(),
    }
}

/// The workload's compiled AuthorizationPolicies as JSON; empty when none applies.
///
/// Validation refuses what cannot be compiled, so a failure here is a bug or a cross-resource
/// surprise: the workload then gets an ALLOW policy without rules, named after the policy that
/// failed — it denies everything (fail closed) and says why.
fn authorization_json(mesh: &Mesh, w: &WorkloadInstance) -> String {
    let compiled = mesh.compiled_authz(w).unwrap_or_else(|e| {
        warn!(workload = %w.name, namespace = %w.namespace, error = %e, "authorization denies everything");
        CompiledAuthz::new(vec![CompiledPolicy {
            namespace: e.namespace,
            name: e.name,
            action: AuthzAction::Allow,
            dry_run: false,
            rules: Vec::new(),
        }])
    });
    if compiled.policies.is_empty() {
        return String::new();
    }
    // Plain data (strings, numbers, addresses): serializing it cannot fail; were it to, the
    // workload would deny everything rather than allow it.
    serde_json::to_string(&compiled).unwrap_or_else(|_| DENY_ALL.to_owned())
}

/// An ALLOW policy without rules: nothing matches it, so everything is denied.
const DENY_ALL: &str = r#"{"policies":[{"namespace":"","name":"unserializable","action":"ALLOW","dryRun":false,"rules":[]}]}"#;

/// Every Service the workload may call, with endpoints and the TLS to use for each.
fn services_for(mesh: &Mesh, client: &WorkloadInstance) -> Vec<ServiceView> {
    let caller = Client {
        namespace: &client.namespace,
        labels: &client.labels,
    };
    mesh.services()
        .iter()
        .map(|entry| {
            let name = entry.object.metadata.name.clone();
            let namespace = entry.namespace().to_owned();
            let host = service_fqdn(&name, &namespace);
            let destination = Destination::Service(entry);
            let ports = destination
                .ports()
                .into_iter()
                .map(|port| {
                    let declared =
                        mesh.destination_rule_tls(caller, &host, Some(&namespace), port, None);
                    let endpoints = mesh
                        .endpoints(&destination, port)
                        .into_iter()
                        .filter_map(|ep| {
                            let decision =
                                mesh.client_tls(caller, &host, Some(&namespace), port, None, &ep);
                            Some(Endpoint {
                                address: ep.address.clone()?,
                                port: u32::from(ep.port),
                                identity: ep.identity.clone().unwrap_or_default(),
                                has_sidecar: ep.sidecar,
                                workload: ep
                                    .workload
                                    .map(|w| format!("{}.{}", w.name, w.namespace))
                                    .unwrap_or_default(),
                                tls_mode: wire_tls(decision.mode) as i32,
                                tls_source: decision.source.to_string(),
                            })
                        })
                        .collect();
                    let (tls_mode, tls_source, subject_alt_names, sni) = match declared {
                        Some((tls, rule, _)) => (
                            wire_tls(tls.mode),
                            format!("DestinationRule {}/{}", rule.namespace, rule.name),
                            tls.subject_alt_names.clone(),
                            tls.sni.unwrap_or_default(),
                        ),
                        None => (
                            WireTls::Unspecified,
                            "auto-mTLS".to_owned(),
                            Vec::new(),
                            String::new(),
                        ),
                    };
                    ServicePort {
                        port: u32::from(port),
                        name: String::new(),
                        endpoints,
                        tls_mode: tls_mode as i32,
                        tls_source,
                        subject_alt_names,
                        sni,
                    }
                })
                .collect();
            ServiceView {
                host,
                name,
                namespace,
                address: entry.object.spec.cluster_ip.clone().unwrap_or_default(),
                ports,
            }
        })
        .collect()
}

fn wire_mtls(mode: MtlsMode) -> WireMtls {
    match mode {
        MtlsMode::Strict => WireMtls::Strict,
        MtlsMode::Disable => WireMtls::Disable,
        // UNSET never comes out of resolution; PERMISSIVE is its meaning anyway.
        MtlsMode::Permissive | MtlsMode::Unset => WireMtls::Permissive,
    }
}

fn wire_tls(mode: ClientTlsMode) -> WireTls {
    match mode {
        ClientTlsMode::Disable => WireTls::TlsDisable,
        ClientTlsMode::Simple => WireTls::Simple,
        ClientTlsMode::Mutual => WireTls::Mutual,
        ClientTlsMode::IstioMutual => WireTls::IstioMutual,
    }
}
