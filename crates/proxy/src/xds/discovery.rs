//! `Discovery.Stream`: say Hello, then apply each `ProxyView` that validates (ACK) and keep
//! the last good one for any that does not (NACK with the reason). The view's trust — this
//! mesh's roots, other trust domains' roots, the revocations — replaces the one in force when it
//! differs, once it verifies our own chain (root rotation); a renewal is requested when the
//! control plane wants certificates from another signer. What the proxy holds (certificate,
//! signer, roots) is reported after the Hello and on every change.
//! Reconnects with backoff; the view in force never goes away because the control plane did.

use std::sync::Arc;

use meshward_api::v1::discovery_client::DiscoveryClient;
use meshward_api::v1::discovery_request::Kind;
use meshward_api::v1::{Ack, DiscoveryRequest, Hello, ProxyView, TrustReport};
use meshward_identity::{Revocations, Serial, SpiffeId, TrustBundle, TrustBundleSet, TrustDomain};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;

use super::{Backoff, ControlPlane, XdsError};
use crate::admin::Status;
use crate::config::WorkloadName;
use crate::creds::{Credentials, CredsReceiver, CredsStore};
use crate::view::View;
use crate::view::proto::from_proto;

/// Largest view message taken from the control plane. gRPC's default, 4 MiB, is below what a
/// view within its item bounds can weigh (10 000 workloads with long labels alone pass it);
/// this bound still keeps one message from taking the proxy's memory.
const MAX_VIEW_MESSAGE: usize = 64 << 20;

/// What the discovery loop updates.
#[derive(Debug)]
pub struct Discovery {
    /// Where to connect.
    pub control_plane: ControlPlane,
    /// The workload this proxy serves.
    pub workload: WorkloadName,
    /// The SVID that authenticates the stream.
    pub creds: CredsReceiver,
    /// Where a pushed trust bundle is installed.
    pub store: CredsStore,
    /// The view in force.
    pub view: watch::Sender<Arc<View>>,
    /// Readiness inputs.
    pub status: watch::Sender<Status>,
}

