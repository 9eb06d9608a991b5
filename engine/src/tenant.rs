//! A tenant: its event log and scoped logs, and its column family of indexes and state.
//!
//! A `Tenant` names its own column family and its own directory and nothing else; every key
//! it reads or writes goes to that family, so no call through one tenant's handle can reach
//! another's data. After the tenant is deleted, every call through an old handle fails with
//! [`Error::TenantUnknown`].

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use annals_log::{
    decode_payload, payload_applied_by_aggregate, AppliedByAggregate, Commit, CommitReceipt, Error,
    Event, EventLogSequenceNumber, EventType, Log, RecordBatch, Result, ScopeId, TenantId,
    TenantLogs, UncommittedEvent,
};
use parking_lot::{Condvar, Mutex};
use rocksdb::{BoundColumnFamily, WriteBatch, WriteOptions};
use uuid::Uuid;

use crate::{
    aggregate::{budget_size, AggregateCommit, AggregateCommitReceipt, AggregateEvents},
    db::{self, bad_state, rocks},
    engine::Shared,
    keys,
    locks::KeyLocks,
    state::{
        StateBatch, StreamProcessorId, StreamProcessorState, SubscriptionId, SubscriptionState,
    },
};

/// One entry of a filtered or public stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    /// Position in the stream (0-based, gapless).
    pub position: u64,
    /// The event it refers to in the log of the stream's scope.
    pub event_log_sequence_number: EventLogSequenceNumber,
    /// The partition the filter put it in.
    pub partition: String,
}

/// What opening a tenant did to bring its index up to its log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexRecovery {
    /// The index's recovery point when the tenant was opened.
    pub from: EventLogSequenceNumber,
    /// The log's end, which the index reached.
    pub to: EventLogSequenceNumber,
    /// Whether the derived keys were dropped and rebuilt from the start of the log (a new or
    /// lost index, an index of another format, or one ahead of its log).
    pub rebuilt: bool,
    /// Why it was rebuilt, when it was.
    pub reason: Option<String>,
    /// How long it took.
    pub elapsed: Duration,
}

/// Aggregates committed but not yet indexed: their version after the commit and the log
/// position after it (once the index passes that position, RocksDB has the version).
type PendingVersions = HashMap<Vec<u8>, (u64, u64)>;

/// One tenant of an engine.
pub struct Tenant {
    id: TenantId,
    cf_name: String,
    shared: Arc<Shared>,
    logs: Arc<TenantLogs>,
    event_log: Arc<Log>,
    /// The event log is indexed up to here (exclusive).
    indexed: AtomicU64,
    /// Signalled (under `progress`) when `indexed` moves or indexing fails.
    progress: Mutex<Option<String>>,
    progressed: Condvar,
    /// Serialises index steps; holds the step's reusable read buffer.
    indexing: Mutex<RecordBatch>,
    pending: Mutex<PendingVersions>,
    aggregate_locks: KeyLocks,
    stream_locks: KeyLocks,
    deleted: AtomicBool,
    recovery: IndexRecovery,
}

