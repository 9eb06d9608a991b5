//! The heads' gRPC ports served by our own accept loop over hyper-util's connection builder,
//! instead of tonic's `serve_with_incoming_shutdown`, for one reason: the executor that runs
//! each HTTP/2 stream's task.
//!
//! hyper runs every stream of a connection (a unary call, a reverse call's response stream)
//! as a task of its own that pipes the response body into HTTP/2. For each message it sends,
//! that task registers its waker for a reset, then reserves send capacity, which h2 grants at
//! once and signals to the registered waker: the task wakes itself while it is being polled.
//! tokio takes such a wake-up as a yield, queues the task behind the others and wakes a parked
//! worker to steal it (a `futex` call, an interprocessor interrupt on a virtual machine). In
//! profiles of a strictly ordered event handler catch-up this was a fifth of the server's CPU
//! (README, *The latest figures*). Here every stream task is polled under a waker of its own
//! ([`SelfWakes`]): a wake-up that comes while the task is being polled means "poll again now"
//! (a few times at most, then it yields as before), any other goes to tokio as usual.
//!
//! What tonic's loop does and this one keeps: HTTP/2 only, the windows, the stream limit and
//! keep-alive pings of the port (`connections`), a client's `grpc-timeout` ([`Deadline`],
//! answered as tonic answers it), and a graceful drain on stop: no new connections, each open
//! one is told to finish its streams, and the loop returns once all are closed.
//!
//! Invariants:
//! - A wake-up is never lost: one that comes while the task is polled is seen by that poll's
//!   end (and the task polled again), one that comes after it wakes the task through tokio.
//! - A task is polled at most [`REPOLLS_MAX`] times per wake-up from tokio, so a task that keeps
//!   waking itself still yields the worker.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use futures_util::future::Either;
use futures_util::task::AtomicWaker;
use futures_util::{Stream, StreamExt as _};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::codegen::http;
use tower::{Service, ServiceExt as _};

/// Polls of a stream task per wake-up from tokio at most.
const REPOLLS_MAX: usize = 8;

/// A gRPC port's HTTP/2 settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) stream_window: u32,
    pub(crate) connection_window: u32,
    pub(crate) max_concurrent_streams: u32,
    pub(crate) keep_alive_interval: Duration,
    pub(crate) keep_alive_timeout: Duration,
}

/// Serves `service` on the connections `incoming` yields until `stop` resolves, then drains.
pub(crate) async fn serve<S, I, IO>(
    name: &'static str,
    service: S,
    incoming: I,
    settings: Settings,
    stop: impl Future<Output = ()>,
) where
    S: Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    I: Stream<Item = std::io::Result<IO>>,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(StreamTasks).http2_only();
    builder
        .http2()
        .timer(TokioTimer::new())
        .initial_stream_window_size(settings.stream_window)
        .initial_connection_window_size(settings.connection_window)
        .max_concurrent_streams(settings.max_concurrent_streams)
        .keep_alive_interval(settings.keep_alive_interval)
        .keep_alive_timeout(settings.keep_alive_timeout);
    // Each connection holds a receiver; the drain waits for all of them to be dropped.
    let (drain_tx, drain_rx) = tokio::sync::watch::channel(());
    {
        let incoming = std::pin::pin!(incoming);
        let mut incoming = incoming.fuse();
        let mut stop = std::pin::pin!(stop);
        loop {
            let io = tokio::select! {
                () = &mut stop => break,
                io = incoming.next() => io,
            };
            let io = match io {
                Some(Ok(io)) => io,
                Some(Err(e)) => {
                    tracing::debug!(endpoint = name, error = %e, "accept failed");
                    continue;
                }
                None => break,
            };
            let service = Deadline(service.clone()).map_request(
                |request: http::Request<hyper::body::Incoming>| request.map(tonic::body::Body::new),
            );
            let builder = builder.clone();
            let mut drain = drain_rx.clone();
            tokio::spawn(async move {
                let connection =
                    builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
                let mut connection = std::pin::pin!(connection);
                let mut draining = false;
                loop {
                    tokio::select! {
                        served = connection.as_mut() => {
                            if let Err(e) = served {
                                tracing::debug!(endpoint = name, error = %e, "connection ended");
                            }
                            break;
                        }
                        _ = drain.changed(), if !draining => {
                            // Sent (or the loop is gone): finish the streams, take no new ones.
                            draining = true;
                            connection.as_mut().graceful_shutdown();
                        }
                    }
                }
                drop(drain);
            });
        }
    }
    drop(drain_rx);
    let _ = drain_tx.send(());
    drain_tx.closed().await;
}

/// hyper's executor for the tasks it spawns (one per HTTP/2 stream): each runs under
/// [`SelfWakes`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamTasks;

impl<F> hyper::rt::Executor<F> for StreamTasks
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, task: F) {
        tokio::spawn(SelfWakes::new(task));
    }
}

/// Nothing is polling the task.
const IDLE: u8 = 0;
/// The task is being polled.
const POLLING: u8 = 1;
/// Woken while being polled.
const WOKEN: u8 = 2;

/// A future polled under a waker of its own that turns a wake-up during its own poll into
/// another poll at once (see the module's doc).
pub(crate) struct SelfWakes<F> {
    inner: Pin<Box<F>>,
    shared: Arc<Shared>,
    /// `shared` as a waker, made once.
    waker: Waker,
}

struct Shared {
    state: AtomicU8,
    /// The task's waker from tokio, for wake-ups that come while it is not being polled.
    task: AtomicWaker,
}

impl Wake for Shared {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.state.fetch_or(WOKEN, Ordering::AcqRel) & POLLING == 0 {
            self.task.wake();
        }
    }
}

