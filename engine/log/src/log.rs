//! One log (a tenant's event log or one of its scoped logs): group commit, rolling, reads and
//! tail subscriptions.
//!
//! Write path (group commit, leader/follower):
//! 1. `append` validates and encodes the commit's payloads outside any lock, then queues it.
//! 2. If no leader is active, the caller becomes the leader; otherwise it waits.
//! 3. The leader takes every queued commit (up to `group-bytes-max`), assigns consecutive
//!    sequence numbers, frames them into one buffer, and issues one write and one
//!    `fdatasync` (linked into one submission on io_uring). A commit never spans segments:
//!    when the next one would overflow the active segment, the leader writes what it has,
//!    rolls to a new segment, and hands the full one to the sealer.
//! 4. After the data is durable it publishes the new visible end, wakes tail subscribers and
//!    completes every commit of the group; then the next waiting caller leads.
//!
//! Invariants:
//! - only the leader touches the writer state and the active file's tail;
//! - a record is visible to readers only after it is durable (sync-data) or written
//!   (buffered), and never beyond the end of its commit;
//! - the first failed write or sync poisons the log; nothing is retried.
//!
//! Bounds: the commit queue holds at most `group-bytes-max` x 4 bytes of encoded commits
//! beyond the group being written; further appenders wait (backpressure).

use std::{
    collections::VecDeque,
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use event_listener::{Event as Notify, Listener};
use parking_lot::{Condvar, Mutex, RwLock};

use crate::{
    config::{Durability, LogConfig},
    error::{Error, Result},
    event::{encode_execution_context, encode_payload, Commit},
    ids::{EventLogSequenceNumber, ScopeId, TenantId},
    io::IoEngine,
    poison::Poison,
    segment::{
        cache::BlockCache,
        format::{encode_frame, FRAME_HEADER_LEN, HEADER_LEN},
        reader::{read_raw, read_sealed, ReadLimits, RecordBatch},
        recovery::{create_raw_segment, recover, zero_range, RecoveryReport},
        seal::seal_segment,
        RawSegment, Segment,
    },
    store::{SealQueue, Shared},
};

/// Where a commit landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitReceipt {
    /// Sequence number of the commit's first event.
    pub first: EventLogSequenceNumber,
    /// Number of events.
    pub count: u64,
}

impl CommitReceipt {
    /// Sequence number after the commit's last event.
    pub fn next(&self) -> EventLogSequenceNumber {
        EventLogSequenceNumber(self.first.0 + self.count)
    }
}

/// Counters of a log's write path.
#[derive(Debug, Default)]
pub struct LogStats {
    /// Commits acknowledged.
    pub commits: AtomicU64,
    /// Events acknowledged.
    pub events: AtomicU64,
    /// Groups written (one write each).
    pub groups: AtomicU64,
    /// `fdatasync` calls on data (rolls and seals not counted).
    pub data_syncs: AtomicU64,
    /// Segments rolled.
    pub rolls: AtomicU64,
    /// Segments sealed.
    pub seals: AtomicU64,
}

struct EncodedCommit {
    /// Payloads back to back.
    payloads: Vec<u8>,
    /// Length of each payload.
    lens: Vec<u32>,
    /// Whether any event was applied by an aggregate.
    aggregate: bool,
}

impl EncodedCommit {
    fn framed_len(&self) -> usize {
        self.payloads.len() + self.lens.len() * FRAME_HEADER_LEN
    }
}

struct Pending {
    commit: EncodedCommit,
    result: Mutex<Option<Result<CommitReceipt>>>,
}

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

struct Writer {
    active: Arc<RawSegment>,
    write_offset: u64,
    /// The active file is zero-filled (written, to be synced with the next group) up to here.
    prealloc_end: u64,
    next_seq: EventLogSequenceNumber,
    last_sparse_offset: Option<u64>,
    /// Frames of a commit with aggregate events are written and not yet published.
    unpublished_aggregate: bool,
}

/// A job for the engine's sealer thread.
pub(crate) struct SealJob {
    pub(crate) log: Arc<Log>,
    pub(crate) raw: Arc<RawSegment>,
}

