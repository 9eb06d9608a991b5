//! Processing state: what stream processors and projections keep between runs (the types and
//! their keys are in `crate::state`; event-horizon subscriptions have their own module,
//! `horizon`, for their state is written together with a scoped log).
//!
//! Invariants: none of it is in the log, so every write is synced before it returns, and the
//! writes of one [`StateBatch`] are one atomic batch.

use std::sync::Arc;

use annals_log::ScopeId;
use rocksdb::{BoundColumnFamily, WriteBatch};
use uuid::Uuid;

use super::{uuid_at, Tenant};
use crate::{
    db::{bad_state, Wal},
    error::Result,
    keys,
    state::{StateBatch, StateOp, StreamDefinition, StreamProcessorId, StreamProcessorState},
};

impl Tenant {
    /// Writes a batch of state changes; returns once they are durable.
    pub fn write_state(&self, state: StateBatch) -> Result<()> {
        if state.is_empty() {
            return Ok(());
        }
        let cf = self.cf()?;
        let mut batch = WriteBatch::default();
        add_state(&mut batch, &cf, state);
        drop(cf);
        self.write(batch, Wal::Synced)
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

    /// Records a stream's definition, durably, unless the same one is recorded already (so a
    /// processor registering again costs a read, not a synced write). Returns the definition
    /// it replaced, if it differed.
    pub fn put_stream_definition(
        &self,
        scope: ScopeId,
        stream: Uuid,
        definition: &StreamDefinition,
    ) -> Result<Option<StreamDefinition>> {
        self.check_live()?;
        let key = keys::stream_definition(scope.0, stream);
        let stored: Option<StreamDefinition> =
            self.get(&key)?.map(|v| from_json(&key, &v)).transpose()?;
        if stored.as_ref() == Some(definition) {
            return Ok(None);
        }
        let cf = self.cf()?;
        let mut batch = WriteBatch::default();
        batch.put_cf(&cf, &key, crate::state::to_json(definition));
        drop(cf);
        self.write(batch, Wal::Synced)?;
        Ok(stored)
    }

    /// Every recorded stream definition: scope, stream id and definition, in that order.
    pub fn stream_definitions(&self) -> Result<Vec<(ScopeId, Uuid, StreamDefinition)>> {
        let prefix = [keys::STREAM_DEFINITION];
        self.scan(&prefix, &prefix, usize::MAX)?
            .into_iter()
            .map(|(k, v)| {
                let (scope, stream) = keys::split_two_ids(&k, keys::STREAM_DEFINITION)
                    .ok_or_else(|| bad_state(&k, "a stream definition key has 33 bytes"))?;
                Ok((ScopeId(scope), stream, from_json(&k, &v)?))
            })
            .collect()
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
        self.projection_states_page(scope, projection, None, usize::MAX)
    }
}

pub(super) fn from_json<T: serde::de::DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T> {
    serde_json::from_slice(value).map_err(|e| bad_state(key, &e.to_string()))
}

/// Adds the puts and deletes of `state` to `batch`, in `cf`.
pub(super) fn add_state(
    batch: &mut WriteBatch,
    cf: &Arc<BoundColumnFamily<'_>>,
    state: StateBatch,
) {
    for op in state.ops {
        match op {
            StateOp::Put(key, value) => batch.put_cf(cf, key, value),
            StateOp::Delete(key) => batch.delete_cf(cf, key),
            StateOp::DeleteRange(from, to) => batch.delete_range_cf(cf, from, to),
        }
    }
}
