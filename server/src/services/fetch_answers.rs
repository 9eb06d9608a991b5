//! FetchForAggregate answers kept encoded, so that fetching an aggregate that has not changed
//! since its last fetch costs neither an index scan, nor log reads, nor conversion, nor
//! encoding: the kept bytes go out as they are.
//!
//! An answer is kept under (tenant, aggregate root, event source) with the aggregate's version
//! it holds. Events are never changed, so while the aggregate is at that version the kept
//! answer is still the whole answer. Each fetch first asks the engine for the aggregate's
//! version (the one commits are checked against: it counts every acknowledged commit, indexed
//! or not) and uses the kept answer only at that version. A CommitForAggregate whose aggregate
//! has an answer kept at the version it expected adds its events to that answer, so the usual
//! round of a head (fetch, commit, fetch again) reads the store once; any other change makes
//! the next fetch read the aggregate again and keep the new answer. The answers share one
//! bound in bytes (`dolittle:runtime:annals:fetchCache`, default 32 MiB, `0` turns them off);
//! the least used go first.
//!
//! The answers go out through `event_store_wire`, whose codec sends bytes already encoded
//! (failures are encoded when they happen).

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use prost::encoding::{encode_key, encode_varint, WireType};
use prost::Message;
use quick_cache::sync::Cache;
use quick_cache::{Equivalent, Weighter};
use uuid::Uuid;

use crate::api::committed::{self, AggregateAnswer};
use crate::api::failure::{Failure, InBand};
use crate::proto::dolittle::runtime::events::committed_aggregate_events::CommittedAggregateEvent;
use crate::proto::dolittle::runtime::events::{
    CommittedAggregateEvents, FetchForAggregateRequest, FetchForAggregateResponse,
};
use crate::runtime::Runtime;
use crate::services::event_store;

/// The largest answer kept, and at most this share of the bound each.
const ANSWER_BYTES_MAX: usize = 1 << 20;
const ANSWER_SHARE_OF_BOUND: u64 = 8;

/// Answers kept per estimated item, for sizing the cache's table.
const ESTIMATED_ANSWER_BYTES: u64 = 4096;

/// Where an answer is kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    tenant: Uuid,
    root: Uuid,
    event_source: String,
}

/// A [`Key`] looked up without making one (it hashes alike: a `String` hashes as its `str`).
#[derive(Hash)]
struct KeyRef<'a> {
    tenant: Uuid,
    root: Uuid,
    event_source: &'a str,
}

impl Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.tenant == key.tenant && self.root == key.root && self.event_source == key.event_source
    }
}

/// A kept answer: the encoded FetchForAggregateResponse of the aggregate at `version`, which
/// holds `events` events, their entries at `body`.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    version: u64,
    events: u64,
    encoded: Bytes,
    body: Range<usize>,
}

/// `FetchForAggregateResponse.events` and `CommittedAggregateEvents.events`.
const RESPONSE_EVENTS_FIELD: u32 = 2;
const EVENTS_FIELD: u32 = 4;

impl Answer {
    /// The answer holding `events`.
    pub(crate) fn of(mut events: CommittedAggregateEvents) -> Answer {
        let list = std::mem::take(&mut events.events);
        let mut body = Vec::new();
        let count = encode_events(&list, &mut body);
        Answer::assemble(&events, count, &body)
    }

    /// The answer whose header is `header` (an aggregate's events with the list left empty)
    /// and whose `count` events are encoded in `body`: byte for byte what prost makes of the
    /// whole response, as it writes fields in their numbers' order (the header's 1 to 3, the
    /// events' 4, then the current version's 5).
    fn assemble(header: &CommittedAggregateEvents, count: u64, body: &[u8]) -> Answer {
        debug_assert!(header.events.is_empty());
        let tail = CommittedAggregateEvents {
            current_aggregate_root_version: header.current_aggregate_root_version,
            ..CommittedAggregateEvents::default()
        };
        let mut head = header.clone();
        head.current_aggregate_root_version = 0;
        let inner = head.encoded_len() + body.len() + tail.encoded_len();
        let mut out = Vec::with_capacity(inner + 16);
        encode_key(RESPONSE_EVENTS_FIELD, WireType::LengthDelimited, &mut out);
        encode_varint(inner as u64, &mut out);
        head.encode_raw(&mut out);
        let start = out.len();
        out.extend_from_slice(body);
        let end = out.len();
        tail.encode_raw(&mut out);
        Answer {
            version: header.current_aggregate_root_version,
            events: count,
            encoded: out.into(),
            body: start..end,
        }
    }

