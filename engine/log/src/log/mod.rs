//! One log (a tenant's event log or one of its scoped logs): appends, rolling and sealing,
//! reads and tail subscriptions.
//!
//! The write path has two parts, each in its own module:
//! - [`group_commit`]: the leader/follower barrier. `append` validates and encodes the commit
//!   outside any lock and queues it; the first appender to find no leader active leads, and
//!   the others wait for their results.
//! - [`writer`]: the leader's write. The leader frames the group into one buffer, writes it with
//!   one write and one `fdatasync`, rolls to a new segment when the active one is full, and
//!   publishes the new end to readers before it completes the group's commits.
//!
//! This module holds the log's shared state and the read side. Readers never take the writer
//! lock: they see the end the writer published (`visible_next`) and the segment chain.
//!
//! Invariants:
//! - `segments` is the log's chain, ascending by base with no gaps; only the leader adds to it
//!   (at a roll) and only the sealer swaps a raw segment for its sealed twin;
//! - `visible_next` only grows, and every record below it is published in its segment;
//! - `aggregate_end` is stored before the `visible_next` that covers it (see the field).
//!
//! Bounds: those of [`group_commit`] (the queue) and the read limits each caller passes.

mod group_commit;
mod heal;
mod writer;

pub use self::heal::Healed;

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use event_listener::{Event as Notify, Listener};
use parking_lot::{Mutex, RwLock};