impl Discovery {
    /// Follows the control plane until `stop`.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut backoff = Backoff::new();
        loop {
            // The stream is authenticated by the SVID: wait for the first one.
            tokio::select! {
                () = stop.cancelled() => return,
                r = self.creds.wait_for(Option::is_some) => if r.is_err() { return },
            }
            match self.session(&mut backoff, &stop).await {
                Ok(()) => tracing::info!("control-plane stream ended; reconnecting"),
                Err(err) => {
                    tracing::warn!(%err, "control-plane stream failed; keeping the last view")
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }

    /// Installs the view's trust (root rotation, other trust domains, revocations) when it
    /// differs from the one in force: the current certificate is re-validated against it first,
    /// so trust that would not verify this proxy's own chain is refused with the view. Then asks
    /// for a renewal when the control plane wants certificates from another signer.
    fn apply_trust(&self, view: &View, update: &TrustUpdate) -> Result<(), String> {
        let Some(current) = self.creds.borrow().clone() else {
            return Ok(());
        };
        let bundles = update.bundles(&view.trust_domain, current.bundles())?;
        if !bundles.same_trust(current.bundles()) {
            let creds = Credentials::new(
                current.chain().to_vec(),
                current.key().clone_key(),
                Arc::new(bundles),
            )
            .map_err(|e| format!("trust bundle does not verify this proxy's certificate: {e}"))?;
            tracing::info!(
                revocations = creds.bundles().revocations().ids().count()
                    + creds.bundles().revocations().serials().count(),
                trust_domains = creds.bundles().iter().count(),
                "trust updated from the control plane"
            );
            self.store.publish(creds);
        }
        if !update.renew_unless_signer.is_empty()
            && current.signer_key() != update.renew_unless_signer
        {
            tracing::info!(
                "the control plane asks for a certificate from its new signer: renewing now"
            );
            self.store.request_renewal();
        }
        Ok(())
    }

    async fn session(
        &mut self,
        backoff: &mut Backoff,
        stop: &CancellationToken,
    ) -> Result<(), XdsError> {
        let current = self.creds.borrow().clone();
        let channel = self.control_plane.channel(current.as_deref()).await?;
        let (tx, rx) = mpsc::channel(4);
        let hello = DiscoveryRequest {
            kind: Some(Kind::Hello(Hello {
                workload: self.workload.to_string(),
                version: self.view.borrow().version,
            })),
        };
        // The receiver is alive: it was created just above.
        let _ = tx.send(hello).await;
        let mut held = self.creds.clone();
        let first = report(held.borrow_and_update().as_deref());
        if let Some(first) = first {
            let _ = tx.send(first).await;
        }
        let mut views = DiscoveryClient::new(channel)
            .max_decoding_message_size(MAX_VIEW_MESSAGE)
            .stream(ReceiverStream::new(rx))
            .await?
            .into_inner();
        loop {
            let message = tokio::select! {
                () = stop.cancelled() => return Ok(()),
                m = views.message() => m?,
                changed = held.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    let report = report(held.borrow_and_update().as_deref());
                    if let Some(report) = report
                        && tx.send(report).await.is_err()
                    {
                        return Ok(());
                    }
                    continue;
                }
            };
            let Some(mut proto) = message else {
                return Ok(());
            };
            backoff.reset();
            let version = proto.version;
            let trust = TrustUpdate::take(&mut proto);
            let applied = from_proto(proto, &self.workload.name, &self.workload.namespace)
                .map_err(|e| e.to_string())
                .and_then(|view| {
                    self.apply_trust(&view, &trust)?;
                    Ok(view)
                });
            let nack_reason = match applied {
                Ok(view) => {
                    tracing::info!(version, "configuration applied");
                    self.view.send_replace(Arc::new(view));
                    self.status.send_modify(|s| s.has_view = true);
                    String::new()
                }
                Err(err) => {
                    tracing::warn!(version, %err, "configuration refused (NACK); keeping the last good view");
                    err
                }
            };
            let ack = DiscoveryRequest {
                kind: Some(Kind::Ack(Ack {
                    version,
                    nack_reason,
                })),
            };
            if tx.send(ack).await.is_err() {
                return Ok(());
            }
        }
    }
}

/// What a proxy reports holding: its certificate, the key that signed it, the roots it trusts.
fn report(creds: Option<&Credentials>) -> Option<DiscoveryRequest> {
    let creds = creds?;
    Some(DiscoveryRequest {
        kind: Some(Kind::Trust(TrustReport {
            serial: creds.serial(),
            signer: creds.signer_key(),
            roots: creds.own_roots(),
            not_after: creds
                .not_after()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        })),
    })
}

/// The trust a view carries, taken out of it before the rest is converted.
#[derive(Debug, Default)]
struct TrustUpdate {
    bundle_pem: String,
    revocations: meshward_api::v1::Revocations,
    foreign: Vec<meshward_api::v1::ForeignBundle>,
    aliases: Vec<String>,
    renew_unless_signer: String,
}

impl TrustUpdate {
    fn take(proto: &mut ProxyView) -> Self {
        Self {
            bundle_pem: std::mem::take(&mut proto.trust_bundle_pem),
            revocations: proto.revocations.take().unwrap_or_default(),
            foreign: std::mem::take(&mut proto.foreign_bundles),
            aliases: std::mem::take(&mut proto.trust_domain_aliases),
            renew_unless_signer: std::mem::take(&mut proto.renew_unless_signer),
        }
    }