/// One append-only log.
pub struct Log {
    /// Weak self-reference, to hand the sealer an owning handle.
    me: std::sync::Weak<Log>,
    tenant: TenantId,
    scope: ScopeId,
    dir: PathBuf,
    io: Arc<dyn IoEngine>,
    config: Arc<LogConfig>,
    /// Commits waiting for a leader; guarded separately from the writer so queuing never
    /// waits for I/O.
    queue: Mutex<Queue>,
    /// Signalled when a group completes (results are ready, leadership is free, queue room).
    group_done: Condvar,
    /// Signalled on enqueue while a leader gathers.
    arrived: Condvar,
    /// The leader's state; locked only by the leader (and by the sealer swapping segments).
    writer: Mutex<Writer>,
    /// Readers' view of the segment chain, ascending by base.
    segments: RwLock<Vec<Segment>>,
    /// Sequence number after the last visible record.
    visible_next: AtomicU64,
    /// Woken on every publish.
    tail: Notify,
    poison: Poison,
    sealer: Option<SealQueue>,
    on_publish: Option<PublishHook>,
    cache: Option<Arc<BlockCache>>,
    stats: LogStats,
    recovery: RecoveryReport,
    /// The log's end when it was opened: `aggregate_end` covers what was published after it.
    opened_at: u64,
    /// The end of the last published group that held events applied by an aggregate (0 when
    /// none since open). Stored before `visible_next`, so a reader that sees an end also sees
    /// the aggregate end of everything before it.
    aggregate_end: AtomicU64,
}

/// Called by a log's group-commit leader each time it publishes new records, with the log's
/// tenant, scope and new end. It runs on the commit path: it must only note the work (set a
/// flag, send to a channel), never block.
pub type PublishHook = Arc<dyn Fn(TenantId, ScopeId, EventLogSequenceNumber) + Send + Sync>;

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("tenant", &self.tenant)
            .field("scope", &self.scope)
            .field("dir", &self.dir)
            .field("next", &self.next_sequence_number())
            .finish_non_exhaustive()
    }
}

impl Log {
    /// Opens (recovering) the log of `tenant` and `scope` in `dir`, with what the store shares.
    pub(crate) fn open(
        shared: &Shared,
        dir: PathBuf,
        tenant: TenantId,
        scope: ScopeId,
    ) -> Result<Arc<Log>> {
        let io = Arc::clone(&shared.io);
        let config = Arc::clone(&shared.config);
        let (sealer, on_publish, cache) = (
            shared.sealer.clone(),
            shared.on_publish.clone(),
            shared.block_cache.clone(),
        );
        let recovered = recover(io.as_ref(), &config, &dir, tenant, scope)?;
        let log = Arc::new_cyclic(|me| Log {
            me: me.clone(),
            tenant,
            scope,
            dir,
            io,
            config,
            queue: Mutex::new(Queue::default()),
            group_done: Condvar::new(),
            arrived: Condvar::new(),
            writer: Mutex::new(Writer {
                prealloc_end: recovered
                    .active
                    .file
                    .len()
                    .unwrap_or(recovered.write_offset),
                active: recovered.active,
                write_offset: recovered.write_offset,
                next_seq: recovered.next_seq,
                last_sparse_offset: None,
                unpublished_aggregate: false,
            }),
            segments: RwLock::new(recovered.segments),
            visible_next: AtomicU64::new(recovered.next_seq.0),
            tail: Notify::new(),
            poison: Poison::default(),
            sealer,
            on_publish,
            cache,
            stats: LogStats::default(),
            recovery: recovered.report,
            opened_at: recovered.next_seq.0,
            aggregate_end: AtomicU64::new(0),
        });
        for raw in recovered.to_seal {
            log.queue_seal(raw);
        }
        Ok(log)
    }

    /// The owning tenant.
    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// The scope.
    pub fn scope(&self) -> ScopeId {
        self.scope
    }

    /// The log's directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Write-path counters.
    pub fn stats(&self) -> &LogStats {
        &self.stats
    }

    /// What opening the log found and did.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// The sequence number the next event will get (= events visible).
    pub fn next_sequence_number(&self) -> EventLogSequenceNumber {
        EventLogSequenceNumber(self.visible_next.load(Ordering::Acquire))
    }

