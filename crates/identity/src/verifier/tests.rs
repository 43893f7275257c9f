//! Real TLS handshakes over loopback between the two verifiers.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;

use rustls::{ClientConnection, ServerConnection, StreamOwned};

use super::*;
use crate::test_pki::{TestCa, leaf_params};
use crate::{SpiffeId, TrustDomain, peer_spiffe_id};

const CLIENT: &str = "spiffe://cluster.local/ns/default/sa/sleep";
const SERVER: &str = "spiffe://cluster.local/ns/default/sa/httpbin";

fn id(s: &str) -> SpiffeId {
    s.parse().unwrap()
}

struct Outcome {
    /// What the server saw: the client's ID, or the handshake error.
    server: Result<SpiffeId, String>,
    /// What the client saw after sending a request: the echo, or the error.
    client: Result<String, String>,
}

/// Runs one mTLS exchange: the client writes `ping`, the server answers `pong` and reports
/// the client's verified SPIFFE ID.
fn handshake(server_cfg: ServerConfig, client_cfg: ClientConfig) -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || -> Result<SpiffeId, String> {
        let (tcp, _) = listener.accept().unwrap();
        let conn = ServerConnection::new(Arc::new(server_cfg)).unwrap();
        let mut tls = StreamOwned::new(conn, tcp);
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).map_err(|e| e.to_string())?;
        let peer = peer_spiffe_id(tls.conn.peer_certificates().unwrap_or_default())
            .map_err(|e| e.to_string())?;
        tls.write_all(b"pong").map_err(|e| e.to_string())?;
        tls.flush().map_err(|e| e.to_string())?;
        Ok(peer)
    });
    let name = ServerName::try_from("httpbin.default.svc").unwrap();
    let conn = ClientConnection::new(Arc::new(client_cfg), name).unwrap();
    let mut tls = StreamOwned::new(conn, TcpStream::connect(addr).unwrap());
    // In TLS 1.3 a rejected client certificate only shows at the first read.
    let client = (|| {
        tls.write_all(b"ping")?;
        tls.flush()?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf)?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf).into_owned())
    })()
    .map_err(|e| e.to_string());
    drop(tls);
    Outcome {
        server: server.join().unwrap(),
        client,
    }
}

struct Pair {
    ca: TestCa,
    bundles: Arc<TrustBundleSet>,
}

impl Pair {
    fn new() -> Self {
        let ca = TestCa::root("root");
        let bundles = Arc::new(ca.bundles("cluster.local"));
        Self { ca, bundles }
    }

    fn server(&self, allowed: AllowedPeers) -> ServerConfig {
        let (chain, key) = self.ca.leaf(&leaf_params(SERVER));
        server_config(Arc::clone(&self.bundles), allowed, chain, key).unwrap()
    }

    fn client(&self, allowed: AllowedPeers) -> ClientConfig {
        let (chain, key) = self.ca.leaf(&leaf_params(CLIENT));
        client_config(Arc::clone(&self.bundles), allowed, chain, key).unwrap()
    }
}

#[test]
fn mutual_tls_between_the_verifiers() {
    let pair = Pair::new();
    let out = handshake(
        pair.server(AllowedPeers::default().with_id(id(CLIENT))),
        pair.client(AllowedPeers::default().with_id(id(SERVER))),
    );
    assert_eq!(out.server, Ok(id(CLIENT)));
    assert_eq!(out.client.as_deref(), Ok("pong"));
}

#[test]
fn client_refuses_a_server_outside_the_allowed_set() {
    let pair = Pair::new();
    let out = handshake(
        pair.server(AllowedPeers::any()),
        pair.client(AllowedPeers::default().with_id(id(CLIENT))),
    );
    let err = out.client.unwrap_err();
    assert!(err.contains("NotAllowed"), "{err}");
    assert!(out.server.is_err());
}

#[test]
fn server_refuses_a_client_of_another_trust_domain() {
    let pair = Pair::new();
    let foreign = TestCa::root("foreign");
    let (chain, key) = foreign.leaf(&leaf_params("spiffe://evil.example/ns/x/sa/y"));
    let client = client_config(Arc::clone(&pair.bundles), AllowedPeers::any(), chain, key).unwrap();
    let out = handshake(pair.server(AllowedPeers::any()), client);
    let err = out.server.unwrap_err();
    assert!(err.contains("UntrustedDomain"), "{err}");
    assert!(out.client.is_err());
}

#[test]
fn server_refuses_a_client_without_client_auth() {
    let pair = Pair::new();
    let mut params = leaf_params(CLIENT);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let (chain, key) = pair.ca.leaf(&params);
    let client = client_config(Arc::clone(&pair.bundles), AllowedPeers::any(), chain, key).unwrap();
    let out = handshake(pair.server(AllowedPeers::any()), client);
    let err = out.server.unwrap_err();
    assert!(err.contains("MissingEku"), "{err}");
}

#[test]
fn server_allows_by_trust_domain() {
    let pair = Pair::new();
    let td = TrustDomain::new("cluster.local").unwrap();
    let out = handshake(
        pair.server(AllowedPeers::default().with_trust_domain(td)),
        pair.client(AllowedPeers::any()),
    );
    assert_eq!(out.server, Ok(id(CLIENT)));
}

#[test]
fn optional_client_auth_still_verifies_a_sent_certificate() {
    let pair = Pair::new();
    let verifier =
        SpiffeClientVerifier::new(Arc::clone(&pair.bundles), AllowedPeers::any()).optional();
    assert!(!verifier.client_auth_mandatory());
    assert!(
        SpiffeClientVerifier::new(Arc::clone(&pair.bundles), AllowedPeers::any())
            .client_auth_mandatory()
    );
    let foreign = TestCa::root("foreign");
    let (chain, _) = foreign.leaf(&leaf_params(CLIENT));
    let err = verifier
        .verify_client_cert(&chain[0], &chain[1..], UnixTime::now())
        .unwrap_err();
    assert!(format!("{err:?}").contains("UnknownIssuer"), "{err:?}");
}