    /// The bundles and revocations this view puts in force. Without a bundle (an older control
    /// plane) this mesh's roots stay as they are.
    fn bundles(
        &self,
        trust_domain: &TrustDomain,
        current: &TrustBundleSet,
    ) -> Result<TrustBundleSet, String> {
        let local = if self.bundle_pem.is_empty() {
            current
                .get(trust_domain)
                .cloned()
                .ok_or_else(|| "no trust bundle for this mesh".to_owned())?
        } else {
            TrustBundle::from_pem(trust_domain.clone(), self.bundle_pem.as_bytes())
                .map_err(|e| format!("trust bundle: {e}"))?
                .0
        };
        let mut set = TrustBundleSet::new();
        for alias in &self.aliases {
            let td = TrustDomain::new(alias)
                .map_err(|e| format!("trust domain alias {alias:?}: {e}"))?;
            let bundle = TrustBundle::new(td, local.roots().iter().cloned())
                .map_err(|e| format!("trust domain alias {alias:?}: {e}"))?;
            set.insert(bundle);
        }
        for foreign in &self.foreign {
            let td = TrustDomain::new(&foreign.trust_domain)
                .map_err(|e| format!("trust bundle of {:?}: {e}", foreign.trust_domain))?;
            if &td == trust_domain || set.get(&td).is_some() {
                return Err(format!(
                    "trust bundle of {td}: that is this mesh's own trust domain (or an alias)"
                ));
            }
            let (bundle, _) = TrustBundle::from_pem(td.clone(), foreign.roots_pem.as_bytes())
                .map_err(|e| format!("trust bundle of {td}: {e}"))?;
            set.insert(bundle);
        }
        set.insert(local);
        let mut revocations = Revocations::new();
        for id in &self.revocations.identities {
            let id: SpiffeId = id
                .parse()
                .map_err(|e| format!("revoked identity {id:?}: {e}"))?;
            revocations.revoke_id(id);
        }
        for serial in &self.revocations.serials {
            let serial: Serial = serial.parse().map_err(|e| format!("revocations: {e}"))?;
            revocations.revoke_serial(serial);
        }
        set.set_revocations(revocations);
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshward_api::v1::{ForeignBundle, Revocations as WireRevocations};
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose};

    fn root_pem(name: &str) -> String {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        params
            .self_signed(&KeyPair::generate().unwrap())
            .unwrap()
            .pem()
    }

    fn td(name: &str) -> TrustDomain {
        TrustDomain::new(name).unwrap()
    }

    #[test]
    fn a_view_puts_aliases_foreign_roots_and_revocations_in_force() {
        let (own, eu) = (root_pem("own"), root_pem("eu"));
        let update = TrustUpdate {
            bundle_pem: own,
            revocations: WireRevocations {
                identities: vec!["spiffe://cluster.local/ns/a/sa/b".into()],
                serials: vec!["4A:0B".into()],
            },
            foreign: vec![ForeignBundle {
                trust_domain: "eu.cluster.local".into(),
                roots_pem: eu,
            }],
            aliases: vec!["old.local".into()],
            renew_unless_signer: String::new(),
        };
        let set = update
            .bundles(&td("cluster.local"), &TrustBundleSet::new())
            .unwrap();
        let own_roots = set.get(&td("cluster.local")).unwrap().roots();
        // The alias trusts this mesh's roots; the foreign domain its own.
        assert_eq!(set.get(&td("old.local")).unwrap().roots(), own_roots);
        assert_ne!(set.get(&td("eu.cluster.local")).unwrap().roots(), own_roots);
        assert!(set.get(&td("us.cluster.local")).is_none());
        let revoked = set.revocations();
        assert!(revoked.revokes_id(&"spiffe://cluster.local/ns/a/sa/b".parse().unwrap()));
        assert!(revoked.revokes_serial(&"4a0b".parse().unwrap()));
    }

    #[test]
    fn foreign_roots_for_this_mesh_or_bad_revocations_refuse_the_view() {
        let base = || TrustUpdate {
            bundle_pem: root_pem("own"),
            ..TrustUpdate::default()
        };
        let mut own_domain = base();
        own_domain.foreign.push(ForeignBundle {
            trust_domain: "cluster.local".into(),
            roots_pem: root_pem("impostor"),
        });
        let err = own_domain
            .bundles(&td("cluster.local"), &TrustBundleSet::new())
            .unwrap_err();
        assert!(err.contains("own trust domain"), "{err}");
        let mut bad = base();
        bad.revocations.identities.push("not an id".into());
        assert!(
            bad.bundles(&td("cluster.local"), &TrustBundleSet::new())
                .is_err()
        );
        // Without a bundle (an older control plane), the roots in force stay.
        let current = TrustBundleSet::from(
            TrustBundle::from_pem(td("cluster.local"), root_pem("kept").as_bytes())
                .unwrap()
                .0,
        );
        let kept = TrustUpdate::default()
            .bundles(&td("cluster.local"), &current)
            .unwrap();
        assert!(kept.same_trust(&current));
    }
}
