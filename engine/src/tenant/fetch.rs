//! Reading aggregates back: the instances the index knows, and the events of one instance,
//! whole or in batches under a byte budget ([`AggregateBatches`]), found through the
//! event-source index and read from the log.
//!
//! Invariants: a fetch first waits until the index covers every commit acknowledged before it
//! (read-your-writes) and returns events up to the aggregate's version at that moment only;
//! every event read is checked against its index entry (root, event source, version), and a
//! mismatch is corruption naming the log, never data; one error ends an iteration.

use std::{collections::VecDeque, sync::atomic::Ordering};

use annals_log::{
    decode_payload, AppliedByAggregate, Error as LogError, Event, EventLogSequenceNumber, Log,
    RecordBatch,
};
use uuid::Uuid;

use super::{split_seq, uuid_at, Tenant};
use crate::{
    aggregate::{budget_size, AggregateEvents},
    db::bad_state,
    error::{Error, Result},
    keys,
};

/// Index entries a fetch reads from RocksDB at a time.
const FETCH_ENTRIES_STEP: usize = 1024;
/// A fetch reads a run of the log in one call when its events lie this close together.
const FETCH_READ_WINDOW: u64 = 256;
/// A bound on one such read (the window's events are read whatever their size).
const FETCH_READ_BYTES_MAX: usize = 64 << 20;

