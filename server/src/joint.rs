//! Futures that work hand in hand, polled by one task: a reverse call's reader and the
//! processors asking the head over it.
//!
//! Why not a task each: every answer the reader takes wakes the processor waiting for it,
//! which then sends the next request. Between two tasks that wake goes through the scheduler,
//! and on a busy runtime the scheduler hands the woken task to the other worker (a futex wake
//! and a context switch per delivered event, measured in the strictly ordered catch-up). In a
//! joint the reader's wake only marks the processor ready, and it runs in the same turn on the
//! same thread, as the gRPC ceiling's one task does.
//!
//! What it costs: the processors of all the tenants of one registration share that task, so
//! one handler's delivery runs on one worker at a time (its reads of the log still run on
//! blocking threads); other handlers, filters and projections are other calls with tasks of
//! their own.
//!
//! Invariants:
//! - A future woken while the joint is being polled is polled again in that same poll,
//!   without waking the task (which would only queue a running task again); one woken while
//!   the joint waits wakes the task.
//! - One poll of the joint polls its futures at most `POLLS_PER_TURN` times; what is still
//!   ready then waits for the next turn (the task wakes itself), so a future that keeps waking
//!   itself cannot hold the worker.
//! - A future that panics counts as finished, and is logged; the others go on.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;
use parking_lot::Mutex;

use crate::blocking::panic_message;

/// Polls of futures in one poll of the joint at most.
const POLLS_PER_TURN: usize = 64;

/// One future of a joint.
pub(crate) type Part = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Futures polled together by the task that polls the joint (see the module's doc).
pub(crate) struct Joint {
    /// The futures by index; none once finished.
    parts: Vec<Option<Part>>,
    /// Each future's waker.
    wakers: Vec<Arc<PartWaker>>,
    shared: Arc<Shared>,
}

/// What the wakers and the joint share.
struct Shared {
    /// Futures woken and not yet polled, in the order they were woken.
    ready: Mutex<VecDeque<usize>>,
    /// Whether the joint is being polled: a wake then only queues the future.
    polling: AtomicBool,
    /// The task polling the joint.
    task: AtomicWaker,
}

struct PartWaker {
    index: usize,
    /// In `ready` already.
    queued: AtomicBool,
    shared: Arc<Shared>,
}

impl Wake for PartWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.shared.ready.lock().push_back(self.index);
        }
        // Sequentially consistent with the joint's `polling` store and its look at `ready`
        // after it: either the joint sees this future queued, or this sees it idle and wakes
        // it.
        if !self.shared.polling.load(Ordering::SeqCst) {
            self.shared.task.wake();
        }
    }
}

impl Joint {
    pub(crate) fn new() -> Joint {
        Joint {
            parts: Vec::new(),
            wakers: Vec::new(),
            shared: Arc::new(Shared {
                ready: Mutex::new(VecDeque::new()),
                polling: AtomicBool::new(false),
                task: AtomicWaker::new(),
            }),
        }
    }

    /// Adds `part`, polled from the next poll of the joint on; its index.
    pub(crate) fn push(&mut self, part: Part) -> usize {
        let index = self.parts.len();
        self.parts.push(Some(part));
        self.wakers.push(Arc::new(PartWaker {
            index,
            queued: AtomicBool::new(true),
            shared: Arc::clone(&self.shared),
        }));
        self.shared.ready.lock().push_back(index);
        self.shared.task.wake();
        index
    }

    /// Whether the future at `index` has finished.
    pub(crate) fn is_finished(&self, index: usize) -> bool {
        self.parts.get(index).is_none_or(Option::is_none)
    }

