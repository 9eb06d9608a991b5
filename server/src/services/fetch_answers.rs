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
struct Answer {
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
    fn of(mut events: CommittedAggregateEvents) -> Answer {
        let list = std::mem::take(&mut events.events);
        let mut body = Vec::new();
        encode_events(&list, &mut body);
        Answer::assemble(&events, list.len() as u64, &body)
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
}

/// `events` without its list of events.
#[expect(
    deprecated,
    reason = "the header carries the deprecated aggregateRootVersion as the original does"
)]
fn header_of(events: &CommittedAggregateEvents) -> CommittedAggregateEvents {
    CommittedAggregateEvents {
        event_source_id: events.event_source_id.clone(),
        aggregate_root_id: events.aggregate_root_id.clone(),
        aggregate_root_version: events.aggregate_root_version,
        events: Vec::new(),
        current_aggregate_root_version: events.current_aggregate_root_version,
    }
}

/// Appends the entries of `events` (field 4 of CommittedAggregateEvents) to `out`.
fn encode_events(events: &[CommittedAggregateEvent], out: &mut Vec<u8>) {
    for event in events {
        prost::encoding::message::encode(EVENTS_FIELD, event, out);
    }
}

#[derive(Debug, Clone)]
struct AnswerWeight;

impl Weighter<Key, Answer> for AnswerWeight {
    fn weight(&self, key: &Key, answer: &Answer) -> u64 {
        // The bytes, the key's text, and about what the table and the two headers take.
        (answer.encoded.len() + key.event_source.len() + 96) as u64
    }
}

