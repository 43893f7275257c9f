use std::fs;
use std::os::unix::fs::PermissionsExt;

use meshward_identity::{AllowedPeers, Side, TrustBundleSet, verify_svid_chain};
use rcgen::{PKCS_ECDSA_P384_SHA384, PKCS_ED25519, SignatureAlgorithm};
use rstest::rstest;
use rustls_pki_types::UnixTime;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::*;
use crate::MAX_CSR_BYTES;

const ID: &str = "spiffe://cluster.local/ns/default/sa/sleep";

fn td(name: &str) -> TrustDomain {
    TrustDomain::new(name).unwrap()
}

fn id(s: &str) -> SpiffeId {
    s.parse().unwrap()
}

fn csr(alg: &'static SignatureAlgorithm, san: &str) -> Vec<u8> {
    let key = KeyPair::generate_for(alg).unwrap();
    let params = CertificateParams::new(vec![san.to_owned()]).unwrap();
    params.serialize_request(&key).unwrap().der().to_vec()
}

fn new_ca(options: &InitOptions) -> (tempfile::TempDir, Authority) {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Authority::init(&tmp.path().join("ca"), options).unwrap();
    (tmp, ca)
}

fn verifies(ca: &Authority, svid: &IssuedSvid, side: Side) -> SpiffeId {
    let bundles = TrustBundleSet::from(ca.trust_bundle().clone());
    verify_svid_chain(
        &svid.chain,
        side,
        &bundles,
        &AllowedPeers::any(),
        UnixTime::now(),
    )
    .unwrap()
}

#[rstest]
#[case::root_signs(InitOptions::new(td("cluster.local")), 2)]
#[case::intermediate_signs(InitOptions::new(td("cluster.local")).with_intermediate(), 3)]
fn issues_svids_the_verifier_accepts(#[case] options: InitOptions, #[case] chain_len: usize) {
    let (_tmp, ca) = new_ca(&options);
    let svid = ca
        .sign(&csr(&PKCS_ECDSA_P256_SHA256, "dns.example"), &id(ID), None)
        .unwrap();
    assert_eq!(svid.chain.len(), chain_len);
    assert_eq!(svid.chain.last(), ca.root());
    assert_eq!(verifies(&ca, &svid, Side::Client), id(ID));
    assert_eq!(verifies(&ca, &svid, Side::Server), id(ID));
}

#[test]
fn leaf_has_the_svid_profile_and_ignores_csr_names() {
    let (_tmp, ca) = new_ca(&InitOptions::new(td("cluster.local")));
    let request = csr(
        &PKCS_ECDSA_P256_SHA256,
        "spiffe://cluster.local/ns/kube-system/sa/admin",
    );
    let svid = ca.sign(&request, &id(ID), None).unwrap();
    let (_, leaf) = X509Certificate::from_der(svid.chain[0].as_ref()).unwrap();
    let san = leaf.subject_alternative_name().unwrap().unwrap();
    assert!(san.critical, "SAN must be critical with an empty subject");
    assert_eq!(san.value.general_names, vec![GeneralName::URI(ID)]);
    assert!(!leaf.is_ca());
    let ku = leaf.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && !ku.key_encipherment() && !ku.key_cert_sign());
    let eku = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    let validity = leaf.validity();
    let lifetime = validity.not_after.timestamp() - validity.not_before.timestamp();
    assert_eq!(lifetime, 24 * 3600 + 5 * 60, "24 h plus the 5 min backdate");
    assert_eq!(leaf.raw_serial().len(), 16);
    assert_eq!(svid.serial.len(), 32);
}

#[test]
fn accepts_p384_and_refuses_other_keys() {
    let (_tmp, ca) = new_ca(&InitOptions::new(td("cluster.local")));
    assert!(
        ca.sign(&csr(&PKCS_ECDSA_P384_SHA384, "x"), &id(ID), None)
            .is_ok()
    );
    let err = ca
        .sign(&csr(&PKCS_ED25519, "x"), &id(ID), None)
        .unwrap_err();
    assert!(matches!(err, SignError::UnsupportedKey(_)), "{err}");
}

#[test]
fn refuses_bad_csrs() {
    let (_tmp, ca) = new_ca(&InitOptions::new(td("cluster.local")));
    let err = ca.sign(b"not a csr", &id(ID), None).unwrap_err();
    assert!(matches!(err, SignError::Malformed(_)), "{err}");
    let err = ca
        .sign(&vec![b'-'; MAX_CSR_BYTES + 1], &id(ID), None)
        .unwrap_err();
    assert!(matches!(err, SignError::TooLarge { .. }), "{err}");
    let mut tampered = csr(&PKCS_ECDSA_P256_SHA256, "x");
    // The subject sits early in the request; changing it breaks the self-signature.
    let pos = tampered.windows(1).position(|w| w == b"x").unwrap();
    tampered[pos] = b'y';
    let err = ca.sign(&tampered, &id(ID), None).unwrap_err();
    assert!(matches!(err, SignError::BadSignature(_)), "{err}");
}

#[test]
fn accepts_pem_csrs() {
    let (_tmp, ca) = new_ca(&InitOptions::new(td("cluster.local")));
    let key = KeyPair::generate().unwrap();
    let pem = CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    assert!(ca.sign(pem.as_bytes(), &id(ID), None).is_ok());
}