    /// Whether the log takes writes: `Err(Poisoned)` once a write or fsync failed (until the
    /// store is reopened and recovered).
    pub fn check_writable(&self) -> Result<()> {
        match self.poison.cause() {
            Some(cause) => Err(self.poisoned(cause)),
            None => Ok(()),
        }
    }

    fn poisoned(&self, cause: String) -> Error {
        Error::Poisoned {
            tenant: self.tenant,
            scope: self.scope,
            cause,
        }
    }

    fn encode(&self, commit: &Commit) -> Result<EncodedCommit> {
        if commit.events.is_empty() {
            return Err(Error::InvalidRequest(
                "a commit needs at least one event".into(),
            ));
        }
        let record_max = self.config.record_bytes_max.as_u64() as usize;
        let commit_max = self.config.commit_bytes_max.as_u64() as usize;
        let ec_bytes = encode_execution_context(&commit.execution_context);
        let mut payloads = Vec::with_capacity(commit.events.len() * (ec_bytes.len() + 128));
        let mut lens = Vec::with_capacity(commit.events.len());
        for (i, event) in commit.events.iter().enumerate() {
            let start = payloads.len();
            encode_payload(
                &mut payloads,
                commit.occurred_ns,
                &commit.execution_context,
                &ec_bytes,
                event,
            );
            let len = payloads.len() - start;
            if len > record_max {
                return Err(Error::InvalidRequest(format!(
                    "event {i} encodes to {len} bytes, above the record limit of {record_max}"
                )));
            }
            lens.push(len as u32);
        }
        let encoded = EncodedCommit {
            payloads,
            lens,
            aggregate: commit.events.iter().any(|e| e.aggregate.is_some()),
        };
        if encoded.framed_len() > commit_max {
            return Err(Error::InvalidRequest(format!(
                "commit encodes to {} bytes, above the commit limit of {commit_max}",
                encoded.framed_len()
            )));
        }
        Ok(encoded)
    }