impl std::fmt::Debug for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenant")
            .field("id", &self.id)
            .field("indexed", &self.indexed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

const INDEX_READ_BYTES_MAX: usize = 4 << 20;
/// Index entries a fetch reads from RocksDB at a time.
const FETCH_ENTRIES_STEP: usize = 1024;
/// A fetch reads a run of the log in one call when its events lie this close together.
const FETCH_READ_WINDOW: u64 = 256;
/// A bound on one such read (the window's events are read whatever their size).
const FETCH_READ_BYTES_MAX: usize = 64 << 20;

impl Tenant {
    /// Opens the tenant's event log and brings its index up to the log's end.
    pub(crate) fn open(
        id: TenantId,
        cf_name: String,
        shared: Arc<Shared>,
        logs: Arc<TenantLogs>,
    ) -> Result<Tenant> {
        let event_log = logs.event_log()?;
        let mut tenant = Tenant {
            id,
            cf_name,
            shared,
            logs,
            event_log,
            indexed: AtomicU64::new(0),
            progress: Mutex::new(None),
            progressed: Condvar::new(),
            indexing: Mutex::new(RecordBatch::new()),
            pending: Mutex::new(HashMap::new()),
            aggregate_locks: KeyLocks::default(),
            stream_locks: KeyLocks::default(),
            deleted: AtomicBool::new(false),
            recovery: IndexRecovery::default(),
        };
        tenant.recovery = tenant.catch_up()?;
        Ok(tenant)
    }

    /// The tenant's id.
    pub fn id(&self) -> TenantId {
        self.id
    }

    /// What opening did to bring the index up to the log.
    pub fn index_recovery(&self) -> &IndexRecovery {
        &self.recovery
    }

    /// The event log, for reading and subscribing (commits go through [`Tenant::commit`] and
    /// [`Tenant::commit_for_aggregate`]).
    pub fn event_log(&self) -> Result<Arc<Log>> {
        self.check_live()?;
        Ok(Arc::clone(&self.event_log))
    }

    /// The log of an event-horizon scope, created on first use.
    pub fn scoped_log(&self, scope: ScopeId) -> Result<Arc<Log>> {
        self.check_live()?;
        self.logs.log(scope)
    }

    /// The scopes that have a log.
    pub fn scopes(&self) -> Result<Vec<ScopeId>> {
        self.check_live()?;
        self.logs.scopes()
    }

    /// How far the index has read the event log.
    pub fn indexed_up_to(&self) -> EventLogSequenceNumber {
        EventLogSequenceNumber(self.indexed.load(Ordering::Acquire))
    }

    pub(crate) fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::Release);
        let _guard = self.progress.lock();
        self.progressed.notify_all();
    }

    /// Waits for a running index step to end (used by delete).
    pub(crate) fn quiesce(&self) {
        drop(self.indexing.lock());
    }

    fn check_live(&self) -> Result<()> {
        if self.deleted.load(Ordering::Acquire) {
            return Err(Error::TenantUnknown(self.id));
        }
        Ok(())
    }

    fn cf(&self) -> Result<Arc<BoundColumnFamily<'_>>> {
        self.check_live()?;
        self.shared
            .db
            .cf_handle(&self.cf_name)
            .ok_or(Error::TenantUnknown(self.id))
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let cf = self.cf()?;
        self.shared.db.get_cf(&cf, key).map_err(rocks("read"))
    }

    fn get_u64(&self, key: &[u8]) -> Result<Option<u64>> {
        self.get(key)?
            .map(|v| {
                v.as_slice()
                    .try_into()
                    .map(u64::from_le_bytes)
                    .map_err(|_| Error::BadState {
                        key: String::from_utf8_lossy(key).into_owned(),
                        detail: format!("{} bytes where 8 were expected", v.len()),
                    })
            })
            .transpose()
    }

    /// Key-value pairs of `prefix`, from `start` (a key with that prefix) on, at most `max`.
    fn scan(&self, prefix: &[u8], start: &[u8], max: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        db::scan(&self.shared.db, &self.cf()?, prefix, start, max)
    }

    /// Writes index entries derived from the log, with their recovery point, bypassing the
    /// WAL: the log is the truth, and entries and recovery point share a batch and so a
    /// memtable, so a crash loses both together and reopening re-indexes from the recovery
    /// point that did survive. State keys (not derived) always go through the WAL.
    fn write_derived(&self, batch: WriteBatch) -> Result<()> {
        let mut options = WriteOptions::default();
        options.disable_wal(true);
        self.write_with(batch, &options)
    }

    fn write(&self, batch: WriteBatch, sync: bool) -> Result<()> {
        let mut options = WriteOptions::default();
        options.set_sync(sync);
        self.write_with(batch, &options)
    }

    fn write_with(&self, batch: WriteBatch, options: &WriteOptions) -> Result<()> {
        self.shared
            .db
            .write_opt(batch, options)
            .map_err(rocks("write"))
    }

    // ---- indexing -------------------------------------------------------------------------

    /// Brings the index up to the log's end at open: re-indexes only the tail past the stored
    /// recovery point, or everything when the index is missing, of another format, or ahead
    /// of the log (the log is the truth).
    fn catch_up(&self) -> Result<IndexRecovery> {
        let started = Instant::now();
        let end = self.event_log.next_sequence_number();
        let format = self.get(keys::META_FORMAT)?;
        let stored = self.get_u64(keys::META_INDEXED)?;
        let expected_format = keys::INDEX_FORMAT.to_le_bytes();
        let reason = match (format.as_deref(), stored) {
            // A new tenant: nothing to rebuild, but the format is stamped below.
            (None, None) if end.0 == 0 => None,
            (None, None) => Some("no index for this tenant".to_owned()),
            (Some(f), _) if f != expected_format => Some(format!(
                "index format {f:?}, this build writes {expected_format:?}"
            )),
            (_, None) => Some("the index has no recovery point".to_owned()),
            (_, Some(at)) if at > end.0 => Some(format!(
                "the index reaches sequence number {at} but the log ends at {end}"
            )),
            _ => None,
        };
        let from = if let Some(reason) = &reason {
            tracing::warn!(tenant = %self.id, %reason, "rebuilding the tenant's index from its log");
            self.drop_derived()?;
            0
        } else if format.is_none() {
            self.drop_derived()?;
            0
        } else {
            stored.unwrap_or(0)
        };
        self.indexed.store(from, Ordering::Release);
        let mut last_report = Instant::now();
        while self.index_step()? {
            if last_report.elapsed() >= Duration::from_secs(1) {
                last_report = Instant::now();
                let at = self.indexed.load(Ordering::Acquire);
                tracing::info!(
                    tenant = %self.id,
                    at,
                    end = end.0,
                    percent = (at.saturating_sub(from) * 100) / end.0.saturating_sub(from).max(1),
                    "indexing the event log"
                );
            }
        }
        let to = self.indexed_up_to();
        let recovery = IndexRecovery {
            from: EventLogSequenceNumber(from),
            to,
            rebuilt: reason.is_some(),
            reason,
            elapsed: started.elapsed(),
        };
        if to.0 > from {
            tracing::info!(tenant = %self.id, from, to = to.0, elapsed_ms = recovery.elapsed.as_millis() as u64, "index caught up with the log");
        }
        Ok(recovery)
    }

    /// Drops every key derived from the log and stamps the format.
    fn drop_derived(&self) -> Result<()> {
        let cf = self.cf()?;
        let mut batch = WriteBatch::default();
        for kind in [keys::AGGREGATE, keys::EVENT_SOURCE] {
            batch.delete_range_cf(&cf, [kind], [kind + 1]);
        }
        batch.put_cf(&cf, keys::META_INDEXED, 0u64.to_le_bytes());
        batch.put_cf(&cf, keys::META_FORMAT, keys::INDEX_FORMAT.to_le_bytes());
        drop(cf);
        self.write(batch, true)
    }

    /// The indexer thread's step: [`index_step`](Self::index_step), unless a test holds the
    /// indexer (checked under the step's lock, so a hold that has quiesced the tenant is never
    /// overtaken by a step already under way).
    pub(crate) fn background_index_step(&self) -> Result<bool> {
        let mut batch = self.indexing.lock();
        #[cfg(any(test, feature = "test-util"))]
        if self
            .shared
            .indexer_held
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return Ok(true);
        }
        self.index_step_locked(&mut batch)
    }

    /// Indexes the next stretch of the event log; returns whether more remains.
    pub(crate) fn index_step(&self) -> Result<bool> {
        let mut batch = self.indexing.lock();
        self.index_step_locked(&mut batch)
    }

    fn index_step_locked(&self, batch: &mut RecordBatch) -> Result<bool> {
        self.check_live()?;
        if self.progress.lock().is_some() {
            // Failed before: stays failed (and quiet) until the tenant is reopened.
            return Ok(false);
        }
        let from = EventLogSequenceNumber(self.indexed.load(Ordering::Acquire));
        let end = self.event_log.next_sequence_number();
        if from >= end {
            return Ok(false);
        }
        let result = if self.event_log.no_aggregate_events_from(from) {
            // Nothing to index: only the recovery point moves.
            self.advance_recovery_point(end)
        } else {
            self.index_range(from, batch)
        };
        let next = match result {
            Ok(next) => next,
            Err(e) => {
                *self.progress.lock() = Some(e.to_string());
                self.progressed.notify_all();
                return Err(e);
            }
        };
        {
            let _guard = self.progress.lock();
            self.indexed.store(next.0, Ordering::Release);
            self.progressed.notify_all();
        }
        self.pending.lock().retain(|_, (_, after)| *after > next.0);
        Ok(next < end)
    }

    fn index_range(
        &self,
        from: EventLogSequenceNumber,
        batch: &mut RecordBatch,
    ) -> Result<EventLogSequenceNumber> {
        let records_max = self.shared.config.index.indexer_batch_events;
        self.event_log
            .read_into(from, records_max, INDEX_READ_BYTES_MAX, batch)?;
        let Some(next) = batch.next() else {
            return Ok(from);
        };
        let cf = self.cf()?;
        let mut write = WriteBatch::default();
        let mut versions: HashMap<Vec<u8>, u64> = HashMap::new();
        for (seq, payload) in batch.payloads() {
            if !payload_applied_by_aggregate(payload) {
                continue;
            }
            let view = decode_payload(seq, payload).map_err(|e| Error::UndecodableRecord {
                sequence_number: seq,
                what: e.0,
            })?;
            let Some(aggregate) = view.aggregate else {
                continue;
            };
            write.put_cf(
                &cf,
                keys::event_source_entry(
                    aggregate.root_id,
                    view.event_source_id,
                    aggregate.version,
                ),
                entry_value(seq, view.event_type),
            );
            versions.insert(
                keys::aggregate(aggregate.root_id, view.event_source_id),
                aggregate.version + 1,
            );
        }
        for (key, version) in versions {
            write.put_cf(&cf, key, version.to_le_bytes());
        }
        drop(cf);
        self.write_index(write, next)
    }

    fn advance_recovery_point(&self, to: EventLogSequenceNumber) -> Result<EventLogSequenceNumber> {
        self.write_index(WriteBatch::default(), to)
    }

    /// Writes index entries with the recovery point `to` in the same batch; returns `to`.
    fn write_index(
        &self,
        mut write: WriteBatch,
        to: EventLogSequenceNumber,
    ) -> Result<EventLogSequenceNumber> {
        write.put_cf(&self.cf()?, keys::META_INDEXED, to.0.to_le_bytes());
        self.write_derived(write)?;
        Ok(to)
    }

    /// Blocks until the index has reached `target` (or failed).
    fn wait_indexed(&self, target: EventLogSequenceNumber) -> Result<()> {
        let mut failure = self.progress.lock();
        while self.indexed.load(Ordering::Acquire) < target.0 {
            self.check_live()?;
            if let Some(reason) = failure.as_ref() {
                return Err(Error::Index {
                    op: "index the event log",
                    detail: reason.clone(),
                });
            }
            // The indexer is woken by every publish; the timeout only guards against a
            // missed wake-up costing more than a moment.
            self.progressed
                .wait_for(&mut failure, Duration::from_millis(100));
            if self.indexed.load(Ordering::Acquire) < target.0 && failure.is_none() {
                self.shared.wake_indexer(self.id);
            }
        }
        Ok(())
    }

    fn index_failure(&self) -> Result<()> {
        match self.progress.lock().as_ref() {
            Some(reason) => Err(Error::Index {
                op: "index the event log",
                detail: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Whether the tenant serves everything: not deleted, its event log takes writes (not
    /// poisoned by a failed write or fsync), and its indexer has not failed.
    pub fn check_healthy(&self) -> Result<()> {
        self.check_live()?;
        self.event_log.check_writable()?;
        self.index_failure()
    }

    // ---- commits ----------------------------------------------------------------------------

    /// Commits events to the event log; returns once they are durable. Events must not claim
    /// to be applied by an aggregate (use [`Tenant::commit_for_aggregate`]) nor to come over
    /// the event horizon (use [`Tenant::commit_to_scope`]).
    pub fn commit(&self, commit: &Commit) -> Result<CommitReceipt> {
        self.check_live()?;
        check_events(commit)?;
        if commit.events.iter().any(|e| e.event_horizon.is_some()) {
            return Err(Error::InvalidRequest(
                "events received over the event horizon go to a scoped log".into(),
            ));
        }
        self.event_log.append(commit)
    }

    /// Commits events received over the event horizon to the log of `scope` (not the default
    /// scope).
    pub fn commit_to_scope(&self, scope: ScopeId, commit: &Commit) -> Result<CommitReceipt> {
        self.check_live()?;
        if scope == ScopeId::DEFAULT {
            return Err(Error::InvalidRequest(
                "the default scope is the event log: use commit".into(),
            ));
        }
        check_events(commit)?;
        self.logs.log(scope)?.append(commit)
    }

    /// Commits events for an aggregate if it is still at `expected_version`; otherwise fails
    /// with [`Error::WrongExpectedVersion`] carrying both versions, and writes nothing.
    /// Commits to the same aggregate are serialised (the check and the durable append are one
    /// step for them); commits to different aggregates share group commits.
    pub fn commit_for_aggregate(&self, commit: AggregateCommit) -> Result<AggregateCommitReceipt> {
        self.check_live()?;
        self.index_failure()?;
        if commit.events.is_empty() {
            return Err(Error::InvalidRequest(
                "a commit needs at least one event".into(),
            ));
        }
        let count = commit.events.len() as u64;
        let expected = commit.expected_version;
        if expected.checked_add(count).is_none() {
            return Err(Error::InvalidRequest(format!(
                "expected version {expected} plus {count} events overflows"
            )));
        }
        let root = commit.aggregate_root;
        let key = keys::aggregate(root, &commit.event_source_id);
        let _held = self.aggregate_locks.lock(key.clone());
        let actual = self.version_of(&key)?;
        if actual != expected {
            return Err(Error::WrongExpectedVersion { expected, actual });
        }
        let event_source_id = commit.event_source_id;
        let events = commit
            .events
            .into_iter()
            .zip(expected..)
            .map(|(event, version)| UncommittedEvent {
                event_source_id: event_source_id.clone(),
                event_type: event.event_type,
                public: event.public,
                content: event.content,
                aggregate: Some(AppliedByAggregate {
                    root_id: root,
                    version,
                }),
                event_horizon: None,
            })
            .collect();
        let receipt = self.event_log.append(&Commit {
            occurred_ns: commit.occurred_ns,
            execution_context: commit.execution_context,
            events,
        })?;
        let after = receipt.next().0;
        if self.indexed.load(Ordering::Acquire) < after {
            // Until the indexer passes the commit, this entry is the aggregate's version. If
            // the indexer got there first, the entry is merely redundant until its next step.
            self.pending.lock().insert(key, (expected + count, after));
        }
        Ok(AggregateCommitReceipt {
            first: receipt.first,
            count,
            version_before: expected,
        })
    }

    /// The aggregate's version for a caller that holds its lock (or accepts a racing value).
    fn version_of(&self, key: &[u8]) -> Result<u64> {
        if let Some((version, _)) = self.pending.lock().get(key) {
            return Ok(*version);
        }
        // Not pending: either never committed since open, or indexed; only a holder of the
        // aggregate's lock adds a pending entry, and the indexer writes before it removes one.
        Ok(self.get_u64(key)?.unwrap_or(0))
    }

    /// The number of events the aggregate has applied.
    pub fn aggregate_version(&self, aggregate_root: Uuid, event_source_id: &str) -> Result<u64> {
        self.check_live()?;
        self.version_of(&keys::aggregate(aggregate_root, event_source_id))
    }

    /// The instances of aggregate roots (all roots, or only `aggregate_root`): root id, event
    /// source id and the number of events applied, ordered by root then event source. Sees
    /// every commit acknowledged before the call.
    pub fn aggregate_instances(
        &self,
        aggregate_root: Option<Uuid>,
    ) -> Result<Vec<(Uuid, String, u64)>> {
        self.check_live()?;
        self.wait_indexed(self.event_log.next_sequence_number())?;
        let mut prefix = vec![keys::AGGREGATE];
        if let Some(root) = aggregate_root {
            prefix.extend_from_slice(root.as_bytes());
        }
        self.scan(&prefix, &prefix, usize::MAX)?
            .into_iter()
            .map(|(k, v)| {
                let instance = keys::split_aggregate(&k)
                    .ok_or_else(|| bad_state(&k, "an aggregate key holds a root and a string"))?;
                let version = v
                    .as_slice()
                    .try_into()
                    .map(u64::from_le_bytes)
                    .map_err(|_| bad_state(&k, "an aggregate version has 8 bytes"))?;
                Ok((instance.0, instance.1, version))
            })
            .collect()
    }

    /// Every event of an aggregate instance (only the given event type ids, unless empty), in
    /// version order. Sees every commit acknowledged before the call.
    pub fn fetch_for_aggregate(
        &self,
        aggregate_root: Uuid,
        event_source_id: &str,
        event_types: &[Uuid],
    ) -> Result<AggregateEvents> {
        let mut batches = self.fetch_for_aggregate_in_batches(
            aggregate_root,
            event_source_id,
            event_types,
            usize::MAX,
        )?;
        let mut events = Vec::new();
        for batch in &mut batches {
            events.extend(batch?);
        }
        Ok(AggregateEvents {
            aggregate_root,
            event_source_id: event_source_id.to_owned(),
            current_version: batches.current_version(),
            events,
        })
    }

    /// Like [`fetch_for_aggregate`](Self::fetch_for_aggregate), in batches of about
    /// `batch_bytes_max` bytes each (at least one event per batch), read as they are taken.
    pub fn fetch_for_aggregate_in_batches(
        &self,
        aggregate_root: Uuid,
        event_source_id: &str,
        event_types: &[Uuid],
        batch_bytes_max: usize,
    ) -> Result<AggregateBatches<'_>> {
        self.check_live()?;
        // Read-your-writes: wait until the index covers everything acknowledged so far.
        self.wait_indexed(self.event_log.next_sequence_number())?;
        let current_version = self
            .get_u64(&keys::aggregate(aggregate_root, event_source_id))?
            .unwrap_or(0);
        Ok(AggregateBatches {
            tenant: self,
            root: aggregate_root,
            event_source_id: event_source_id.to_owned(),
            event_types: event_types.to_vec(),
            current_version,
            next_version: 0,
            entries: VecDeque::new(),
            batch_bytes_max: batch_bytes_max.max(1),
            records: RecordBatch::new(),
        })
    }

    // ---- streams ----------------------------------------------------------------------------

    /// The next position of a stream (its length).
    pub fn stream_end(&self, scope: ScopeId, stream: Uuid) -> Result<u64> {
        Ok(self
            .get_u64(&keys::stream_end(scope.0, stream))?
            .unwrap_or(0))
    }

    /// Appends entries (event, partition) to a stream at `expected_position`, durably. Fails
    /// with [`Error::WrongStreamPosition`] and writes nothing if the stream's end is not
    /// `expected_position`, so a writer that resumes from a stale position cannot duplicate.
    /// Returns the new end.
    pub fn append_to_stream(
        &self,
        scope: ScopeId,
        stream: Uuid,
        expected_position: u64,
        entries: &[(EventLogSequenceNumber, &str)],
    ) -> Result<u64> {
        self.append_to_stream_with_state(
            scope,
            stream,
            expected_position,
            entries,
            StateBatch::new(),
        )
    }

    /// Like [`append_to_stream`](Self::append_to_stream), and writes `state` in the same
    /// atomic, durable write: a filter stores the entries it wrote and the position it reached
    /// together, so after a crash it resumes exactly after what it wrote (never writing an
    /// entry twice, never skipping one). Nothing is written when the position check fails.
    pub fn append_to_stream_with_state(
        &self,
        scope: ScopeId,
        stream: Uuid,
        expected_position: u64,
        entries: &[(EventLogSequenceNumber, &str)],
        state: StateBatch,
    ) -> Result<u64> {
        self.check_live()?;
        let end_key = keys::stream_end(scope.0, stream);
        let _held = self.stream_locks.lock(end_key.clone());
        let actual = self.get_u64(&end_key)?.unwrap_or(0);
        if actual != expected_position {
            return Err(Error::WrongStreamPosition {
                expected: expected_position,
                actual,
            });
        }
        if entries.is_empty() && state.is_empty() {
            return Ok(actual);
        }
        let cf = self.cf()?;
        let mut batch = WriteBatch::default();
        for key in state.deletes {
            batch.delete_cf(&cf, key);
        }
        for (key, value) in state.puts {
            batch.put_cf(&cf, key, value);
        }
        let mut position = actual;
        for (seq, partition) in entries {
            let mut value = seq.0.to_le_bytes().to_vec();
            value.extend_from_slice(partition.as_bytes());
            batch.put_cf(&cf, keys::stream_entry(scope.0, stream, position), value);
            batch.put_cf(
                &cf,
                keys::stream_partition_entry(scope.0, stream, partition, position),
                seq.0.to_le_bytes(),
            );
            position += 1;
        }
        batch.put_cf(&cf, &end_key, position.to_le_bytes());
        drop(cf);
        self.write(batch, true)?;
        Ok(position)
    }

    /// Entries of a stream from `from` on, at most `max`.
    pub fn read_stream(
        &self,
        scope: ScopeId,
        stream: Uuid,
        from: u64,
        max: usize,
    ) -> Result<Vec<StreamEntry>> {
        let prefix = keys::stream_prefix(scope.0, stream);
        let start = keys::stream_entry(scope.0, stream, from);
        self.scan(&prefix, &start, max)?
            .into_iter()
            .map(|(k, v)| {
                let position = keys::version_of_entry(&k).unwrap_or(0);
                let (seq, partition) = split_seq(&k, &v)?;
                let partition = String::from_utf8(partition.to_vec())
                    .map_err(|_| bad_state(&k, "the partition is not UTF-8"))?;
                Ok(StreamEntry {
                    position,
                    event_log_sequence_number: EventLogSequenceNumber(seq),
                    partition,
                })
            })
            .collect()
    }

    /// Entries of one partition of a stream from stream position `from` on, at most `max`.
    pub fn read_stream_partition(
        &self,
        scope: ScopeId,
        stream: Uuid,
        partition: &str,
        from: u64,
        max: usize,
    ) -> Result<Vec<StreamEntry>> {
        let prefix = keys::stream_partition_prefix(scope.0, stream, partition);
        let start = keys::stream_partition_entry(scope.0, stream, partition, from);
        self.scan(&prefix, &start, max)?
            .into_iter()
            .map(|(k, v)| {
                let (seq, _) = split_seq(&k, &v)?;
                Ok(StreamEntry {
                    position: keys::version_of_entry(&k).unwrap_or(0),
                    event_log_sequence_number: EventLogSequenceNumber(seq),
                    partition: partition.to_owned(),
                })
            })
            .collect()
    }

    // ---- processing state -------------------------------------------------------------------

    /// Writes a batch of state changes; returns once they are durable.
    pub fn write_state(&self, state: StateBatch) -> Result<()> {
        if state.is_empty() {
            return Ok(());
        }
        let cf = self.cf()?;
        let mut batch = WriteBatch::default();
        for key in state.deletes {
            batch.delete_cf(&cf, key);
        }
        for (key, value) in state.puts {
            batch.put_cf(&cf, key, value);
        }
        drop(cf);
        self.write(batch, true)
    }

    /// Sets one stream processor's state, durably.
    pub fn put_stream_processor_state(
        &self,
        id: &StreamProcessorId,
        state: &StreamProcessorState,
    ) -> Result<()> {
        let mut batch = StateBatch::new();
        batch.put_stream_processor(id, state);
        self.write_state(batch)
    }

    /// One stream processor's state.
    pub fn stream_processor_state(
        &self,
        id: &StreamProcessorId,
    ) -> Result<Option<StreamProcessorState>> {
        let key = id.key();
        self.get(&key)?.map(|v| from_json(&key, &v)).transpose()
    }

    /// Every stream processor's state.
    pub fn stream_processor_states(
        &self,
    ) -> Result<Vec<(StreamProcessorId, StreamProcessorState)>> {
        let prefix = [keys::STREAM_PROCESSOR];
        self.scan(&prefix, &prefix, usize::MAX)?
            .into_iter()
            .map(|(k, v)| {
                let id = k
                    .get(1..49)
                    .filter(|_| k.len() == 49)
                    .map(|ids| StreamProcessorId {
                        scope: uuid_at(ids, 0),
                        processor: uuid_at(ids, 16),
                        source_stream: uuid_at(ids, 32),
                    })
                    .ok_or_else(|| bad_state(&k, "a stream processor key has 49 bytes"))?;
                Ok((id, from_json(&k, &v)?))
            })
            .collect()
    }

    /// A projection's state for one key.
    pub fn projection_state(
        &self,
        scope: ScopeId,
        projection: Uuid,
        key: &str,
    ) -> Result<Option<String>> {
        let k = keys::projection(scope.0, projection, key);
        self.get(&k)?
            .map(|v| String::from_utf8(v).map_err(|_| bad_state(&k, "the state is not UTF-8")))
            .transpose()
    }

    /// Every (key, state) of a projection, in key order.
    pub fn projection_states(
        &self,
        scope: ScopeId,
        projection: Uuid,
    ) -> Result<Vec<(String, String)>> {
        let prefix = keys::projection_prefix(scope.0, projection);
        self.scan(&prefix, &prefix, usize::MAX)?
            .into_iter()
            .map(|(k, v)| {
                let key = String::from_utf8(k[prefix.len()..].to_vec())
                    .map_err(|_| bad_state(&k, "the projection key is not UTF-8"))?;
                let state =
                    String::from_utf8(v).map_err(|_| bad_state(&k, "the state is not UTF-8"))?;
                Ok((key, state))
            })
            .collect()
    }

    /// An event-horizon subscription's state.
    pub fn subscription_state(&self, id: &SubscriptionId) -> Result<Option<SubscriptionState>> {
        let key = id.key();
        self.get(&key)?.map(|v| from_json(&key, &v)).transpose()
    }
}

fn check_events(commit: &Commit) -> Result<()> {
    if commit.events.is_empty() {
        return Err(Error::InvalidRequest(
            "a commit needs at least one event".into(),
        ));
    }
    if commit.events.iter().any(|e| e.aggregate.is_some()) {
        return Err(Error::InvalidRequest(
            "events applied by an aggregate are committed with commit_for_aggregate".into(),
        ));
    }
    Ok(())
}

fn entry_value(seq: EventLogSequenceNumber, event_type: EventType) -> [u8; 28] {
    let mut value = [0u8; 28];
    value[..8].copy_from_slice(&seq.0.to_le_bytes());
    value[8..24].copy_from_slice(event_type.id.as_bytes());
    value[24..].copy_from_slice(&event_type.generation.to_le_bytes());
    value
}

fn uuid_at(bytes: &[u8], at: usize) -> Uuid {
    let mut id = [0u8; 16];
    id.copy_from_slice(&bytes[at..at + 16]);
    Uuid::from_bytes(id)
}

fn split_seq<'v>(key: &[u8], value: &'v [u8]) -> Result<(u64, &'v [u8])> {
    let (seq, rest) = value
        .split_first_chunk::<8>()
        .ok_or_else(|| bad_state(key, "an entry starts with 8 bytes of sequence number"))?;
    Ok((u64::from_le_bytes(*seq), rest))
}

fn from_json<T: serde::de::DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T> {
    serde_json::from_slice(value).map_err(|e| bad_state(key, &e.to_string()))
}

/// The batches of a fetch for an aggregate: an iterator of `Result<Vec<Event>>`.
pub struct AggregateBatches<'t> {
    tenant: &'t Tenant,
    root: Uuid,
    event_source_id: String,
    event_types: Vec<Uuid>,
    current_version: u64,
    next_version: u64,
    /// Index entries read and not yet returned: (version, sequence number).
    entries: VecDeque<(u64, u64)>,
    batch_bytes_max: usize,
    records: RecordBatch,
}

impl std::fmt::Debug for AggregateBatches<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregateBatches")
            .field("root", &self.root)
            .field("event_source_id", &self.event_source_id)
            .field("current_version", &self.current_version)
            .field("next_version", &self.next_version)
            .finish_non_exhaustive()
    }
}

