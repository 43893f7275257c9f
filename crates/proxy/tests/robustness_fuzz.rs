//! Property tests standing in for fuzz targets (cargo-fuzz needs a nightly toolchain): the
//! sniffing of a connection's first bytes (ClientHello, HTTP request line), and the decoding of
//! every control-plane message the proxy receives — prost decoding of the bytes, then the
//! proxy's own conversion (`view::proto::from_proto` for views; identity, chain, bundle and
//! credentials for signed certificates). A short smoke runs in CI; for a long run:
//!
//! ```sh
//! PROPTEST_CASES=200000 cargo nextest run -p meshward-proxy --test robustness_fuzz
//! ```

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

#[path = "support/fake_cp.rs"]
mod fake_cp;
#[path = "support/forge.rs"]
mod forge;
#[path = "support/pki.rs"]
mod pki;

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use meshward_api::v1 as pb;
use meshward_identity::{SpiffeId, TrustBundle, TrustBundleSet};
use meshward_proxy::creds::Credentials;
use meshward_proxy::inbound::detect::{
    Protocol, Transport, classify_protocol, classify_transport, client_hello_alpns, sniff_protocol,
    sniff_transport,
};
use meshward_proxy::tls::is_mesh_alpn;
use meshward_proxy::view::proto::from_proto;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;
use prost::Message;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, ReadBuf};

use forge::{Ca, client_hello, record};

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

/// A stream that hands out its bytes in the given pieces, then ends.
struct Pieces(VecDeque<Vec<u8>>);

impl AsyncRead for Pieces {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(mut piece) = self.0.pop_front() {
            let n = piece.len().min(buf.remaining());
            buf.put_slice(&piece[..n]);
            if n < piece.len() {
                self.0.push_front(piece.split_off(n));
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// `bytes` cut at `cuts` (indexes into it).
fn pieces(bytes: &[u8], cuts: &[Index]) -> Pieces {
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
    at.push(0);
    at.push(bytes.len());
    at.sort_unstable();
    at.dedup();
    Pieces(at.windows(2).map(|w| bytes[w[0]..w[1]].to_vec()).collect())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// ALPN values: every mesh one, common others, and noise.
fn alpn() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::sample::select(vec![
            b"istio".to_vec(),
            b"istio-peer-exchange".to_vec(),
            b"istio-http/1.0".to_vec(),
            b"istio-http/1.1".to_vec(),
            b"istio-h2".to_vec(),
            b"h2".to_vec(),
            b"http/1.1".to_vec(),
            b"istio-http/2".to_vec(),
            b"Istio".to_vec(),
        ]),
        prop::collection::vec(any::<u8>(), 1..12),
    ]
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn sniffing_decisions_never_change_as_bytes_arrive(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..400),
            // Bytes that start like TLS, or like HTTP.
            prop::collection::vec(any::<u8>(), 0..400).prop_map(|b| [vec![0x16, 3, 1, 1, 0], b].concat()),
            "[A-Z]{1,7} /[ -~]{0,40} HTTP/1\\.[01]\r?\n[ -~\r\n]{0,40}".prop_map(String::into_bytes),
        ],
    ) {
        let mut transport = None;
        let mut protocol = None;
        for end in 0..=bytes.len() {
            let prefix = &bytes[..end];
            let t = classify_transport(prefix);
            if let Some(decided) = transport {
                prop_assert_eq!(t, Some(decided), "transport changed at {}", end);
            }
            transport = t.or(transport);
            let p = classify_protocol(prefix);
            if let Some(decided) = protocol {
                prop_assert_eq!(p, Some(decided), "protocol changed at {}", end);
            }
            protocol = p.or(protocol);
        }
        if bytes.len() > 5 {
            let alpns = client_hello_alpns(&bytes[5..]);
            for p in alpns.into_iter().flatten() {
                prop_assert!(p.len() <= 255);
            }
        }
    }

    #[test]
    fn client_hellos_are_mesh_tls_exactly_when_they_offer_a_mesh_alpn(
        alpns in prop::collection::vec(alpn(), 0..12),
        padding in prop_oneof![Just(0usize), 1usize..2_000, 15_000usize..17_000],
        version in prop::sample::select(vec![[3u8, 1], [3, 3], [3, 4], [2, 0]]),
        cuts in prop::collection::vec(any::<Index>(), 0..6),
    ) {
        let refs: Vec<&[u8]> = alpns.iter().map(Vec::as_slice).collect();
        let hello = client_hello(&refs, [3, 3], padding);
        let bytes = record(0x16, version, &hello);
        let mesh = alpns.iter().any(|p| is_mesh_alpn(p));
        let expected = if version[0] != 3 {
            Transport::Plaintext
        } else if hello.len() > 16 * 1024 || hello.len() > usize::from(u16::MAX) {
            Transport::OtherTls
        } else if mesh {
            Transport::MeshTls
        } else {
            Transport::OtherTls
        };
        prop_assert_eq!(classify_transport(&bytes), Some(expected));
        // However the bytes arrive, the sniffer decides the same.
        let (buf, sniffed) = runtime()
            .block_on(sniff_transport(
                &mut pieces(&bytes, &cuts),
                Duration::from_millis(200),
                Duration::from_millis(500),
            ))
            .unwrap();
        prop_assert_eq!(sniffed, expected);
        prop_assert!(bytes.starts_with(&buf));
        // Truncated anywhere, a hello is never taken for mesh TLS without its ALPN.
        if let Some(cut) = cuts.first() {
            let short = &bytes[..cut.index(bytes.len())];
            if classify_transport(short) == Some(Transport::MeshTls) {
                prop_assert!(mesh);
            }
        }
    }

