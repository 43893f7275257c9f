use std::sync::Arc;

use super::*;

/// A real ClientHello from rustls offering `alpn`, as the first record on the wire.
fn client_hello(alpn: &[&[u8]]) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), "example.test".try_into().unwrap())
            .unwrap();
    let mut out = Vec::new();
    conn.write_tls(&mut out).unwrap();
    out
}

#[test]
fn mesh_alpn_client_hello_is_mesh_tls() {
    let hello = client_hello(&[b"istio-http/1.1", b"istio"]);
    assert_eq!(classify_transport(&hello), Some(Transport::MeshTls));
    let alpns = client_hello_alpns(&hello[5..]).unwrap();
    assert_eq!(alpns, vec![&b"istio-http/1.1"[..], b"istio"]);
}

#[test]
fn app_tls_is_other_tls() {
    assert_eq!(
        classify_transport(&client_hello(&[b"h2"])),
        Some(Transport::OtherTls)
    );
    assert_eq!(
        classify_transport(&client_hello(&[])),
        Some(Transport::OtherTls)
    );
}

#[test]
fn partial_hello_needs_more_and_every_prefix_is_safe() {
    let hello = client_hello(&[b"istio"]);
    for cut in 0..hello.len() {
        assert_eq!(classify_transport(&hello[..cut]), None, "cut at {cut}");
    }
    // Corrupting any single byte must never panic.
    for i in 0..hello.len() {
        let mut bad = hello.clone();
        bad[i] ^= 0xff;
        let _ = classify_transport(&bad);
    }
}

#[test]
fn plaintext_is_plaintext() {
    assert_eq!(
        classify_transport(b"GET / HTTP/1.1\r\n"),
        Some(Transport::Plaintext)
    );
    assert_eq!(classify_transport(b"\x16\x01"), Some(Transport::Plaintext));
    assert_eq!(classify_transport(b""), None);
    // A record longer than TLS allows.
    assert_eq!(
        classify_transport(b"\x16\x03\x01\xff\xff"),
        Some(Transport::OtherTls)
    );
}

#[test]
fn detects_http() {
    assert_eq!(
        classify_protocol(b"GET / HTTP/1.1\r\nHost: x\r\n"),
        Some(Protocol::Http1)
    );
    assert_eq!(
        classify_protocol(b"PROPFIND /a HTTP/1.0\n"),
        Some(Protocol::Http1)
    );
    assert_eq!(classify_protocol(b"GET / HTT"), None);
    assert_eq!(classify_protocol(b"GE"), None);
    assert_eq!(
        classify_protocol(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        Some(Protocol::Http2)
    );
    assert_eq!(classify_protocol(b"PRI * HTTP/2.0"), None);
    assert_eq!(classify_protocol(b"SET k v\r\n"), Some(Protocol::Opaque));
    assert_eq!(classify_protocol(b"\x16\x03\x01"), Some(Protocol::Opaque));
    assert_eq!(
        classify_protocol(b"*1\r\n$4\r\nPING\r\n"),
        Some(Protocol::Opaque)
    );
    assert_eq!(classify_protocol(&[b'A'; 9000]), None);
}

#[test]
fn lenient_request_lines_are_still_http() {
    // Forms some app parsers accept: they must go through hyper (and XFCC sanitizing) too.
    for line in [
        &b"GET / HTTP/1.1 \r\n"[..],
        b"get / http/1.1\r\n",
        b"GET\t/\tHTTP/1.1\r\n",
        b"\r\n\r\nGET / HTTP/1.1\r\n",
    ] {
        assert_eq!(classify_protocol(line), Some(Protocol::Http1), "{line:?}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn sniff_is_bounded_by_the_first_byte_timeout() {
    let (_far, mut near) = tokio::io::duplex(64);
    let (buf, t) = sniff_transport(&mut near, Duration::from_millis(20), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(buf.is_empty());
    assert_eq!(t, Transport::Silent);
}

#[tokio::test(flavor = "current_thread")]
async fn a_text_line_paused_mid_way_is_treated_as_http() {
    let (mut far, mut near) = tokio::io::duplex(64);
    tokio::io::AsyncWriteExt::write_all(&mut far, b"GET / HTTP/1.1 ")
        .await
        .unwrap();
    let (_, p) = sniff_protocol(&mut near, Vec::new(), Duration::from_millis(20))
        .await
        .unwrap();
    assert_eq!(p, Protocol::Http1);
    // Binary bytes that pause stay opaque; a text prefix followed by end of stream too.
    let (mut far, mut near) = tokio::io::duplex(64);
    tokio::io::AsyncWriteExt::write_all(&mut far, b"\x00\x01")
        .await
        .unwrap();
    let (_, p) = sniff_protocol(&mut near, Vec::new(), Duration::from_millis(20))
        .await
        .unwrap();
    assert_eq!(p, Protocol::Opaque);
    let (mut far, mut near) = tokio::io::duplex(64);
    tokio::io::AsyncWriteExt::write_all(&mut far, b"ping")
        .await
        .unwrap();
    drop(far);
    let (buf, p) = sniff_protocol(&mut near, Vec::new(), Duration::from_millis(20))
        .await
        .unwrap();
    assert_eq!((buf.as_slice(), p), (&b"ping"[..], Protocol::Opaque));
}
