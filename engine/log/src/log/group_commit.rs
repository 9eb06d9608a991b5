//! Group commit: the leader/follower barrier in front of a log's writer.
//!
//! Appenders queue their encoded commits here. An appender that finds no leader active becomes
//! the leader; the others (followers) wait for their results. The leader takes a group from the
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
    result: Mutex<Option<Result<CommitReceipt>>>,
}

impl Pending {
    /// Sets the commit's result; the leader sets each commit's result once.
    pub(super) fn complete(&self, result: Result<CommitReceipt>) {
        let mut slot = self.result.lock();
        assert!(slot.is_none(), "a commit's result is set twice");
        *slot = Some(result);
    }

    /// Fails the commit with `error()` unless its result is set already.
    pub(super) fn fail_unless_complete(&self, error: impl FnOnce() -> Error) {
        let mut slot = self.result.lock();
        if slot.is_none() {
            *slot = Some(Err(error()));
        }
    }

    fn take_result(&self) -> Option<Result<CommitReceipt>> {
        self.result.lock().take()
    }
}

/// Commits waiting for a leader, and what the leader learnt from the last group.
#[derive(Default)]
struct Queue {
    pending: VecDeque<Arc<Pending>>,
    queued_bytes: usize,
    leader: bool,
    /// A leader is gathering: enqueuers signal `arrived`.
    gathering: bool,
    /// Writers seen around the last group: its size plus those already queued when it ended.
    expected_writers: usize,
    /// Duration of the last group's write (and sync).
    last_write: Duration,
}

/// The barrier of one log. Guarded apart from the writer, so queuing never waits for I/O.
pub(super) struct GroupCommit {
    queue: Mutex<Queue>,
    /// Signalled when a group completes (results are ready, leadership is free, queue room).
    group_done: Condvar,
    /// Signalled on enqueue while a leader gathers.
    arrived: Condvar,
    /// `group-bytes-max`.
    group_bytes_max: usize,
    /// The queue's bound: `4 x group-bytes-max`.
    queue_bytes_max: usize,
    /// `group-commit-delay-max-us` in sync-data mode, else zero (no gathering).
    gather_delay_max: Duration,
}

impl GroupCommit {
    pub(super) fn new(config: &LogConfig) -> Self {
        let group_bytes_max = config.group_bytes_max.as_u64() as usize;
        Self {
            queue: Mutex::new(Queue::default()),
            group_done: Condvar::new(),
            arrived: Condvar::new(),
            group_bytes_max,
            queue_bytes_max: group_bytes_max * 4,
            gather_delay_max: if config.durability == Durability::SyncData {
                Duration::from_micros(config.group_commit_delay_max_us)
            } else {
                Duration::ZERO
            },
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
        let bytes = commit.framed_len();
        let pending = Arc::new(Pending {
            commit,
            result: Mutex::new(None),
        });

        let mut queue = self.queue.lock();
        // Backpressure: wait while the queue is over its bound (an empty queue always admits).
        while !queue.pending.is_empty() && queue.queued_bytes + bytes > self.queue_bytes_max {
            self.group_done.wait(&mut queue);
        }
        admit()?;
        queue.queued_bytes += bytes;
        queue.pending.push_back(Arc::clone(&pending));
        if queue.gathering {
            self.arrived.notify_one();
        }
        // Follower: wait for the result, or for leadership to be free.
        loop {
            if let Some(result) = pending.take_result() {
                return result;
            }
            if !queue.leader {
                queue.leader = true;
                break;
            }
            self.group_done.wait(&mut queue);
        }
        // Leader: write groups until our own commit is done.
        loop {
            self.gather(&mut queue);
            let group = self.take_group(&mut queue);
            drop(queue);
            let started = Instant::now();
            write(&group);
            let elapsed = started.elapsed();
            queue = self.queue.lock();
            queue.last_write = elapsed;
            queue.expected_writers = group.len() + queue.pending.len();
            if let Some(result) = pending.take_result() {
                queue.leader = false;
                self.group_done.notify_all();
                return result;
            }
            self.group_done.notify_all();
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
        queue.gathering = true;
        while queue.pending.len() < expected {
            if self.arrived.wait_until(queue, deadline).timed_out() {
                break;
            }
        }
        queue.gathering = false;
    }
}