    #[test]
    fn request_lines_are_sniffed_the_same_however_they_arrive(
        line in prop_oneof![
            "[A-Z]{1,7} /[!-~]{0,40} HTTP/1\\.[01]\r\n".prop_map(String::into_bytes),
            Just(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec()),
            prop::collection::vec(any::<u8>(), 1..100),
        ],
        cuts in prop::collection::vec(any::<Index>(), 0..6),
    ) {
        let whole = classify_protocol(&line);
        let (_, sniffed) = runtime()
            .block_on(sniff_protocol(&mut pieces(&line, &cuts), Vec::new(), Duration::from_millis(200)))
            .unwrap();
        if let Some(decided) = whole {
            prop_assert_eq!(sniffed, decided);
        }
        if sniffed == Protocol::Http2 {
            prop_assert!(line.starts_with(b"PRI * HTTP/2.0"));
        }
    }
}

/// A view with something in every field the proxy reads, encoded.
fn rich_view() -> Vec<u8> {
    let policies = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: test}
spec:
  selector: {matchLabels: {app: httpbin}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/test/sa/sleep]}}]
    to: [{operation: {paths: [/get]}}]
";
    let mut view = fake_cp::view(
        7,
        &[
            (8080, pb::MtlsMode::Strict),
            (9090, pb::MtlsMode::Permissive),
        ],
        policies,
        "\"MERGE_SLASHES\"",
    );
    view.services = vec![pb::ServiceView {
        host: "httpbin.test.svc.cluster.local".into(),
        name: "httpbin".into(),
        namespace: "test".into(),
        address: "10.96.0.1".into(),
        ports: vec![pb::ServicePort {
            port: 8000,
            name: "http".into(),
            endpoints: vec![pb::Endpoint {
                address: "127.0.0.9".into(),
                port: 8080,
                identity: "spiffe://cluster.local/ns/test/sa/httpbin".into(),
                has_sidecar: true,
                tls_mode: pb::TlsMode::IstioMutual as i32,
                ..Default::default()
            }],
            tls_mode: pb::TlsMode::IstioMutual as i32,
            subject_alt_names: vec!["spiffe://cluster.local/ns/test/sa/httpbin".into()],
            ..Default::default()
        }],
        ..Default::default()
    }];
    view.encode_to_vec()
}

