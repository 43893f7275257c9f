//! Who a workload is and how a peer checks it: SPIFFE IDs and trust domains, trust bundles with
//! several roots per domain, and X.509-SVID verifiers that plug into rustls on both sides.
//!
//! The paved path:
//!
//! - parse identities with [`SpiffeId::from_str`](std::str::FromStr) (strict SPIFFE rules) or
//!   build Istio ones with [`SpiffeId::istio`];
//! - load roots with [`TrustBundle::from_pem`] into a [`TrustBundleSet`];
//! - verify a peer with [`SpiffeServerVerifier`] (client side) or [`SpiffeClientVerifier`]
//!   (server side), or build whole configs with [`client_config`] / [`server_config`];
//! - after the handshake, read who the peer is with [`peer_spiffe_id`];
//! - show what a certificate says with [`describe`].
//!
//! Every verifier and `meshward cert verify` run the same pure function, [`verify_svid_chain`].

mod bundle;
mod id;
mod inspect;
mod revocation;
mod spiffe_bundle;
mod svid;
#[cfg(test)]
mod test_pki;
mod verifier;

pub use bundle::{BundleError, SkippedCert, TrustBundle, TrustBundleSet};
pub use id::{IdError, SpiffeId, TrustDomain};
pub use inspect::{CertInfo, KeyType, describe, fingerprint_sha256, spki_sha256};
pub use revocation::{Revocations, Serial, SerialError};
pub use spiffe_bundle::spiffe_bundle_json;
pub use svid::{AllowedPeers, Side, SvidError, peer_spiffe_id, verify_svid_chain};
pub use verifier::{
    SpiffeClientVerifier, SpiffeServerVerifier, client_config, crypto_provider, server_config,
};
