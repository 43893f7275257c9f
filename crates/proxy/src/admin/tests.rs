use std::sync::Arc;
use std::time::Duration;

use meshward_identity::{TrustBundle, TrustBundleSet};
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;

use super::*;
use crate::creds::{Credentials, CredsStore};

/// Credentials valid from `age` ago for `life` in total.
fn creds(age: Duration, life: Duration) -> Credentials {
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let root = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut leaf = CertificateParams::default();
    leaf.subject_alt_names = vec![SanType::URI(
        "spiffe://cluster.local/ns/a/sa/b".try_into().unwrap(),
    )];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let now = OffsetDateTime::now_utc();
    leaf.not_before = now - age;
    leaf.not_after = now - age + life;
    let cert = leaf.signed_by(&key, &issuer).unwrap();

    let bundle = TrustBundle::new(
        "cluster.local".parse().unwrap(),
        [CertificateDer::from(root.der().to_vec())],
    )
    .unwrap();
    Credentials::new(
        vec![CertificateDer::from(cert.der().to_vec())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        Arc::new(TrustBundleSet::from(bundle)),
    )
    .unwrap()
}

/// Health for a view with inbound port 8080, with listeners on `listening`.
fn health(listening: &[u16]) -> (CredsStore, watch::Sender<Status>, Health) {
    let store = CredsStore::new();
    let (status, rx) = watch::channel(Status::default());
    let view = View {
        authz: Default::default(),
        path_normalization: Default::default(),
        outbound_policy: None,
        opaque: Default::default(),
        telemetry: Default::default(),
        version: 1,
        namespace: "a".into(),
        trust_domain: "cluster.local".parse().unwrap(),
        inbound: std::collections::BTreeMap::from([(8080, crate::config::MtlsMode::Strict)]),
        services: Vec::new(),
    };
    let health = Health {
        creds: store.subscribe(),
        status: rx,
        drain: Drain::new(),
        view: watch::channel(Arc::new(view)).1,
        listening: watch::channel(listening.iter().copied().collect::<BTreeSet<u16>>()).1,
    };
    (store, status, health)
}

#[test]
fn ready_needs_a_certificate_and_a_view() {
    let (store, status, health) = health(&[8080]);
    assert_eq!(health.check().unwrap_err(), "no certificate yet");
    store.publish(creds(Duration::ZERO, Duration::from_secs(3600)));
    assert!(health.check().unwrap_err().contains("no configuration"));
    status.send_modify(|s| s.has_view = true);
    assert_eq!(health.check(), Ok(()));
    health.drain.signal();
    assert_eq!(health.check().unwrap_err(), "draining");
}

#[test]
fn failing_renewal_matters_only_near_expiry() {
    let (store, status, health) = health(&[8080]);
    status.send_modify(|s| {
        s.has_view = true;
        s.renewal_error = Some("control plane unreachable".into());
    });
    // Half of the lifetime left: still ready (static stability).
    store.publish(creds(Duration::from_secs(50), Duration::from_secs(100)));
    assert_eq!(health.check(), Ok(()));
    // Less than 10 % left and renewal failing: not ready.
    store.publish(creds(Duration::from_secs(95), Duration::from_secs(100)));
    let err = health.check().unwrap_err();
    assert!(err.contains("renewal keeps failing"), "{err}");
    status.send_modify(|s| s.renewal_error = None);
    assert_eq!(health.check(), Ok(()));
}

#[test]
fn a_port_of_the_view_without_a_listener_is_not_ready() {
    let (store, status, health) = health(&[]);
    store.publish(creds(Duration::ZERO, Duration::from_secs(3600)));
    status.send_modify(|s| s.has_view = true);
    assert_eq!(
        health.check().unwrap_err(),
        "inbound port 8080 is not listening"
    );
}