/// Converts `bytes` as the proxy's discovery client does; what an accepted view holds is
/// within the proxy's bounds.
fn decode_view(bytes: &[u8]) {
    let Ok(view) = pb::ProxyView::decode(bytes) else {
        return;
    };
    if let Ok(view) = from_proto(view, "httpbin", "test") {
        assert!(view.inbound.len() <= 10_000);
        assert!(!view.inbound.contains_key(&0));
        assert!(view.services.len() <= 10_000);
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn views_from_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..1_000)) {
        decode_view(&bytes);
    }

    #[test]
    fn mutated_views(
        flips in prop::collection::vec((any::<Index>(), any::<u8>()), 1..6),
        cut in prop::option::of(any::<Index>()),
    ) {
        let mut bytes = rich_view();
        for (at, xor) in &flips {
            let i = at.index(bytes.len());
            bytes[i] ^= xor;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        decode_view(&bytes);
    }

    #[test]
    fn generated_views(
        ports in prop::collection::vec((any::<u32>(), any::<i32>(), any::<bool>()), 0..6),
        name in prop::sample::select(vec!["httpbin", "other", "", "httpbin\u{0}"]),
        trust_domain in prop::sample::select(vec!["cluster.local", "", "Cluster.local", "a/b", "x".repeat(300).leak()]),
        authz in prop_oneof![
            Just(String::new()),
            Just(fake_cp::compile("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: d, namespace: test}\nspec: {action: DENY, rules: [{to: [{operation: {paths: [/x]}}]}]}\n")),
            "[{}\\[\\]\":,a-z0-9 ]{0,60}",
            Just("{\"policies\": [{\"namespace\": \"n\", \"name\": \"p\", \"action\": \"ALLOW\", \"rules\": [{}]}]}".to_owned()),
        ],
        normalization in prop::sample::select(vec!["", "\"BASE\"", "\"NONE\"", "\"DECODE_AND_MERGE_SLASHES\"", "\"nope\"", "7", "{"]),
        endpoints in prop::collection::vec(
            (
                prop::sample::select(vec!["127.0.0.1", "::1", "", "host", "1.2.3.4:5", "256.0.0.1"]),
                any::<u32>(),
                prop::sample::select(vec!["", "spiffe://cluster.local/ns/a/sa/b", "spiffe://x", "nope"]),
                any::<i32>(),
            ),
            0..4,
        ),
        sans in prop::collection::vec(prop::sample::select(vec!["spiffe://cluster.local/ns/a/sa/b", "", "x"]), 0..3),
        service_port in any::<u32>(),
    ) {
        let mut view = fake_cp::view(1, &[], "", "");
        let workload = view.workload.as_mut().unwrap();
        workload.name = name.to_owned();
        workload.ports = ports
            .iter()
            .map(|&(port, mode, opaque)| pb::InboundPort { port, mode, opaque, ..Default::default() })
            .collect();
        workload.authorization_json = authz;
        workload.path_normalization_json = normalization.to_owned();
        view.trust_domain = trust_domain.to_owned();
        view.services = vec![pb::ServiceView {
            host: "s.test.svc.cluster.local".into(),
            name: "s".into(),
            namespace: "test".into(),
            ports: vec![pb::ServicePort {
                port: service_port,
                endpoints: endpoints
                    .iter()
                    .map(|&(address, port, identity, tls)| pb::Endpoint {
                        address: address.into(),
                        port,
                        identity: identity.into(),
                        tls_mode: tls,
                        ..Default::default()
                    })
                    .collect(),
                subject_alt_names: sans.iter().map(|s| (*s).to_owned()).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }];
        decode_view(&view.encode_to_vec());
    }

    #[test]
    fn every_other_message_decodes_or_is_refused(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = pb::DiscoveryRequest::decode(&bytes[..]);
        let _ = pb::Hello::decode(&bytes[..]);
        let _ = pb::Ack::decode(&bytes[..]);
        let _ = pb::SignRequest::decode(&bytes[..]);
        let _ = pb::ApplyRequest::decode(&bytes[..]);
        if let Ok(response) = pb::SignResponse::decode(&bytes[..]) {
            let _ = accept_sign_response(&response);
        }
    }
}

/// What the proxy does with a `SignResponse` for its key: the identity, the chain, the bundle,
/// then credentials that must verify.
fn accept_sign_response(response: &pb::SignResponse) -> Result<Credentials, String> {
    let identity: SpiffeId = response.identity.parse().map_err(|e| format!("{e}"))?;
    let chain = CertificateDer::pem_slice_iter(response.cert_chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let (bundle, _) = TrustBundle::from_pem(
        identity.trust_domain().clone(),
        response.trust_bundle_pem.as_bytes(),
    )
    .map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::from_pem_slice(SIGNED.with(|s| s.1.clone()).as_bytes())
        .map_err(|e| e.to_string())?;
    let creds = Credentials::new(chain, key, Arc::new(TrustBundleSet::from(bundle)))
        .map_err(|e| e.to_string())?;
    if creds.id() != &identity {
        return Err("identity mismatch".into());
    }
    Ok(creds)
}

thread_local! {
    /// A genuine SignResponse (leaf and root from one CA) and the key it was issued for.
    static SIGNED: (pb::SignResponse, String) = {
        let ca = Ca::root("fuzz root");
        let leaf = ca.svid("test", "httpbin");
        (
            pb::SignResponse {
                cert_chain_pem: leaf.chain_pem(),
                trust_bundle_pem: ca.root_pem,
                identity: "spiffe://cluster.local/ns/test/sa/httpbin".into(),
            },
            leaf.key_pem,
        )
    };
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn mutated_sign_responses_are_refused_or_unchanged(
        field in 0usize..3,
        flips in prop::collection::vec((any::<Index>(), any::<u8>()), 1..4),
    ) {
        let (mut response, _) = SIGNED.with(Clone::clone);
        let original = response.clone();
        let text = match field {
            0 => &mut response.cert_chain_pem,
            1 => &mut response.trust_bundle_pem,
            _ => &mut response.identity,
        };
        let mut bytes = std::mem::take(text).into_bytes();
        for (at, xor) in &flips {
            let i = at.index(bytes.len());
            bytes[i] ^= xor;
        }
        *text = String::from_utf8_lossy(&bytes).into_owned();
        if let Ok(creds) = accept_sign_response(&response) {
            // Only a change that means nothing (a PEM header byte, a base64 padding bit) may pass,
            // and then with the identity the control plane named.
            prop_assert_eq!(creds.id().to_string(), original.identity);
        }
    }
}

#[test]
fn the_genuine_sign_response_is_accepted() {
    let (response, _) = SIGNED.with(Clone::clone);
    accept_sign_response(&response).unwrap();
    decode_view(&rich_view());
    let view = pb::ProxyView::decode(&rich_view()[..]).unwrap();
    assert!(from_proto(view, "httpbin", "test").is_ok());
}