    /// The encoded FetchForAggregateResponse.
    pub(crate) fn encoded(&self) -> Bytes {
        self.encoded.clone()
    }
}

/// Appends the entries of `events` (field 4 of CommittedAggregateEvents) to `out`; returns
/// how many.
fn encode_events<'e>(
    events: impl IntoIterator<Item = &'e CommittedAggregateEvent>,
    out: &mut Vec<u8>,
) -> u64 {
    let mut count = 0;
    for event in events {
        prost::encoding::message::encode(EVENTS_FIELD, event, out);
        count += 1;
    }
    count
}

/// Which events an answer holds: all of the aggregate's (`None`), or those of the listed event
/// types (sorted, without repeats), as FetchForAggregateInBatches selects them.
pub(crate) type Selection = Option<Box<[Uuid]>>;

/// The most answers kept per aggregate, one per selection (a head asks with one or two).
const SELECTIONS_MAX: usize = 4;

/// What is kept of one aggregate: its answers at `version`, one per selection.
#[derive(Debug, Clone)]
struct Kept {
    version: u64,
    answers: Vec<(Selection, Answer)>,
}

#[derive(Debug, Clone)]
struct KeptWeight;

impl Weighter<Key, Kept> for KeptWeight {
    fn weight(&self, key: &Key, kept: &Kept) -> u64 {
        // The bytes and selections, the key's text, and about what the table and the headers
        // take.
        let answers: usize = kept
            .answers
            .iter()
            .map(|(selection, answer)| {
                answer.encoded.len() + selection.as_ref().map_or(0, |s| s.len() * 16) + 64
            })
            .sum();
        (answers + key.event_source.len() + 64) as u64
    }
}

/// The selection of a fetch: `None` for all events, else the event types sorted and without
/// repeats.
pub(crate) fn selection(event_types: Option<&[Uuid]>) -> Selection {
    event_types.map(|types| {
        let mut types = types.to_vec();
        types.sort_unstable();
        types.dedup();
        types.into_boxed_slice()
    })
}

/// The kept answers of every tenant, under one bound.
pub(crate) struct FetchAnswers {
    cache: Option<Cache<Key, Kept, KeptWeight>>,
    answer_bytes_max: usize,
}

impl FetchAnswers {
    /// Answers kept up to `bytes` in all; 0 keeps none.
    pub(crate) fn new(bytes: u64) -> FetchAnswers {
        if bytes == 0 {
            return FetchAnswers {
                cache: None,
                answer_bytes_max: 0,
            };
        }
        let items = usize::try_from(bytes / ESTIMATED_ANSWER_BYTES)
            .unwrap_or(usize::MAX)
            .max(16);
        let share = usize::try_from(bytes / ANSWER_SHARE_OF_BOUND).unwrap_or(usize::MAX);
        FetchAnswers {
            cache: Some(Cache::with_weighter(items, bytes, KeptWeight)),
            answer_bytes_max: ANSWER_BYTES_MAX.min(share),
        }
    }

    /// The answer kept for the aggregate's `selection` at `version`, if any.
    pub(crate) fn get(
        &self,
        (tenant, root, event_source): (Uuid, Uuid, &str),
        selection: &Selection,
        version: u64,
    ) -> Option<Answer> {
        let key = KeyRef {
            tenant,
            root,
            event_source,
        };
        let kept = self.cache.as_ref()?.get(&key)?;
        if kept.version != version {
            return None;
        }
        kept.answers
            .into_iter()
            .find(|(s, _)| s == selection)
            .map(|(_, answer)| answer)
    }

    /// Keeps `answer` of the aggregate's `selection`, unless it is too large or what is kept
    /// is newer.
    pub(crate) fn keep(
        &self,
        (tenant, root, event_source): (Uuid, Uuid, &str),
        selection: Selection,
        answer: Answer,
    ) {
        let Some(cache) = &self.cache else { return };
        if answer.encoded.len() > self.answer_bytes_max {
            return;
        }
        let key = KeyRef {
            tenant,
            root,
            event_source,
        };
        let kept = match cache.peek(&key) {
            Some(kept) if kept.version > answer.version => return,
            Some(mut kept) if kept.version == answer.version => {
                kept.answers.retain(|(s, _)| *s != selection);
                if kept.answers.len() >= SELECTIONS_MAX {
                    kept.answers.remove(0);
                }
                kept.answers.push((selection, answer));
                kept
            }
            _ => Kept {
                version: answer.version,
                answers: vec![(selection, answer)],
            },
        };
        self.put(tenant, root, event_source, kept);
    }

