//! The tenant's indexer: keeps the keys derived from the event log (aggregate versions and the
//! event-source index) up to the log, one step at a time, and brings them up to the log's end
//! when the tenant is opened.
//!
//! Invariants: index steps are serialised by the `indexing` lock; a step writes its entries and
//! the new recovery point (`Mindexed`) in one RocksDB batch that bypasses the WAL (so a crash
//! loses both together, never entries without their recovery point); `indexed` only moves
//! forward, and only after that batch is written; a step that fails leaves the tenant's indexing
//! failed (and quiet) until the tenant is reopened or healed (`heal`), which resumes it from the
//! recovery point. The recovery point on disk lags `indexed` by at most
//! `reindex-after-crash-max-events` plus one step: past that bound a step flushes the tenant's
//! index, so a crash costs a bounded re-read, not the whole log.

use std::{
    collections::HashMap,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use annals_log::{
    decode_index_fields, payload_applied_by_aggregate, Error as LogError, EventLogSequenceNumber,
    EventType, RecordBatch,
};
use rocksdb::WriteBatch;

use super::Tenant;
use crate::{
    db::{rocks, Wal},
    error::{Error, Result},
    keys,
};

/// Most payload bytes one index step reads from the log.
const INDEX_READ_BYTES_MAX: usize = 4 << 20;

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

impl Tenant {
    /// Brings the index up to the log's end at open: re-indexes only the tail past the stored
    /// recovery point, or everything when the index is missing, of another format, or ahead
    /// of the log (the log is the truth).
    pub(super) fn catch_up(&self) -> Result<IndexRecovery> {
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
        self.durable_indexed.store(from, Ordering::Release);
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
        // The loop ends only once a step reached the log's end as it was then.
        assert!(
            to >= end,
            "the catch-up stopped at {to} short of the log's end {end}"
        );
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
        self.write(batch, Wal::Synced)
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
            // Failed before: stays failed (and quiet) until the tenant is reopened or healed.
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
        let next = result.map_err(|e| self.step_failed(e))?;
        // Steps are serialised by `indexing`, so nothing moved `indexed` since `from` was read.
        assert!(
            next >= from,
            "an index step went back from {from} to {next}"
        );
        {
            let _guard = self.progress.lock();
            self.indexed.store(next.0, Ordering::Release);
            self.progressed.notify_all();
        }
        self.trim_versions(next);
        // After `indexed` is published, so no fetch waits for the flush.
        self.bound_reindexing(next)
            .map_err(|e| self.step_failed(e))?;
        Ok(next < end)
    }

    /// Drops known aggregate versions the index holds (at random: in the map's order) until
    /// half of `aggregate-versions-cached` remain, once there are more than that; versions the
    /// index does not hold yet always stay.
    fn trim_versions(&self, indexed: EventLogSequenceNumber) {
        let cached = self.shared.config.index.aggregate_versions_cached;
        let mut versions = self.versions.lock();
        if versions.len() <= cached {
            return;
        }
        let mut excess = versions.len() - cached / 2;
        versions.retain(|_, (_, after)| {
            if excess == 0 || *after > indexed.0 {
                return true;
            }
            excess -= 1;
            false
        });
    }

    /// Leaves the tenant's indexing failed (and quiet) with `e`, waking its waiters; returns `e`.
    fn step_failed(&self, e: Error) -> Error {
        *self.progress.lock() = Some(e.to_string());
        self.progressed.notify_all();
        e
    }

    /// Flushes the tenant's index (entries and recovery point together, as one memtable)
    /// when the recovery point on disk lags `indexed` by `reindex-after-crash-max-events`.
    /// Index writes bypass the WAL and reach the disk when their memtable is flushed, which a
    /// log of plain commits (nothing to index but the recovery point) might never fill; without
    /// this, reopening after a crash would re-read the whole log. Called under the step lock.
    fn bound_reindexing(&self, indexed: EventLogSequenceNumber) -> Result<()> {
        let durable = self.durable_indexed.load(Ordering::Acquire);
        let bound = self.shared.config.index.reindex_after_crash_max_events;
        if indexed.0.saturating_sub(durable) < bound {
            return Ok(());
        }
        let cf = self.cf()?;
        self.shared
            .db
            .flush_cf(&cf)
            .map_err(rocks("flush the index"))?;
        self.durable_indexed.store(indexed.0, Ordering::Release);
        Ok(())
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
        // The step indexes exactly the records [from, next): the log reads gaplessly from
        // where it was asked to.
        assert!(
            batch.first() == Some(from) && next.0 - from.0 == batch.len() as u64,
            "a read from {from} returned {} records up to {next}",
            batch.len()
        );
        let cf = self.cf()?;
        let mut write = WriteBatch::default();
        let mut versions: HashMap<Vec<u8>, u64> = HashMap::new();
        for (seq, payload) in batch.payloads() {
            if !payload_applied_by_aggregate(payload) {
                continue;
            }
            // Only the fields the index needs: the execution context and the content are
            // stepped over, not validated or copied (the full decoder reads them on fetch).
            let fields = decode_index_fields(payload).map_err(|e| LogError::UndecodableRecord {
                sequence_number: seq,
                what: e.0,
            })?;
            let Some(aggregate) = fields.aggregate else {
                continue;
            };
            write.put_cf(
                &cf,
                keys::event_source_entry(
                    aggregate.root_id,
                    fields.event_source_id,
                    aggregate.version,
                ),
                entry_value(seq, fields.event_type),
            );
            versions.insert(
                keys::aggregate(aggregate.root_id, fields.event_source_id),
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
        self.write(write, Wal::Bypassed)?;
        Ok(to)
    }

    /// Blocks until the index has reached `target` (or failed).
    pub(super) fn wait_indexed(&self, target: EventLogSequenceNumber) -> Result<()> {
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

    /// Sets a failed indexer going again from its recovery point (the failed step's batch,
    /// entries and recovery point together, is rewritten whole), taking one step at once;
    /// returns the failure it had stopped on, `None` when it had not failed, or the step's
    /// failure (the indexer is failed again).
    pub(super) fn resume_indexer(&self) -> Result<Option<String>> {
        // No step is under way while this is held.
        let mut batch = self.indexing.lock();
        let Some(cause) = self.progress.lock().take() else {
            return Ok(None);
        };
        // One step here, so a failure that persists is reported to the healer now (and the
        // indexer stays failed) instead of the tenant looking healed until the next step.
        self.index_step_locked(&mut batch)?;
        tracing::info!(
            tenant = %self.id,
            %cause,
            indexed = self.indexed.load(Ordering::Acquire),
            "the indexer stopped by a failure resumes from its recovery point"
        );
        self.progressed.notify_all();
        self.shared.wake_indexer(self.id);
        Ok(Some(cause))
    }

    pub(super) fn index_failure(&self) -> Result<()> {
        match self.progress.lock().as_ref() {
            Some(reason) => Err(Error::Index {
                op: "index the event log",
                detail: reason.clone(),
            }),
            None => Ok(()),
        }
    }
}

fn entry_value(seq: EventLogSequenceNumber, event_type: EventType) -> [u8; 28] {
    let mut value = [0u8; 28];
    value[..8].copy_from_slice(&seq.0.to_le_bytes());
    value[8..24].copy_from_slice(event_type.id.as_bytes());
    value[24..].copy_from_slice(&event_type.generation.to_le_bytes());
    value
}
