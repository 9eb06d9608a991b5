//! Projections' state beyond the current state of each key (`state`): the definition a
//! projection was registered with, and each key's history, what its state became after each
//! event that changed it, which answers what a read model said as of any event-log position.
//!
//! Invariants:
//! - A key's history holds one entry per event that changed it, keyed by the event's
//!   sequence number, written in the same atomic batch as the current state and the
//!   processor's position (by the caller, through [`StateBatch`]).
//! - The state as of position `p` (after the events before `p`) is the key's last entry
//!   before `p`: a state, a deletion, or none (the key had no state then).
//! - Trimming to a floor `f` keeps, per key, the last entry before `f` when it is a state,
//!   so every position from `f` on is still answered exactly; positions before `f` are
//!   refused. The floor is written (synced) before any entry is removed, so a trim cut short
//!   never lets a position it may have damaged be answered.
//! - Nothing here blocks the processor: reads go through RocksDB iterators, which see a
//!   consistent view while writes go on.

use annals_log::{EventLogSequenceNumber, ScopeId};
use rocksdb::{DBRawIteratorWithThreadMode, WriteBatch};
use uuid::Uuid;

use super::Tenant;
use crate::{
    db::{bad_state, rocks, Db, Wal},
    error::{Error, Result},
    keys,
};

/// Entries a trim removes per synced batch.
const TRIM_BATCH: usize = 10_000;

/// What a projection's history holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProjectionHistorySize {
    /// Entries (one per event that changed a key).
    pub entries: u64,
    /// Their keys' and values' bytes, before RocksDB's compression.
    pub bytes: u64,
    /// Where the kept history begins.
    pub floor: EventLogSequenceNumber,
}

/// One entry of a key's history.
struct Entry<'a> {
    state: Option<&'a str>,
}

impl<'a> Entry<'a> {
    fn decode(key: &[u8], value: &'a [u8]) -> Result<Entry<'a>> {
        let (&present, rest) = value
            .split_first()
            .ok_or_else(|| bad_state(key, "a history entry is empty"))?;
        let state = rest
            .get(8..)
            .ok_or_else(|| bad_state(key, "a history entry has no occurred time"))?;
        let state = match present {
            0 => None,
            1 => Some(
                std::str::from_utf8(state).map_err(|_| bad_state(key, "the state is not UTF-8"))?,
            ),
            other => return Err(bad_state(key, &format!("a history entry marked {other}"))),
        };
        Ok(Entry { state })
    }
}

impl Tenant {
    /// The definition a projection was last registered with, as its caller wrote it.
    pub fn projection_definition(
        &self,
        scope: ScopeId,
        projection: Uuid,
    ) -> Result<Option<String>> {
        let key = keys::projection_definition(scope.0, projection);
        self.get(&key)?
            .map(|v| String::from_utf8(v).map_err(|_| bad_state(&key, "not UTF-8")))
            .transpose()
    }

    /// Every stored projection definition: scope, projection id and definition.
    pub fn projection_definitions(&self) -> Result<Vec<(ScopeId, Uuid, String)>> {
        let prefix = [keys::PROJECTION_DEFINITION];
        self.scan(&prefix, &prefix, usize::MAX)?
            .into_iter()
            .map(|(k, v)| {
                let (scope, projection) = keys::split_two_ids(&k, keys::PROJECTION_DEFINITION)
                    .ok_or_else(|| bad_state(&k, "a projection definition key has 33 bytes"))?;
                let definition = String::from_utf8(v).map_err(|_| bad_state(&k, "not UTF-8"))?;
                Ok((ScopeId(scope), projection, definition))
            })
            .collect()
    }

