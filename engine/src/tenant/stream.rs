//! Filtered and public streams: entries (event, partition) appended at an expected position,
//! read by position or by partition.
//!
//! Invariants: an append holds the stream's key lock across the position check and the write,
//! and writes its entries, their partition index and the new end in one synced batch, so a
//! stream stays gapless and a writer resuming from a stale position writes nothing.

use annals_log::{EventLogSequenceNumber, ScopeId};
use rocksdb::WriteBatch;
use uuid::Uuid;

use super::{split_seq, state::add_state, Tenant};
use crate::{
    db::{bad_state, Wal},
    error::{Error, Result},
    keys,
    state::{StateBatch, StreamPosition},
};

/// One entry of a filtered or public stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    /// Position in the stream (0-based, gapless).
    pub position: StreamPosition,
    /// The event it refers to in the log of the stream's scope.
    pub event_log_sequence_number: EventLogSequenceNumber,
    /// The partition the filter put it in.
    pub partition: String,
}

impl Tenant {
    /// The next position of a stream (its length).
    pub fn stream_end(&self, scope: ScopeId, stream: Uuid) -> Result<StreamPosition> {
        Ok(StreamPosition(
            self.get_u64(&keys::stream_end(scope.0, stream))?
                .unwrap_or(0),
        ))
    }

    /// Appends entries (event, partition) to a stream at `expected_position`, durably. Fails
    /// with [`Error::WrongStreamPosition`] and writes nothing if the stream's end is not
    /// `expected_position`, so a writer that resumes from a stale position cannot duplicate.
    /// Returns the new end.
    pub fn append_to_stream(
        &self,
        scope: ScopeId,
        stream: Uuid,
        expected_position: StreamPosition,
        entries: &[(EventLogSequenceNumber, &str)],
    ) -> Result<StreamPosition> {
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
        expected_position: StreamPosition,
        entries: &[(EventLogSequenceNumber, &str)],
        state: StateBatch,
    ) -> Result<StreamPosition> {
        self.check_live()?;
        let end_key = keys::stream_end(scope.0, stream);
        let _held = self.stream_locks.lock(end_key.clone());
        let actual = StreamPosition(self.get_u64(&end_key)?.unwrap_or(0));
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
        add_state(&mut batch, &cf, state);
        let mut position = actual;
        for (seq, partition) in entries {
            let mut value = seq.0.to_le_bytes().to_vec();
            value.extend_from_slice(partition.as_bytes());
            batch.put_cf(&cf, keys::stream_entry(scope.0, stream, position.0), value);
            batch.put_cf(
                &cf,
                keys::stream_partition_entry(scope.0, stream, partition, position.0),
                seq.0.to_le_bytes(),
            );
            position = position.next();
        }
        batch.put_cf(&cf, &end_key, position.0.to_le_bytes());
        drop(cf);
        self.write(batch, Wal::Synced)?;
        Ok(position)
    }

    /// Entries of a stream from `from` on, at most `max`.
    pub fn read_stream(
        &self,
        scope: ScopeId,
        stream: Uuid,
        from: StreamPosition,
        max: usize,
    ) -> Result<Vec<StreamEntry>> {
        let prefix = keys::stream_prefix(scope.0, stream);
        let start = keys::stream_entry(scope.0, stream, from.0);
        self.scan(&prefix, &start, max)?
            .into_iter()
            .map(|(k, v)| {
                let position = StreamPosition(keys::version_of_entry(&k).unwrap_or(0));
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
        from: StreamPosition,
        max: usize,
    ) -> Result<Vec<StreamEntry>> {
        let prefix = keys::stream_partition_prefix(scope.0, stream, partition);
        let start = keys::stream_partition_entry(scope.0, stream, partition, from.0);
        self.scan(&prefix, &start, max)?
            .into_iter()
            .map(|(k, v)| {
                let (seq, _) = split_seq(&k, &v)?;
                Ok(StreamEntry {
                    position: StreamPosition(keys::version_of_entry(&k).unwrap_or(0)),
                    event_log_sequence_number: EventLogSequenceNumber(seq),
                    partition: partition.to_owned(),
                })
            })
            .collect()
    }
}
