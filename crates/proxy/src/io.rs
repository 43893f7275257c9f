//! Byte plumbing shared by inbound and outbound: a stream that replays sniffed bytes, a stream
//! that is either plaintext or TLS, and a bounded bidirectional copy that propagates half-close.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Size of each direction's copy buffer: bounded memory per connection.
pub const COPY_BUFFER: usize = 16 * 1024;

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Accepts on `listener` until `stop`, handing each connection (with `TCP_NODELAY` set) to
/// `on_conn`. `what` names the listener in logs.
pub(crate) async fn accept_until<F>(
    listener: TcpListener,
    stop: CancellationToken,
    what: &'static str,
    mut on_conn: F,
) where
    F: FnMut(TcpStream, SocketAddr),
{
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                on_conn(tcp, peer);
            }
            Err(err) => {
                tracing::warn!(%err, listener = what, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Copies both ways until both sides are done. When one side reaches end of stream, the other
/// side's write half is shut down (half-close), so `shutdown(SHUT_WR)` travels end to end.
/// Returns the bytes sent each way `(a→b, b→a)`.
pub async fn splice<A, B>(a: &mut A, b: &mut B) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    tokio::io::copy_bidirectional_with_sizes(a, b, COPY_BUFFER, COPY_BUFFER).await
}

/// [`splice`], closed with a `TimedOut` error when no byte has moved either way for `idle`
/// (`None`: never). Each direction's progress goes through `a`, so watching `a` sees all.
pub async fn splice_idle<A, B>(
    a: &mut A,
    b: &mut B,
    idle: Option<Duration>,
) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let Some(idle) = idle else {
        return splice(a, b).await;
    };
    let start = tokio::time::Instant::now();
    let last = AtomicU64::new(0);
    let mut watched = Watched {
        inner: a,
        start,
        last: &last,
    };
    let copy = splice(&mut watched, b);
    tokio::pin!(copy);
    loop {
        let seen = last.load(Ordering::Relaxed);
        tokio::select! {
            result = &mut copy => return result,
            () = tokio::time::sleep_until(start + Duration::from_millis(seen) + idle) => {
                // Bytes moved while this slept: wait again from the last of them.
                if last.load(Ordering::Relaxed) == seen {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no byte either way for {idle:?} (idle timeout)"),
                    ));
                }
            }
        }
    }
}

/// A stream that notes when bytes last moved through it (milliseconds after `start`).
struct Watched<'a, S: ?Sized> {
    inner: &'a mut S,
    start: tokio::time::Instant,
    last: &'a AtomicU64,
}

impl<S: ?Sized> Watched<'_, S> {
    fn touch(&self) {
        let now = self.start.elapsed().as_millis();
        self.last
            .store(u64::try_from(now).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

impl<S: AsyncRead + Unpin + ?Sized> AsyncRead for Watched<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut *self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin + ?Sized> AsyncWrite for Watched<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut *self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}

// === impl Prefixed ===

/// A stream whose first reads return bytes already taken from it (while sniffing), then the
/// rest of the stream. Writes go straight through.
#[derive(Debug)]
pub struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    /// Replays `prefix` before reading from `inner`.
    pub fn new(prefix: impl Into<Bytes>, inner: S) -> Self {
        Self {
            prefix: prefix.into(),
            inner,
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn an_idle_splice_ends_and_a_busy_one_does_not() {
        // Envoy's tcp_proxy idle_timeout: "the amount of time that the TCP proxy will allow a
        // connection to exist with no upstream or downstream activity".
        let idle = Some(Duration::from_secs(60));
        let (mut client, mut near) = tokio::io::duplex(64);
        let (mut far, mut server) = tokio::io::duplex(64);
        let relay = tokio::spawn(async move { splice_idle(&mut near, &mut far, idle).await });
        // Traffic every 40 s, one way then the other, for five minutes: still open.
        let mut byte = [0u8; 1];
        for round in 0..8 {
            tokio::time::sleep(Duration::from_secs(40)).await;
            if round % 2 == 0 {
                client.write_all(b"x").await.unwrap();
                server.read_exact(&mut byte).await.unwrap();
            } else {
                server.write_all(b"y").await.unwrap();
                client.read_exact(&mut byte).await.unwrap();
            }
        }
        assert!(!relay.is_finished());
        // Then silence: closed once a minute has passed without a byte.
        tokio::time::sleep(Duration::from_secs(61)).await;
        let ended = relay.await.unwrap().unwrap_err();
        assert_eq!(ended.kind(), io::ErrorKind::TimedOut);
        assert_eq!(
            client.read(&mut byte).await.unwrap(),
            0,
            "the client sees the close"
        );
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn no_idle_timeout_waits_for_the_ends() {
        let (mut client, mut near) = tokio::io::duplex(64);
        let (mut far, mut server) = tokio::io::duplex(64);
        let relay = tokio::spawn(async move { splice_idle(&mut near, &mut far, None).await });
        tokio::time::sleep(Duration::from_secs(86_400)).await;
        assert!(!relay.is_finished());
        client.shutdown().await.unwrap();
        server.shutdown().await.unwrap();
        assert_eq!(relay.await.unwrap().unwrap(), (0, 0));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn prefixed_replays_then_reads_through() {
        let (mut far, near) = tokio::io::duplex(64);
        far.write_all(b" world").await.unwrap();
        drop(far);
        let mut stream = Prefixed::new(&b"hello"[..], near);
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn splice_propagates_half_close() {
        let (mut client, mut a) = tokio::io::duplex(64);
        let (mut b, mut server) = tokio::io::duplex(64);
        let task = tokio::spawn(async move { splice(&mut a, &mut b).await });
        client.write_all(b"ping").await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"ping");
        // The server can still answer after the client half-closed.
        server.write_all(b"pong").await.unwrap();
        server.shutdown().await.unwrap();
        let mut back = Vec::new();
        client.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"pong");
        assert_eq!(task.await.unwrap().unwrap(), (4, 4));
    }
}
