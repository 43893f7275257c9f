//! The mTLS handshake between two sidecars, in memory (no sockets), and the SVID verification
//! inside it, each beside a baseline in the same run:
//!
//! - `mtls_handshake`: a full TLS 1.3 handshake with client certificates, configured like the
//!   proxy's (`crates/proxy/src/tls.rs`: TLS 1.3 only, no 0-RTT, aws-lc-rs). Baseline: rustls's
//!   own WebPKI verifiers on both sides (the server checked by DNS name); Meshward: the SPIFFE
//!   verifiers of `meshward-identity`. Also the same baseline with X25519 only (what OpenSSL 3.0
//!   peers negotiate, where rustls prefers X25519MLKEM768), Meshward with
//!   TLS13_AES_128_GCM_SHA256 only (rustls prefers the SHA-384 suite), and a resumed Meshward
//!   handshake (what a proxy does on a new connection to a server it already knows).
//! - `svid_verify`: one certificate verification as each side runs it in a handshake; baseline
//!   WebPKI, Meshward SPIFFE.

// Benchmark setup may panic: a broken fixture must stop the run, not skew it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use meshward_identity::{
    AllowedPeers, SpiffeClientVerifier, SpiffeServerVerifier, TrustBundle, TrustBundleSet,
    TrustDomain, crypto_provider,
};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::client::Resumption;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};

const SERVER_ID: &str = "spiffe://cluster.local/ns/bench/sa/server";
const CLIENT_ID: &str = "spiffe://cluster.local/ns/bench/sa/client";
/// The server leaf also carries this DNS name, so that the WebPKI baseline can verify it.
const SERVER_DNS: &str = "server.bench";

/// One root and two leaves (ECDSA P-256, URI SANs), as the proxy benchmark's PKI.
struct Pki {
    root: CertificateDer<'static>,
    server: (CertificateDer<'static>, PrivateKeyDer<'static>),
    client: (CertificateDer<'static>, PrivateKeyDer<'static>),
}

impl Pki {
    fn new() -> Self {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "bench root");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let root = params.self_signed(&key).unwrap();
        let issuer = Issuer::new(params, key);
        let leaf = |sans: Vec<SanType>| {
            let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            let mut params = CertificateParams::default();
            params.subject_alt_names = sans;
            params.is_ca = IsCa::ExplicitNoCa;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let cert = params.signed_by(&key, &issuer).unwrap();
            let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
            (cert.der().clone(), der)
        };
        let server = leaf(vec![
            SanType::URI(SERVER_ID.try_into().unwrap()),
            SanType::DnsName(SERVER_DNS.try_into().unwrap()),
        ]);
        let client = leaf(vec![SanType::URI(CLIENT_ID.try_into().unwrap())]);
        Self {
            root: root.der().clone(),
            server,
            client,
        }
    }

    fn bundles(&self) -> Arc<TrustBundleSet> {
        let td = TrustDomain::new("cluster.local").unwrap();
        Arc::new(TrustBundleSet::from(
            TrustBundle::new(td, [self.root.clone()]).unwrap(),
        ))
    }

    fn roots(&self) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(self.root.clone()).unwrap();
        Arc::new(roots)
    }
}

/// Which verifiers and key exchange a pair of configs uses.
#[derive(Clone, Copy)]
enum Flavour {
    WebPki,
    WebPkiX25519,
    Spiffe,
    /// The SPIFFE verifiers with TLS13_AES_128_GCM_SHA256 only (rustls prefers
    /// TLS13_AES_256_GCM_SHA384, whose key schedule runs SHA-384).
    SpiffeAes128,
}

fn provider(flavour: Flavour) -> Arc<CryptoProvider> {
    let mut provider = (*crypto_provider()).clone();
    match flavour {
        Flavour::WebPkiX25519 => {
            provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519];
        }
        Flavour::SpiffeAes128 => {
            provider.cipher_suites =
                vec![rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256];
        }
        Flavour::WebPki | Flavour::Spiffe => {}
    }
    Arc::new(provider)
}

fn server_verifier(pki: &Pki, flavour: Flavour) -> Arc<dyn ServerCertVerifier> {
    match flavour {
        Flavour::Spiffe | Flavour::SpiffeAes128 => Arc::new(SpiffeServerVerifier::new(
            pki.bundles(),
            AllowedPeers::default().with_id(SERVER_ID.parse().unwrap()),
        )),
        Flavour::WebPki | Flavour::WebPkiX25519 => {
            rustls::client::WebPkiServerVerifier::builder_with_provider(
                pki.roots(),
                provider(flavour),
            )
            .build()
            .unwrap()
        }
    }
}