use self::{group_commit::GroupCommit, writer::Writer};
use crate::{
    config::LogConfig,
    error::{Error, Result},
    event::{Commit, EventRef, ExecutionContext},
    ids::{EventLogSequenceNumber, FileOffset, ScopeId, TenantId},
    io::IoEngine,
    poison::Poison,
    segment::{
        cache::BlockCache,
        reader::{read_raw, read_sealed, ReadLimits, RecordBatch, Selection},
        recovery::{recover, RecoveryReport},
        seal::seal_segment,
        RawSegment, Segment,
    },
    spare::Spares,
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
    /// Commits acknowledged (a unit written by `append_all` counts as one).
    pub commits: AtomicU64,
    /// Events acknowledged.
    pub events: AtomicU64,
    /// Groups written (one write each).
    pub groups: AtomicU64,
    /// `fdatasync` calls on data (rolls and seals not counted).
    pub data_syncs: AtomicU64,
    /// Segments rolled.
    pub rolls: AtomicU64,
    /// Rolls whose new segment was a spare (`spare-segments`): zeroed ahead, or recycled.
    pub spare_rolls: AtomicU64,
    /// Rolls of those into the file of a sealed-away segment (a recycled spare).
    pub recycled_rolls: AtomicU64,
    /// Segments sealed.
    pub seals: AtomicU64,
    /// Times the log was healed after a failed write or sync poisoned it.
    pub heals: AtomicU64,
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
    /// Commits waiting for a leader, and who leads.
    group: GroupCommit,
    /// The committer thread that leads for asynchronous appenders, started by the first of
    /// them (an error if it could not be started).
    committer: std::sync::OnceLock<std::result::Result<(), String>>,
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
    /// The store's spare segments, which rolls start their new segment in.
    spares: Option<Arc<Spares>>,
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
        let group = GroupCommit::new(&config);
        let log = Arc::new_cyclic(|me| Log {
            me: me.clone(),
            tenant,
            scope,
            dir,
            io,
            config,
            group,
            committer: std::sync::OnceLock::new(),
            writer: Mutex::new(Writer {
                prealloc_end: recovered
                    .active
                    .file
                    .len()
                    .map_or(recovered.write_offset, FileOffset),
                active: recovered.active,
                write_offset: recovered.write_offset,
                next_seq: recovered.next_seq,
                last_sparse_offset: None,
                small_groups: 0,
                large_groups: 0,
                unpublished_aggregate: false,
            }),
            segments: RwLock::new(recovered.segments),
            visible_next: AtomicU64::new(recovered.next_seq.0),
            tail: Notify::new(),
            poison: Poison::default(),
            sealer,
            spares: shared.spares.clone(),
            on_publish,
            cache,
            stats: LogStats::default(),
            recovery: recovered.report,
            opened_at: recovered.next_seq.0,
            aggregate_end: AtomicU64::new(0),
        });
        for raw in recovered.to_seal {
            log.queue_seal(raw, false);
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

    /// Whether the log takes writes: `Err(Poisoned)` once a write or fsync failed (until it is
    /// healed, [`Log::heal`], or the store is reopened and recovered).
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

    /// Appends a commit; returns once it is durable (or written, in buffered mode). The
    /// events get consecutive sequence numbers; after a crash they are all present or none.
    pub fn append(&self, commit: &Commit) -> Result<CommitReceipt> {
        self.append_all(std::slice::from_ref(commit))
    }

    /// Appends several commits as one atomic unit; returns once it is durable (or written, in
    /// buffered mode). All their events, in order, get consecutive sequence numbers and are
    /// framed as one commit chain (FORMAT.md section 4.3), so after a crash all of them are
    /// present or none. Each event keeps its own commit's occurred time and execution context.
    /// The record and commit byte limits apply to the whole unit. An empty slice, or an empty
    /// commit in it, is `InvalidRequest`. The receipt covers all the events.
    ///
    /// The event horizon uses this: a batch received from a producer holds events of several
    /// producer commits, and must land whole with the subscription position stored for it.
    pub fn append_all(&self, commits: &[Commit]) -> Result<CommitReceipt> {
        self.append_encoded(self.encode(commits)?)
    }

    /// Appends a commit without blocking the caller's thread: the future resolves once the
    /// commit is durable (or written, in buffered mode), as [`Log::append`] returns. The
    /// commit is checked and encoded at once; the future queues it (waiting, without blocking,
    /// while the queue is over its bound) and the log's committer thread writes it with the
    /// group it lands in, blocking appenders' commits included. Dropping the future after it
    /// has queued the commit does not take the commit back.
    pub fn append_async<'a>(
        &'a self,
        commit: &Commit,
    ) -> impl std::future::Future<Output = Result<CommitReceipt>> + Send + 'a {
        self.append_encoded_async(self.encode(std::slice::from_ref(commit)))
    }

    /// Appends one commit of borrowed events (`occurred_ns` and `execution_context` shared by
    /// all), as [`Log::append`] appends an owned one: for a caller that holds the events'
    /// parts elsewhere and would otherwise copy them into a [`Commit`].
    pub fn append_events(
        &self,
        occurred_ns: i64,
        execution_context: &ExecutionContext,
        events: &[EventRef<'_>],
    ) -> Result<CommitReceipt> {
        self.append_encoded(self.encode_events(occurred_ns, execution_context, events)?)
    }

    /// Queues an encoded commit and waits for its group to be written, leading groups while
    /// no other appender does (the blocking twin of `append_encoded_async`).
    fn append_encoded(&self, encoded: writer::EncodedCommit) -> Result<CommitReceipt> {
        self.group.commit(
            encoded,
            || self.check_writable(),
            |group| self.write_group(group),
        )
    }

    /// Appends one commit of borrowed events without blocking the caller's thread, as
    /// [`Log::append_async`] appends an owned one. The events are encoded at once.
    pub fn append_events_async<'a>(
        &'a self,
        occurred_ns: i64,
        execution_context: &ExecutionContext,
        events: &[EventRef<'_>],
    ) -> impl std::future::Future<Output = Result<CommitReceipt>> + Send + 'a {
        self.append_encoded_async(self.encode_events(occurred_ns, execution_context, events))
    }

    /// Queues a commit encoded already (or fails with why it could not be) and waits for it
    /// without blocking.
    async fn append_encoded_async(
        &self,
        encoded: Result<writer::EncodedCommit>,
    ) -> Result<CommitReceipt> {
        let mut encoded = Some(encoded?);
        self.start_committer()?;
        let pending = std::future::poll_fn(|cx| {
            self.group
                .enqueue(&mut encoded, || self.check_writable(), cx)
        })
        .await?;
        std::future::poll_fn(|cx| pending.poll_result(cx)).await
    }

    /// Starts the committer thread once.
    fn start_committer(&self) -> Result<()> {
        let started = self.committer.get_or_init(|| {
            let handle = self.group.committer_handle();
            let me = self.me.clone();
            std::thread::Builder::new()
                .name("annals-commit".into())
                .spawn(move || {
                    handle.run(
                        || me.upgrade(),
                        |log: &Arc<Log>, group| log.write_group(group),
                        || Error::InvalidRequest("the log was closed".to_owned()),
                    );
                })
                .map(drop)
                .map_err(|e| e.to_string())
        });
        started.clone().map_err(|cause| {
            Error::io(
                "start the committer thread of",
                &self.dir,
                std::io::Error::other(cause),
            )
        })
    }

    /// Queues a full segment for sealing. `announced`: the roll that filled it already told
    /// the spares it may come back ([`Self::announce_seal`]).
    fn queue_seal(&self, raw: Arc<RawSegment>, announced: bool) {
        if !announced {
            self.announce_seal();
        }
        if let (Some(sealer), Some(log)) = (&self.sealer, self.me.upgrade()) {
            // The sealer only goes away when the engine shuts down; the raw segment then
            // stays raw and is queued again on the next open.
            sealer.send(SealJob { log, raw });
        } else {
            self.announced_seal_done();
        }
    }

    /// Tells the spares that a full segment is about to be queued for sealing, so that the
    /// zeroer writes no zeros for the spare its file may become.
    fn announce_seal(&self) {
        if let (Some(_), Some(spares)) = (&self.sealer, &self.spares) {
            spares.expect_recycled();
        }
    }

    /// The segment of an [`Self::announce_seal`] was sealed (or failed to be), or was not
    /// queued after all: it no longer counts as a spare on its way.
    fn announced_seal_done(&self) {
        if let (Some(_), Some(spares)) = (&self.sealer, &self.spares) {
            spares.expected_recycled_done();
        }
    }

    /// Seals a full raw segment now and swaps it in for readers. Run by the sealer thread.
    pub(crate) fn seal(&self, raw: &Arc<RawSegment>) -> Result<()> {
        let sealed = self.seal_and_swap(raw);
        self.announced_seal_done();
        sealed
    }

    fn seal_and_swap(&self, raw: &Arc<RawSegment>) -> Result<()> {
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
            if let Some(slot) = segments.iter_mut().find(|s| s.id() == raw.id) {
                *slot = Segment::Sealed(sealed);
            }
        }
        self.stats.seals.fetch_add(1, Ordering::Relaxed);
        // A file nobody else holds any more (readers that still hold the raw segment keep
        // reading it through their open handle, so theirs is deleted) may start a later
        // segment as a spare: its blocks exist, so appends to it journal nothing.
        if let (Some(spares), Some(held_before), 1) =
            (&self.spares, &raw.held_before, Arc::strong_count(raw))
        {
            let file = Arc::clone(&raw.file);
            let owner = (self.tenant, raw.id.base());
            match spares.recycle(&self.dir, &raw.path, file, owner, held_before) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                // The seal itself succeeded: the file is deleted as it would have been.
                Err(e) => tracing::warn!(
                    error = %e,
                    "keeping a sealed-away segment's file as a spare failed; it is deleted"
                ),
            }
        }
        // Gone already when recycling failed after its rename (it deletes the spare then).
        match self.io.remove_file(&raw.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io("remove", &raw.path, e));
            }
            _ => {}
        }
        self.io
            .sync_dir(&self.dir)
            .map_err(|e| Error::io("fsync dir", &self.dir, e))?;
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
        self.read_batch(from, Selection::All, records_max, bytes_max, batch, false)
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
        self.read_batch(from, Selection::All, records_max, bytes_max, batch, true)
    }

    /// Like [`read_into_cached`](Self::read_into_cached), for the records `wanted` only
    /// (ascending, no repeats; about `bytes_max` bytes of their payload, at least one record):
    /// the records between them are stepped over, their frames' structure checked but neither
    /// their checksums computed nor their payloads kept as records. For reads of a few records
    /// spread over a stretch of the log (an aggregate's events). Fails with `InvalidRequest`
    /// unless `wanted` ascends strictly.
    pub fn read_selected_into(
        &self,
        wanted: &[EventLogSequenceNumber],
        bytes_max: usize,
        batch: &mut RecordBatch,
    ) -> Result<()> {
        batch.clear();
        if wanted.windows(2).any(|pair| pair[0] >= pair[1]) {
            return Err(Error::InvalidRequest(
                "the records wanted must ascend without repeats".into(),
            ));
        }
        let Some(&first) = wanted.first() else {
            return Ok(());
        };
        self.read_batch(
            first,
            Selection::Only(wanted),
            wanted.len(),
            bytes_max,
            batch,
            true,
        )
    }

    fn read_batch(
        &self,
        from: EventLogSequenceNumber,
        select: Selection<'_>,
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
            end,
            records_max: records_max.max(1),
            bytes_max: bytes_max.max(1),
            payload_max: crate::segment::format::RECORD_BYTES_LIMIT,
            fill_cache,
        };
        let mut next = from;
        while let Some(want) = select.at_or_after(next).filter(|want| {
            *want < end
                && batch.len() < limits.records_max
                && batch.payload_bytes() < limits.bytes_max
        }) {
            let Some(segment) = self.segment_for(want) else {
                return Err(Error::Corruption {
                    path: self.dir.clone(),
                    offset: 0,
                    what: format!("no segment holds sequence number {want}"),
                });
            };
            let after = match &segment {
                Segment::Raw(raw) => read_raw(raw, want, select, limits, batch)?,
                Segment::Sealed(sealed) => {
                    read_sealed(sealed, want, select, limits, batch, self.cache.as_deref())?
                }
            };
            if after <= want {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use crate::{Commit, ExecutionContext, LogConfig, LogStore, TenantId, UncommittedEvent};

    /// The writer shows a group in its segment before it moves the log's end: a read in
    /// between returns only what the log's end covers, and a read from that end is empty (not
    /// beyond the end).
    #[test]
    fn a_read_returns_nothing_past_the_logs_end() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(LogConfig::new(dir.path())).unwrap();
        let log = store
            .tenant_or_create(TenantId(uuid::Uuid::from_u128(1)))
            .unwrap()
            .event_log()
            .unwrap();
        let commit = |n| Commit {
            occurred_ns: 1,
            execution_context: ExecutionContext::default(),
            events: (0..n)
                .map(|_| UncommittedEvent {
                    event_source_id: "s".into(),
                    content: "{}".into(),
                    ..UncommittedEvent::default()
                })
                .collect(),
        };
        log.append(&commit(2)).unwrap();
        log.append(&commit(3)).unwrap();
        // As between the writer's two publishes: the segment shows 5 records, the log 2.
        log.visible_next.store(2, Ordering::Release);
        let batch = log.read(EventLogSequenceNumber(0), 1000, 1 << 20).unwrap();
        assert_eq!(batch.len(), 2);
        assert_eq!(batch.next(), Some(EventLogSequenceNumber(2)));
        let at_end = log.read(EventLogSequenceNumber(2), 1000, 1 << 20).unwrap();
        assert!(at_end.is_empty());
        log.visible_next.store(5, Ordering::Release);
        let batch = log.read(EventLogSequenceNumber(0), 1000, 1 << 20).unwrap();
        assert_eq!(batch.len(), 5);
    }
}
