//! What one client may hold of a gRPC port, so that clients which open connections and never
//! use them (a slow-loris attack, a stuck load balancer, a leak in a head) cannot starve the
//! others:
//! - at most `max_per_port` connections are open at once on each port; one more is accepted
//!   and closed at once (the client sees the connection end and retries with its backoff), and
//!   the refusal is logged at WARN, at most once a minute per port;
//! - a connection whose client sends nothing within `handshake_timeout` of being accepted (no
//!   HTTP/2 preface, no TLS hello) is closed, and its place freed;
//! - HTTP/2 keep-alive pings (`keep_alive_interval`, answered within `keep_alive_timeout`) close
//!   connections whose peer is gone, and each connection may have at most
//!   `max_concurrent_streams` streams open (HTTP/2's SETTINGS_MAX_CONCURRENT_STREAMS).
//!
//! The same gate stands before the HTTP ports (web, metrics), but for the HTTP/2 settings.
//!
//! Invariant: every accepted connection holds one permit of its port's semaphore until it is
//! dropped, so the count of open connections never exceeds the limit.

use std::future::Future as _;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt as _};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};

/// The limits of each gRPC port (`annals:connections:*`, `annals:http2:*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections per port.
    pub max_per_port: usize,
    /// How long a new connection may stay silent.
    pub handshake_timeout: Duration,
    /// Streams per connection.
    pub max_concurrent_streams: u32,
    /// Time between keep-alive pings on a connection.
    pub keep_alive_interval: Duration,
    /// How long a keep-alive ping may go unanswered before the connection is closed.
    pub keep_alive_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits {
            max_per_port: 10_000,
            handshake_timeout: Duration::from_secs(10),
            max_concurrent_streams: 1000,
            keep_alive_interval: Duration::from_secs(20),
            keep_alive_timeout: Duration::from_secs(20),
        }
    }
}

/// How often a port says it refuses connections.
const REFUSAL_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Who gets in on one port: its permits and when it last said it refused someone.
struct Gate {
    name: &'static str,
    limits: ConnectionLimits,
    permits: Arc<Semaphore>,
    started: Instant,
    /// Seconds since `started` of the last warning, plus one (0: never warned).
    last_warning: AtomicU64,
}

impl Gate {
    fn new(name: &'static str, limits: ConnectionLimits) -> Gate {
        Gate {
            name,
            limits,
            permits: Arc::new(Semaphore::new(limits.max_per_port)),
            started: Instant::now(),
            last_warning: AtomicU64::new(0),
        }
    }

    /// `stream` with its permit, or None when the port is full (dropping the stream closes
    /// it).
    fn admit(&self, stream: TcpStream) -> Option<Guarded> {
        if let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() {
            return Some(Guarded::new(stream, permit, self.limits.handshake_timeout));
        }
        let now = self.started.elapsed().as_secs() + 1;
        let last = self.last_warning.load(Ordering::Relaxed);
        if last == 0 || now >= last + REFUSAL_WARNING_INTERVAL.as_secs() {
            self.last_warning.store(now, Ordering::Relaxed);
            tracing::warn!(
                endpoint = self.name,
                peer = ?stream.peer_addr().ok(),
                open = self.limits.max_per_port,
                "refusing connections: the endpoint has as many open as \
                 annals:connections:maxPerPort allows (said at most once a minute)"
            );
        }
        None
    }
}

/// The connections `incoming` accepts for the gRPC port `name`, within `limits`.
pub(crate) fn guarded(
    name: &'static str,
    incoming: TcpIncoming,
    limits: ConnectionLimits,
) -> impl Stream<Item = io::Result<Guarded>> {
    let gate = Gate::new(name, limits);
    incoming.filter_map(move |accepted| {
        std::future::ready(match accepted {
            Err(e) => Some(Err(e)),
            Ok(stream) => gate.admit(stream).map(Ok),
        })
    })
}

/// An HTTP port's listener (web, metrics), within the same limits as the gRPC ports.
pub(crate) struct GuardedListener {
    listener: TcpListener,
    gate: Gate,
}

impl GuardedListener {
    /// `listener`, the HTTP port `name`.
    pub(crate) fn new(
        name: &'static str,
        listener: TcpListener,
        limits: ConnectionLimits,
    ) -> GuardedListener {
        GuardedListener {
            listener,
            gate: Gate::new(name, limits),
        }
    }
}

