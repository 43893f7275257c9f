//! Open connections and revocation: new handshakes with a revoked peer already fail (the
//! revocations travel in the trust bundles every verifier holds); a connection opened before
//! the revocation arrived — inbound from a revoked client, or outbound (tunnelled or pooled) to
//! a revoked server — is closed by [`until_revoked`] as soon as the trust in force revokes its
//! peer.

use meshward_identity::{Serial, SpiffeId, peer_spiffe_id};
use rustls_pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::creds::CredsReceiver;

/// Who a peer is, as revocation sees it: its SPIFFE ID and the serial of every certificate of
/// the chain it presented.
#[derive(Debug, Clone)]
struct Peer {
    id: Option<SpiffeId>,
    serials: Vec<Serial>,
}

impl Peer {
    fn of(chain: &[CertificateDer<'_>]) -> Self {
        Self {
            id: peer_spiffe_id(chain).ok(),
            serials: chain
                .iter()
                .filter_map(|der| X509Certificate::from_der(der.as_ref()).ok())
                .map(|(_, cert)| Serial::from_der_bytes(cert.raw_serial()))
                .collect(),
        }
    }

    fn is_revoked(&self, creds: &CredsReceiver) -> bool {
        let Some(current) = creds.borrow().clone() else {
            return false;
        };
        let revocations = current.bundles().revocations();
        self.id
            .as_ref()
            .is_some_and(|id| revocations.revokes_id(id))
            || self.serials.iter().any(|s| revocations.revokes_serial(s))
    }
}

/// Resolves once the trust in force revokes the peer that presented `chain` (its identity, or
/// any certificate of the chain); never, for a peer that stays trusted or for no chain at all
/// (plaintext, or TLS to a server outside the mesh). Checked at once, then on every change of
/// credentials (trust updates arrive as new credentials).
pub(crate) fn until_revoked(
    mut creds: CredsReceiver,
    chain: Option<&[CertificateDer<'_>]>,
) -> impl Future<Output = ()> + use<> {
    let peer = chain.map(Peer::of);
    async move {
        let Some(peer) = peer else {
            return std::future::pending().await;
        };
        loop {
            creds.borrow_and_update();
            if peer.is_revoked(&creds) {
                return;
            }
            if creds.changed().await.is_err() {
                // No more credentials will come: the trust in force is final.
                std::future::pending::<()>().await;
            }
        }
    }
}