    /// Up to `max` (key, state) of a projection in key order, after the key `after`.
    pub fn projection_states_page(
        &self,
        scope: ScopeId,
        projection: Uuid,
        after: Option<&str>,
        max: usize,
    ) -> Result<Vec<(String, String)>> {
        let prefix = keys::projection_prefix(scope.0, projection);
        let start = match after {
            // The first key after `after`: `after` and a zero byte.
            Some(after) => {
                let mut start = keys::projection(scope.0, projection, after);
                start.push(0);
                start
            }
            None => prefix.clone(),
        };
        self.scan(&prefix, &start, max)?
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

    /// Where a projection's kept history begins: states as of earlier positions are trimmed.
    pub fn projection_history_floor(
        &self,
        scope: ScopeId,
        projection: Uuid,
    ) -> Result<EventLogSequenceNumber> {
        Ok(EventLogSequenceNumber(
            self.get_u64(&keys::projection_history_floor(scope.0, projection))?
                .unwrap_or(0),
        ))
    }

    /// A key's state as of event-log position `at`: after the events before it. `None` when
    /// the key had no state then. [`Error::HistoryTrimmed`] when `at` is before the history's
    /// floor. Whether the projection has processed up to `at` is the caller's to check.
    pub fn projection_state_at(
        &self,
        scope: ScopeId,
        projection: Uuid,
        key: &str,
        at: EventLogSequenceNumber,
    ) -> Result<Option<String>> {
        self.check_floor(scope, projection, at)?;
        let group = keys::projection_key_history(scope.0, projection, key);
        let cf = self.cf()?;
        let mut iter = self.shared.db.raw_iterator_cf(&cf);
        last_before(&mut iter, &group, at)
    }

    /// Up to `max` keys' states as of event-log position `at`, in the history's key order
    /// (by key length, then bytes), starting after the key `after`; keys without a state then
    /// are left out. Errors as [`Tenant::projection_state_at`].
    pub fn projection_states_at(
        &self,
        scope: ScopeId,
        projection: Uuid,
        at: EventLogSequenceNumber,
        after: Option<&str>,
        max: usize,
    ) -> Result<Vec<(String, String)>> {
        self.check_floor(scope, projection, at)?;
        let prefix = keys::projection_history_prefix(scope.0, projection);
        let mut next_group = match after {
            Some(after) => {
                keys::prefix_end(&keys::projection_key_history(scope.0, projection, after))
            }
            None => prefix.clone(),
        };
        let cf = self.cf()?;
        let mut iter = self.shared.db.raw_iterator_cf(&cf);
        let mut out = Vec::new();
        while out.len() < max {
            iter.seek(&next_group);
            iter.status().map_err(rocks("iterate"))?;
            let Some(found) = iter.key().filter(|k| k.starts_with(&prefix)) else {
                break;
            };
            let (group, key, _) = keys::split_projection_history(found)
                .ok_or_else(|| bad_state(found, "a projection history key does not split"))?;
            let (group, key) = (group.to_vec(), key.to_owned());
            if let Some(state) = last_before(&mut iter, &group, at)? {
                out.push((key, state));
            }
            next_group = keys::prefix_end(&group);
        }
        Ok(out)
    }

    /// Trims a projection's history to begin at `floor`: positions before it are no longer
    /// answered. Returns how many entries were removed. A floor at or before the current one
    /// removes nothing.
    pub fn trim_projection_history(
        &self,
        scope: ScopeId,
        projection: Uuid,
        floor: EventLogSequenceNumber,
    ) -> Result<u64> {
        if floor <= self.projection_history_floor(scope, projection)? {
            return Ok(0);
        }
        let cf = self.cf()?;
        let mut batch = WriteBatch::default();
        batch.put_cf(
            &cf,
            keys::projection_history_floor(scope.0, projection),
            floor.0.to_le_bytes(),
        );
        self.write(batch, Wal::Synced)?;

        let prefix = keys::projection_history_prefix(scope.0, projection);
        let mut iter = self.shared.db.raw_iterator_cf(&cf);
        iter.seek(&prefix);
        let mut removed = 0u64;
        let mut batch = WriteBatch::default();
        let mut pending = 0usize;
        // The last entry before the floor of the key being walked: removed once a later one
        // before the floor turns up, kept (if it is a state) when the key's entries reach
        // the floor or end.
        let mut last: Option<(Vec<u8>, Vec<u8>, bool)> = None;
        loop {
            let current = iter
                .key()
                .filter(|k| k.starts_with(&prefix))
                .map(|k| -> Result<_> {
                    let (group, _, seq) = keys::split_projection_history(k)
                        .ok_or_else(|| bad_state(k, "a projection history key does not split"))?;
                    Ok((group.to_vec(), k.to_vec(), seq))
                })
                .transpose()?;
            if let Some((group, ..)) = &last {
                let same = current.as_ref().is_some_and(|(g, ..)| g == group);
                let past = current.as_ref().is_some_and(|(.., seq)| *seq >= floor.0);
                if !same || past {
                    // The key's last entry before the floor: a deletion is not needed to
                    // answer any position from the floor on.
                    if let Some((_, key, false)) = last.take() {
                        batch.delete_cf(&cf, key);
                        pending += 1;
                        removed += 1;
                    }
                    last = None;
                }
            }
            let Some((group, key, seq)) = current else {
                break;
            };
            if seq < floor.0 {
                let present = iter
                    .value()
                    .and_then(|v| v.first())
                    .is_some_and(|&b| b == 1);
                if let Some((_, earlier, _)) = last.replace((group, key, present)) {
                    batch.delete_cf(&cf, earlier);
                    pending += 1;
                    removed += 1;
                }
                iter.next();
            } else {
                // Skip the rest of this key's entries: all at or after the floor.
                iter.seek(keys::prefix_end(&group));
            }
            if pending >= TRIM_BATCH {
                self.write(std::mem::take(&mut batch), Wal::Synced)?;
                pending = 0;
            }
            iter.status().map_err(rocks("iterate"))?;
        }
        iter.status().map_err(rocks("iterate"))?;
        drop(iter);
        if pending > 0 {
            self.write(batch, Wal::Synced)?;
        }
        Ok(removed)
    }

    /// How many entries a projection's history holds, their bytes, and its floor.
    pub fn projection_history_size(
        &self,
        scope: ScopeId,
        projection: Uuid,
    ) -> Result<ProjectionHistorySize> {
        let prefix = keys::projection_history_prefix(scope.0, projection);
        let cf = self.cf()?;
        let mut iter = self.shared.db.raw_iterator_cf(&cf);
        iter.seek(&prefix);
        let mut size = ProjectionHistorySize {
            floor: self.projection_history_floor(scope, projection)?,
            ..ProjectionHistorySize::default()
        };
        while let (Some(k), Some(v)) = (iter.key(), iter.value()) {
            if !k.starts_with(&prefix) {
                break;
            }
            size.entries += 1;
            size.bytes += (k.len() + v.len()) as u64;
            iter.next();
        }
        iter.status().map_err(rocks("iterate"))?;
        Ok(size)
    }

    fn check_floor(
        &self,
        scope: ScopeId,
        projection: Uuid,
        at: EventLogSequenceNumber,
    ) -> Result<()> {
        let floor = self.projection_history_floor(scope, projection)?;
        if at < floor {
            return Err(Error::HistoryTrimmed {
                requested: at.0,
                floor: floor.0,
            });
        }
        Ok(())
    }
}

/// The state in the last entry of the key history `group` before position `at`.
fn last_before(
    iter: &mut DBRawIteratorWithThreadMode<'_, Db>,
    group: &[u8],
    at: EventLogSequenceNumber,
) -> Result<Option<String>> {
    let Some(before) = at.0.checked_sub(1) else {
        return Ok(None);
    };
    iter.seek_for_prev(keys::projection_history_at(group, before));
    iter.status().map_err(rocks("iterate"))?;
    match (iter.key(), iter.value()) {
        (Some(k), Some(v)) if k.starts_with(group) && k.len() == group.len() + 8 => {
            Ok(Entry::decode(k, v)?.state.map(str::to_owned))
        }
        _ => Ok(None),
    }
}
