//! Property tests standing in for fuzz targets (cargo-fuzz needs a nightly toolchain): SPIFFE
//! IDs, trust domains and principals from any text, and X.509-SVID verification of arbitrary
//! and mutated certificates. A short smoke runs in CI; for a long run:
//!
//! ```sh
//! PROPTEST_CASES=200000 cargo nextest run -p meshward-identity --test robustness_fuzz
//! ```

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use meshward_identity::{
    AllowedPeers, Side, SpiffeId, TrustBundle, TrustBundleSet, TrustDomain, verify_svid_chain,
};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;
use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType};
use rustls_pki_types::{CertificateDer, UnixTime};

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

/// What every accepted SPIFFE ID satisfies (SPIFFE-ID §2).
fn check_id(id: &SpiffeId) {
    let text = id.to_string();
    assert!(text.len() <= 2048, "{text}");
    assert!(text.starts_with("spiffe://"), "{text}");
    let td = id.trust_domain().as_str();
    assert!(!td.is_empty() && td.len() <= 255, "{text}");
    assert!(
        td.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b)),
        "{text}"
    );
    let path = id.path();
    if !path.is_empty() {
        assert!(path.starts_with('/') && !path.ends_with('/'), "{text}");
        for segment in path.split('/').skip(1) {
            assert!(
                !segment.is_empty() && segment != "." && segment != "..",
                "{text}"
            );
            assert!(
                segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)),
                "{text}"
            );
        }
    }
    // Canonical: what it prints parses back to itself.
    assert_eq!(text.parse::<SpiffeId>().as_ref(), Ok(id));
}

proptest! {
    #![proptest_config(config(2048))]

    #[test]
    fn spiffe_ids_from_any_text(text in any::<String>()) {
        if let Ok(id) = text.parse::<SpiffeId>() {
            check_id(&id);
        }
        if let Ok(td) = TrustDomain::new(&text) {
            prop_assert_eq!(td.as_str(), text.as_str());
            check_id(&td.to_spiffe_id());
        }
        if let Ok(id) = SpiffeId::from_principal(&text) {
            check_id(&id);
            prop_assert_eq!(SpiffeId::from_principal(&id.to_principal()), Ok(id));
        }
    }

    #[test]
    fn spiffe_ids_from_uri_shaped_text(
        text in "(spiffe|SPIFFE|https)://[a-zA-Z0-9._:@%-]{0,12}(/[a-zA-Z0-9._%?#:@-]{0,6}){0,5}/?",
    ) {
        if let Ok(id) = text.parse::<SpiffeId>() {
            check_id(&id);
            prop_assert_eq!(id.to_string(), text);
        }
    }

    #[test]
    fn long_ids_hit_the_length_bound(extra in 0usize..64) {
        let long = format!("spiffe://td/{}", "a".repeat(2048 - 12 + extra));
        prop_assert_eq!(long.parse::<SpiffeId>().is_ok(), long.len() <= 2048);
    }
}

/// A root, and a well-formed SVID it signed: (bundles, chain, identity).
fn svid() -> (TrustBundleSet, Vec<CertificateDer<'static>>, SpiffeId) {
    let root_key = KeyPair::generate().unwrap();
    let mut root = CertificateParams::default();
    root.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let root_cert = root.self_signed(&root_key).unwrap();
    let issuer = rcgen::Issuer::new(root, root_key);
    let id = "spiffe://cluster.local/ns/default/sa/sleep";
    let mut leaf = CertificateParams::default();
    leaf.subject_alt_names = vec![SanType::URI(id.try_into().unwrap())];
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let leaf_cert = leaf
        .signed_by(&KeyPair::generate().unwrap(), &issuer)
        .unwrap();
    let td = TrustDomain::new("cluster.local").unwrap();
    let bundle = TrustBundle::new(td, [root_cert.der().clone()]).unwrap();
    (
        bundle.into(),
        vec![leaf_cert.der().clone()],
        id.parse().unwrap(),
    )
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_chains_are_refused(
        chain in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..700), 0..4),
        client in any::<bool>(),
    ) {
        let (bundles, _, _) = svid();
        let chain: Vec<CertificateDer<'static>> = chain.into_iter().map(CertificateDer::from).collect();
        let side = if client { Side::Client } else { Side::Server };
        prop_assert!(
            verify_svid_chain(&chain, side, &bundles, &AllowedPeers::any(), UnixTime::now()).is_err()
        );
    }

    #[test]
    fn mutated_svids_are_refused_or_unchanged(
        flips in prop::collection::vec((any::<Index>(), any::<u8>()), 1..4),
        cut in prop::option::of(any::<Index>()),
    ) {
        let (bundles, chain, id) = svid();
        let mut der = chain[0].to_vec();
        let original = der.clone();
        for (at, xor) in &flips {
            let i = at.index(der.len());
            der[i] ^= xor;
        }
        if let Some(cut) = cut {
            der.truncate(cut.index(der.len()));
        }
        let result = verify_svid_chain(
            &[CertificateDer::from(der.clone())],
            Side::Client,
            &bundles,
            &AllowedPeers::any(),
            UnixTime::now(),
        );
        // Only a no-op mutation (XOR 0, nothing cut) may still verify, as the same identity.
        if let Ok(verified) = result {
            prop_assert_eq!(&der, &original);
            prop_assert_eq!(verified, id);
        }
    }
}
