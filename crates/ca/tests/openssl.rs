//! Interoperability with the real `openssl` binary: it verifies the chains we issue, it makes
//! CSRs we sign, and it makes plug-in CA directories we load.

// Shared test functions sit outside `#[test]` fns: a panic there is a test failure, as intended.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;
use std::process::Command;

use meshward_ca::{Authority, CaError, InitOptions, LoadError, SignError};
use meshward_identity::{
    AllowedPeers, Side, SpiffeId, TrustBundleSet, TrustDomain, verify_svid_chain,
};
use rustls_pki_types::UnixTime;
use x509_parser::prelude::{FromDer, X509Certificate};

const ID: &str = "spiffe://cluster.local/ns/default/sa/sleep";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be installed");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn td() -> TrustDomain {
    TrustDomain::new("cluster.local").unwrap()
}

fn id() -> SpiffeId {
    ID.parse().unwrap()
}

/// Writes the issued chain as leaf.pem / untrusted.pem / root.pem and runs `openssl verify`.
fn openssl_verifies(dir: &Path, ca: &Authority, chain_pem: &str) {
    let blocks: Vec<&str> = chain_pem
        .split_inclusive("-----END CERTIFICATE-----\n")
        .collect();
    let (leaf, rest) = blocks.split_first().unwrap();
    fs::write(dir.join("leaf.pem"), leaf).unwrap();
    fs::write(dir.join("untrusted.pem"), rest.concat()).unwrap();
    fs::write(dir.join("root.pem"), ca.roots_pem()).unwrap();
    for purpose in ["sslclient", "sslserver"] {
        let args = [
            "verify",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "untrusted.pem",
            "-purpose",
            purpose,
            "leaf.pem",
        ];
        openssl(dir, &args);
    }
}

#[test]
fn openssl_verifies_issued_chains() {
    for options in [
        InitOptions::new(td()),
        InitOptions::new(td()).with_intermediate(),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let ca = Authority::init(&tmp.path().join("ca"), &options).unwrap();
        let (svid, _key) = ca.issue_with_new_key(&id(), None).unwrap();
        openssl_verifies(tmp.path(), &ca, &svid.chain_pem());
    }
}

#[test]
fn signs_openssl_csrs_p256_and_rsa() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ca = Authority::init(&dir.join("ca"), &InitOptions::new(td())).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ec.key",
            "-subj",
            "/CN=ignored",
            "-addext",
            "subjectAltName=URI:spiffe://evil/ns/x/sa/y",
            "-out",
            "ec.csr",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "rsa.key",
            "-subj",
            "/CN=ignored",
            "-out",
            "rsa.csr",
        ],
    );
    for (csr, rsa) in [("ec.csr", false), ("rsa.csr", true)] {
        let svid = ca
            .sign(&fs::read(dir.join(csr)).unwrap(), &id(), None)
            .unwrap();
        let (_, leaf) = X509Certificate::from_der(svid.chain[0].as_ref()).unwrap();
        assert_eq!(
            leaf.key_usage().unwrap().unwrap().value.key_encipherment(),
            rsa,
            "{csr}"
        );
        let san = leaf.subject_alternative_name().unwrap().unwrap();
        assert_eq!(san.value.general_names.len(), 1);
        openssl_verifies(dir, &ca, &svid.chain_pem());
    }
}

#[test]
fn refuses_a_weak_rsa_csr() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ca = Authority::init(&dir.join("ca"), &InitOptions::new(td())).unwrap();
    openssl(
        dir,
        &[
            "req", "-new", "-newkey", "rsa:1024", "-nodes", "-keyout", "weak.key", "-subj",
            "/CN=x", "-out", "weak.csr",
        ],
    );
    let err = ca
        .sign(&fs::read(dir.join("weak.csr")).unwrap(), &id(), None)
        .unwrap_err();
    assert!(matches!(err, SignError::WeakRsaKey { bits: 1024 }), "{err}");
}

