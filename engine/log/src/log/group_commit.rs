//! Group commit: the leader/follower barrier in front of a log's writer.
//!
//! Appenders queue their encoded commits here. A blocking appender that finds no leader active
//! becomes the leader; the others (followers) wait for their results. An asynchronous appender
//! (`enqueue` then [`Pending::poll_result`]) never blocks: it queues its commit and, when no
//! leader is active, wakes the log's committer thread, which leads like any appender until the
//! queue is empty and completes each commit by waking its task. Both kinds share groups. The leader takes a group from the
//! front of the queue, lets go of the queue lock, hands the group to the log's writer
//! (`writer.rs`), takes the lock again and wakes everyone. It keeps leading groups until its own
//! commit has its result; then leadership is free, and a waiting appender whose commit is still
//! queued takes it. While a group is written, new commits queue behind it and form the next
//! group, so one write and one `fdatasync` serve more commits as load rises. Like raft-engine's
//! write barrier, this module only orders who writes and who waits; it touches no file.
//!
//! Invariants (asserted where they cost nothing measurable):
//! - at most one leader: `leader` is set only by an appender that finds it clear, and cleared
//!   only by that appender once its own commit has its result;
//! - a group is never empty and is taken from the front of the queue, so commits are written in
//!   the order they were queued (the leader's own commit is queued until a group takes it);
//! - `queued_bytes` is the sum of the framed lengths of the queued commits, 0 when none is;
//! - each commit gets its result (a receipt or an error) from the leader writing its group,
//!   before that leader wakes the group's appenders; a result is never overwritten (a failed
//!   write fails only the commits without one).
//!
//! Bounds: the queue holds at most `4 x group-bytes-max` bytes of encoded commits beyond the
//! group being written (an empty queue admits any single commit; further appenders wait); a
//! group holds at most `group-bytes-max` bytes unless its only commit is larger; the leader
//! waits for stragglers at most `group-commit-delay-max-us` and half the last write's duration.

