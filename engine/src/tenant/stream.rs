//! Filtered and public streams: entries (event, partition) appended at an expected position,
//! read by position or by partition.
//!
//! There are two namespaces of streams (`keys::StreamSpace`): the streams private filters write,
//! by scope, and the public streams public filters write, one namespace per tenant with no scope
//! (what the event horizon serves to other microservices). Both have the same guarantees and go
//! through the same code here; only their keys differ.
//!
//! Invariants: an append holds the stream's key lock across the position check and the write,
//! and writes its entries, their partition index and the new end in one synced batch, so a
//! stream stays gapless and a writer resuming from a stale position writes nothing. Every
//! successful public append notifies `public_appended` after its batch is durable. Nothing is
//! written to scoped streams under `keys::LEGACY_PUBLIC_SCOPE`: such keys are legacy public
//! streams, moved to the public kinds at open ([`Tenant::migrate_legacy_public_streams`]) in one
//! atomic batch.

use annals_log::{EventLogSequenceNumber, ScopeId};
use event_listener::EventListener;
use rocksdb::WriteBatch;
use uuid::Uuid;

use super::{split_seq, state::add_state, Tenant};
use crate::{
    db::{bad_state, Wal},
    error::{Error, Result},
    keys::{self, StreamSpace},
    state::{StateBatch, StreamPosition},
};

/// One entry of a filtered or public stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    /// Position in the stream (0-based, gapless).
    pub position: StreamPosition,
    /// The event it refers to in the log of the stream's scope (public streams: the event
    /// log).
    pub event_log_sequence_number: EventLogSequenceNumber,
    /// The partition the filter put it in.
    pub partition: String,
}

/// Scoped streams are refused the scope older versions kept public streams under: anything
/// written there would be taken for a legacy public stream at the next open.
fn scoped(scope: ScopeId) -> Result<StreamSpace> {
    if scope.0 == keys::LEGACY_PUBLIC_SCOPE {
        return Err(Error::Log(annals_log::Error::InvalidRequest(format!(
            "scope {} is reserved (older versions kept public streams under it); public \
             streams have their own calls",
            scope.0
        ))));
    }
    Ok(StreamSpace::Scoped(scope.0))
}

/// The value of a stream end key (`N` or `B`): the next position.
fn stream_end_value(key: &[u8], value: &[u8]) -> Result<StreamPosition> {
    let end = <[u8; 8]>::try_from(value).map_err(|_| bad_state(key, "a stream end has 8 bytes"))?;
    Ok(StreamPosition(u64::from_le_bytes(end)))
}