    /// Appends a commit; returns once it is durable (or written, in buffered mode). The
    /// events get consecutive sequence numbers; after a crash they are all present or none.
    pub fn append(&self, commit: &Commit) -> Result<CommitReceipt> {
        let encoded = self.encode(commit)?;
        let bytes = encoded.framed_len();
        let pending = Arc::new(Pending {
            commit: encoded,
            result: Mutex::new(None),
        });
        let queue_max = self.config.group_bytes_max.as_u64() as usize * 4;

        let mut queue = self.queue.lock();
        // Backpressure: wait while the queue is over its bound (an empty queue always admits).
        while !queue.pending.is_empty() && queue.queued_bytes + bytes > queue_max {
            self.group_done.wait(&mut queue);
        }
        if let Some(cause) = self.poison.cause() {
            return Err(self.poisoned(cause));
        }
        queue.queued_bytes += bytes;
        queue.pending.push_back(Arc::clone(&pending));
        if queue.gathering {
            self.arrived.notify_one();
        }
        loop {
            if let Some(result) = pending.result.lock().take() {
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
            let group_max = self.config.group_bytes_max.as_u64() as usize;
            let mut group = Vec::new();
            let mut group_bytes = 0usize;
            while let Some(next) = queue.pending.front() {
                let b = next.commit.framed_len();
                if !group.is_empty() && group_bytes + b > group_max {
                    break;
                }
                group_bytes += b;
                if let Some(p) = queue.pending.pop_front() {
                    group.push(p);
                }
            }
            queue.queued_bytes -= group_bytes;
            drop(queue);
            let started = std::time::Instant::now();
            self.write_group(&group);
            let elapsed = started.elapsed();
            queue = self.queue.lock();
            queue.last_write = elapsed;
            queue.expected_writers = group.len() + queue.pending.len();
            if let Some(result) = pending.result.lock().take() {
                queue.leader = false;
                self.group_done.notify_all();
                return result;
            }
            self.group_done.notify_all();
        }
    }

    /// Waits briefly for the writers of the previous group to queue their next commits, so
    /// that N steady writers share one fdatasync instead of alternating between two half
    /// groups (PostgreSQL's `commit_delay`, bounded and adaptive). Returns at once when the
    /// queue already holds as many commits as the last group saw writers.
    fn gather(&self, queue: &mut parking_lot::MutexGuard<'_, Queue>) {
        let delay_max = Duration::from_micros(self.config.group_commit_delay_max_us);
        if delay_max.is_zero() || self.config.durability != Durability::SyncData {
            return;
        }
        let expected = queue.expected_writers;
        if queue.pending.len() >= expected {
            return;
        }
        let deadline = std::time::Instant::now() + delay_max.min(queue.last_write / 2);
        queue.gathering = true;
        while queue.pending.len() < expected {
            if self.arrived.wait_until(queue, deadline).timed_out() {
                break;
            }
        }
        queue.gathering = false;
    }

    fn complete(group: &[Arc<Pending>], result: impl Fn(&Pending) -> Result<CommitReceipt>) {
        for p in group {
            *p.result.lock() = Some(result(p));
        }
    }

    /// Writes one group; sets every member's result.
    fn write_group(&self, group: &[Arc<Pending>]) {
        let mut w = self.writer.lock();
        if let Some(cause) = self.poison.cause() {
            Self::complete(group, |_| Err(self.poisoned(cause.clone())));
            return;
        }
        let segment_max = self.config.segment_bytes_max.as_u64();
        let mut buf = Vec::with_capacity(group.iter().map(|p| p.commit.framed_len()).sum());
        let mut buf_start = w.write_offset;
        let mut receipts: Vec<(usize, CommitReceipt)> = Vec::with_capacity(group.len());
        let mut sparse = Vec::new();
        let mut flushed = 0usize; // members of `group` whose bytes are durable and published
        for (i, p) in group.iter().enumerate() {
            let framed = p.commit.framed_len() as u64;
            let count = p.commit.lens.len() as u64;
            if w.next_seq.0 + count > crate::segment::format::SEQUENCE_NUMBER_MAX {
                *p.result.lock() = Some(Err(Error::InvalidRequest(format!(
                    "the log has reached its largest sequence number ({})",
                    crate::segment::format::SEQUENCE_NUMBER_MAX
                ))));
                continue;
            }
            if w.write_offset + framed > segment_max && w.write_offset > HEADER_LEN as u64 {
                if let Err(e) = self.flush(&mut w, &buf, buf_start, &sparse) {
                    return self.fail_from(group, e);
                }
                self.finish(group, &mut flushed, &receipts);
                buf.clear();
                sparse.clear();
                if let Err(e) = self.roll(&mut w) {
                    return self.fail_from(group, e);
                }
                buf_start = w.write_offset;
            }
            let first = w.next_seq;
            w.unpublished_aggregate |= p.commit.aggregate;
            let count = p.commit.lens.len();
            let mut at = 0usize;
            for (k, len) in p.commit.lens.iter().enumerate() {
                let offset = w.write_offset;
                let interval = self.config.sparse_index_interval_bytes.as_u64();
                if w.last_sparse_offset.is_none_or(|l| offset - l >= interval) {
                    sparse.push((w.next_seq.0, offset));
                    w.last_sparse_offset = Some(offset);
                }
                let payload = &p.commit.payloads[at..at + *len as usize];
                at += *len as usize;
                let before = buf.len();
                encode_frame(
                    &mut buf,
                    w.active.base,
                    offset,
                    w.next_seq,
                    (count - 1 - k) as u32,
                    // Bounded by group-bytes-max + commit-bytes-max < 4 GiB (config.rs).
                    (offset - buf_start) as u32,
                    payload,
                );
                w.write_offset += (buf.len() - before) as u64;
                w.next_seq = EventLogSequenceNumber(w.next_seq.0 + 1);
            }
            receipts.push((
                i,
                CommitReceipt {
                    first,
                    count: count as u64,
                },
            ));
        }
        if let Err(e) = self.flush(&mut w, &buf, buf_start, &sparse) {
            return self.fail_from(group, e);
        }
        self.finish(group, &mut flushed, &receipts);
    }

    /// Completes the members whose receipts are recorded and not yet completed.
    fn finish(
        &self,
        group: &[Arc<Pending>],
        flushed: &mut usize,
        receipts: &[(usize, CommitReceipt)],
    ) {
        for (i, receipt) in &receipts[*flushed..] {
            *group[*i].result.lock() = Some(Ok(*receipt));
        }
        let newly = (receipts.len() - *flushed) as u64;
        self.stats.commits.fetch_add(newly, Ordering::Relaxed);
        *flushed = receipts.len();
    }

    /// Poisons the log and fails every member not yet completed.
    fn fail_from(&self, group: &[Arc<Pending>], e: Error) {
        let cause = e.to_string();
        self.poison.set(cause.clone());
        let mut first = Some(e);
        for p in group {
            let mut result = p.result.lock();
            if result.is_none() {
                let err = first.take().unwrap_or_else(|| self.poisoned(cause.clone()));
                *result = Some(Err(err));
            }
        }
    }

    /// Writes `buf` at `offset` of the active segment (and syncs), then publishes it.
    fn flush(&self, w: &mut Writer, buf: &[u8], offset: u64, sparse: &[(u64, u64)]) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let file = &w.active.file;
        let end = offset + buf.len() as u64;
        let prealloc = self.config.preallocate_bytes.as_u64();
        if prealloc > 0 && end > w.prealloc_end && (buf.len() as u64) <= prealloc / 16 {
            // Zero the next stretch now; the group's fdatasync below makes it durable together
            // with the data, so only one sync per `preallocate-bytes` journals a size change.
            // Only for small writes: their syncs are dominated by that journal commit, while
            // large writes amortise it and would pay double bandwidth for the zeros (measured:
            // 16 writers x 100 events ran at 445k events/s zeroing ahead, 847k without).
            let to = end + prealloc;
            zero_range(file.as_ref(), w.prealloc_end.max(end), to)
                .map_err(|e| Error::io("preallocate", &w.active.path, e))?;
            w.prealloc_end = to;
        }
        let result = match self.config.durability {
            Durability::SyncData => file
                .write_all_at_and_sync(buf, offset)
                .map_err(|e| Error::io("write+fdatasync", &w.active.path, e)),
            Durability::Buffered => file
                .write_all_at(buf, offset)
                .map_err(|e| Error::io("write", &w.active.path, e)),
        };
        if let Err(e) = result {
            // The bytes may be partly on disk; the writer state still says they are not. The
            // log is poisoned, and a reopen truncates whatever incomplete commit landed.
            w.write_offset = offset;
            return Err(e);
        }
        self.stats.groups.fetch_add(1, Ordering::Relaxed);
        if self.config.durability == Durability::SyncData {
            self.stats.data_syncs.fetch_add(1, Ordering::Relaxed);
        }
        w.active.publish(w.write_offset, w.next_seq, sparse);
        let events = w.next_seq.0 - self.visible_next.load(Ordering::Relaxed);
        self.stats.events.fetch_add(events, Ordering::Relaxed);
        if std::mem::take(&mut w.unpublished_aggregate) {
            // Before the end moves (Release below): see `aggregate_end`.
            self.aggregate_end.store(w.next_seq.0, Ordering::Relaxed);
        }
        self.visible_next.store(w.next_seq.0, Ordering::Release);
        self.tail.notify(usize::MAX);
        if let Some(hook) = &self.on_publish {
            hook(self.tenant, self.scope, w.next_seq);
        }
        Ok(())
    }