use std::{
    collections::VecDeque,
    sync::Arc,
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use parking_lot::{Condvar, Mutex, MutexGuard};

use super::{writer::EncodedCommit, CommitReceipt};
use crate::{
    config::{Durability, LogConfig},
    error::{Error, Result},
};

/// A queued commit and, once its group is written, its result.
pub(super) struct Pending {
    pub(super) commit: EncodedCommit,
    slot: Mutex<Slot>,
}

/// A commit's result, and the task to wake when it is set.
#[derive(Default)]
struct Slot {
    result: Option<Result<CommitReceipt>>,
    waker: Option<Waker>,
}

impl Pending {
    fn new(commit: EncodedCommit) -> Arc<Pending> {
        Arc::new(Pending {
            commit,
            slot: Mutex::new(Slot::default()),
        })
    }

    /// Sets the commit's result; the leader sets each commit's result once.
    pub(super) fn complete(&self, result: Result<CommitReceipt>) {
        let waker = {
            let mut slot = self.slot.lock();
            assert!(slot.result.is_none(), "a commit's result is set twice");
            slot.result = Some(result);
            slot.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Fails the commit with `error()` unless its result is set already.
    pub(super) fn fail_unless_complete(&self, error: impl FnOnce() -> Error) {
        let waker = {
            let mut slot = self.slot.lock();
            if slot.result.is_some() {
                return;
            }
            slot.result = Some(Err(error()));
            slot.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn take_result(&self) -> Option<Result<CommitReceipt>> {
        self.slot.lock().result.take()
    }

    /// The commit's result once its group is written; until then, `cx`'s task is woken when
    /// it is (checked and registered under one lock, so no completion is missed).
    pub(super) fn poll_result(&self, cx: &mut Context<'_>) -> Poll<Result<CommitReceipt>> {
        let mut slot = self.slot.lock();
        if let Some(result) = slot.result.take() {
            return Poll::Ready(result);
        }
        if !slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            slot.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Commits waiting for a leader, and what the leader learnt from the last group.
#[derive(Default)]
struct Queue {
    pending: VecDeque<Arc<Pending>>,
    queued_bytes: usize,
    leader: bool,
    /// A leader is gathering until this many commits are queued: the enqueuer that brings
    /// the queue to it signals `arrived` (one wake-up per group, not one per commit).
    gathering: Option<usize>,
    /// Writers seen around the last group: its size plus those already queued when it ended.
    expected_writers: usize,
    /// Duration of the last group's write (and sync).
    last_write: Duration,
    /// Asynchronous appenders waiting for room in the queue.
    room_waiters: Vec<Waker>,
    /// The log is gone: the committer thread ends.
    closed: bool,
}

/// The barrier of one log. Guarded apart from the writer, so queuing never waits for I/O.
pub(super) struct GroupCommit {
    shared: Arc<Barrier>,
}

/// What the appenders, the leader and the committer thread share.
struct Barrier {
    queue: Mutex<Queue>,
    /// Signalled when a group completes (results are ready, leadership is free, queue room).
    group_done: Condvar,
    /// Signalled on enqueue while a leader gathers.
    arrived: Condvar,
    /// Signalled for the committer thread: asynchronous commits wait and nobody leads, or the
    /// log is closed.
    work: Condvar,
    /// `group-bytes-max`.
    group_bytes_max: usize,
    /// The queue's bound: `4 x group-bytes-max`.
    queue_bytes_max: usize,
    /// `group-commit-delay-max-us` in sync-data mode, else zero (no gathering).
    gather_delay_max: Duration,
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.shared.queue.lock().closed = true;
        self.shared.work.notify_all();
    }
}

impl GroupCommit {
    pub(super) fn new(config: &LogConfig) -> Self {
        let group_bytes_max = config.group_bytes_max.as_u64() as usize;
        Self {
            shared: Arc::new(Barrier {
                queue: Mutex::new(Queue::default()),
                group_done: Condvar::new(),
                arrived: Condvar::new(),
                work: Condvar::new(),
                group_bytes_max,
                queue_bytes_max: group_bytes_max * 4,
                gather_delay_max: if config.durability == Durability::SyncData {
                    Duration::from_micros(config.group_commit_delay_max_us)
                } else {
                    Duration::ZERO
                },
            }),
        }
    }

    /// Queues `commit` (taking it out of its option) without blocking, once the queue has room
    /// (until then `cx`'s task is woken when a group completes, and `commit` stays put). `admit` runs under the
    /// queue lock and refuses the commit by returning an error. When no leader is active, the
    /// committer thread is woken to lead. The result comes from [`Pending::poll_result`].
    pub(super) fn enqueue(
        &self,
        commit: &mut Option<EncodedCommit>,
        admit: impl FnOnce() -> Result<()>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Arc<Pending>>> {
        let shared = &*self.shared;
        let Some(bytes) = commit.as_ref().map(EncodedCommit::framed_len) else {
            return Poll::Ready(Err(Error::InvalidRequest(
                "a commit was queued twice".to_owned(),
            )));
        };
        let mut queue = shared.queue.lock();
        if !queue.pending.is_empty() && queue.queued_bytes + bytes > shared.queue_bytes_max {
            queue.room_waiters.push(cx.waker().clone());
            return Poll::Pending;
        }
        admit()?;
        let Some(commit) = commit.take() else {
            unreachable!("checked above, under no lock that another poll could race");
        };
        let pending = Pending::new(commit);
        queue.queued_bytes += bytes;
        queue.pending.push_back(Arc::clone(&pending));
        shared.note_arrival(&queue);
        if !queue.leader {
            shared.work.notify_one();
        }
        Poll::Ready(Ok(pending))
    }

    /// A handle the committer thread keeps: it outlives no log (the thread ends when the
    /// log's barrier is dropped).
    pub(super) fn committer_handle(&self) -> CommitterHandle {
        CommitterHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    fn committer_loop<L>(
        shared: &Barrier,
        log: impl Fn() -> Option<L>,
        write: impl Fn(&L, &[Arc<Pending>]),
        gone: impl Fn() -> Error,
    ) {
        let mut queue = shared.queue.lock();
        loop {
            while !queue.closed && (queue.leader || queue.pending.is_empty()) {
                shared.work.wait(&mut queue);
            }
            let held = if queue.closed { None } else { log() };
            let Some(held) = held else {
                for p in queue.pending.drain(..) {
                    p.fail_unless_complete(&gone);
                }
                queue.queued_bytes = 0;
                shared.group_finished(&mut queue);
                return;
            };
            queue.leader = true;
            while !queue.pending.is_empty() {
                queue = shared.write_next_group(queue, |group| write(&held, group));
                shared.group_finished(&mut queue);
            }
            queue.leader = false;
            // The log may be dropped here, on this thread: not under the queue lock.
            drop(queue);
            drop(held);
            queue = shared.queue.lock();
        }
    }

    /// Queues `commit` and returns its result once its group is written. `admit` runs under
    /// the queue lock once the queue has room, and refuses the commit by returning an error (a
    /// poisoned log). `write` writes one group and sets the result of every commit in it; it is
    /// called only by the leader, with the queue unlocked.
    pub(super) fn commit(
        &self,
        commit: EncodedCommit,
        admit: impl FnOnce() -> Result<()>,
        mut write: impl FnMut(&[Arc<Pending>]),
    ) -> Result<CommitReceipt> {
        let shared = &*self.shared;
        let bytes = commit.framed_len();
        let pending = Pending::new(commit);

        let mut queue = shared.queue.lock();
        // Backpressure: wait while the queue is over its bound (an empty queue always admits).
        while !queue.pending.is_empty() && queue.queued_bytes + bytes > shared.queue_bytes_max {
            shared.group_done.wait(&mut queue);
        }
        admit()?;
        queue.queued_bytes += bytes;
        queue.pending.push_back(Arc::clone(&pending));
        shared.note_arrival(&queue);
        // Follower: wait for the result, or for leadership to be free.
        loop {
            if let Some(result) = pending.take_result() {
                return result;
            }
            if !queue.leader {
                queue.leader = true;
                break;
            }
            shared.group_done.wait(&mut queue);
        }
        // Leader: write groups until our own commit is done.
        loop {
            queue = shared.write_next_group(queue, &mut write);
            if let Some(result) = pending.take_result() {
                queue.leader = false;
                // Commits queued by asynchronous appenders need a leader too.
                if !queue.pending.is_empty() {
                    shared.work.notify_one();
                }
                shared.group_finished(&mut queue);
                return result;
            }
            shared.group_finished(&mut queue);
        }
    }
}

/// The committer thread's hold on a log's barrier.
pub(super) struct CommitterHandle {
    shared: Arc<Barrier>,
}

impl CommitterHandle {
    /// The committer thread's loop: while the log lives, leads whenever commits wait and no
    /// appender leads, until the queue is empty. `log` holds the log for a round of groups
    /// (None once it is gone: the thread then ends, failing whatever is still queued with
    /// `gone()`); `write` is called with the queue unlocked.
    pub(super) fn run<L>(
        &self,
        log: impl Fn() -> Option<L>,
        write: impl Fn(&L, &[Arc<Pending>]),
        gone: impl Fn() -> Error,
    ) {
        GroupCommit::committer_loop(&self.shared, log, write, gone);
    }
}

impl Barrier {
    /// The leader's step: gathers and takes the next group, writes it with the queue unlocked,
    /// and notes what the write took and how many writers were about; returns the queue locked
    /// again (the caller wakes the group's appenders).
    fn write_next_group<'q>(
        &'q self,
        mut queue: MutexGuard<'q, Queue>,
        write: impl FnOnce(&[Arc<Pending>]),
    ) -> MutexGuard<'q, Queue> {
        self.gather(&mut queue);
        let group = self.take_group(&mut queue);
        drop(queue);
        let started = Instant::now();
        write(&group);
        let elapsed = started.elapsed();
        let mut queue = self.queue.lock();
        queue.last_write = elapsed;
        queue.expected_writers = group.len() + queue.pending.len();
        queue
    }

    /// A group is done: wakes blocked appenders (results, leadership, room) and asynchronous
    /// appenders waiting for room.
    fn group_finished(&self, queue: &mut Queue) {
        self.group_done.notify_all();
        for waker in queue.room_waiters.drain(..) {
            waker.wake();
        }
    }

    /// Takes the next group from the front of the queue: up to `group-bytes-max` bytes, and at
    /// least one commit however large.
    fn take_group(&self, queue: &mut Queue) -> Vec<Arc<Pending>> {
        let mut group = Vec::new();
        let mut group_bytes = 0usize;
        while let Some(next) = queue.pending.front() {
            let b = next.commit.framed_len();
            if !group.is_empty() && group_bytes + b > self.group_bytes_max {
                break;
            }
            group_bytes += b;
            if let Some(p) = queue.pending.pop_front() {
                group.push(p);
            }
        }
        // The leader's own commit is queued until a group takes it, so a group is never empty.
        assert!(!group.is_empty(), "the leader found an empty queue");
        assert!(
            group_bytes <= queue.queued_bytes,
            "queued bytes undercounted"
        );
        queue.queued_bytes -= group_bytes;
        assert!(
            !queue.pending.is_empty() || queue.queued_bytes == 0,
            "queued bytes left in an empty queue"
        );
        group
    }

    /// Waits briefly for the writers of the previous group to queue their next commits, so
    /// that N steady writers share one fdatasync instead of alternating between two half
    /// groups (PostgreSQL's `commit_delay`, bounded and adaptive). Returns at once when the
    /// queue already holds as many commits as the last group saw writers.
    fn gather(&self, queue: &mut MutexGuard<'_, Queue>) {
        if self.gather_delay_max.is_zero() {
            return;
        }
        let expected = queue.expected_writers;
        if queue.pending.len() >= expected {
            return;
        }
        let deadline = Instant::now() + self.gather_delay_max.min(queue.last_write / 2);
        queue.gathering = Some(expected);
        while queue.pending.len() < expected {
            if self.arrived.wait_until(queue, deadline).timed_out() {
                break;
            }
        }
        queue.gathering = None;
    }

    /// A commit was queued: wakes a gathering leader once the queue holds what it waits for.
    fn note_arrival(&self, queue: &Queue) {
        if queue
            .gathering
            .is_some_and(|expected| queue.pending.len() >= expected)
        {
            self.arrived.notify_one();
        }
    }
}