impl AggregateBatches<'_> {
    /// The number of events the aggregate had applied when the fetch began; events committed
    /// after that are not returned.
    pub fn current_version(&self) -> u64 {
        self.current_version
    }

    /// Reads up to `FETCH_ENTRIES_STEP` more index entries of the selected types.
    fn refill(&mut self) -> Result<()> {
        let prefix = keys::event_source_prefix(self.root, &self.event_source_id);
        while self.entries.is_empty() && self.next_version < self.current_version {
            let start =
                keys::event_source_entry(self.root, &self.event_source_id, self.next_version);
            let found = self.tenant.scan(&prefix, &start, FETCH_ENTRIES_STEP)?;
            if found.is_empty() {
                return Err(Error::Corruption {
                    path: self.tenant.event_log.dir().to_owned(),
                    offset: 0,
                    what: format!(
                        "the index has aggregate {} {:?} at version {} but no entry from version {}",
                        self.root, self.event_source_id, self.current_version, self.next_version
                    ),
                });
            }
            for (key, value) in &found {
                let version = keys::version_of_entry(key).unwrap_or(u64::MAX);
                if version >= self.current_version {
                    self.next_version = self.current_version;
                    break;
                }
                self.next_version = version + 1;
                let (seq, rest) = split_seq(key, value)?;
                let type_id = rest
                    .get(..16)
                    .map(|b| uuid_at(b, 0))
                    .ok_or_else(|| bad_state(key, "an entry holds the event type"))?;
                if self.event_types.is_empty() || self.event_types.contains(&type_id) {
                    self.entries.push_back((version, seq));
                }
            }
        }
        Ok(())
    }

    fn next_batch(&mut self) -> Result<Option<Vec<Event>>> {
        let mut events = Vec::new();
        let mut bytes = 0usize;
        loop {
            self.refill()?;
            let Some(&(_, first)) = self.entries.front() else {
                break;
            };
            // One read covers the entries that lie within a short window of the first.
            let run = self
                .entries
                .iter()
                .take_while(|(_, seq)| *seq >= first && seq - first < FETCH_READ_WINDOW)
                .count();
            let last = self.entries[run - 1].1;
            let log = &self.tenant.event_log;
            log.read_into_cached(
                EventLogSequenceNumber(first),
                (last - first + 1) as usize,
                FETCH_READ_BYTES_MAX,
                &mut self.records,
            )?;
            let mut taken = 0;
            for (seq, payload) in self.records.payloads() {
                let Some(&(version, wanted)) = self.entries.get(taken) else {
                    break;
                };
                if taken >= run || (!events.is_empty() && bytes >= self.batch_bytes_max) {
                    break;
                }
                if seq.0 != wanted {
                    continue;
                }
                let event = decode_payload(seq, payload)
                    .map_err(|e| Error::UndecodableRecord {
                        sequence_number: seq,
                        what: e.0,
                    })?
                    .to_event();
                let matches = event.aggregate
                    == Some(AppliedByAggregate {
                        root_id: self.root,
                        version,
                    })
                    && event.event_source_id == self.event_source_id;
                if !matches {
                    return Err(Error::Corruption {
                        path: log.dir().to_owned(),
                        offset: 0,
                        what: format!(
                            "the index puts version {version} of aggregate {} {:?} at sequence \
                             number {seq}, which holds another event",
                            self.root, self.event_source_id
                        ),
                    });
                }
                // An event that would take the batch over its budget starts the next batch
                // (it is read again from the block cache); one too big on its own goes alone.
                let size = budget_size(&event);
                if !events.is_empty() && bytes + size > self.batch_bytes_max {
                    break;
                }
                bytes += size;
                events.push(event);
                taken += 1;
            }
            if taken == 0 && events.is_empty() {
                return Err(Error::Corruption {
                    path: log.dir().to_owned(),
                    offset: 0,
                    what: format!(
                        "the index points at sequence number {first}, which the log does not hold"
                    ),
                });
            }
            self.entries.drain(..taken);
            if bytes >= self.batch_bytes_max || taken < run {
                break;
            }
        }
        Ok((!events.is_empty()).then_some(events))
    }
}

impl Iterator for AggregateBatches<'_> {
    type Item = Result<Vec<Event>>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_batch() {
            Ok(Some(events)) => Some(Ok(events)),
            Ok(None) => None,
            Err(e) => {
                // One error ends the iteration.
                self.entries.clear();
                self.next_version = self.current_version;
                Some(Err(e))
            }
        }
    }
}