    /// Starts a new active segment at the writer's next sequence number.
    fn roll(&self, w: &mut Writer) -> Result<()> {
        if self.config.durability == Durability::Buffered {
            // A full segment is never left with unsynced bytes: recovery requires every
            // segment but the last to be whole.
            w.active
                .file
                .sync_data()
                .map_err(|e| Error::io("fdatasync", &w.active.path, e))?;
        }
        let raw = create_raw_segment(
            self.io.as_ref(),
            &self.dir,
            self.tenant,
            self.scope,
            w.next_seq,
        )?;
        self.segments.write().push(Segment::Raw(Arc::clone(&raw)));
        let full = std::mem::replace(&mut w.active, raw);
        w.write_offset = HEADER_LEN as u64;
        w.prealloc_end = HEADER_LEN as u64;
        w.last_sparse_offset = None;
        self.stats.rolls.fetch_add(1, Ordering::Relaxed);
        self.queue_seal(full);
        Ok(())
    }

    fn queue_seal(&self, raw: Arc<RawSegment>) {
        if let (Some(sealer), Some(log)) = (&self.sealer, self.me.upgrade()) {
            // The sealer only goes away when the engine shuts down; the raw segment then
            // stays raw and is queued again on the next open.
            sealer.send(SealJob { log, raw });
        }
    }