/// An Istio-style plug-in directory made with openssl: RSA root, P-256 intermediate (SEC1 key).
fn openssl_cacerts(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "root-key.pem",
            "-out",
            "root-cert.pem",
            "-days",
            "365",
            "-subj",
            "/O=Istio/CN=Root CA",
            "-addext",
            "basicConstraints=critical,CA:true",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    openssl(
        dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "ca-key.pem",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            "ca-key.pem",
            "-subj",
            "/O=Istio/CN=Intermediate CA",
            "-out",
            "ca.csr",
        ],
    );
    fs::write(
        dir.join("ext.cnf"),
        "[v3_inter]\nbasicConstraints=critical,CA:true,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign,digitalSignature\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "ca.csr",
            "-CA",
            "root-cert.pem",
            "-CAkey",
            "root-key.pem",
            "-CAcreateserial",
            "-days",
            "30",
            "-extfile",
            "ext.cnf",
            "-extensions",
            "v3_inter",
            "-out",
            "ca-cert.pem",
        ],
    );
    let chain = format!(
        "{}{}",
        fs::read_to_string(dir.join("ca-cert.pem")).unwrap(),
        fs::read_to_string(dir.join("root-cert.pem")).unwrap()
    );
    fs::write(dir.join("cert-chain.pem"), chain).unwrap();
}

#[test]
fn adopts_an_openssl_plugin_ca_and_issues_from_it() {
    let tmp = tempfile::tempdir().unwrap();
    let plugin = tmp.path().join("cacerts");
    fs::create_dir(&plugin).unwrap();
    openssl_cacerts(&plugin);
    let ca = Authority::adopt(&plugin, &tmp.path().join("ca"), &td()).unwrap();
    let (svid, _) = ca.issue_with_new_key(&id(), None).unwrap();
    assert_eq!(svid.chain.len(), 3, "leaf, intermediate, root");
    openssl_verifies(tmp.path(), &ca, &svid.chain_pem());
    // And our own verifier accepts it: RSA root, ECDSA intermediate, ECDSA leaf.
    let bundles = TrustBundleSet::from(ca.trust_bundle().clone());
    let verified = verify_svid_chain(
        &svid.chain,
        Side::Client,
        &bundles,
        &AllowedPeers::any(),
        UnixTime::now(),
    );
    assert_eq!(verified.unwrap(), id());
}

#[test]
fn refuses_an_openssl_plugin_ca_with_a_mismatched_key() {
    let tmp = tempfile::tempdir().unwrap();
    let plugin = tmp.path().join("cacerts");
    fs::create_dir(&plugin).unwrap();
    openssl_cacerts(&plugin);
    openssl(
        &plugin,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "ca-key.pem",
        ],
    );
    let target = tmp.path().join("ca");
    let err = Authority::adopt(&plugin, &target, &td()).unwrap_err();
    assert!(
        matches!(err, CaError::Load(LoadError::KeyMismatch { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("ca-key.pem"), "{err}");
    assert!(!target.exists(), "nothing written");
}

#[test]
fn refuses_an_expired_plugin_signing_cert() {
    let tmp = tempfile::tempdir().unwrap();
    let plugin = tmp.path().join("cacerts");
    fs::create_dir(&plugin).unwrap();
    openssl_cacerts(&plugin);
    // Re-issue the intermediate (same key, same openssl root) with a validity that has ended;
    // openssl 3.0's `x509` cannot set past dates, so rcgen signs with the openssl root key.
    let read = |name: &str| fs::read_to_string(plugin.join(name)).unwrap();
    let root_key = rcgen::KeyPair::from_pem(&read("root-key.pem")).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&read("root-cert.pem"), root_key).unwrap();
    let inter_key = rcgen::KeyPair::from_pem(&read("ca-key.pem")).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Expired intermediate");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(60);
    params.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(30);
    let expired = params.signed_by(&inter_key, &issuer).unwrap();
    fs::write(plugin.join("ca-cert.pem"), expired.pem()).unwrap();
    fs::write(
        plugin.join("cert-chain.pem"),
        format!("{}{}", expired.pem(), read("root-cert.pem")),
    )
    .unwrap();
    let err = Authority::load(&plugin, Some(&td())).unwrap_err();
    assert!(
        matches!(err, CaError::Load(LoadError::OutsideValidity { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("ca-cert.pem"), "{err}");
}