    fn put(&self, tenant: Uuid, root: Uuid, event_source: &str, kept: Kept) {
        let Some(cache) = &self.cache else { return };
        let key = Key {
            tenant,
            root,
            event_source: event_source.to_owned(),
        };
        cache.insert(key, kept);
    }

    /// A commit for the aggregate (`root`, `committed`'s event source) that expected
    /// `version_before` was acknowledged with `committed`, whose events have the event types
    /// `event_types`: answers kept at that version get its events (each the ones its
    /// selection holds). Answers kept at any other version are left as they are (the next
    /// fetch reads the aggregate).
    pub(crate) fn committed(
        &self,
        tenant: Uuid,
        root: Uuid,
        version_before: u64,
        committed: &dyn CommittedEntries,
        event_types: &[Uuid],
    ) {
        let Some(cache) = &self.cache else { return };
        let count = committed.count();
        let (event_source, current) = committed.aggregate();
        if event_types.len() != count || version_before.checked_add(count as u64) != Some(current) {
            return;
        }
        let key = KeyRef {
            tenant,
            root,
            event_source,
        };
        let Some(kept) = cache.peek(&key) else { return };
        if kept.version != version_before {
            return;
        }
        let header = committed::aggregate_events_header(root, event_source, current);
        let answers = kept
            .answers
            .into_iter()
            .map(|(selection, answer)| {
                let mut body = Vec::with_capacity(answer.body.len() + committed.entries_len());
                body.extend_from_slice(&answer.encoded[answer.body.clone()]);
                let mut added = 0;
                for (i, t) in event_types.iter().enumerate() {
                    if selection.as_ref().is_none_or(|s| s.contains(t)) {
                        committed.write_entry(i, &mut body);
                        added += 1;
                    }
                }
                let answer = Answer::assemble(&header, answer.events + added, &body);
                (selection, answer)
            })
            .filter(|(_, answer)| answer.encoded.len() <= self.answer_bytes_max)
            .collect();
        if cache
            .peek(&key)
            .is_some_and(|now| now.version > version_before)
        {
            return;
        }
        self.put(
            tenant,
            root,
            event_source,
            Kept {
                version: current,
                answers,
            },
        );
    }
}

/// The events of an acknowledged commit for an aggregate, as a kept answer takes them: the
/// contract's message (`CommittedAggregateEvents`) or the CommitForAggregate rpc's encoded
/// answer (`committed::AggregateAnswer`), which give the same bytes.
pub(crate) trait CommittedEntries {
    /// How many events the commit made.
    fn count(&self) -> usize;
    /// The aggregate's event source, and its version after the commit.
    fn aggregate(&self) -> (&str, u64);
    /// About how many bytes the events' entries take (to size a buffer).
    fn entries_len(&self) -> usize;
    /// Appends the `i`-th event as an entry of `CommittedAggregateEvents.events`.
    fn write_entry(&self, i: usize, out: &mut Vec<u8>);
}

impl CommittedEntries for CommittedAggregateEvents {
    fn count(&self) -> usize {
        self.events.len()
    }

    fn aggregate(&self) -> (&str, u64) {
        (&self.event_source_id, self.current_aggregate_root_version)
    }

    fn entries_len(&self) -> usize {
        self.encoded_len()
    }

    fn write_entry(&self, i: usize, out: &mut Vec<u8>) {
        if let Some(event) = self.events.get(i) {
            prost::encoding::message::encode(EVENTS_FIELD, event, out);
        }
    }
}

impl CommittedEntries for AggregateAnswer {
    fn count(&self) -> usize {
        AggregateAnswer::count(self)
    }

    fn aggregate(&self) -> (&str, u64) {
        AggregateAnswer::aggregate(self)
    }

    fn entries_len(&self) -> usize {
        self.encoded_len()
    }

    fn write_entry(&self, i: usize, out: &mut Vec<u8>) {
        AggregateAnswer::write_entry(self, i, out);
    }
}

/// A FetchForAggregateResponse, encoded.
pub(crate) struct Encoded(Bytes);

