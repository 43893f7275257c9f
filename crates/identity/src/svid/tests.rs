use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, SanType};
use rstest::rstest;
use time::{Duration, OffsetDateTime};

use super::*;
use crate::test_pki::{TestCa, ca_params, leaf_params};

const ID: &str = "spiffe://cluster.local/ns/default/sa/sleep";
const TD: &str = "cluster.local";

fn verify(ca: &TestCa, params: &CertificateParams, side: Side) -> Result<SpiffeId, SvidError> {
    let (chain, _) = ca.leaf(params);
    verify_svid_chain(
        &chain,
        side,
        &ca.bundles(TD),
        &AllowedPeers::any(),
        UnixTime::now(),
    )
}

fn with(f: impl FnOnce(&mut CertificateParams)) -> CertificateParams {
    let mut params = leaf_params(ID);
    f(&mut params);
    params
}

#[rstest]
#[case::client(Side::Client)]
#[case::server(Side::Server)]
fn accepts_a_well_formed_svid(#[case] side: Side) {
    let ca = TestCa::root("root");
    assert_eq!(verify(&ca, &leaf_params(ID), side).unwrap().to_string(), ID);
}

#[test]
fn accepts_through_an_intermediate() {
    let root = TestCa::root("root");
    let inter = root.intermediate(ca_params("intermediate"));
    let (chain, _) = inter.leaf(&leaf_params(ID));
    let id = verify_svid_chain(
        &chain,
        Side::Client,
        &root.bundles(TD),
        &AllowedPeers::any(),
        UnixTime::now(),
    );
    assert_eq!(id.unwrap().to_string(), ID);
}

#[rstest]
#[case::no_uri_san(with(|p| p.subject_alt_names = vec![SanType::DnsName("a.example".try_into().unwrap())]), Side::Server, SvidError::UriSanCount { count: 0 })]
#[case::two_uri_sans(with(|p| p.subject_alt_names.push(SanType::URI("spiffe://cluster.local/ns/x/sa/y".try_into().unwrap()))), Side::Server, SvidError::UriSanCount { count: 2 })]
#[case::leaf_is_ca(with(|p| p.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained)), Side::Server, SvidError::LeafIsCa)]
#[case::no_key_usage(with(|p| p.key_usages.clear()), Side::Server, SvidError::MissingDigitalSignature)]
#[case::no_digital_signature(with(|p| p.key_usages = vec![KeyUsagePurpose::KeyEncipherment]), Side::Server, SvidError::MissingDigitalSignature)]
#[case::key_cert_sign_on_leaf(with(|p| p.key_usages.push(KeyUsagePurpose::KeyCertSign)), Side::Server, SvidError::LeafKeyCertSign)]
#[case::crl_sign_on_leaf(with(|p| p.key_usages.push(KeyUsagePurpose::CrlSign)), Side::Server, SvidError::LeafCrlSign)]
#[case::client_without_client_auth(with(|p| p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth]), Side::Client, SvidError::MissingEku { side: Side::Client, eku: "clientAuth" })]
#[case::server_without_server_auth(with(|p| p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth]), Side::Server, SvidError::MissingEku { side: Side::Server, eku: "serverAuth" })]
#[case::expired(with(|p| { p.not_before = OffsetDateTime::now_utc() - Duration::days(2); p.not_after = OffsetDateTime::now_utc() - Duration::days(1); }), Side::Server, SvidError::Expired)]
#[case::not_yet_valid(with(|p| { p.not_before = OffsetDateTime::now_utc() + Duration::days(1); p.not_after = OffsetDateTime::now_utc() + Duration::days(2); }), Side::Server, SvidError::NotYetValid)]
#[case::wrong_trust_domain(leaf_params("spiffe://evil.example/ns/default/sa/sleep"), Side::Server, SvidError::UntrustedDomain(TrustDomain::new("evil.example").unwrap()))]
fn rejects_each_svid_rule(
    #[case] params: CertificateParams,
    #[case] side: Side,
    #[case] expected: SvidError,
) {
    let ca = TestCa::root("root");
    assert_eq!(verify(&ca, &params, side), Err(expected));
}

#[rstest]
#[case::uppercase_td("spiffe://Cluster.local/ns/a/sa/b")]
#[case::query("spiffe://cluster.local/ns/a/sa/b?x")]
#[case::not_spiffe("https://cluster.local/ns/a/sa/b")]
fn rejects_malformed_spiffe_ids(#[case] uri: &str) {
    let ca = TestCa::root("root");
    let err = verify(&ca, &leaf_params(uri), Side::Server).unwrap_err();
    assert!(matches!(err, SvidError::InvalidSpiffeId { .. }), "{err:?}");
    assert!(err.to_string().contains(uri), "{err}");
}

#[rstest]
#[case::other_root("other")]
#[case::same_name_other_key("root")]
fn rejects_a_root_outside_the_bundle(#[case] name: &str) {
    let trusted = TestCa::root("root");
    let other = TestCa::root(name);
    let (chain, _) = other.leaf(&leaf_params(ID));
    let err = verify_svid_chain(
        &chain,
        Side::Server,
        &trusted.bundles(TD),
        &AllowedPeers::any(),
        UnixTime::now(),
    );
    assert_eq!(
        err,
        Err(SvidError::UnknownIssuer(TrustDomain::new(TD).unwrap()))
    );
}