    /// Seals a full raw segment now and swaps it in for readers. Run by the sealer thread.
    pub(crate) fn seal(&self, raw: &Arc<RawSegment>) -> Result<()> {
        let sealed = seal_segment(
            self.io.as_ref(),
            &self.config,
            &self.dir,
            self.tenant,
            self.scope,
            raw,
        )?;
        {
            let mut segments = self.segments.write();
            if let Some(slot) = segments.iter_mut().find(|s| s.base() == raw.base) {
                *slot = Segment::Sealed(sealed);
            }
        }
        // Readers that still hold the raw segment keep reading it through their open handle.
        self.io
            .remove_file(&raw.path)
            .map_err(|e| Error::io("remove", &raw.path, e))?;
        self.io
            .sync_dir(&self.dir)
            .map_err(|e| Error::io("fsync dir", &self.dir, e))?;
        self.stats.seals.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Bytes of the log on disk, and of that the part in sealed segments.
    pub fn disk_bytes(&self) -> (u64, u64) {
        let segments = self.segments.read();
        let all = segments.iter().map(Segment::disk_bytes).sum();
        let sealed = segments
            .iter()
            .filter(|s| matches!(s, Segment::Sealed(_)))
            .map(Segment::disk_bytes)
            .sum();
        (all, sealed)
    }

    /// Segments in the chain: (base, sealed?).
    pub fn segments(&self) -> Vec<(EventLogSequenceNumber, bool)> {
        self.segments
            .read()
            .iter()
            .map(|s| (s.base(), matches!(s, Segment::Sealed(_))))
            .collect()
    }

    fn segment_for(&self, seq: EventLogSequenceNumber) -> Option<Segment> {
        let segments = self.segments.read();
        let i = segments.partition_point(|s| s.base() <= seq);
        if i == 0 {
            return None;
        }
        Some(segments[i - 1].clone())
    }

    /// Reads events from `from` on, at most `records_max` of them and about `bytes_max` bytes
    /// of payload (at least one record when any is visible). An empty batch means `from` is
    /// the end of the log.
    pub fn read(
        &self,
        from: EventLogSequenceNumber,
        records_max: usize,
        bytes_max: usize,
    ) -> Result<RecordBatch> {
        let mut batch = RecordBatch::new();
        self.read_into(from, records_max, bytes_max, &mut batch)?;
        Ok(batch)
    }

    /// Like [`read`](Self::read), into a reused batch (cleared first): a catch-up reader that
    /// reuses one batch allocates nothing after the first call.
    pub fn read_into(
        &self,
        from: EventLogSequenceNumber,
        records_max: usize,
        bytes_max: usize,
        batch: &mut RecordBatch,
    ) -> Result<()> {
        self.read_batch(from, records_max, bytes_max, batch, false)
    }

    /// Like [`read_into`](Self::read_into), for reads of a few records at scattered places
    /// (fetching an aggregate): sealed blocks decompressed for it are kept in the store's block
    /// cache (`read-cache-bytes`) for the next such read. Every read uses cached blocks; only
    /// this one adds to the cache, so one catch-up reader cannot evict what others use.
    pub fn read_into_cached(
        &self,
        from: EventLogSequenceNumber,
        records_max: usize,
        bytes_max: usize,
        batch: &mut RecordBatch,
    ) -> Result<()> {
        self.read_batch(from, records_max, bytes_max, batch, true)
    }

    fn read_batch(
        &self,
        from: EventLogSequenceNumber,
        records_max: usize,
        bytes_max: usize,
        batch: &mut RecordBatch,
        fill_cache: bool,
    ) -> Result<()> {
        batch.clear();
        let end = self.next_sequence_number();
        if from > end {
            return Err(Error::BeyondEnd {
                requested: from,
                end,
            });
        }
        let limits = ReadLimits {
            records_max: records_max.max(1),
            bytes_max: bytes_max.max(1),
            payload_max: crate::segment::format::RECORD_BYTES_LIMIT,
            fill_cache,
        };
        let mut next = from;
        while next < end
            && batch.len() < limits.records_max
            && batch.payload_bytes() < limits.bytes_max
        {
            let Some(segment) = self.segment_for(next) else {
                return Err(Error::Corruption {
                    path: self.dir.clone(),
                    offset: 0,
                    what: format!("no segment holds sequence number {next}"),
                });
            };
            let after = match &segment {
                Segment::Raw(raw) => read_raw(raw, next, limits, batch)?,
                Segment::Sealed(sealed) => {
                    read_sealed(sealed, next, limits, batch, self.cache.as_deref())?
                }
            };
            if after == next {
                // The segment had nothing more visible: the end moved under us, or the
                // segment is the active one and we are at its end.
                break;
            }
            next = after;
        }
        Ok(())
    }

    /// Whether no event from `from` up to an end read from
    /// [`next_sequence_number`](Self::next_sequence_number) before this call was applied by an
    /// aggregate, as far as this log knows without reading (it knows for what was published
    /// since it was opened). An indexer of aggregate events skips such stretches; `false` means
    /// "read to find out".
    pub fn no_aggregate_events_from(&self, from: EventLogSequenceNumber) -> bool {
        from.0 >= self.opened_at && self.aggregate_end.load(Ordering::Acquire) <= from.0
    }

    /// Blocks until the event at `seq` is visible, or `timeout` passes; returns whether it is.
    pub fn wait_for(&self, seq: EventLogSequenceNumber, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        loop {
            if self.next_sequence_number() > seq {
                return true;
            }
            // Listen before re-checking, so a publish between check and wait is not missed.
            let listener = self.tail.listen();
            if self.next_sequence_number() > seq {
                return true;
            }
            match deadline {
                None => listener.wait(),
                Some(deadline) => {
                    if listener.wait_deadline(deadline).is_none() {
                        return self.next_sequence_number() > seq;
                    }
                }
            }
        }
    }

    /// Waits (async) until the event at `seq` is visible.
    pub async fn wait_for_async(&self, seq: EventLogSequenceNumber) {
        loop {
            if self.next_sequence_number() > seq {
                return;
            }
            let listener = self.tail.listen();
            if self.next_sequence_number() > seq {
                return;
            }
            listener.await;
        }
    }

    /// A reader that follows the log from `from`, waking on commits.
    pub fn subscribe(self: &Arc<Self>, from: EventLogSequenceNumber) -> TailReader {
        TailReader {
            log: Arc::clone(self),
            next: from,
        }
    }
}

/// Follows a log: catch-up reads, then waits for new commits without polling.
#[derive(Debug)]
pub struct TailReader {
    log: Arc<Log>,
    next: EventLogSequenceNumber,
}

impl TailReader {
    /// The next sequence number this reader will return.
    pub fn position(&self) -> EventLogSequenceNumber {
        self.next
    }

    /// The next batch: returns at once when events are visible, else waits for a commit up
    /// to `timeout` (forever with `None`), returning an empty batch on timeout.
    pub fn next_batch(
        &mut self,
        records_max: usize,
        timeout: Option<Duration>,
    ) -> Result<RecordBatch> {
        if !self.log.wait_for(self.next, timeout) {
            return Ok(RecordBatch::default());
        }
        self.read_available(records_max)
    }

    /// Waits (async) until at least one event is available, then reads what is.
    pub async fn next_batch_async(&mut self, records_max: usize) -> Result<RecordBatch> {
        self.log.wait_for_async(self.next).await;
        self.read_available(records_max)
    }

    fn read_available(&mut self, records_max: usize) -> Result<RecordBatch> {
        let batch = self.log.read(self.next, records_max, 4 << 20)?;
        if let Some(next) = batch.next() {
            self.next = next;
        }
        Ok(batch)
    }
}
