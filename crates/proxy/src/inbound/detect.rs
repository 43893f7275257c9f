//! Bounded, timed sniffing of a connection's first bytes: is it a TLS ClientHello carrying a
//! mesh ALPN, another TLS, or plaintext; and is a (decrypted or plaintext) stream HTTP.
//!
//! The parsers are pure functions over the bytes read so far; they answer `None` ("need more")
//! until they can decide, and never look past what they were given.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::{Instant, timeout, timeout_at};

use crate::tls::is_mesh_alpn;

/// Largest TLS record payload (RFC 8446 §5.1); a ClientHello is read from one record.
const MAX_RECORD: usize = 16 * 1024;
/// Most bytes read while looking for a ClientHello.
const MAX_HELLO: usize = 5 + MAX_RECORD;
/// Most bytes read while looking for an HTTP/1 request line.
const MAX_REQUEST_LINE: usize = 8 * 1024;
/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the first bytes of an inbound connection are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A TLS ClientHello offering a mesh ALPN.
    MeshTls,
    /// TLS without a mesh ALPN (the app's own TLS), or an unreadable ClientHello.
    OtherTls,
    /// Not TLS.
    Plaintext,
    /// Nothing arrived before the first-byte timeout, or the peer closed at once.
    Silent,
}

/// What a stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// An HTTP/1.0 or HTTP/1.1 request line.
    Http1,
    /// The HTTP/2 prior-knowledge preface.
    Http2,
    /// Anything else: forwarded as bytes.
    Opaque,
}

/// How sniffing ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sniffed<T> {
    /// The classifier decided.
    Decided(T),
    /// The peer closed its side first.
    Eof,
    /// The peer paused: nothing within the first-byte timeout, or no decision by the deadline.
    Timeout,
    /// The size limit was reached without a decision.
    Full,
}

/// Reads until `classify` decides, the peer closes or pauses, or `limit` bytes are buffered.
async fn sniff<S, T>(
    io: &mut S,
    mut buf: Vec<u8>,
    limit: usize,
    first_byte: Duration,
    total: Duration,
    classify: impl Fn(&[u8]) -> Option<T>,
) -> io::Result<(Vec<u8>, Sniffed<T>)>
where
    S: AsyncRead + Unpin,
{
    let deadline = Instant::now() + total;
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(decided) = classify(&buf) {
            return Ok((buf, Sniffed::Decided(decided)));
        }
        if buf.len() >= limit {
            return Ok((buf, Sniffed::Full));
        }
        let want = chunk.len().min(limit - buf.len());
        let read = if buf.is_empty() {
            timeout(first_byte, io.read(&mut chunk[..want])).await
        } else {
            timeout_at(deadline, io.read(&mut chunk[..want])).await
        };
        let read = match read {
            Err(_) => return Ok((buf, Sniffed::Timeout)),
            Ok(r) => r?,
        };
        if read == 0 {
            return Ok((buf, Sniffed::Eof));
        }
        buf.extend_from_slice(&chunk[..read]);
    }
}

/// Sniffs the transport of a fresh inbound connection.
pub async fn sniff_transport<S: AsyncRead + Unpin>(
    io: &mut S,
    first_byte: Duration,
    handshake: Duration,
) -> io::Result<(Vec<u8>, Transport)> {
    let (buf, sniffed) = sniff(
        io,
        Vec::new(),
        MAX_HELLO,
        first_byte,
        handshake,
        classify_transport,
    )
    .await?;
    let transport = match sniffed {
        Sniffed::Decided(t) => t,
        _ if buf.is_empty() => Transport::Silent,
        // A truncated or oversized record that started like TLS.
        _ => Transport::OtherTls,
    };
    Ok((buf, transport))
}

/// Sniffs whether a stream carries HTTP; `prefix` holds bytes already read from it. Waits at
/// most `first_byte` for the first byte and again for the rest of the first line.
///
/// A first line that starts with a letter but is still unfinished when the peer pauses, or
/// that is longer than 8 KiB, is taken as HTTP: hyper then refuses what is not, so pausing
/// mid-line cannot smuggle an unsanitized request past the proxy. Only end of stream makes
/// such a prefix opaque (no complete request can follow it).
pub async fn sniff_protocol<S: AsyncRead + Unpin>(
    io: &mut S,
    prefix: Vec<u8>,
    first_byte: Duration,
) -> io::Result<(Vec<u8>, Protocol)> {
    let (buf, sniffed) = sniff(
        io,
        prefix,
        MAX_REQUEST_LINE,
        first_byte,
        first_byte,
        classify_protocol,
    )
    .await?;
    let protocol = match sniffed {
        Sniffed::Decided(p) => p,
        Sniffed::Eof => Protocol::Opaque,
        Sniffed::Timeout | Sniffed::Full if starts_like_text(&buf) => Protocol::Http1,
        Sniffed::Timeout | Sniffed::Full => Protocol::Opaque,
    };
    Ok((buf, protocol))
}

