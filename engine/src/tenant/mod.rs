//! A tenant: its event log and scoped logs, and its column family of indexes and state.
//!
//! A `Tenant` names its own column family and its own directory and nothing else; every key
//! it reads or writes goes to that family, so no call through one tenant's handle can reach
//! another's data. After the tenant is deleted, every call through an old handle fails with
//! [`LogError::TenantUnknown`].
//!
//! This module holds the handle and what every concern shares (liveness, reads and writes of
//! the family); each concern has its own module:
//! - `index`: the indexer's steps and the catch-up at open, which keep the derived keys (aggregate
//!   versions, the event-source index) up to the event log;
//! - `commit`: commits to the event log and to scoped logs, and commits for aggregates with their
//!   version check;
//! - `fetch`: reading aggregates back through the index ([`AggregateBatches`]);
//! - `stream`: filtered and public streams, written at an expected position, and the move of
//!   legacy public streams at open;
//! - `state`: processing state (stream processors, projections);
//! - `horizon`: events received over the event horizon, stored with their subscription's
//!   position in one step (the prepared-state protocol), and subscription state.
//!
//! Invariants: the indexed position only grows while the tenant is open; a known aggregate
//! version is set only by the holder of that aggregate's lock, after its commit was appended,
//! and dropped only once the index holds it; once `deleted` is set, every call that starts
//! fails with `TenantUnknown`. Opening moves legacy public streams and settles pending
//! subscription records before the tenant is handed out, so no call ever sees either half done.

mod commit;
mod fetch;
mod heal;
mod horizon;
mod index;
mod projection;
mod state;
mod stream;
mod verify;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
};

use annals_log::{
    Error as LogError, EventLogSequenceNumber, Log, RecordBatch, ScopeId, TenantId, TenantLogs,
};
use event_listener::Event as Notify;
use parking_lot::{Condvar, Mutex};
use rocksdb::{BoundColumnFamily, WriteBatch};
use uuid::Uuid;

use crate::{
    db::{self, bad_state, rocks, Wal},
    engine::Shared,
    error::{Error, Result},
    locks::KeyLocks,
};

pub use self::{
    fetch::AggregateBatches,
    heal::TenantHealed,
    index::IndexRecovery,
    projection::ProjectionHistorySize,
    stream::StreamEntry,
    verify::{AggregateVersionCheck, AggregateVersionProblem},
};

/// Aggregates committed since the tenant was opened: their version after their last commit and
/// the log position after that commit. Until the index passes that position the entry is the
/// aggregate's version; after it, the entry equals what the index holds and saves the commit
/// path a read of it. Only commits for aggregates change versions while the tenant is open
/// (plain commits refuse aggregate events; a heal never keeps a failed commit), so an entry
/// never goes stale. Entries the index holds are dropped at random once there are more than
/// `index.aggregate-versions-cached`.
type KnownVersions = HashMap<Vec<u8>, (u64, u64)>;

/// One tenant of an engine.
pub struct Tenant {
    id: TenantId,
    cf_name: String,
    shared: Arc<Shared>,
    logs: Arc<TenantLogs>,
    event_log: Arc<Log>,
    /// The event log is indexed up to here (exclusive).
    indexed: AtomicU64,
    /// A recovery point known to be on disk (index writes bypass the WAL): a crash re-indexes
    /// at most from here, and the indexer flushes before `indexed` runs too far ahead of it.
    durable_indexed: AtomicU64,
    /// Signalled (under `progress`) when `indexed` moves or indexing fails.
    progress: Mutex<Option<String>>,
    progressed: Condvar,
    /// Serialises index steps; holds the step's reusable read buffer.
    indexing: Mutex<RecordBatch>,
    versions: Mutex<KnownVersions>,
    aggregate_locks: KeyLocks,
    stream_locks: KeyLocks,
    /// One writer per scoped log at a time (`horizon`), keyed by the scope's bytes.
    scope_locks: KeyLocks,
    /// Scopes whose last received batch has an unknown outcome, with why: refused until the
    /// engine is reopened and settles them, or a heal does once their logs take writes
    /// (`horizon`, `heal`).
    unsettled: Mutex<HashMap<ScopeId, String>>,
    /// Notified after every successful append to a public stream, and on delete.
    public_appended: Notify,
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
            durable_indexed: AtomicU64::new(0),
            progress: Mutex::new(None),
            progressed: Condvar::new(),
            indexing: Mutex::new(RecordBatch::new()),
            versions: Mutex::new(HashMap::new()),
            aggregate_locks: KeyLocks::default(),
            stream_locks: KeyLocks::default(),
            scope_locks: KeyLocks::default(),
            unsettled: Mutex::new(HashMap::new()),
            public_appended: Notify::new(),
            deleted: AtomicBool::new(false),
            recovery: IndexRecovery::default(),
        };
        tenant.recovery = tenant.catch_up()?;
        tenant.migrate_legacy_public_streams()?;
        tenant.settle_subscriptions()?;
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

    /// The log of an event-horizon scope, created on first use, for reading and subscribing.
    /// Events are written to it through [`Tenant::commit_received`] and
    /// [`Tenant::commit_to_scope`], which hold the scope's lock: appending through the handle
    /// directly would break the guarantee of `commit_received` for a lost batch.
    pub fn scoped_log(&self, scope: ScopeId) -> Result<Arc<Log>> {
        self.check_live()?;
        Ok(self.logs.log(scope)?)
    }

    /// The scopes that have a log.
    pub fn scopes(&self) -> Result<Vec<ScopeId>> {
        self.check_live()?;
        Ok(self.logs.scopes()?)
    }

    /// How far the index has read the event log.
    pub fn indexed_up_to(&self) -> EventLogSequenceNumber {
        EventLogSequenceNumber(self.indexed.load(Ordering::Acquire))
    }

    pub(crate) fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::Release);
        // Producers waiting for public appends look again and find the tenant gone.
        self.public_appended.notify(usize::MAX);
        let _guard = self.progress.lock();
        self.progressed.notify_all();
    }

    /// Waits for a running index step to end (used by delete).
    pub(crate) fn quiesce(&self) {
        drop(self.indexing.lock());
    }

    fn check_live(&self) -> Result<()> {
        if self.deleted.load(Ordering::Acquire) {
            return Err(Error::Log(LogError::TenantUnknown(self.id)));
        }
        Ok(())
    }

    fn cf(&self) -> Result<Arc<BoundColumnFamily<'_>>> {
        self.check_live()?;
        self.shared
            .db
            .cf_handle(&self.cf_name)
            .ok_or(Error::Log(LogError::TenantUnknown(self.id)))
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

    /// Writes a batch to the family: derived keys bypass the WAL, everything else is synced
    /// through it ([`Wal`]).
    fn write(&self, batch: WriteBatch, wal: Wal) -> Result<()> {
        self.shared
            .db
            .write_opt(batch, &wal.options())
            .map_err(rocks("write"))
    }

    /// Whether the tenant serves everything: not deleted, its logs take writes (none poisoned
    /// by a failed write or fsync), no scope is unsettled by one (`horizon`), and its indexer
    /// has not failed. What is not is mended by [`heal`](Self::heal).
    pub fn check_healthy(&self) -> Result<()> {
        self.check_live()?;
        // The event log is among the open logs (it is opened with the tenant).
        for log in self.logs.open_logs() {
            log.check_writable()?;
        }
        self.check_settled()?;
        self.index_failure()
    }
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