#[test]
fn rejects_an_intermediate_without_key_cert_sign() {
    let root = TestCa::root("root");
    let mut params = ca_params("weak intermediate");
    params.key_usages = vec![KeyUsagePurpose::CrlSign];
    let inter = root.intermediate(params);
    let (chain, _) = inter.leaf(&leaf_params(ID));
    let err = verify_svid_chain(
        &chain,
        Side::Server,
        &root.bundles(TD),
        &AllowedPeers::any(),
        UnixTime::now(),
    );
    assert!(
        matches!(err, Err(SvidError::SignerKeyCertSign { .. })),
        "{err:?}"
    );
}

#[test]
fn rejects_empty_and_garbage_chains() {
    let ca = TestCa::root("root");
    let bundles = ca.bundles(TD);
    assert_eq!(
        verify_svid_chain(
            &[],
            Side::Server,
            &bundles,
            &AllowedPeers::any(),
            UnixTime::now()
        ),
        Err(SvidError::EmptyChain)
    );
    let garbage = CertificateDer::from(vec![0x30, 0x03, 0x01, 0x01, 0xff]);
    let err = verify_svid_chain(
        &[garbage],
        Side::Server,
        &bundles,
        &AllowedPeers::any(),
        UnixTime::now(),
    );
    assert!(
        matches!(err, Err(SvidError::Malformed { position: 1, .. })),
        "{err:?}"
    );
}

#[test]
fn enforces_the_allowed_set() {
    let ca = TestCa::root("root");
    let (chain, _) = ca.leaf(&leaf_params(ID));
    let bundles = ca.bundles(TD);
    let id: SpiffeId = ID.parse().unwrap();
    let other: SpiffeId = "spiffe://cluster.local/ns/default/sa/other"
        .parse()
        .unwrap();
    let run = |allowed: &AllowedPeers| {
        verify_svid_chain(&chain, Side::Client, &bundles, allowed, UnixTime::now())
    };
    assert_eq!(
        run(&AllowedPeers::default()),
        Err(SvidError::NotAllowed(id.clone()))
    );
    assert_eq!(
        run(&AllowedPeers::default().with_id(other.clone())),
        Err(SvidError::NotAllowed(id.clone()))
    );
    assert_eq!(
        run(&AllowedPeers::default().with_id(other).with_id(id.clone())),
        Ok(id.clone())
    );
    let td = TrustDomain::new(TD).unwrap();
    assert_eq!(
        run(&AllowedPeers::default().with_trust_domain(td)),
        Ok(id.clone())
    );
    let foreign = TrustDomain::new("other.local").unwrap();
    assert_eq!(
        run(&AllowedPeers::default().with_trust_domain(foreign)),
        Err(SvidError::NotAllowed(id))
    );
}

#[test]
fn peer_id_reads_the_leaf() {
    let ca = TestCa::root("root");
    let (chain, _) = ca.leaf(&leaf_params(ID));
    assert_eq!(peer_spiffe_id(&chain).unwrap().to_string(), ID);
    assert_eq!(peer_spiffe_id(&[]), Err(SvidError::EmptyChain));
}

#[test]
fn errors_name_the_rule() {
    assert!(SvidError::LeafIsCa.to_string().contains("must not be a CA"));
    let eku = SvidError::MissingEku {
        side: Side::Client,
        eku: "clientAuth",
    };
    assert_eq!(
        eku.to_string(),
        "a client SVID must have extendedKeyUsage clientAuth"
    );
}

#[test]
fn refuses_revoked_identities_and_serials() {
    use crate::revocation::{Revocations, Serial};
    let root = TestCa::root("root");
    let inter = root.intermediate(ca_params("intermediate"));
    let (chain, _) = inter.leaf(&leaf_params(ID));
    let check = |revocations: Revocations| {
        let mut bundles = root.bundles(TD);
        bundles.set_revocations(revocations);
        verify_svid_chain(
            &chain,
            Side::Client,
            &bundles,
            &AllowedPeers::any(),
            UnixTime::now(),
        )
    };
    assert!(check(Revocations::new()).is_ok());

    let mut by_id = Revocations::new();
    by_id.revoke_id(ID.parse().unwrap());
    let err = check(by_id).unwrap_err();
    assert_eq!(err, SvidError::RevokedIdentity(ID.parse().unwrap()));
    assert_eq!(err.to_string(), format!("`{ID}` is revoked"));

    let serial_of = |der: &CertificateDer<'_>| {
        let (_, cert) = X509Certificate::from_der(der.as_ref()).unwrap();
        Serial::from_der_bytes(cert.raw_serial())
    };
    let mut leaf = Revocations::new();
    leaf.revoke_serial(serial_of(&chain[0]));
    assert!(matches!(
        check(leaf),
        Err(SvidError::RevokedCertificate { position: 1, .. })
    ));
    // Revoking the intermediate cuts off everything it signed.
    let mut intermediate = Revocations::new();
    intermediate.revoke_serial(serial_of(&chain[1]));
    assert!(matches!(
        check(intermediate),
        Err(SvidError::RevokedCertificate { position: 2, .. })
    ));
    // Another identity is untouched.
    let mut other = Revocations::new();
    other.revoke_id(
        "spiffe://cluster.local/ns/default/sa/other"
            .parse()
            .unwrap(),
    );
    assert!(check(other).is_ok());
}