impl Tenant {
    /// The next position of a stream (its length).
    pub fn stream_end(&self, scope: ScopeId, stream: Uuid) -> Result<StreamPosition> {
        self.end_in(scoped(scope)?, stream)
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
        self.append_in(
            scoped(scope)?,
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
        self.append_in(scoped(scope)?, stream, expected_position, entries, state)
    }

    /// Entries of a stream from `from` on, at most `max`.
    pub fn read_stream(
        &self,
        scope: ScopeId,
        stream: Uuid,
        from: StreamPosition,
        max: usize,
    ) -> Result<Vec<StreamEntry>> {
        self.read_in(scoped(scope)?, stream, from, max)
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
        self.read_partition_in(scoped(scope)?, stream, partition, from, max)
    }

    /// The next position of a public stream (its length).
    pub fn public_stream_end(&self, stream: Uuid) -> Result<StreamPosition> {
        self.end_in(StreamSpace::Public, stream)
    }

    /// Appends entries (event-log sequence number, partition) to a public stream at
    /// `expected_position`, with `state` in the same atomic, durable write: the guarantees of
    /// [`append_to_stream_with_state`](Self::append_to_stream_with_state). Public streams are
    /// a namespace of their own: no scope reaches them, and a private stream with the same id
    /// is another stream. After a successful append, every listener from
    /// [`public_stream_appended`](Self::public_stream_appended) is woken. Returns the new end.
    pub fn append_to_public_stream_with_state(
        &self,
        stream: Uuid,
        expected_position: StreamPosition,
        entries: &[(EventLogSequenceNumber, &str)],
        state: StateBatch,
    ) -> Result<StreamPosition> {
        let end = self.append_in(
            StreamSpace::Public,
            stream,
            expected_position,
            entries,
            state,
        )?;
        if !entries.is_empty() {
            self.public_appended.notify(usize::MAX);
        }
        Ok(end)
    }

    /// Entries of a public stream from `from` on, at most `max`.
    pub fn read_public_stream(
        &self,
        stream: Uuid,
        from: StreamPosition,
        max: usize,
    ) -> Result<Vec<StreamEntry>> {
        self.read_in(StreamSpace::Public, stream, from, max)
    }

    /// Entries of one partition of a public stream from stream position `from` on, at most
    /// `max`.
    pub fn read_public_stream_partition(
        &self,
        stream: Uuid,
        partition: &str,
        from: StreamPosition,
        max: usize,
    ) -> Result<Vec<StreamEntry>> {
        self.read_partition_in(StreamSpace::Public, stream, partition, from, max)
    }

    /// Every public stream with its end, by stream id: what this tenant can serve over the
    /// event horizon. A stream exists once something was appended to it.
    pub fn public_streams(&self) -> Result<Vec<(Uuid, StreamPosition)>> {
        let prefix = [keys::PUBLIC_STREAM_END];
        self.scan(&prefix, &prefix, usize::MAX)?
            .into_iter()
            .map(|(k, v)| {
                let stream = keys::split_public_stream_end(&k)
                    .ok_or_else(|| bad_state(&k, "a public stream end key has 17 bytes"))?;
                Ok((stream, stream_end_value(&k, &v)?))
            })
            .collect()
    }

    /// Every stream private filters wrote, with its end: scope, stream id, end, by scope then
    /// stream. A stream exists once something was appended to it.
    pub fn streams(&self) -> Result<Vec<(ScopeId, Uuid, StreamPosition)>> {
        let prefix = [keys::STREAM_END];
        self.scan(&prefix, &prefix, usize::MAX)?
            .into_iter()
            .map(|(k, v)| {
                let (scope, stream) = keys::split_two_ids(&k, keys::STREAM_END)
                    .ok_or_else(|| bad_state(&k, "a stream end key has 33 bytes"))?;
                Ok((ScopeId(scope), stream, stream_end_value(&k, &v)?))
            })
            .collect()
    }

    /// A listener woken after the next successful append of entries to any public stream of
    /// this tenant (and when the tenant is deleted). It is a `Future`; `.wait()` (from
    /// `event_listener::Listener`) blocks a thread instead.
    ///
    /// A wake-up is only a hint to look again, and one that comes before the listener exists
    /// is lost. So take the listener first, then check, then wait:
    ///
    /// ```ignore
    /// loop {
    ///     let appended = tenant.public_stream_appended();
    ///     let entries = tenant.read_public_stream(stream, next, 100)?;
    ///     if entries.is_empty() {
    ///         appended.await; // an append after the read wakes it; none is missed
    ///         continue;
    ///     }
    ///     // serve `entries`, move `next` past them
    /// }
    /// ```
    ///
    /// Checking first and listening afterwards would sleep through an append landing between
    /// the two.
    pub fn public_stream_appended(&self) -> EventListener {
        self.public_appended.listen()
    }

    fn end_in(&self, space: StreamSpace, stream: Uuid) -> Result<StreamPosition> {
        Ok(StreamPosition(
            self.get_u64(&keys::stream_end(space, stream))?.unwrap_or(0),
        ))
    }

    fn append_in(
        &self,
        space: StreamSpace,
        stream: Uuid,
        expected_position: StreamPosition,
        entries: &[(EventLogSequenceNumber, &str)],
        state: StateBatch,
    ) -> Result<StreamPosition> {
        self.check_live()?;
        let end_key = keys::stream_end(space, stream);
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
            batch.put_cf(&cf, keys::stream_entry(space, stream, position.0), value);
            batch.put_cf(
                &cf,
                keys::stream_partition_entry(space, stream, partition, position.0),
                seq.0.to_le_bytes(),
            );
            position = position.next();
        }
        batch.put_cf(&cf, &end_key, position.0.to_le_bytes());
        drop(cf);
        self.write(batch, Wal::Synced)?;
        Ok(position)
    }