    /// Polls the futures until `done` says so (checked after every poll of the joint).
    pub(crate) async fn until(&mut self, done: impl Fn(&Joint) -> bool) {
        poll_fn(|cx| {
            self.poll_parts(cx);
            if done(self) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }

    /// Runs `future` to its end while polling the futures alongside it.
    pub(crate) async fn alongside<F: Future>(&mut self, future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        poll_fn(|cx| {
            if let Poll::Ready(output) = future.as_mut().poll(cx) {
                return Poll::Ready(output);
            }
            self.poll_parts(cx);
            Poll::Pending
        })
        .await
    }

    /// Polls every ready future, again when woken meanwhile, up to `POLLS_PER_TURN`.
    fn poll_parts(&mut self, cx: &mut Context<'_>) {
        self.shared.task.register(cx.waker());
        self.shared.polling.store(true, Ordering::SeqCst);
        let mut polls = 0;
        loop {
            if polls == POLLS_PER_TURN {
                // Still ready: the next turn polls them.
                self.shared.polling.store(false, Ordering::SeqCst);
                cx.waker().wake_by_ref();
                return;
            }
            let next = self.shared.ready.lock().pop_front();
            let Some(index) = next else {
                self.shared.polling.store(false, Ordering::SeqCst);
                if self.shared.ready.lock().is_empty() {
                    return;
                }
                self.shared.polling.store(true, Ordering::SeqCst);
                continue;
            };
            polls += 1;
            self.poll_part(index);
        }
    }

    fn poll_part(&mut self, index: usize) {
        let waker = Arc::clone(&self.wakers[index]);
        waker.queued.store(false, Ordering::Release);
        let Some(part) = self.parts[index].as_mut() else {
            return;
        };
        let waker = Waker::from(waker);
        let mut cx = Context::from_waker(&waker);
        let finished = match std::panic::catch_unwind(AssertUnwindSafe(|| {
            part.as_mut().poll(&mut cx)
        })) {
            Ok(poll) => poll.is_ready(),
            Err(panic) => {
                let what = panic_message(&*panic);
                tracing::error!(panic = %what, "a future of a reverse call panicked; it is over");
                true
            }
        };
        if finished {
            self.parts[index] = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tokio::sync::oneshot;

    #[tokio::test]
    async fn a_wake_from_a_part_is_polled_in_the_same_turn() {
        // The first part answers the second through a oneshot: both finish in one poll of
        // the joint, and the task is not woken for it.
        let (tx, rx) = oneshot::channel::<u32>();
        let got = Arc::new(AtomicUsize::new(0));
        let mut joint = Joint::new();
        let seen = Arc::clone(&got);
        let receiver = joint.push(Box::pin(async move {
            seen.store(rx.await.unwrap() as usize, Ordering::SeqCst);
        }));
        let sender = joint.push(Box::pin(async move {
            tx.send(7).unwrap();
        }));
        let wakes = Arc::new(Counting::default());
        let waker = Waker::from(Arc::clone(&wakes));
        let mut cx = Context::from_waker(&waker);
        let before = wakes.0.load(Ordering::SeqCst);
        joint.poll_parts(&mut cx);
        assert!(joint.is_finished(receiver) && joint.is_finished(sender));
        assert_eq!(got.load(Ordering::SeqCst), 7);
        assert_eq!(wakes.0.load(Ordering::SeqCst), before);
    }

    #[tokio::test]
    async fn a_wake_from_elsewhere_wakes_the_task() {
        let (tx, rx) = oneshot::channel::<()>();
        let mut joint = Joint::new();
        let waiting = joint.push(Box::pin(async move {
            rx.await.unwrap();
        }));
        let wakes = Arc::new(Counting::default());
        let waker = Waker::from(Arc::clone(&wakes));
        let mut cx = Context::from_waker(&waker);
        joint.poll_parts(&mut cx);
        assert!(!joint.is_finished(waiting));
        let before = wakes.0.load(Ordering::SeqCst);
        tx.send(()).unwrap();
        assert_eq!(wakes.0.load(Ordering::SeqCst), before + 1);
        joint.poll_parts(&mut cx);
        assert!(joint.is_finished(waiting));
    }

    #[tokio::test]
    async fn a_part_that_keeps_waking_itself_yields_the_worker() {
        let mut joint = Joint::new();
        let spinner = joint.push(Box::pin(poll_fn(|cx| {
            cx.waker().wake_by_ref();
            Poll::<()>::Pending
        })));
        let wakes = Arc::new(Counting::default());
        let waker = Waker::from(Arc::clone(&wakes));
        let mut cx = Context::from_waker(&waker);
        let before = wakes.0.load(Ordering::SeqCst);
        joint.poll_parts(&mut cx);
        assert!(!joint.is_finished(spinner));
        assert_eq!(wakes.0.load(Ordering::SeqCst), before + 1);
    }

    #[tokio::test]
    async fn a_panicking_part_is_finished_and_the_others_go_on() {
        let mut joint = Joint::new();
        let panics = joint.push(Box::pin(async { panic!("boom") }));
        let (tx, rx) = oneshot::channel::<()>();
        let other = joint.push(Box::pin(async move {
            rx.await.unwrap();
        }));
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            tx.send(()).unwrap();
        });
        joint
            .until(|j| j.is_finished(panics) && j.is_finished(other))
            .await;
    }

    #[tokio::test]
    async fn alongside_runs_a_future_while_the_parts_go_on() {
        let mut joint = Joint::new();
        let (tx, rx) = oneshot::channel::<()>();
        let part = joint.push(Box::pin(async move {
            tx.send(()).unwrap();
        }));
        let answered = joint.alongside(rx).await;
        assert!(answered.is_ok());
        assert!(joint.is_finished(part));
    }

    #[derive(Default)]
    struct Counting(AtomicUsize);

    impl Wake for Counting {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}
