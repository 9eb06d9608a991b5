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
}

impl Guarded {
    fn new(stream: TcpStream, permit: OwnedSemaphorePermit, timeout: Duration) -> Guarded {
        Guarded {
            stream,
            _permit: permit,
            silent_until: Some(Box::pin(tokio::time::sleep(timeout))),
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

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