impl<F: Future> SelfWakes<F> {
    pub(crate) fn new(inner: F) -> SelfWakes<F> {
        let shared = Arc::new(Shared {
            state: AtomicU8::new(IDLE),
            task: AtomicWaker::new(),
        });
        SelfWakes {
            inner: Box::pin(inner),
            waker: Waker::from(Arc::clone(&shared)),
            shared,
        }
    }
}

impl<F: Future> Future for SelfWakes<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        this.shared.task.register(cx.waker());
        let mut inner_cx = Context::from_waker(&this.waker);
        for _ in 0..REPOLLS_MAX {
            // Clears a wake-up from before this poll: it woke the task, which is this poll.
            this.shared.state.store(POLLING, Ordering::Release);
            let polled = this.inner.as_mut().poll(&mut inner_cx);
            let state = this.shared.state.swap(IDLE, Ordering::AcqRel);
            if polled.is_ready() {
                return polled;
            }
            if state & WOKEN == 0 {
                return Poll::Pending;
            }
        }
        // Still waking itself: yield the worker, as tokio would have.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// A client's `grpc-timeout`, as tonic's server keeps it: the call's answer (its headers) must
/// be ready within it, or the call is answered CANCELLED "Timeout expired".
#[derive(Clone)]
struct Deadline<S>(S);

impl<S> Service<http::Request<tonic::body::Body>> for Deadline<S>
where
    S: Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        > + Send,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    /// The call's own future when it has no timeout (no allocation on the way of every call).
    type Future =
        Either<S::Future, Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let timeout = request
            .headers()
            .get("grpc-timeout")
            .and_then(|value| grpc_timeout(value.as_bytes()));
        let answer = self.0.call(request);
        match timeout {
            None => Either::Left(answer),
            Some(timeout) => Either::Right(Box::pin(async move {
                match tokio::time::timeout(timeout, answer).await {
                    Ok(answered) => answered,
                    Err(_) => Ok(tonic::Status::cancelled("Timeout expired").into_http()),
                }
            })),
        }
    }
}

/// A `grpc-timeout` header's duration: at most 8 digits and a unit (H, M, S, m, u, n); None
/// for anything else (ignored, as tonic ignores it).
fn grpc_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A future that wakes itself `n` times during its polls, then completes.
    struct WakesItself {
        left: usize,
        polls: Arc<AtomicUsize>,
    }

    impl Future for WakesItself {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::Relaxed);
            if self.left == 0 {
                return Poll::Ready(());
            }
            self.left -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    /// Counts the wake-ups that reach the task.
    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One poll from tokio of a [`WakesItself`] that wakes itself `left` times: what it gave,
    /// how often it was polled, and how many wake-ups reached tokio.
    fn poll_once(left: usize) -> (Poll<()>, usize, usize) {
        let polls = Arc::new(AtomicUsize::new(0));
        let mut future = SelfWakes::new(WakesItself {
            left,
            polls: Arc::clone(&polls),
        });
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let polled = Pin::new(&mut future).poll(&mut Context::from_waker(&waker));
        (
            polled,
            polls.load(Ordering::Relaxed),
            count.0.load(Ordering::Relaxed),
        )
    }

    #[test]
    fn a_wake_up_during_the_poll_polls_again_without_waking_the_task() {
        assert_eq!(poll_once(3), (Poll::Ready(()), 4, 0));
    }

    #[test]
    fn a_task_that_keeps_waking_itself_yields_after_a_bound() {
        assert_eq!(poll_once(100), (Poll::Pending, REPOLLS_MAX, 1));
    }

    #[test]
    fn a_wake_up_after_the_poll_reaches_the_task() {
        // Pending without waking itself; its waker kept for later.
        struct Later(Option<Waker>);
        impl Future for Later {
            type Output = ();
            fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
                self.0 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
        let mut future = SelfWakes::new(Later(None));
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut future).poll(&mut cx).is_pending());
        let inner = future.inner.0.clone().expect("registered");
        inner.wake_by_ref();
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_call_not_answered_within_its_grpc_timeout_is_cancelled_as_tonic_cancels_it() {
        let never = tower::service_fn(|_: http::Request<tonic::body::Body>| {
            std::future::pending::<Result<http::Response<tonic::body::Body>, Infallible>>()
        });
        let request = |timeout: Option<&'static str>| {
            let mut request = http::Request::new(tonic::body::Body::empty());
            if let Some(timeout) = timeout {
                request
                    .headers_mut()
                    .insert("grpc-timeout", http::HeaderValue::from_static(timeout));
            }
            request
        };
        let answer = Deadline(never).oneshot(request(Some("10m"))).await;
        let Ok(answer) = answer;
        let status = tonic::Status::from_header_map(answer.headers()).expect("a status");
        assert_eq!(status.code(), tonic::Code::Cancelled);
        assert_eq!(status.message(), "Timeout expired");
        // Without a timeout, or with one that cannot be read, the call waits.
        for header in [None, Some("10x")] {
            let waiting = Deadline(never).oneshot(request(header));
            assert!(tokio::time::timeout(Duration::from_millis(200), waiting)
                .await
                .is_err());
        }
    }

    #[test]
    fn grpc_timeouts_are_read_as_the_protocol_writes_them() {
        assert_eq!(grpc_timeout(b"100m"), Some(Duration::from_millis(100)));
        assert_eq!(grpc_timeout(b"2S"), Some(Duration::from_secs(2)));
        assert_eq!(grpc_timeout(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(grpc_timeout(b"5n"), Some(Duration::from_nanos(5)));
        assert_eq!(grpc_timeout(b"123456789m"), None);
        assert_eq!(grpc_timeout(b"m"), None);
        assert_eq!(grpc_timeout(b"10x"), None);
        assert_eq!(grpc_timeout(b"-1S"), None);
    }
}