impl Tenant {
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
            .map(|(k, v)| aggregate_instance(&k, &v))
            .collect()
    }

    /// A page of the instances of every aggregate root, ordered as
    /// [`aggregate_instances`](Self::aggregate_instances): at most `max` of them, from the one
    /// after `after` (root id, event source id), or from the first. For walking them all in
    /// bounded memory; it sees every commit acknowledged before the call.
    pub fn aggregate_instances_after(
        &self,
        after: Option<(Uuid, &str)>,
        max: usize,
    ) -> Result<Vec<(Uuid, String, u64)>> {
        self.check_live()?;
        self.wait_indexed(self.event_log.next_sequence_number())?;
        let prefix = [keys::AGGREGATE];
        let start = match after {
            // The next key after it: nothing sorts between a key and itself with a 0 after.
            Some((root, event_source)) => {
                let mut key = keys::aggregate(root, event_source);
                key.push(0);
                key
            }
            None => prefix.to_vec(),
        };
        self.scan(&prefix, &start, max)?
            .into_iter()
            .map(|(k, v)| aggregate_instance(&k, &v))
            .collect()
    }

    /// Like [`aggregate_instances_after`](Self::aggregate_instances_after), with each
    /// instance's version as of the event log's `end` (the events below it), leaving out
    /// instances with none: what an export of a running tenant, cut at `end`, holds. Waits for
    /// the index to reach `end` (or the log's end, if that is before).
    pub fn aggregate_instances_at(
        &self,
        end: EventLogSequenceNumber,
        after: Option<(Uuid, &str)>,
        max: usize,
    ) -> Result<Vec<(Uuid, String, u64)>> {
        self.check_live()?;
        self.wait_indexed(end.min(self.event_log.next_sequence_number()))?;
        let prefix = [keys::AGGREGATE];
        let mut start = match after {
            Some((root, event_source)) => {
                let mut key = keys::aggregate(root, event_source);
                key.push(0);
                key
            }
            None => prefix.to_vec(),
        };
        let mut out = Vec::new();
        while out.len() < max {
            let page = self.scan(&prefix, &start, max - out.len())?;
            let Some((last, _)) = page.last() else { break };
            start.clone_from(last);
            start.push(0);
            for (key, value) in page {
                let (root, event_source, version) = aggregate_instance(&key, &value)?;
                let at = self.version_at(root, &event_source, version, end)?;
                if at > 0 {
                    out.push((root, event_source, at));
                }
            }
        }
        Ok(out)
    }

    /// An instance's version as of `end`: `version` when its last event is below `end`, else
    /// the number of its events below `end`, found by bisecting its index entries (their
    /// sequence numbers rise with the version).
    fn version_at(
        &self,
        root: Uuid,
        event_source: &str,
        version: u64,
        end: EventLogSequenceNumber,
    ) -> Result<u64> {
        let below = |v: u64| -> Result<bool> {
            let key = keys::event_source_entry(root, event_source, v);
            let value = self
                .get(&key)?
                .ok_or_else(|| bad_state(&key, "an aggregate's version has its index entry"))?;
            Ok(split_seq(&key, &value)?.0 < end.0)
        };
        if version == 0 || below(version - 1)? {
            return Ok(version);
        }
        // Versions 0..lo have events below `end`; hi.. do not.
        let (mut lo, mut hi) = (0, version - 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if below(mid)? {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// Every event of an aggregate instance (only the given event type ids, unless empty), in
    /// version order. Sees every commit acknowledged before the call.
    pub fn fetch_for_aggregate(
        &self,
        aggregate_root: Uuid,
        event_source_id: &str,
        event_types: &[Uuid],
    ) -> Result<AggregateEvents> {
        let batches = self.fetch_for_aggregate_in_batches(
            aggregate_root,
            event_source_id,
            event_types,
            usize::MAX,
        )?;
        Self::gather(batches)
    }

    /// [`fetch_for_aggregate`](Self::fetch_for_aggregate) when it needs no waiting: the index
    /// already covers every acknowledged commit and the instance has at most `events_max`
    /// events. Otherwise `None`, and nothing was read. For async servers, which answer small
    /// fetches on their own threads and send the rest (and any fetch that must wait for the
    /// indexer) to a blocking thread.
    pub fn try_fetch_for_aggregate(
        &self,
        aggregate_root: Uuid,
        event_source_id: &str,
        event_types: &[Uuid],
        events_max: u64,
    ) -> Option<Result<AggregateEvents>> {
        if let Err(e) = self.check_live() {
            return Some(Err(e));
        }
        if self.indexed.load(Ordering::Acquire) < self.event_log.next_sequence_number().0 {
            return None;
        }
        let batches = match self.aggregate_batches(
            aggregate_root,
            event_source_id,
            event_types,
            usize::MAX,
        ) {
            Ok(batches) => batches,
            Err(e) => return Some(Err(e)),
        };
        if batches.current_version > events_max {
            return None;
        }
        Some(Self::gather(batches))
    }

    /// Every event of a fetch's batches, as one answer.
    fn gather(mut batches: AggregateBatches<'_>) -> Result<AggregateEvents> {
        let mut events = Vec::new();
        for batch in &mut batches {
            events.extend(batch?);
        }
        Ok(AggregateEvents {
            aggregate_root: batches.root,
            event_source_id: std::mem::take(&mut batches.event_source_id),
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
        self.aggregate_batches(
            aggregate_root,
            event_source_id,
            event_types,
            batch_bytes_max,
        )
    }

    /// The batches of a fetch once the index covers what it must see.
    fn aggregate_batches(
        &self,
        aggregate_root: Uuid,
        event_source_id: &str,
        event_types: &[Uuid],
        batch_bytes_max: usize,
    ) -> Result<AggregateBatches<'_>> {
        let current_version =
            self.indexed_version_of(&keys::aggregate(aggregate_root, event_source_id))?;
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
            wanted: Vec::new(),
        })
    }
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
    /// The sequence numbers of one read, reused.
    wanted: Vec<EventLogSequenceNumber>,
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
                return Err(corruption(
                    &self.tenant.event_log,
                    format!(
                        "the index has aggregate {} {:?} at version {} but no entry from version {}",
                        self.root, self.event_source_id, self.current_version, self.next_version
                    ),
                ));
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
            // One read covers the entries that lie within a short window of the first (in
            // ascending order, as an aggregate's events are); it steps over the records
            // between them.
            self.wanted.clear();
            for &(_, seq) in &self.entries {
                let ascending = self.wanted.last().is_none_or(|last| seq > last.0);
                if !ascending || seq - first >= FETCH_READ_WINDOW {
                    break;
                }
                self.wanted.push(EventLogSequenceNumber(seq));
            }
            let run = self.wanted.len();
            let log = &self.tenant.event_log;
            log.read_selected_into(&self.wanted, FETCH_READ_BYTES_MAX, &mut self.records)?;
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
                    .map_err(|e| LogError::UndecodableRecord {
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
                    return Err(corruption(
                        log,
                        format!(
                            "the index puts version {version} of aggregate {} {:?} at sequence \
                             number {seq}, which holds another event",
                            self.root, self.event_source_id
                        ),
                    ));
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
                return Err(corruption(
                    log,
                    format!(
                        "the index points at sequence number {first}, which the log does not hold"
                    ),
                ));
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

/// The index and the log disagree: reported against the log, never returned as data.
fn corruption(log: &Log, what: String) -> Error {
    Error::Log(LogError::Corruption {
        path: log.dir().to_owned(),
        offset: 0,
        what,
    })
}

/// An `A` entry as (root id, event source id, events applied).
fn aggregate_instance(key: &[u8], value: &[u8]) -> Result<(Uuid, String, u64)> {
    let (root, event_source) = keys::split_aggregate(key)
        .ok_or_else(|| bad_state(key, "an aggregate key holds a root and a string"))?;
    let version = value
        .try_into()
        .map(u64::from_le_bytes)
        .map_err(|_| bad_state(key, "an aggregate version has 8 bytes"))?;
    Ok((root, event_source, version))
}