/// The kept answers of every tenant, under one bound.
pub(crate) struct FetchAnswers {
    cache: Option<Cache<Key, Answer, AnswerWeight>>,
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
            cache: Some(Cache::with_weighter(items, bytes, AnswerWeight)),
            answer_bytes_max: ANSWER_BYTES_MAX.min(share),
        }
    }

    /// The answer kept for the aggregate at `version`, if any.
    fn get(&self, tenant: Uuid, root: Uuid, event_source: &str, version: u64) -> Option<Answer> {
        let key = KeyRef {
            tenant,
            root,
            event_source,
        };
        self.cache
            .as_ref()?
            .get(&key)
            .filter(|answer| answer.version == version)
    }

    /// Keeps `answer`, unless it is too large or the one kept is newer.
    fn keep(&self, tenant: Uuid, root: Uuid, event_source: &str, answer: Answer) {
        let Some(cache) = &self.cache else { return };
        if answer.encoded.len() > self.answer_bytes_max {
            return;
        }
        let key = KeyRef {
            tenant,
            root,
            event_source,
        };
        if cache
            .peek(&key)
            .is_some_and(|kept| kept.version >= answer.version)
        {
            return;
        }
        let key = Key {
            tenant,
            root,
            event_source: event_source.to_owned(),
        };
        cache.insert(key, answer);
    }

    /// A commit for the aggregate (`root`, `committed.event_source_id`) that expected
    /// `version_before` was acknowledged with `committed`: an answer kept at that version gets
    /// its events. Any other kept answer is left as it is (the next fetch reads the aggregate).
    pub(crate) fn committed(
        &self,
        tenant: Uuid,
        root: Uuid,
        version_before: u64,
        committed: &CommittedAggregateEvents,
    ) {
        let count = committed.events.len() as u64;
        if version_before.checked_add(count) != Some(committed.current_aggregate_root_version) {
            return;
        }
        let Some(kept) = self.get(tenant, root, &committed.event_source_id, version_before) else {
            return;
        };
        let mut body = Vec::with_capacity(kept.body.len() + committed.encoded_len());
        body.extend_from_slice(&kept.encoded[kept.body.clone()]);
        encode_events(&committed.events, &mut body);
        let answer = Answer::assemble(&header_of(committed), kept.events + count, &body);
        self.keep(tenant, root, &committed.event_source_id, answer);
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
        Encoded(
            FetchForAggregateResponse::failed(failure)
                .encode_to_vec()
                .into(),
        )
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
    let tenant_id = context.tenant_id;
    let answers = &runtime.fetch_answers;
    // An error finding the version is the fetch's to report, below.
    if let Ok(version) = tenant.aggregate_version(root, &event_source) {
        if let Some(answer) = answers.get(tenant_id, root, &event_source, version) {
            runtime.metrics.fetch_answer(true);
            runtime.metrics.fetched(tenant_id, answer.events);
            return Ok(answer.encoded);
        }
    }
    runtime.metrics.fetch_answer(false);
    let events = event_store::fetch_events(runtime, (context, tenant), root, &event_source).await?;
    let answer = Answer::of(events);
    answers.keep(tenant_id, root, &event_source, answer.clone());
    Ok(answer.encoded)
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
        answers.keep(TENANT, ROOT, "cart", Answer::of(aggregate(0..3)));
        assert!(answers.get(TENANT, ROOT, "cart", 3).is_some());
        assert!(answers.get(TENANT, ROOT, "cart", 2).is_none());
        assert!(answers.get(TENANT, ROOT, "cart", 4).is_none());
        assert!(answers.get(Uuid::from_u128(9), ROOT, "cart", 3).is_none());
        assert!(answers.get(TENANT, Uuid::from_u128(9), "cart", 3).is_none());
        assert!(answers.get(TENANT, ROOT, "cart2", 3).is_none());
        // An older answer never replaces a newer one; a newer one does.
        answers.keep(TENANT, ROOT, "cart", Answer::of(aggregate(0..2)));
        assert!(answers.get(TENANT, ROOT, "cart", 3).is_some());
        answers.keep(TENANT, ROOT, "cart", Answer::of(aggregate(0..5)));
        assert!(answers.get(TENANT, ROOT, "cart", 5).is_some());
        // None kept when off, and none larger than its share of the bound.
        let off = FetchAnswers::new(0);
        off.keep(TENANT, ROOT, "cart", Answer::of(aggregate(0..1)));
        assert!(off.get(TENANT, ROOT, "cart", 1).is_none());
        let small = FetchAnswers::new(8 << 10);
        small.keep(TENANT, ROOT, "cart", Answer::of(aggregate(0..40)));
        assert!(small.get(TENANT, ROOT, "cart", 40).is_none());
        small.keep(TENANT, ROOT, "cart", Answer::of(aggregate(0..1)));
        assert!(small.get(TENANT, ROOT, "cart", 1).is_some());
    }

    #[test]
    fn a_commit_at_the_kept_version_extends_the_kept_answer() {
        let answers = FetchAnswers::new(1 << 20);
        answers.keep(TENANT, ROOT, "cart", Answer::of(aggregate(0..3)));
        // The commit of versions 3 and 4, as its response carries them.
        let mut commit = aggregate(0..5);
        commit.events.drain(..3);
        answers.committed(TENANT, ROOT, 3, &commit);
        let extended = answers.get(TENANT, ROOT, "cart", 5).unwrap();
        assert_eq!(extended.encoded[..], encoded(&aggregate(0..5))[..]);
        assert_eq!(extended.events, 5);
        // And again from there.
        let mut commit = aggregate(0..6);
        commit.events.drain(..5);
        answers.committed(TENANT, ROOT, 5, &commit);
        let again = answers.get(TENANT, ROOT, "cart", 6).unwrap();
        assert_eq!(again.encoded[..], encoded(&aggregate(0..6))[..]);
    }

    #[test]
    fn a_commit_at_another_version_or_to_an_aggregate_not_kept_keeps_nothing() {
        let answers = FetchAnswers::new(1 << 20);
        answers.keep(TENANT, ROOT, "cart", Answer::of(aggregate(0..3)));
        let mut commit = aggregate(0..5);
        commit.events.drain(..3);
        // Expected 2: the kept answer (3) is not this commit's base.
        let mut other = commit.clone();
        other.current_aggregate_root_version = 4;
        answers.committed(TENANT, ROOT, 2, &other);
        assert!(answers.get(TENANT, ROOT, "cart", 4).is_none());
        // A version that does not add up.
        answers.committed(TENANT, ROOT, 2, &commit);
        assert!(answers.get(TENANT, ROOT, "cart", 5).is_none());
        // Another tenant's aggregate of the same ids.
        answers.committed(Uuid::from_u128(9), ROOT, 3, &commit);
        assert!(answers.get(Uuid::from_u128(9), ROOT, "cart", 5).is_none());
        assert!(answers.get(TENANT, ROOT, "cart", 3).is_some());
        // Nothing kept: nothing made from a commit.
        let answers = FetchAnswers::new(1 << 20);
        answers.committed(TENANT, ROOT, 3, &commit);
        assert!(answers.get(TENANT, ROOT, "cart", 5).is_none());
    }
}