fn client_verifier(pki: &Pki, flavour: Flavour) -> Arc<dyn ClientCertVerifier> {
    match flavour {
        Flavour::Spiffe | Flavour::SpiffeAes128 => Arc::new(SpiffeClientVerifier::new(
            pki.bundles(),
            AllowedPeers::any(),
        )),
        Flavour::WebPki | Flavour::WebPkiX25519 => {
            WebPkiClientVerifier::builder_with_provider(pki.roots(), provider(flavour))
                .build()
                .unwrap()
        }
    }
}

/// Client and server configs as the proxy builds them; `resume` keeps rustls's default session
/// caches (on in the proxy), otherwise every handshake is a full one.
fn configs(pki: &Pki, flavour: Flavour, resume: bool) -> (Arc<ClientConfig>, Arc<ServerConfig>) {
    let mut client = ClientConfig::builder_with_provider(provider(flavour))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(server_verifier(pki, flavour))
        .with_client_auth_cert(vec![pki.client.0.clone()], pki.client.1.clone_key())
        .unwrap();
    client.alpn_protocols = vec![b"istio".to_vec()];
    client.enable_early_data = false;
    let mut server = ServerConfig::builder_with_provider(provider(flavour))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(client_verifier(pki, flavour))
        .with_single_cert(vec![pki.server.0.clone()], pki.server.1.clone_key())
        .unwrap();
    server.max_early_data_size = 0;
    if !resume {
        client.resumption = Resumption::disabled();
        server.session_storage = Arc::new(NoServerSessionStorage {});
        server.send_tls13_tickets = 0;
    }
    (Arc::new(client), Arc::new(server))
}

/// One complete handshake in memory; panics if it fails.
fn handshake(client: &Arc<ClientConfig>, server: &Arc<ServerConfig>, name: &ServerName<'static>) {
    let mut c = ClientConnection::new(Arc::clone(client), name.clone()).unwrap();
    let mut s = ServerConnection::new(Arc::clone(server)).unwrap();
    let mut buf = Vec::with_capacity(8 * 1024);
    for _ in 0..10 {
        if !c.is_handshaking() && !s.is_handshaking() && !c.wants_write() && !s.wants_write() {
            return;
        }
        buf.clear();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd).unwrap();
        }
        s.process_new_packets().unwrap();
        buf.clear();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
        }
        c.process_new_packets().unwrap();
    }
    panic!("handshake did not finish");
}

fn handshakes(c: &mut Criterion) {
    let pki = Pki::new();
    let name = ServerName::try_from(SERVER_DNS).unwrap();
    let mut group = c.benchmark_group("mtls_handshake");
    for (label, flavour, resume) in [
        (
            "baseline: rustls WebPKI verifiers, full",
            Flavour::WebPki,
            false,
        ),
        (
            "baseline: rustls WebPKI verifiers, X25519 only, full",
            Flavour::WebPkiX25519,
            false,
        ),
        ("meshward: SPIFFE verifiers, full", Flavour::Spiffe, false),
        (
            "meshward: SPIFFE verifiers, AES-128-GCM-SHA256 only, full",
            Flavour::SpiffeAes128,
            false,
        ),
        ("meshward: SPIFFE verifiers, resumed", Flavour::Spiffe, true),
    ] {
        let (client, server) = configs(&pki, flavour, resume);
        handshake(&client, &server, &name); // fails here, before measuring, if misconfigured
        group.bench_function(label, |b| b.iter(|| handshake(&client, &server, &name)));
    }
    group.finish();

    let mut group = c.benchmark_group("svid_verify");
    let now = UnixTime::now();
    let webpki = client_verifier(&pki, Flavour::WebPki);
    let spiffe = client_verifier(&pki, Flavour::Spiffe);
    group.bench_function("baseline: WebPKI client certificate", |b| {
        b.iter(|| {
            webpki
                .verify_client_cert(black_box(&pki.client.0), &[], now)
                .unwrap()
        });
    });
    group.bench_function("meshward: SPIFFE client SVID", |b| {
        b.iter(|| {
            spiffe
                .verify_client_cert(black_box(&pki.client.0), &[], now)
                .unwrap()
        });
    });
    let webpki = server_verifier(&pki, Flavour::WebPki);
    let spiffe = server_verifier(&pki, Flavour::Spiffe);
    group.bench_function("baseline: WebPKI server certificate (DNS name)", |b| {
        b.iter(|| {
            webpki
                .verify_server_cert(black_box(&pki.server.0), &[], &name, &[], now)
                .unwrap()
        });
    });
    group.bench_function("meshward: SPIFFE server SVID (expected ID)", |b| {
        b.iter(|| {
            spiffe
                .verify_server_cert(black_box(&pki.server.0), &[], &name, &[], now)
                .unwrap()
        });
    });
    group.finish();
}

criterion_group!(benches, handshakes);
criterion_main!(benches);
