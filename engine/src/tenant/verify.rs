//! Checking that the aggregate events of a log hold together: every instance's versions run
//! 0, 1, 2, ... in the order of the log, with no gap and no version given twice. Commits
//! through [`Tenant::commit_for_aggregate`] cannot break this; events brought in from
//! elsewhere (an import) can, and are checked once they are all in.
//!
//! The check reads the event-source index, which holds one entry per (root, event source,
//! version) in key order: one sequential pass, memory independent of the number of events.
//! Two events claiming the same version leave one entry (the later one), so the caller passes
//! the number of aggregate events it wrote; a shortfall sends a second pass over the log to
//! find the event whose entry was taken by a later one.

use annals_log::{
    decode_payload, payload_applied_by_aggregate, EventLogSequenceNumber, RecordBatch,
};
use uuid::Uuid;

use super::{split_seq, Tenant};
use crate::{
    db::bad_state,
    error::{Error, Result},
    keys,
};

/// Index entries read at a time.
const VERIFY_ENTRIES_STEP: usize = 4096;
/// Log bytes read at a time by the second pass.
const VERIFY_READ_BYTES_MAX: usize = 4 << 20;

/// What [`Tenant::verify_aggregate_versions`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AggregateVersionCheck {
    /// Aggregate instances with at least one event.
    pub instances: u64,
    /// Aggregate events indexed (one per instance and version).
    pub events: u64,
    /// The first inconsistency found, if any.
    pub problem: Option<AggregateVersionProblem>,
}

/// An aggregate event whose version does not follow its instance's previous event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateVersionProblem {
    /// The aggregate root (type) id.
    pub aggregate_root: Uuid,
    /// The instance's event source id.
    pub event_source_id: String,
    /// The event at fault.
    pub sequence_number: EventLogSequenceNumber,
    /// The version it claims.
    pub version: u64,
    /// What is wrong with it.
    pub what: String,
}

impl Tenant {
    /// Checks every aggregate instance of the event log: versions from 0, each once, rising
    /// with the sequence number. `aggregate_events` is the number of aggregate events the
    /// caller knows the log holds (a duplicated version shows as fewer index entries).
    /// Waits for the index to reach the log's end first.
    pub fn verify_aggregate_versions(
        &self,
        aggregate_events: u64,
    ) -> Result<AggregateVersionCheck> {
        self.check_live()?;
        self.wait_indexed(self.event_log.next_sequence_number())?;
        let mut check = AggregateVersionCheck::default();
        let prefix = [keys::EVENT_SOURCE];
        let mut start = prefix.to_vec();
        // The instance being walked: its key prefix, next expected version, last sequence
        // number.
        let mut current: Option<(Vec<u8>, u64, EventLogSequenceNumber)> = None;
        loop {
            let page = self.scan(&prefix, &start, VERIFY_ENTRIES_STEP)?;
            let Some((last, _)) = page.last() else {
                break;
            };
            start.clone_from(last);
            start.push(0);
            for (key, value) in page {
                let (instance, version) = key
                    .split_last_chunk::<8>()
                    .map(|(instance, _)| instance)
                    .zip(keys::version_of_entry(&key))
                    .ok_or_else(|| bad_state(&key, "an event-source entry ends with a version"))?;
                let seq = EventLogSequenceNumber(split_seq(&key, &value)?.0);
                let (expected, previous) = match &current {
                    Some((prefix, next, previous)) if prefix.as_slice() == instance => {
                        (*next, Some(*previous))
                    }
                    _ => {
                        check.instances += 1;
                        (0, None)
                    }
                };
                check.events += 1;
                let problem = if version == expected {
                    previous.filter(|p| seq <= *p).map(|previous| {
                        format!(
                            "version {version} comes before version {} (event {previous}) in \
                             the log",
                            version - 1
                        )
                    })
                } else {
                    Some(format!(
                        "version {version} where {expected} follows (no event has version \
                         {expected})"
                    ))
                };
                if let Some(what) = problem {
                    check.problem = Some(version_problem(instance, seq, version, what)?);
                    return Ok(check);
                }
                current = Some((instance.to_vec(), version + 1, seq));
            }
        }
        if check.events < aggregate_events {
            check.problem = self.find_duplicated_version()?;
            if check.problem.is_none() {
                return Err(Error::Index {
                    op: "verify aggregate versions",
                    detail: format!(
                        "{aggregate_events} aggregate events were written but {} are indexed, \
                         and no event's version is taken by another",
                        check.events
                    ),
                });
            }
        }
        Ok(check)
    }

    /// The first aggregate event whose index entry points at another event: a later event
    /// of its instance claimed the same version.
    fn find_duplicated_version(&self) -> Result<Option<AggregateVersionProblem>> {
        let end = self.event_log.next_sequence_number();
        let mut batch = RecordBatch::new();
        let mut from = EventLogSequenceNumber::ZERO;
        while from < end {
            self.event_log.read_into(
                from,
                self.shared.config.index.indexer_batch_events,
                VERIFY_READ_BYTES_MAX,
                &mut batch,
            )?;
            let Some(next) = batch.next() else { break };
            for (seq, payload) in batch.payloads() {
                if !payload_applied_by_aggregate(payload) {
                    continue;
                }
                let view = decode_payload(seq, payload).map_err(|e| {
                    Error::Log(annals_log::Error::UndecodableRecord {
                        sequence_number: seq,
                        what: e.0,
                    })
                })?;
                let Some(aggregate) = view.aggregate else {
                    continue;
                };
                let key = keys::event_source_entry(
                    aggregate.root_id,
                    view.event_source_id,
                    aggregate.version,
                );
                let Some(value) = self.get(&key)? else {
                    continue;
                };
                let indexed = EventLogSequenceNumber(split_seq(&key, &value)?.0);
                if indexed != seq {
                    return Ok(Some(AggregateVersionProblem {
                        aggregate_root: aggregate.root_id,
                        event_source_id: view.event_source_id.to_owned(),
                        sequence_number: seq,
                        version: aggregate.version,
                        what: format!(
                            "version {} is claimed again by event {indexed}",
                            aggregate.version
                        ),
                    }));
                }
            }
            from = next;
        }
        Ok(None)
    }
}

fn version_problem(
    instance: &[u8],
    seq: EventLogSequenceNumber,
    version: u64,
    what: String,
) -> Result<AggregateVersionProblem> {
    let mut key = instance.to_vec();
    key[0] = keys::AGGREGATE;
    let (aggregate_root, event_source_id) = keys::split_aggregate(&key)
        .ok_or_else(|| bad_state(instance, "an event-source entry names its instance"))?;
    Ok(AggregateVersionProblem {
        aggregate_root,
        event_source_id,
        sequence_number: seq,
        version,
        what,
    })
}
