use super::*;
use crate::test_pki::{TestCa, leaf_params};

fn td() -> TrustDomain {
    TrustDomain::new("cluster.local").unwrap()
}

#[test]
fn loads_several_roots_for_one_domain() {
    let (old, new) = (TestCa::root("old"), TestCa::root("new"));
    let pem = format!("{}{}", old.root_pem, new.root_pem);
    let (bundle, skipped) = TrustBundle::from_pem(td(), pem.as_bytes()).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(bundle.roots(), &[old.root.clone(), new.root.clone()]);
    assert_eq!(bundle.anchors().len(), 2);
}

#[test]
fn reports_and_skips_one_bad_certificate() {
    let (a, b) = (TestCa::root("a"), TestCa::root("b"));
    let broken = "-----BEGIN CERTIFICATE-----\nnot*base64!\n-----END CERTIFICATE-----\n";
    let not_der = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let pem = format!("{}{broken}{not_der}{}", a.root_pem, b.root_pem);
    let (bundle, skipped) = TrustBundle::from_pem(td(), pem.as_bytes()).unwrap();
    assert_eq!(bundle.roots().len(), 2);
    let positions: Vec<usize> = skipped.iter().map(|s| s.position).collect();
    assert_eq!(positions, [2, 3]);
    assert!(
        skipped[0].to_string().contains("malformed PEM"),
        "{}",
        skipped[0]
    );
    assert!(
        skipped[1].reason.contains("not an X.509 certificate"),
        "{}",
        skipped[1]
    );
}

#[test]
fn skips_a_leaf_and_refuses_a_bundle_with_no_usable_root() {
    // A self-signed leaf: parseable, but not a CA.
    let leaf = TestCa::root_with(leaf_params("spiffe://cluster.local/ns/a/sa/b"));
    let err = TrustBundle::from_pem(td(), leaf.root_pem.as_bytes()).unwrap_err();
    let BundleError::NoUsableRoots { skipped } = &err else {
        panic!("{err:?}");
    };
    assert!(skipped[0].reason.contains("is not a CA"), "{err}");
    assert!(err.to_string().contains("no usable root"), "{err}");
}

#[test]
fn refuses_input_without_certificates() {
    assert_eq!(
        TrustBundle::from_pem(td(), b"hello").unwrap_err(),
        BundleError::NoCertificates
    );
    assert_eq!(
        TrustBundle::new(td(), []).unwrap_err(),
        BundleError::NoCertificates
    );
}

#[test]
fn strict_constructor_names_the_bad_root() {
    let ca = TestCa::root("root");
    let err =
        TrustBundle::new(td(), [ca.root.clone(), CertificateDer::from(vec![1, 2, 3])]).unwrap_err();
    assert!(
        matches!(err, BundleError::BadRoot(SkippedCert { position: 2, .. })),
        "{err:?}"
    );
}

#[test]
fn set_replaces_per_domain() {
    let (a, b) = (TestCa::root("a"), TestCa::root("b"));
    let mut set = TrustBundleSet::new();
    set.insert(TrustBundle::new(td(), [a.root.clone()]).unwrap());
    set.insert(TrustBundle::new(td(), [b.root.clone()]).unwrap());
    assert_eq!(
        set.get(&td()).unwrap().roots(),
        std::slice::from_ref(&b.root)
    );
    assert_eq!(set.iter().count(), 1);
    assert!(set.get(&TrustDomain::new("other").unwrap()).is_none());
}