#[test]
fn enforces_ttl_policy() {
    let (_tmp, ca) = new_ca(&InitOptions::new(td("cluster.local")));
    let request = csr(&PKCS_ECDSA_P256_SHA256, "x");
    let max = ca.policy().max_ttl;
    assert!(ca.sign(&request, &id(ID), Some(max)).is_ok());
    let err = ca
        .sign(&request, &id(ID), Some(max + Duration::from_secs(1)))
        .unwrap_err();
    assert!(matches!(err, SignError::TtlTooLong { .. }), "{err}");
    let err = ca
        .sign(&request, &id(ID), Some(Duration::ZERO))
        .unwrap_err();
    assert!(matches!(err, SignError::ZeroTtl), "{err}");

    let mut options = InitOptions::new(td("cluster.local"));
    options.root_ttl = Duration::from_secs(3600);
    let (_tmp, short) = new_ca(&options);
    let err = short.sign(&request, &id(ID), None).unwrap_err();
    assert!(matches!(err, SignError::OutlivesCa { .. }), "{err}");
    let policy = SigningPolicy {
        default_ttl: Duration::from_secs(600),
        max_ttl: Duration::from_secs(1200),
    };
    let svid = short
        .with_policy(policy)
        .sign(&request, &id(ID), None)
        .unwrap();
    let life = svid.not_after.duration_since(svid.not_before).unwrap();
    assert_eq!(life, Duration::from_secs(600 + 300));
}

#[test]
fn refuses_identities_of_other_trust_domains() {
    let (_tmp, ca) = new_ca(&InitOptions::new(td("cluster.local")));
    let err = ca
        .sign(
            &csr(&PKCS_ECDSA_P256_SHA256, "x"),
            &id("spiffe://other.local/ns/a/sa/b"),
            None,
        )
        .unwrap_err();
    assert!(matches!(err, SignError::WrongTrustDomain { .. }), "{err}");
}

#[test]
fn persists_privately_and_reloads_the_same_root() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    let first = Authority::load_or_init(&dir, &td("cluster.local")).unwrap();
    let again = Authority::load_or_init(&dir, &td("cluster.local")).unwrap();
    assert_eq!(first.root(), again.root());
    for name in [CA_CERT, CA_KEY, ROOT_CERT, CERT_CHAIN, TRUST_DOMAIN] {
        let mode = fs::metadata(dir.join(name)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
    // The trust domain is recorded, so loading without one works and a different one fails.
    assert_eq!(
        Authority::load(&dir, None).unwrap().trust_domain(),
        &td("cluster.local")
    );
    let err = Authority::load(&dir, Some(&td("other.local"))).unwrap_err();
    assert!(matches!(err, CaError::TrustDomainMismatch { .. }), "{err}");
    // init never overwrites.
    let err = Authority::init(&dir, &InitOptions::new(td("cluster.local"))).unwrap_err();
    assert!(
        matches!(err, CaError::Files(FilesError::NotEmpty { .. })),
        "{err}"
    );
}

#[test]
fn refuses_a_mismatched_key_naming_both_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    Authority::init(&a, &InitOptions::new(td("cluster.local"))).unwrap();
    Authority::init(&b, &InitOptions::new(td("cluster.local"))).unwrap();
    fs::copy(b.join(CA_KEY), a.join(CA_KEY)).unwrap();
    let err = Authority::load(&a, None).unwrap_err();
    assert!(
        matches!(err, CaError::Load(LoadError::KeyMismatch { .. })),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("ca-key.pem") && msg.contains("ca-cert.pem"),
        "{msg}"
    );
}

#[test]
fn refuses_a_chain_that_does_not_reach_a_root() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    Authority::init(
        &a,
        &InitOptions::new(td("cluster.local")).with_intermediate(),
    )
    .unwrap();
    Authority::init(&b, &InitOptions::new(td("cluster.local"))).unwrap();
    fs::copy(b.join(ROOT_CERT), a.join(ROOT_CERT)).unwrap();
    fs::write(a.join(CERT_CHAIN), fs::read(a.join(CA_CERT)).unwrap()).unwrap();
    let err = Authority::load(&a, None).unwrap_err();
    assert!(
        matches!(err, CaError::Load(LoadError::NoRoot { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("root-cert.pem"), "{err}");
}

#[test]
fn control_plane_gets_its_own_identity() {
    let (_tmp, ca) = new_ca(&InitOptions::new(td("cluster.local")).with_intermediate());
    let cp = SpiffeId::istio(
        ca.trust_domain(),
        CONTROL_PLANE_NAMESPACE,
        CONTROL_PLANE_SERVICE_ACCOUNT,
    )
    .unwrap();
    let (svid, key) = ca.issue_with_new_key(&cp, None).unwrap();
    assert_eq!(verifies(&ca, &svid, Side::Server), cp);
    assert!(matches!(key, PrivateKeyDer::Pkcs8(_)));
    assert!(ca.roots_pem().starts_with("-----BEGIN CERTIFICATE-----\n"));
}

#[test]
fn names_the_position_of_a_malformed_chain_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ca");
    Authority::init(
        &dir,
        &InitOptions::new(td("cluster.local")).with_intermediate(),
    )
    .unwrap();
    // ca-cert.pem first (as Istio writes it), then a block that is base64 but not X.509.
    let chain = format!(
        "{}-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n",
        fs::read_to_string(dir.join(CA_CERT)).unwrap()
    );
    fs::write(dir.join(CERT_CHAIN), chain).unwrap();
    let err = Authority::load(&dir, None).unwrap_err();
    let CaError::Load(LoadError::BadCert { path, position, .. }) = &err else {
        panic!("{err}");
    };
    assert_eq!(
        (path.file_name().unwrap(), *position),
        (CERT_CHAIN.as_ref(), 2),
        "{err}"
    );
}