    fn read_in(
        &self,
        space: StreamSpace,
        stream: Uuid,
        from: StreamPosition,
        max: usize,
    ) -> Result<Vec<StreamEntry>> {
        let prefix = keys::stream_prefix(space, stream);
        let start = keys::stream_entry(space, stream, from.0);
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

    fn read_partition_in(
        &self,
        space: StreamSpace,
        stream: Uuid,
        partition: &str,
        from: StreamPosition,
        max: usize,
    ) -> Result<Vec<StreamEntry>> {
        let prefix = keys::stream_partition_prefix(space, stream, partition);
        let start = keys::stream_partition_entry(space, stream, partition, from.0);
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

    /// Moves public streams written by older versions under `keys::LEGACY_PUBLIC_SCOPE` (`N`,
    /// `S`, `P` keys of that scope) to the public kinds (`B`, `C`, `D`), in one atomic, synced
    /// batch: after a crash either every key has moved or none. Run at open, before the tenant
    /// is handed out, so no reader or writer sees half of it. The batch holds every legacy
    /// entry at once (about 100 bytes each): a one-time cost, bounded by the legacy streams'
    /// size. Returns the number of streams moved.
    ///
    /// A public stream that exists under both the old and the new keys (an older version run
    /// again after this one) is refused as `BadState`, never merged or overwritten.
    pub(super) fn migrate_legacy_public_streams(&self) -> Result<usize> {
        let mut moved_streams = 0usize;
        let mut moved_keys = 0usize;
        let mut batch = WriteBatch::default();
        // Every key of the three kinds under the legacy scope moves, whether or not its
        // stream's end key is there: nothing of a legacy stream is left behind.
        for kind in [keys::STREAM_END, keys::STREAM, keys::STREAM_PARTITION] {
            let mut prefix = vec![kind];
            prefix.extend_from_slice(keys::LEGACY_PUBLIC_SCOPE.as_bytes());
            let cf = self.cf()?;
            for (k, v) in self.scan(&prefix, &prefix, usize::MAX)? {
                let new = keys::migrated_public_key(&k)
                    .ok_or_else(|| bad_state(&k, "a legacy public stream key"))?;
                if kind == keys::STREAM_END {
                    if self.get(&new)?.is_some() {
                        return Err(bad_state(
                            &k,
                            "a public stream exists under both the legacy scope and the public \
                             keys; an older version ran after this one",
                        ));
                    }
                    moved_streams += 1;
                }
                batch.put_cf(&cf, &new, v);
                batch.delete_cf(&cf, &k);
                moved_keys += 1;
            }
        }
        if moved_keys == 0 {
            return Ok(0);
        }
        self.write(batch, Wal::Synced)?;
        tracing::info!(
            tenant = %self.id,
            streams = moved_streams,
            keys = moved_keys,
            "moved public streams from the legacy scope to their own keys"
        );
        Ok(moved_streams)
    }
}

#[cfg(test)]
mod tests {
    use annals_log::TenantId;

    use super::*;
    use crate::{
        state::{StreamProcessorId, StreamProcessorState},
        Engine, EngineConfig,
    };

    const TENANT: TenantId = TenantId(Uuid::from_u128(0x7e7a));
    const LEGACY: StreamSpace = StreamSpace::Scoped(keys::LEGACY_PUBLIC_SCOPE);

    fn seq(n: u64) -> EventLogSequenceNumber {
        EventLogSequenceNumber(n)
    }

    /// Keys of every kind that starts with `kind` and the legacy scope.
    fn legacy_keys(t: &Tenant) -> usize {
        [keys::STREAM_END, keys::STREAM, keys::STREAM_PARTITION]
            .into_iter()
            .map(|kind| {
                let mut prefix = vec![kind];
                prefix.extend_from_slice(keys::LEGACY_PUBLIC_SCOPE.as_bytes());
                t.scan(&prefix, &prefix, usize::MAX).unwrap().len()
            })
            .sum()
    }

    #[test]
    fn legacy_public_streams_move_to_their_own_keys_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (Uuid::from_u128(0xa), Uuid::from_u128(0xb));
        // A public filter's position, kept under the same scope: processor state, not a
        // stream, so it stays.
        let processor = StreamProcessorId {
            scope: keys::LEGACY_PUBLIC_SCOPE,
            processor: a,
            source_stream: Uuid::nil(),
        };
        let state = StreamProcessorState {
            position: StreamPosition(3),
            ..StreamProcessorState::default()
        };
        {
            let engine = Engine::open(EngineConfig::new(dir.path())).unwrap();
            let t = engine.create_tenant(TENANT).unwrap();
            // Written the old way: the scoped stream code under the reserved scope.
            let mut batch = StateBatch::new();
            batch.put_stream_processor(&processor, &state);
            t.append_in(
                LEGACY,
                a,
                StreamPosition::ZERO,
                &[(seq(0), "p"), (seq(2), "q"), (seq(5), "p")],
                batch,
            )
            .unwrap();
            t.append_in(
                LEGACY,
                b,
                StreamPosition::ZERO,
                &[(seq(1), "")],
                StateBatch::new(),
            )
            .unwrap();
            // A private stream of the same id elsewhere is left alone.
            t.append_to_stream(ScopeId::DEFAULT, a, StreamPosition::ZERO, &[(seq(7), "z")])
                .unwrap();
            assert_eq!(legacy_keys(&t), 2 + 4 + 4);
            assert!(t.public_streams().unwrap().is_empty());
        }
        let engine = Engine::open(EngineConfig::new(dir.path())).unwrap();
        let t = engine.tenant(TENANT).unwrap();
        assert_eq!(legacy_keys(&t), 0, "every legacy key moved");
        assert_eq!(
            t.public_streams().unwrap(),
            vec![(a, StreamPosition(3)), (b, StreamPosition(1))]
        );
        let entries: Vec<(u64, u64, String)> = t
            .read_public_stream(a, StreamPosition::ZERO, 10)
            .unwrap()
            .into_iter()
            .map(|e| (e.position.0, e.event_log_sequence_number.0, e.partition))
            .collect();
        assert_eq!(
            entries,
            vec![(0, 0, "p".into()), (1, 2, "q".into()), (2, 5, "p".into())]
        );
        let p: Vec<u64> = t
            .read_public_stream_partition(a, "p", StreamPosition::ZERO, 10)
            .unwrap()
            .iter()
            .map(|e| e.position.0)
            .collect();
        assert_eq!(p, vec![0, 2]);
        assert_eq!(t.stream_processor_state(&processor).unwrap(), Some(state));
        assert_eq!(
            t.read_stream(ScopeId::DEFAULT, a, StreamPosition::ZERO, 10)
                .unwrap()
                .len(),
            1
        );
        // Appends continue where the legacy stream ended.
        assert_eq!(
            t.append_to_public_stream_with_state(
                a,
                StreamPosition(3),
                &[(seq(8), "p")],
                StateBatch::new()
            )
            .unwrap(),
            StreamPosition(4)
        );
    }

    #[test]
    fn a_stream_under_both_the_legacy_and_the_public_keys_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = Uuid::from_u128(0xa);
        {
            let engine = Engine::open(EngineConfig::new(dir.path())).unwrap();
            let t = engine.create_tenant(TENANT).unwrap();
            t.append_to_public_stream_with_state(
                a,
                StreamPosition::ZERO,
                &[(seq(0), "p")],
                StateBatch::new(),
            )
            .unwrap();
            // An older version, run again afterwards, writes under the legacy scope.
            t.append_in(
                LEGACY,
                a,
                StreamPosition::ZERO,
                &[(seq(1), "p")],
                StateBatch::new(),
            )
            .unwrap();
        }
        let engine = Engine::open(EngineConfig::new(dir.path())).unwrap();
        let err = engine.tenant(TENANT).unwrap_err();
        assert!(matches!(err, Error::BadState { .. }), "{err}");
        assert!(err.to_string().contains("both"), "{err}");
    }
}