impl Encoded {
    pub(crate) fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl InBand<Bytes> for Encoded {
    fn ok(encoded: Bytes) -> Self {
        Encoded(encoded)
    }

    fn failed(failure: &Failure) -> Self {
        Encoded(event_store::encoded(&FetchForAggregateResponse::failed(
            failure,
        )))
    }
}

/// The aggregate's events, encoded as a FetchForAggregateResponse: the kept answer when the
/// aggregate has not changed since it was kept, else fetched, encoded and kept.
pub(crate) async fn fetch(
    runtime: &Runtime,
    (context, tenant): (annals_engine::ExecutionContext, Arc<annals_engine::Tenant>),
    request: FetchForAggregateRequest,
) -> Result<Bytes, Failure> {
    let (root, event_source) =
        crate::api::convert::aggregate("aggregate", request.aggregate.as_ref())?;
    if let Some(answer) = kept_answer(runtime, &tenant, (root, &event_source), &None) {
        return Ok(answer.encoded);
    }
    let tenant_id = context.tenant_id;
    let events = event_store::fetch_events(runtime, (context, tenant), root, &event_source).await?;
    let answer = Answer::of(events);
    let aggregate = (tenant_id, root, event_source.as_str());
    runtime.fetch_answers.keep(aggregate, None, answer.clone());
    Ok(answer.encoded)
}

/// The answer kept for the aggregate's `selection`, if the aggregate has not changed since it
/// was kept; counted as kept or read either way, and its events as fetched when kept. An
/// error finding the aggregate's version finds nothing: the fetch that follows reports it.
pub(crate) fn kept_answer(
    runtime: &Runtime,
    tenant: &annals_engine::Tenant,
    (root, event_source): (Uuid, &str),
    selection: &Selection,
) -> Option<Answer> {
    let tenant_id = tenant.id().0;
    let answer = tenant
        .aggregate_version(root, event_source)
        .ok()
        .and_then(|version| {
            let aggregate = (tenant_id, root, event_source);
            runtime.fetch_answers.get(aggregate, selection, version)
        });
    runtime.metrics.fetch_answer(answer.is_some());
    if let Some(answer) = &answer {
        runtime.metrics.fetched(tenant_id, answer.events);
    }
    answer
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use crate::api::committed;

    const TENANT: Uuid = Uuid::from_u128(1);
    const ROOT: Uuid = Uuid::from_u128(2);

    /// The aggregate "cart" with events at versions `versions`, answered at the last one's
    /// version + 1.
    fn aggregate(versions: std::ops::Range<u64>) -> CommittedAggregateEvents {
        let mut events = committed::aggregate_events(ROOT, "cart", versions.end, &[]);
        events.events = versions
            .map(|v| CommittedAggregateEvent {
                event_log_sequence_number: 100 + v,
                content: format!(r#"{{"v":{v},"pad":"{}"}}"#, "x".repeat(v as usize * 50)),
                aggregate_root_version: v,
                public: v % 2 == 0,
                ..CommittedAggregateEvent::default()
            })
            .collect();
        events
    }

    const TYPE_A: Uuid = Uuid::from_u128(0xa);
    const TYPE_B: Uuid = Uuid::from_u128(0xb);

    /// The event types of `events`: A at even versions, B at odd ones.
    fn types_of(events: &CommittedAggregateEvents) -> Vec<Uuid> {
        events
            .events
            .iter()
            .map(|e| {
                if e.aggregate_root_version % 2 == 0 {
                    TYPE_A
                } else {
                    TYPE_B
                }
            })
            .collect()
    }

    /// `events` with only the events of type A.
    fn only_a(mut events: CommittedAggregateEvents) -> CommittedAggregateEvents {
        events.events.retain(|e| e.aggregate_root_version % 2 == 0);
        events
    }

    fn encoded(events: &CommittedAggregateEvents) -> Vec<u8> {
        FetchForAggregateResponse::ok(events.clone()).encode_to_vec()
    }

    #[test]
    fn an_answer_is_the_bytes_prost_makes_of_the_whole_response() {
        for versions in [0..0, 0..1, 0..2, 0..40] {
            let events = aggregate(versions.clone());
            let answer = Answer::of(events.clone());
            assert_eq!(answer.encoded[..], encoded(&events)[..], "{versions:?}");
            assert_eq!(answer.version, versions.end);
            assert_eq!(answer.events, versions.end);
            let decoded = FetchForAggregateResponse::decode(answer.encoded.clone()).unwrap();
            assert_eq!(decoded.events.unwrap(), events);
        }
    }

    #[test]
    fn answers_are_kept_per_tenant_aggregate_and_version() {
        let answers = FetchAnswers::new(1 << 20);
        answers.keep((TENANT, ROOT, "cart"), None, Answer::of(aggregate(0..3)));
        assert!(answers.get((TENANT, ROOT, "cart"), &None, 3).is_some());
        assert!(answers.get((TENANT, ROOT, "cart"), &None, 2).is_none());
        assert!(answers.get((TENANT, ROOT, "cart"), &None, 4).is_none());
        assert!(answers
            .get((Uuid::from_u128(9), ROOT, "cart"), &None, 3)
            .is_none());
        assert!(answers
            .get((TENANT, Uuid::from_u128(9), "cart"), &None, 3)
            .is_none());
        assert!(answers.get((TENANT, ROOT, "cart2"), &None, 3).is_none());
        // An older answer never replaces a newer one; a newer one does.
        answers.keep((TENANT, ROOT, "cart"), None, Answer::of(aggregate(0..2)));
        assert!(answers.get((TENANT, ROOT, "cart"), &None, 3).is_some());
        answers.keep((TENANT, ROOT, "cart"), None, Answer::of(aggregate(0..5)));
        assert!(answers.get((TENANT, ROOT, "cart"), &None, 5).is_some());
        // None kept when off, and none larger than its share of the bound.
        let off = FetchAnswers::new(0);
        off.keep((TENANT, ROOT, "cart"), None, Answer::of(aggregate(0..1)));
        assert!(off.get((TENANT, ROOT, "cart"), &None, 1).is_none());
        let small = FetchAnswers::new(8 << 10);
        small.keep((TENANT, ROOT, "cart"), None, Answer::of(aggregate(0..40)));
        assert!(small.get((TENANT, ROOT, "cart"), &None, 40).is_none());
        small.keep((TENANT, ROOT, "cart"), None, Answer::of(aggregate(0..1)));
        assert!(small.get((TENANT, ROOT, "cart"), &None, 1).is_some());
    }

    #[test]
    fn a_commit_at_the_kept_version_extends_the_kept_answer() {
        let answers = FetchAnswers::new(1 << 20);
        answers.keep((TENANT, ROOT, "cart"), None, Answer::of(aggregate(0..3)));
        // The commit of versions 3 and 4, as its response carries them.
        let mut commit = aggregate(0..5);
        commit.events.drain(..3);
        answers.committed(TENANT, ROOT, 3, &commit, &types_of(&commit));
        let extended = answers.get((TENANT, ROOT, "cart"), &None, 5).unwrap();
        assert_eq!(extended.encoded[..], encoded(&aggregate(0..5))[..]);
        assert_eq!(extended.events, 5);
        // And again from there.
        let mut commit = aggregate(0..6);
        commit.events.drain(..5);
        answers.committed(TENANT, ROOT, 5, &commit, &types_of(&commit));
        let again = answers.get((TENANT, ROOT, "cart"), &None, 6).unwrap();
        assert_eq!(again.encoded[..], encoded(&aggregate(0..6))[..]);
    }

    /// The CommitForAggregate rpc's encoded answer extends a kept answer (all events, and a
    /// selection of types) to the same bytes as the contract's message does.
    #[test]
    fn an_encoded_commit_answer_extends_kept_answers_as_the_message_does() {
        use annals_engine::{
            AggregateCommit, AggregateCommitReceipt, AggregateEvent, EventLogSequenceNumber,
            EventType, ExecutionContext,
        };
        let commit = AggregateCommit {
            occurred_ns: 1_700_000_000_000_000_000,
            execution_context: ExecutionContext::default(),
            aggregate_root: ROOT,
            event_source_id: "cart".into(),
            expected_version: 3,
            events: [TYPE_A, TYPE_B, TYPE_A]
                .map(|id| AggregateEvent {
                    event_type: EventType { id, generation: 1 },
                    public: false,
                    content: r#"{"x":1}"#.into(),
                })
                .to_vec(),
        };
        let receipt = AggregateCommitReceipt {
            first: EventLogSequenceNumber(40),
            count: 3,
            version_before: 3,
        };
        let types = [TYPE_A, TYPE_B, TYPE_A];
        let message = committed::committed_aggregate_events(commit.clone(), receipt);
        let encoded = committed::PreparedAggregateAnswer::of(&commit).numbered(receipt);
        let a_only: Selection = Some(vec![TYPE_A].into_boxed_slice());
        let kept_after = |entries: &dyn CommittedEntries| {
            let answers = FetchAnswers::new(1 << 20);
            answers.keep((TENANT, ROOT, "cart"), None, Answer::of(aggregate(0..3)));
            answers.keep(
                (TENANT, ROOT, "cart"),
                a_only.clone(),
                Answer::of(only_a(aggregate(0..3))),
            );
            answers.committed(TENANT, ROOT, 3, entries, &types);
            [None, a_only.clone()].map(|selection| {
                let kept = answers.get((TENANT, ROOT, "cart"), &selection, 6).unwrap();
                (kept.events, kept.encoded)
            })
        };
        let from_message = kept_after(&message);
        assert_eq!(from_message[0].0, 6);
        assert_eq!(from_message[1].0, 4);
        assert_eq!(kept_after(&encoded), from_message);
    }

    #[test]
    fn a_commit_at_another_version_or_to_an_aggregate_not_kept_keeps_nothing() {
        let answers = FetchAnswers::new(1 << 20);
        answers.keep((TENANT, ROOT, "cart"), None, Answer::of(aggregate(0..3)));
        let mut commit = aggregate(0..5);
        commit.events.drain(..3);
        // Expected 2: the kept answer (3) is not this commit's base.
        let mut other = commit.clone();
        other.current_aggregate_root_version = 4;
        answers.committed(TENANT, ROOT, 2, &other, &types_of(&other));
        assert!(answers.get((TENANT, ROOT, "cart"), &None, 4).is_none());
        // A version that does not add up.
        answers.committed(TENANT, ROOT, 2, &commit, &types_of(&commit));
        assert!(answers.get((TENANT, ROOT, "cart"), &None, 5).is_none());
        // Another tenant's aggregate of the same ids.
        answers.committed(Uuid::from_u128(9), ROOT, 3, &commit, &types_of(&commit));
        assert!(answers
            .get((Uuid::from_u128(9), ROOT, "cart"), &None, 5)
            .is_none());
        assert!(answers.get((TENANT, ROOT, "cart"), &None, 3).is_some());
        // Nothing kept: nothing made from a commit.
        let answers = FetchAnswers::new(1 << 20);
        answers.committed(TENANT, ROOT, 3, &commit, &types_of(&commit));
        assert!(answers.get((TENANT, ROOT, "cart"), &None, 5).is_none());
    }

    #[test]
    fn each_selection_of_an_aggregate_has_its_answer_and_a_commit_extends_each() {
        let answers = FetchAnswers::new(1 << 20);
        let aggregate_id = (TENANT, ROOT, "cart");
        let a = selection(Some(&[TYPE_A, TYPE_A][..]));
        let b_and_a = selection(Some(&[TYPE_B, TYPE_A][..]));
        assert_eq!(b_and_a, selection(Some(&[TYPE_A, TYPE_B][..])));
        answers.keep(aggregate_id, None, Answer::of(aggregate(0..3)));
        answers.keep(aggregate_id, a.clone(), Answer::of(only_a(aggregate(0..3))));
        let kept_a = answers.get(aggregate_id, &a, 3).unwrap();
        assert_eq!(kept_a.encoded[..], encoded(&only_a(aggregate(0..3)))[..]);
        assert_eq!(kept_a.events, 2);
        assert!(answers.get(aggregate_id, &b_and_a, 3).is_none());
        // Versions 3 (B) and 4 (A): the whole answer gets both, A's answer only version 4.
        let mut commit = aggregate(0..5);
        commit.events.drain(..3);
        answers.committed(TENANT, ROOT, 3, &commit, &types_of(&commit));
        let all = answers.get(aggregate_id, &None, 5).unwrap();
        assert_eq!(all.encoded[..], encoded(&aggregate(0..5))[..]);
        let only = answers.get(aggregate_id, &a, 5).unwrap();
        assert_eq!(only.encoded[..], encoded(&only_a(aggregate(0..5)))[..]);
        assert_eq!(only.events, 3);
        // A newer version drops the older selections; the same version adds to them.
        answers.keep(aggregate_id, b_and_a.clone(), Answer::of(aggregate(0..6)));
        assert!(answers.get(aggregate_id, &None, 5).is_none());
        assert!(answers.get(aggregate_id, &b_and_a, 6).is_some());
        answers.keep(aggregate_id, None, Answer::of(aggregate(0..6)));
        assert!(answers.get(aggregate_id, &b_and_a, 6).is_some());
        assert!(answers.get(aggregate_id, &None, 6).is_some());
    }
}
