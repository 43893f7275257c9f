//! CSR signing by the CA (P-256 request, P-256 CA), beside two baselines in the same run:
//! the bare ECDSA P-256 signature and verification every issued certificate needs, and rcgen building and
//! signing a certificate with no CSR to check. Also the SVID verification a peer runs.

// Benchmark setup may panic: a broken fixture must stop the run, not skew it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _,
    UnparsedPublicKey,
};
use criterion::{Criterion, criterion_group, criterion_main};
use meshward_bench::{BenchCa, TTL, p256_csr, workload_id};
use meshward_identity::{AllowedPeers, Side, TrustBundleSet, verify_svid_chain};
use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls_pki_types::UnixTime;

fn signing(c: &mut Criterion) {
    let ca = BenchCa::new(false).unwrap();
    let csr = p256_csr().unwrap();
    let id = workload_id().unwrap();
    let mut group = c.benchmark_group("ca_sign");

    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap();
    let message = [0x5a_u8; 512];
    group.bench_function("baseline: ECDSA P-256 signature of 512 bytes", |b| {
        b.iter(|| key.sign(&rng, black_box(&message)).unwrap());
    });
    // Signing a CSR also verifies its signature (proof of possession): the second floor.
    let signature = key.sign(&rng, &message).unwrap();
    let public =
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, key.public_key().as_ref().to_vec());
    group.bench_function("baseline: ECDSA P-256 verification of 512 bytes", |b| {
        b.iter(|| {
            public
                .verify(black_box(&message), signature.as_ref())
                .unwrap()
        });
    });

    group.bench_function("baseline: rcgen self-signed P-256 certificate", |b| {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let params = CertificateParams::new(vec![
            "spiffe://cluster.local/ns/default/sa/sleep".to_owned(),
        ])
        .unwrap();
        b.iter(|| params.self_signed(black_box(&key)).unwrap());
    });

    group.bench_function("meshward: sign P-256 CSR (root signs)", |b| {
        b.iter(|| ca.authority.sign(black_box(&csr), &id, Some(TTL)).unwrap());
    });

    let with_intermediate = BenchCa::new(true).unwrap();
    group.bench_function("meshward: sign P-256 CSR (intermediate signs)", |b| {
        b.iter(|| {
            with_intermediate
                .authority
                .sign(black_box(&csr), &id, Some(TTL))
                .unwrap()
        });
    });
    group.finish();

    let svid = ca.authority.sign(&csr, &id, Some(TTL)).unwrap();
    let bundles = TrustBundleSet::from(ca.authority.trust_bundle().clone());
    c.bench_function("verify_svid_chain: leaf + root, client side", |b| {
        b.iter(|| {
            verify_svid_chain(
                black_box(&svid.chain),
                Side::Client,
                &bundles,
                &AllowedPeers::any(),
                UnixTime::now(),
            )
            .unwrap()
        });
    });
}

criterion_group!(benches, signing);
criterion_main!(benches);