fn skip_empty_lines(buf: &[u8]) -> &[u8] {
    let start = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    &buf[start..]
}

fn starts_like_text(buf: &[u8]) -> bool {
    skip_empty_lines(buf)
        .first()
        .is_some_and(u8::is_ascii_alphabetic)
}

/// Decides the transport from the bytes so far, or `None` to read more.
pub fn classify_transport(buf: &[u8]) -> Option<Transport> {
    let (&first, rest) = buf.split_first()?;
    // 0x16 = TLS handshake record.
    if first != 0x16 {
        return Some(Transport::Plaintext);
    }
    match rest.first() {
        None => return None,
        Some(&major) if major != 0x03 => return Some(Transport::Plaintext),
        Some(_) => {}
    }
    let header = buf.get(..5)?;
    let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    if len == 0 || len > MAX_RECORD {
        return Some(Transport::OtherTls);
    }
    let record = buf.get(5..5 + len)?;
    let mesh =
        client_hello_alpns(record).is_some_and(|alpns| alpns.iter().any(|p| is_mesh_alpn(p)));
    Some(if mesh {
        Transport::MeshTls
    } else {
        Transport::OtherTls
    })
}

/// Decides whether the bytes so far start HTTP, or `None` to read more.
///
/// Errs toward HTTP: anything whose first line starts with a letter and mentions `HTTP/` is
/// parsed by hyper (which refuses what it cannot parse), so no lenient app parser ever sees a
/// request the proxy did not sanitize. Leading empty lines are skipped, as HTTP parsers do.
pub fn classify_protocol(buf: &[u8]) -> Option<Protocol> {
    let buf = skip_empty_lines(buf);
    let first = *buf.first()?;
    let n = buf.len().min(H2_PREFACE.len());
    if buf[..n] == H2_PREFACE[..n] {
        return (buf.len() >= H2_PREFACE.len()).then_some(Protocol::Http2);
    }
    if !first.is_ascii_alphabetic() {
        return Some(Protocol::Opaque);
    }
    let end = buf.iter().position(|&b| b == b'\n')?;
    let http = buf[..end]
        .windows(5)
        .any(|w| w.eq_ignore_ascii_case(b"HTTP/"));
    Some(if http {
        Protocol::Http1
    } else {
        Protocol::Opaque
    })
}

// === ClientHello ===

/// A bounds-checked reader over a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<usize> {
        self.bytes(1).map(|b| usize::from(b[0]))
    }

    fn u16(&mut self) -> Option<usize> {
        self.bytes(2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    fn u24(&mut self) -> Option<usize> {
        self.bytes(3)
            .map(|b| (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]))
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The ALPN protocols offered by the ClientHello in one TLS record payload (RFC 8446 §4.1.2,
/// RFC 7301 §3.1); `None` when the record is not a complete, well-formed ClientHello.
pub fn client_hello_alpns(record: &[u8]) -> Option<Vec<&[u8]>> {
    const CLIENT_HELLO: usize = 1;
    const EXT_ALPN: usize = 16;
    let mut r = Reader(record);
    if r.u8()? != CLIENT_HELLO {
        return None;
    }
    let len = r.u24()?;
    let mut body = Reader(r.bytes(len)?);
    body.bytes(2 + 32)?; // legacy_version, random
    let session_id = body.u8()?;
    body.bytes(session_id)?;
    let suites = body.u16()?;
    body.bytes(suites)?;
    let compression = body.u8()?;
    body.bytes(compression)?;
    let mut alpns = Vec::new();
    if body.is_empty() {
        return Some(alpns);
    }
    let ext_len = body.u16()?;
    let mut exts = Reader(body.bytes(ext_len)?);
    while !exts.is_empty() {
        let kind = exts.u16()?;
        let len = exts.u16()?;
        let data = exts.bytes(len)?;
        if kind == EXT_ALPN {
            let mut d = Reader(data);
            let list_len = d.u16()?;
            let mut list = Reader(d.bytes(list_len)?);
            while !list.is_empty() {
                let n = list.u8()?;
                alpns.push(list.bytes(n)?);
            }
        }
    }
    Some(alpns)
}

#[cfg(test)]
mod tests;