impl axum::serve::Listener for GuardedListener {
    type Io = Guarded;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Guarded, SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok((stream, address)) => {
                    if let Some(guarded) = self.gate.admit(stream) {
                        return (guarded, address);
                    }
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait for some to be freed.
                    tracing::debug!(endpoint = self.gate.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// An accepted connection: its permit, and the deadline for its first bytes.
pub(crate) struct Guarded {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    /// Until the client has sent something.
    silent_until: Option<Pin<Box<Sleep>>>,
    /// Written, not yet on the socket (see `GATHER_BYTES_MAX`).
    gathered: Vec<u8>,
}

impl Guarded {
    fn new(stream: TcpStream, permit: OwnedSemaphorePermit, timeout: Duration) -> Guarded {
        Guarded {
            stream,
            _permit: permit,
            silent_until: Some(Box::pin(tokio::time::sleep(timeout))),
            gathered: Vec::new(),
        }
    }
}

impl Connected for Guarded {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        if let Some(deadline) = &mut this.silent_until {
            match read {
                Poll::Ready(Ok(())) if buf.filled().len() > before => this.silent_until = None,
                Poll::Ready(_) => {}
                Poll::Pending => {
                    if deadline.as_mut().poll(cx).is_ready() {
                        tracing::debug!(
                            peer = ?this.stream.peer_addr().ok(),
                            "closed a connection that sent nothing"
                        );
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the client sent nothing within annals:connections:handshakeTimeout",
                        )));
                    }
                }
            }
        }
        read
    }
}

/// The most bytes a connection gathers from small writes before it writes them to its socket.
/// HTTP/2 (h2) copies a DATA frame of less than 1 KiB into its own buffer, and writes a larger
/// one's payload apart, after flushing what it holds; at most this much of what precedes the
/// payload is copied here to go out with it in one `writev`.
const GATHER_BYTES_MAX: usize = 4096;

impl Guarded {
    /// Writes out what was gathered; Ready once all of it is on the socket.
    fn poll_write_gathered(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.gathered.is_empty() {
            let n = std::task::ready!(Pin::new(&mut self.stream).poll_write(cx, &self.gathered))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.gathered.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

/// Writes gather until the next flush: the connection tells HTTP/2 that it takes no vectored
/// writes, so h2 copies DATA frames of less than 1 KiB into its buffer instead of flushing
/// before each frame that follows one (at 256 bytes when writes are vectored). A unary answer
/// of a few hundred bytes then leaves in one write with its trailers, and a stream's small
/// messages queued together leave in one write, instead of one `writev` each. Larger payloads
/// go out at once, in one `writev` with what was gathered before them.
impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.gathered.len() + buf.len() <= GATHER_BYTES_MAX {
            if this.gathered.capacity() == 0 {
                this.gathered.reserve_exact(GATHER_BYTES_MAX);
            }
            this.gathered.extend_from_slice(buf);
            return Poll::Ready(Ok(buf.len()));
        }
        while !this.gathered.is_empty() {
            let slices = [io::IoSlice::new(&this.gathered), io::IoSlice::new(buf)];
            let n = std::task::ready!(Pin::new(&mut this.stream).poll_write_vectored(cx, &slices))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            let gathered = this.gathered.len();
            this.gathered.drain(..n.min(gathered));
            if n > gathered {
                return Poll::Ready(Ok(n - gathered));
            }
        }
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_write_gathered(cx))?;
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_write_gathered(cx))?;
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A connection accepted through a gate, and its client's end.
    async fn connected() -> (Guarded, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let gate = Gate::new("test", ConnectionLimits::default());
        let guarded = gate.admit(accepted.unwrap().0).unwrap();
        (guarded, client.unwrap())
    }

    #[tokio::test]
    async fn small_writes_gather_until_the_flush() {
        let (mut guarded, mut client) = connected().await;
        assert!(!guarded.is_write_vectored());
        guarded.write_all(b"frame head,").await.unwrap();
        guarded.write_all(b" small payload").await.unwrap();
        // Loopback delivers in microseconds: bytes written to the socket would be here.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut buf = [0u8; 64];
        assert_eq!(
            client.try_read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        guarded.flush().await.unwrap();
        let mut got = vec![0u8; 25];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got, b"frame head, small payload");
    }

    #[tokio::test]
    async fn large_writes_go_out_in_order_with_what_was_gathered() {
        let (mut guarded, mut client) = connected().await;
        // Larger than the socket's buffers, so that writes come back partial and pending
        // while the client is slow to read.
        let large: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
        let mut expected = Vec::new();
        let writer = {
            let large = large.clone();
            tokio::spawn(async move {
                for round in 0u8..3 {
                    guarded.write_all(&[round; 10]).await.unwrap();
                    guarded.write_all(&large).await.unwrap();
                    guarded.write_all(&[round; GATHER_BYTES_MAX]).await.unwrap();
                    guarded.write_all(&[round; 5]).await.unwrap();
                }
                guarded.shutdown().await.unwrap();
            })
        };
        for round in 0u8..3 {
            expected.extend_from_slice(&[round; 10]);
            expected.extend_from_slice(&large);
            expected.extend_from_slice(&[round; GATHER_BYTES_MAX]);
            expected.extend_from_slice(&[round; 5]);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "the bytes came out of order");
    }
}
