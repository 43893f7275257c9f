//! Property tests standing in for fuzz targets (cargo-fuzz needs a nightly toolchain): the CA
//! signing arbitrary bytes, PEM-wrapped garbage and mutated CSRs. Whatever comes in, it refuses
//! or issues exactly the identity it was asked for, as a leaf SVID. A short smoke runs in CI; for
//! a long run:
//!
//! ```sh
//! PROPTEST_CASES=50000 cargo nextest run -p meshward-ca --test robustness_fuzz
//! ```

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::sync::OnceLock;

use meshward_ca::{Authority, InitOptions};
use meshward_identity::{
    AllowedPeers, Side, SpiffeId, TrustBundleSet, TrustDomain, verify_svid_chain,
};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;
use rcgen::{CertificateParams, KeyPair};
use rustls_pki_types::UnixTime;

/// `PROPTEST_CASES` when set, else `smoke`; no regression files are written.
fn config(smoke: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(smoke);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

const ID: &str = "spiffe://cluster.local/ns/default/sa/sleep";

/// One CA for the whole run (its directory lives as long as the process).
fn ca() -> &'static Authority {
    static CA: OnceLock<(tempfile::TempDir, Authority)> = OnceLock::new();
    &CA.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let td = TrustDomain::new("cluster.local").unwrap();
        let ca = Authority::init(&dir.path().join("ca"), &InitOptions::new(td)).unwrap();
        (dir, ca)
    })
    .1
}

/// A valid P-256 CSR asking for a DNS name and a SPIFFE ID of its own.
fn good_csr() -> Vec<u8> {
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec![
        "spiffe://cluster.local/ns/kube-system/sa/admin".to_owned(),
        "example.com".to_owned(),
    ])
    .unwrap();
    params.serialize_request(&key).unwrap().der().to_vec()
}

/// Signs `csr` for [`ID`]; if it is issued, it is a leaf SVID for exactly that identity.
fn sign_and_check(csr: &[u8]) -> bool {
    let id: SpiffeId = ID.parse().unwrap();
    let Ok(svid) = ca().sign(csr, &id, None) else {
        return false;
    };
    assert_eq!(svid.spiffe_id, id);
    let bundles = TrustBundleSet::from(ca().trust_bundle().clone());
    let verified = verify_svid_chain(
        &svid.chain,
        Side::Client,
        &bundles,
        &AllowedPeers::any(),
        UnixTime::now(),
    );
    assert_eq!(verified, Ok(id));
    true
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn arbitrary_bytes_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        prop_assert!(!sign_and_check(&bytes));
    }

    #[test]
    fn pem_wrapped_garbage_is_refused(
        label in prop::sample::select(vec!["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST", "CERTIFICATE", "X"]),
        body in "[A-Za-z0-9+/=\n]{0,400}",
    ) {
        let pem = format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n");
        prop_assert!(!sign_and_check(pem.as_bytes()));
    }

    #[test]
    fn mutated_csrs_are_refused_or_issue_only_the_asked_identity(
        flips in prop::collection::vec((any::<Index>(), any::<u8>()), 1..4),
        cut in prop::option::of(any::<Index>()),
    ) {
        let mut csr = good_csr();
        for (at, xor) in &flips {
            let i = at.index(csr.len());
            csr[i] ^= xor;
        }
        if let Some(cut) = cut {
            csr.truncate(cut.index(csr.len()));
        }
        sign_and_check(&csr);
    }
}

#[test]
fn the_unmutated_csr_is_signed() {
    assert!(sign_and_check(&good_csr()));
}
