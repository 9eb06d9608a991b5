//! Committed events on the wire: the one place a `CommittedEvent` or `CommittedAggregateEvent`
//! (and the `CommittedAggregateEvents` around the latter) is built, whether the event was just
//! committed (the event store's answer), read back for an aggregate (fetches, management) or
//! read from the log (what processors deliver). Every path goes through the same two builders,
//! so the answers agree to the byte.
//!
//! Invariants: an event carries its commit's time and execution context (converted once per
//! commit where the commit is at hand); an event received over the event horizon is marked
//! `external` with its producer's sequence number and the time it was received, any other is
//! not; an aggregate's event carries the aggregate version it was applied at.

use annals_engine_types::{AggregateCommit, AggregateCommitReceipt, AggregateEvent};
use annals_log::{
    Commit, CommitReceipt, Event, EventHorizonOrigin, EventType, EventView, ExecutionContext,
    UncommittedEvent,
};
use bytes::{BufMut, Bytes};
use prost::Message;
use prost_types::Timestamp;
use uuid::Uuid;

use crate::api::failure::{Failure, InBand};
use crate::api::{convert, ids};
use crate::proto::dolittle::execution::ExecutionContext as WireExecutionContext;
use crate::proto::dolittle::runtime::events::committed_aggregate_events::CommittedAggregateEvent;
use crate::proto::dolittle::runtime::events::{
    CommitAggregateEventsResponse, CommitEventsResponse, CommittedAggregateEvents, CommittedEvent,
};

/// A committed event: `event` as it was committed, at `sequence_number`, with its commit's
/// time and execution context (already in wire form).
fn committed_event_of(
    sequence_number: u64,
    occurred: Timestamp,
    execution_context: WireExecutionContext,
    event: UncommittedEvent,
) -> CommittedEvent {
    let horizon = event.event_horizon;
    CommittedEvent {
        event_log_sequence_number: sequence_number,
        occurred: Some(occurred),
        event_source_id: event.event_source_id,
        execution_context: Some(execution_context),
        event_type: Some(convert::event_type_to_wire(event.event_type)),
        public: event.public,
        content: event.content,
        external: horizon.is_some(),
        external_event_log_sequence_number: horizon.map_or(0, |h| h.external_sequence_number),
        external_event_received: horizon.map(|h| convert::timestamp(h.received_ns)),
    }
}

/// An aggregate's event: `event` applied at aggregate version `version`, at `sequence_number`,
/// with its commit's time and execution context (already in wire form).
fn committed_aggregate_event_of(
    sequence_number: u64,
    occurred: Timestamp,
    execution_context: WireExecutionContext,
    version: u64,
    event: AggregateEvent,
) -> CommittedAggregateEvent {
    CommittedAggregateEvent {
        event_log_sequence_number: sequence_number,
        occurred: Some(occurred),
        execution_context: Some(execution_context),
        event_type: Some(convert::event_type_to_wire(event.event_type)),
        public: event.public,
        content: event.content,
        aggregate_root_version: version,
    }
}

/// The events of a commit just made (the answer to Commit).
pub fn committed_events(commit: Commit, receipt: CommitReceipt) -> Vec<CommittedEvent> {
    let occurred = convert::timestamp(commit.occurred_ns);
    let context = convert::execution_context_to_wire(&commit.execution_context);
    commit
        .events
        .into_iter()
        .zip(receipt.first.0..)
        .map(|(event, sequence_number)| {
            committed_event_of(sequence_number, occurred, context.clone(), event)
        })
        .collect()
}

/// The answer to a Commit, its events' fields written while the commit is on its way to disk:
/// everything of each `CommittedEvent` but its sequence number, which only the acknowledged
/// commit knows ([`PreparedCommitAnswer::numbered`]). Encoded, it is byte for byte the
/// `CommitEventsResponse` of [`committed_events`] (the tests compare the two).
#[derive(Debug, Clone, Default)]
pub struct PreparedCommitAnswer {
    /// Each event's fields after its sequence number, one event after another.
    fields: Vec<u8>,
    /// Where each event's fields end in `fields`.
    ends: Vec<usize>,
}

impl PreparedCommitAnswer {
    /// The answer to `commit` but its sequence numbers. Its time and execution context are
    /// converted and encoded once and written into every event.
    pub fn of(commit: &Commit) -> PreparedCommitAnswer {
        let occurred = convert::timestamp(commit.occurred_ns);
        let context = convert::execution_context_to_wire(&commit.execution_context).encode_to_vec();
        let fields_of = |event| EventFields::committed(event, occurred, &context);
        let len = commit
            .events
            .iter()
            .map(|e| fields_of(e).encoded_len())
            .sum();
        let mut fields = Vec::with_capacity(len);
        let ends = commit
            .events
            .iter()
            .map(|event| {
                fields_of(event).encode(&mut fields);
                fields.len()
            })
            .collect();
        PreparedCommitAnswer { fields, ends }
    }

    /// The answer, its events numbered from the receipt's first.
    pub fn numbered(self, receipt: CommitReceipt) -> CommitAnswer {
        debug_assert_eq!(self.ends.len() as u64, receipt.count);
        CommitAnswer {
            prepared: self,
            first: receipt.first.0,
        }
    }
}

/// The answer to a Commit that was acknowledged, ready to encode as its `CommitEventsResponse`.
#[derive(Debug, Clone)]
pub struct CommitAnswer {
    prepared: PreparedCommitAnswer,
    first: u64,
}

/// `CommitEventsResponse.events`, `CommittedEvent.eventLogSequenceNumber`.
const RESPONSE_EVENTS_FIELD: u32 = 2;
const SEQUENCE_NUMBER_FIELD: u32 = 1;

impl CommitAnswer {
    /// Each event's sequence number and fields.
    fn events(&self) -> impl Iterator<Item = (u64, &[u8])> + '_ {
        numbered(&self.prepared.fields, &self.prepared.ends, self.first)
    }

    /// The length of the encoded `CommitEventsResponse`.
    pub fn encoded_len(&self) -> usize {
        self.events()
            .map(|(n, fields)| numbered_entry_len(RESPONSE_EVENTS_FIELD, n, fields))
            .sum()
    }

    /// Writes the `CommitEventsResponse` (no failure; the events in order) to `buf`.
    pub fn encode(&self, buf: &mut impl BufMut) {
        for (n, fields) in self.events() {
            write_numbered_event(RESPONSE_EVENTS_FIELD, n, fields, buf);
        }
    }
}

/// Prepared events numbered: each event's sequence number (from `first` on) and its fields,
/// which end in `fields` where `ends` says.
fn numbered<'f>(
    fields: &'f [u8],
    ends: &'f [usize],
    first: u64,
) -> impl Iterator<Item = (u64, &'f [u8])> + 'f {
    let starts = std::iter::once(0).chain(ends.iter().copied());
    starts
        .zip(ends.iter().copied())
        .zip(first..)
        .map(move |((start, end), n)| (n, &fields[start..end]))
}

/// An event's length inside its entry: its sequence number (field 1 of `CommittedEvent` and of
/// `CommittedAggregateEvent`, left out at 0 as proto3 leaves out a zero) and its other fields.
fn numbered_event_len(sequence_number: u64, fields: &[u8]) -> usize {
    use prost::encoding::{encoded_len_varint, key_len};
    let number = if sequence_number == 0 {
        0
    } else {
        key_len(SEQUENCE_NUMBER_FIELD) + encoded_len_varint(sequence_number)
    };
    number + fields.len()
}

/// The length of an event's entry in field `tag` of the message around it.
fn numbered_entry_len(tag: u32, sequence_number: u64, fields: &[u8]) -> usize {
    use prost::encoding::{encoded_len_varint, key_len};
    let len = numbered_event_len(sequence_number, fields);
    key_len(tag) + encoded_len_varint(len as u64) + len
}

/// Writes an event's entry in field `tag`: its sequence number, then its other fields.
fn write_numbered_event(tag: u32, sequence_number: u64, fields: &[u8], buf: &mut impl BufMut) {
    use prost::encoding::{encode_key, encode_varint, WireType};
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(numbered_event_len(sequence_number, fields) as u64, buf);
    if sequence_number != 0 {
        encode_key(SEQUENCE_NUMBER_FIELD, WireType::Varint, buf);
        encode_varint(sequence_number, buf);
    }
    buf.put_slice(fields);
}

/// The events of an acknowledged commit as an rpc's response carries them, written by this
/// module ([`CommitAnswer`] for Commit, [`AggregateAnswer`] for CommitForAggregate).
pub trait EncodedEvents {
    /// The length of the encoded response.
    fn encoded_len(&self) -> usize;
    /// Writes the encoded response (no failure) to `buf`.
    fn encode(&self, buf: &mut impl BufMut);
    /// The encoded response carrying `failure` instead.
    fn failed_response(failure: &Failure) -> Vec<u8>;
}

/// A response as a commit rpc answers it: the acknowledged commit's events `A`, or a failure
/// (encoded when it happens).
#[derive(Debug, Clone)]
pub enum Answered<A> {
    /// The commit's events.
    Committed(A),
    /// An encoded response carrying its failure.
    Failed(Bytes),
}

/// A `CommitEventsResponse` as the Commit rpc answers it.
pub type CommitEventsAnswer = Answered<CommitAnswer>;

/// A `CommitAggregateEventsResponse` as the CommitForAggregate rpc answers it.
pub type AggregateEventsAnswer = Answered<AggregateAnswer>;

impl<A: EncodedEvents> Answered<A> {
    /// The length of the encoded response.
    pub fn encoded_len(&self) -> usize {
        match self {
            Answered::Committed(answer) => answer.encoded_len(),
            Answered::Failed(encoded) => encoded.len(),
        }
    }

    /// Writes the encoded response to `buf`.
    pub fn encode(&self, buf: &mut impl BufMut) {
        match self {
            Answered::Committed(answer) => answer.encode(buf),
            Answered::Failed(encoded) => buf.put_slice(encoded),
        }
    }
}

impl<A: EncodedEvents> InBand<A> for Answered<A> {
    fn ok(answer: A) -> Self {
        Answered::Committed(answer)
    }

    fn failed(failure: &Failure) -> Self {
        Answered::Failed(A::failed_response(failure).into())
    }
}

impl EncodedEvents for CommitAnswer {
    fn encoded_len(&self) -> usize {
        CommitAnswer::encoded_len(self)
    }

    fn encode(&self, buf: &mut impl BufMut) {
        CommitAnswer::encode(self, buf);
    }

    fn failed_response(failure: &Failure) -> Vec<u8> {
        CommitEventsResponse::failed(failure).encode_to_vec()
    }
}

impl EncodedEvents for AggregateAnswer {
    fn encoded_len(&self) -> usize {
        AggregateAnswer::encoded_len(self)
    }

    fn encode(&self, buf: &mut impl BufMut) {
        AggregateAnswer::encode(self, buf);
    }

    fn failed_response(failure: &Failure) -> Vec<u8> {
        CommitAggregateEventsResponse::failed(failure).encode_to_vec()
    }
}

/// A committed event's fields after its sequence number (2 to 10) as [`committed_event_of`]
/// fills them: its commit's time and execution context (the latter encoded), each field left
/// out where proto3 leaves it out (an empty string, false, zero).
struct EventFields<'e> {
    occurred: Timestamp,
    source: &'e str,
    context: &'e [u8],
    event_type: EventType,
    public: bool,
    content: &'e str,
    horizon: Option<EventHorizonOrigin>,
}

/// `dolittle.artifacts.Artifact`'s id and generation.
const ARTIFACT_ID_FIELD: u32 = 1;
const ARTIFACT_GENERATION_FIELD: u32 = 2;

impl<'e> EventFields<'e> {
    /// The fields of `event` committed at `occurred` with the encoded `context`.
    fn committed(event: &'e UncommittedEvent, occurred: Timestamp, context: &'e [u8]) -> Self {
        EventFields {
            occurred,
            source: &event.event_source_id,
            context,
            event_type: event.event_type,
            public: event.public,
            content: &event.content,
            horizon: event.event_horizon,
        }
    }

    fn delimited_len(tag: u32, len: usize) -> usize {
        use prost::encoding::{encoded_len_varint, key_len};
        key_len(tag) + encoded_len_varint(len as u64) + len
    }

    fn delimited(tag: u32, bytes: &[u8], buf: &mut impl BufMut) {
        use prost::encoding::{encode_key, encode_varint, WireType};
        encode_key(tag, WireType::LengthDelimited, buf);
        encode_varint(bytes.len() as u64, buf);
        buf.put_slice(bytes);
    }

    fn flag_len(tag: u32, on: bool) -> usize {
        if on {
            prost::encoding::key_len(tag) + 1
        } else {
            0
        }
    }

    fn flag(tag: u32, on: bool, buf: &mut impl BufMut) {
        use prost::encoding::{encode_key, encode_varint, WireType};
        if on {
            encode_key(tag, WireType::Varint, buf);
            encode_varint(1, buf);
        }
    }

    fn number_len(tag: u32, n: u64) -> usize {
        use prost::encoding::{encoded_len_varint, key_len};
        if n == 0 {
            0
        } else {
            key_len(tag) + encoded_len_varint(n)
        }
    }

    fn number(tag: u32, n: u64, buf: &mut impl BufMut) {
        use prost::encoding::{encode_key, encode_varint, WireType};
        if n != 0 {
            encode_key(tag, WireType::Varint, buf);
            encode_varint(n, buf);
        }
    }

    /// The length of an event type's `Artifact` (its id always, its generation unless 0).
    fn artifact_len(event_type: EventType) -> usize {
        Self::delimited_len(ARTIFACT_ID_FIELD, ids::UUID_MESSAGE_LEN)
            + Self::number_len(ARTIFACT_GENERATION_FIELD, u64::from(event_type.generation))
    }

    /// Writes an event type's `Artifact` as field `tag`.
    fn artifact(tag: u32, event_type: EventType, buf: &mut impl BufMut) {
        use prost::encoding::{encode_key, encode_varint, WireType};
        encode_key(tag, WireType::LengthDelimited, buf);
        encode_varint(Self::artifact_len(event_type) as u64, buf);
        Self::delimited(ARTIFACT_ID_FIELD, &ids::uuid_message(event_type.id), buf);
        Self::number(
            ARTIFACT_GENERATION_FIELD,
            u64::from(event_type.generation),
            buf,
        );
    }

    fn encoded_len(&self) -> usize {
        use prost::encoding::message;
        let received = self.horizon.map(|h| convert::timestamp(h.received_ns));
        message::encoded_len(2, &self.occurred)
            + if self.source.is_empty() {
                0
            } else {
                Self::delimited_len(3, self.source.len())
            }
            + Self::delimited_len(4, self.context.len())
            + Self::delimited_len(5, Self::artifact_len(self.event_type))
            + Self::flag_len(6, self.public)
            + if self.content.is_empty() {
                0
            } else {
                Self::delimited_len(7, self.content.len())
            }
            + Self::flag_len(8, self.horizon.is_some())
            + Self::number_len(9, self.horizon.map_or(0, |h| h.external_sequence_number))
            + received.map_or(0, |r| message::encoded_len(10, &r))
    }

    fn encode(&self, buf: &mut impl BufMut) {
        use prost::encoding::message;
        message::encode(2, &self.occurred, buf);
        if !self.source.is_empty() {
            Self::delimited(3, self.source.as_bytes(), buf);
        }
        Self::delimited(4, self.context, buf);
        Self::artifact(5, self.event_type, buf);
        Self::flag(6, self.public, buf);
        if !self.content.is_empty() {
            Self::delimited(7, self.content.as_bytes(), buf);
        }
        Self::flag(8, self.horizon.is_some(), buf);
        Self::number(
            9,
            self.horizon.map_or(0, |h| h.external_sequence_number),
            buf,
        );
        if let Some(horizon) = self.horizon {
            message::encode(10, &convert::timestamp(horizon.received_ns), buf);
        }
    }
}

/// The answer to a CommitForAggregate, written while the commit is on its way to disk as
/// [`PreparedCommitAnswer`] is for a Commit: everything but the events' sequence numbers, which
/// only the acknowledged commit knows. The aggregate's versions are known before: a commit
/// only succeeds at the version it expected. Encoded, it is byte for byte the
/// `CommitAggregateEventsResponse` of [`committed_aggregate_events`] (the tests compare them).
#[derive(Debug, Clone)]
pub struct PreparedAggregateAnswer {
    event_source_id: String,
    /// The aggregate's version after the commit.
    current: u64,
    /// `CommittedAggregateEvents`' fields before its events (1 to 3).
    head: Vec<u8>,
    /// Each event's fields after its sequence number, one event after another.
    fields: Vec<u8>,
    /// Where each event's fields end in `fields`.
    ends: Vec<usize>,
}

/// `CommitAggregateEventsResponse.events`, `CommittedAggregateEvents.events` and
/// `.currentAggregateRootVersion`.
const AGGREGATE_RESPONSE_EVENTS_FIELD: u32 = 2;
const AGGREGATE_EVENTS_FIELD: u32 = 4;
const CURRENT_VERSION_FIELD: u32 = 5;

impl PreparedAggregateAnswer {
    /// The answer to `commit` but its sequence numbers, should it be acknowledged.
    pub fn of(commit: &AggregateCommit) -> PreparedAggregateAnswer {
        let occurred = convert::timestamp(commit.occurred_ns);
        let context = convert::execution_context_to_wire(&commit.execution_context).encode_to_vec();
        let current = commit
            .expected_version
            .saturating_add(commit.events.len() as u64);
        let mut head = Vec::with_capacity(commit.event_source_id.len() + 40);
        if !commit.event_source_id.is_empty() {
            EventFields::delimited(1, commit.event_source_id.as_bytes(), &mut head);
        }
        EventFields::delimited(2, &ids::uuid_message(commit.aggregate_root), &mut head);
        EventFields::number(3, deprecated_aggregate_root_version(current), &mut head);
        let fields_of = |event, version| AggregateEventFields {
            occurred,
            context: &context,
            event,
            version,
        };
        // Each event's aggregate version (saturating: a commit whose versions would overflow
        // is refused by the engine, and its prepared answer dropped).
        let version = |i: usize| commit.expected_version.saturating_add(i as u64);
        let len = commit
            .events
            .iter()
            .enumerate()
            .map(|(i, e)| fields_of(e, version(i)).encoded_len())
            .sum();
        let mut fields = Vec::with_capacity(len);
        let ends = commit
            .events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                fields_of(e, version(i)).encode(&mut fields);
                fields.len()
            })
            .collect();
        PreparedAggregateAnswer {
            event_source_id: commit.event_source_id.clone(),
            current,
            head,
            fields,
            ends,
        }
    }

    /// The answer, its events numbered from the receipt's first.
    pub fn numbered(self, receipt: AggregateCommitReceipt) -> AggregateAnswer {
        debug_assert_eq!(self.ends.len() as u64, receipt.count);
        debug_assert_eq!(self.current, receipt.current_version());
        AggregateAnswer {
            prepared: self,
            first: receipt.first.0,
        }
    }
}

/// The answer to a CommitForAggregate that was acknowledged, ready to encode as its
/// `CommitAggregateEventsResponse`.
#[derive(Debug, Clone)]
pub struct AggregateAnswer {
    prepared: PreparedAggregateAnswer,
    first: u64,
}

impl AggregateAnswer {
    /// Each event's sequence number and fields.
    fn events(&self) -> impl Iterator<Item = (u64, &[u8])> + '_ {
        numbered(&self.prepared.fields, &self.prepared.ends, self.first)
    }

    /// The length of the `CommittedAggregateEvents`.
    fn events_message_len(&self) -> usize {
        let entries: usize = self
            .events()
            .map(|(n, fields)| numbered_entry_len(AGGREGATE_EVENTS_FIELD, n, fields))
            .sum();
        self.prepared.head.len()
            + entries
            + EventFields::number_len(CURRENT_VERSION_FIELD, self.prepared.current)
    }

    /// The length of the encoded `CommitAggregateEventsResponse`.
    pub fn encoded_len(&self) -> usize {
        EventFields::delimited_len(AGGREGATE_RESPONSE_EVENTS_FIELD, self.events_message_len())
    }

    /// Writes the `CommitAggregateEventsResponse` (no failure; the aggregate's events) to `buf`.
    pub fn encode(&self, buf: &mut impl BufMut) {
        use prost::encoding::{encode_key, encode_varint, WireType};
        encode_key(
            AGGREGATE_RESPONSE_EVENTS_FIELD,
            WireType::LengthDelimited,
            buf,
        );
        encode_varint(self.events_message_len() as u64, buf);
        buf.put_slice(&self.prepared.head);
        for (n, fields) in self.events() {
            write_numbered_event(AGGREGATE_EVENTS_FIELD, n, fields, buf);
        }
        EventFields::number(CURRENT_VERSION_FIELD, self.prepared.current, buf);
    }

    /// How many events the answer holds.
    pub fn count(&self) -> usize {
        self.prepared.ends.len()
    }

    /// The aggregate's event source and its version after the commit.
    pub fn aggregate(&self) -> (&str, u64) {
        (&self.prepared.event_source_id, self.prepared.current)
    }

    /// Writes the `i`-th event as an entry of `CommittedAggregateEvents.events`, as the
    /// contract encodes it (what a kept FetchForAggregate answer holds). The event is found by
    /// its index, so writing every event in turn does not walk the events again for each.
    pub fn write_entry(&self, i: usize, buf: &mut impl BufMut) {
        let PreparedAggregateAnswer { fields, ends, .. } = &self.prepared;
        let Some(&end) = ends.get(i) else { return };
        let start = i.checked_sub(1).map_or(0, |before| ends[before]);
        write_numbered_event(
            AGGREGATE_EVENTS_FIELD,
            self.first + i as u64,
            &fields[start..end],
            buf,
        );
    }
}

/// A committed aggregate event's fields after its sequence number (2 to 7) as
/// [`committed_aggregate_event_of`] fills them.
struct AggregateEventFields<'e> {
    occurred: Timestamp,
    context: &'e [u8],
    event: &'e AggregateEvent,
    version: u64,
}

impl AggregateEventFields<'_> {
    fn encoded_len(&self) -> usize {
        use prost::encoding::message;
        message::encoded_len(2, &self.occurred)
            + EventFields::delimited_len(3, self.context.len())
            + EventFields::delimited_len(4, EventFields::artifact_len(self.event.event_type))
            + EventFields::flag_len(5, self.event.public)
            + if self.event.content.is_empty() {
                0
            } else {
                EventFields::delimited_len(6, self.event.content.len())
            }
            + EventFields::number_len(7, self.version)
    }

    fn encode(&self, buf: &mut impl BufMut) {
        use prost::encoding::message;
        message::encode(2, &self.occurred, buf);
        EventFields::delimited(3, self.context, buf);
        EventFields::artifact(4, self.event.event_type, buf);
        EventFields::flag(5, self.event.public, buf);
        if !self.event.content.is_empty() {
            EventFields::delimited(6, self.event.content.as_bytes(), buf);
        }
        EventFields::number(7, self.version, buf);
    }
}

/// An event read from the log (what processors deliver).
pub fn committed_event(view: &EventView<'_>) -> CommittedEvent {
    let event = view.to_event();
    committed_event_of(
        event.sequence_number.0,
        convert::timestamp(event.occurred_ns),
        convert::execution_context_to_wire(&event.execution_context),
        UncommittedEvent {
            event_source_id: event.event_source_id,
            event_type: event.event_type,
            public: event.public,
            content: event.content,
            aggregate: event.aggregate,
            event_horizon: event.event_horizon,
        },
    )
}

/// Encodes events read from the log as `CommittedEvent`s, byte for byte what
/// [`committed_event`] encodes to, without building one: the event's own fields are written
/// from the log's view of it, and its execution context, the same for every event of a
/// commit, is converted and encoded once for each run of events that share it. What an event
/// handler's requests carry (encoded where the log is read).
#[derive(Debug, Default)]
pub struct CommittedEventEncoder {
    /// The execution context encoded last, and its encoding.
    context: Option<(ExecutionContext, Bytes)>,
}

impl CommittedEventEncoder {
    /// The event `view` encoded as a `CommittedEvent`.
    pub fn encode(&mut self, view: &EventView<'_>) -> Bytes {
        let context = match &self.context {
            Some((context, encoded)) if view.has_execution_context(context) => encoded.clone(),
            _ => {
                let context = view.execution_context();
                let encoded =
                    Bytes::from(convert::execution_context_to_wire(&context).encode_to_vec());
                self.context = Some((context, encoded.clone()));
                encoded
            }
        };
        let sequence_number = view.sequence_number.0;
        let fields = EventFields {
            occurred: convert::timestamp(view.occurred_ns),
            source: view.event_source_id,
            context: &context,
            event_type: view.event_type,
            public: view.public,
            content: view.content,
            horizon: view.event_horizon,
        };
        let len =
            EventFields::number_len(SEQUENCE_NUMBER_FIELD, sequence_number) + fields.encoded_len();
        let mut buf = Vec::with_capacity(len);
        EventFields::number(SEQUENCE_NUMBER_FIELD, sequence_number, &mut buf);
        fields.encode(&mut buf);
        debug_assert_eq!(buf.len(), len);
        Bytes::from(buf)
    }
}

/// The events of a commit for an aggregate just made (the answer to CommitForAggregate).
pub fn committed_aggregate_events(
    commit: AggregateCommit,
    receipt: AggregateCommitReceipt,
) -> CommittedAggregateEvents {
    let occurred = convert::timestamp(commit.occurred_ns);
    let context = convert::execution_context_to_wire(&commit.execution_context);
    let events = commit
        .events
        .into_iter()
        .zip(receipt.first.0..)
        .zip(receipt.version_before..)
        .map(|((event, sequence_number), version)| {
            committed_aggregate_event_of(sequence_number, occurred, context.clone(), version, event)
        })
        .collect();
    aggregate_events_of(
        commit.aggregate_root,
        commit.event_source_id,
        receipt.current_version(),
        events,
    )
}

/// (A batch of) an aggregate's events read back, with the aggregate's `current` version.
pub fn aggregate_events(
    root: Uuid,
    event_source_id: &str,
    current: u64,
    events: &[Event],
) -> CommittedAggregateEvents {
    let events = events
        .iter()
        .map(|event| {
            committed_aggregate_event_of(
                event.sequence_number.0,
                convert::timestamp(event.occurred_ns),
                convert::execution_context_to_wire(&event.execution_context),
                event.aggregate.map_or(0, |a| a.version),
                AggregateEvent {
                    event_type: event.event_type,
                    public: event.public,
                    content: event.content.clone(),
                },
            )
        })
        .collect();
    aggregate_events_of(root, event_source_id.to_owned(), current, events)
}

/// The header of an aggregate's events with no events in its list: what the answers to
/// CommitForAggregate and FetchForAggregate carry around the events.
pub fn aggregate_events_header(
    root: Uuid,
    event_source_id: &str,
    current: u64,
) -> CommittedAggregateEvents {
    aggregate_events_of(root, event_source_id.to_owned(), current, Vec::new())
}

/// An aggregate's events with the header around them.
#[expect(
    deprecated,
    reason = "the original still fills the deprecated aggregateRootVersion"
)]
fn aggregate_events_of(
    root: Uuid,
    event_source_id: String,
    current: u64,
    events: Vec<CommittedAggregateEvent>,
) -> CommittedAggregateEvents {
    CommittedAggregateEvents {
        event_source_id,
        aggregate_root_id: Some(ids::to_wire(root)),
        aggregate_root_version: deprecated_aggregate_root_version(current),
        events,
        current_aggregate_root_version: current,
    }
}

/// The deprecated `aggregateRootVersion` of CommittedAggregateEvents: the version of the
/// last event (current - 1), or 0 for an aggregate without events.
fn deprecated_aggregate_root_version(current: u64) -> u64 {
    current.saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use annals_log::{
        AppliedByAggregate, Claim, EventLogSequenceNumber, EventType, ExecutionContext, Version,
    };

    fn context() -> ExecutionContext {
        ExecutionContext {
            microservice_id: Uuid::from_u128(1),
            tenant_id: Uuid::from_u128(2),
            version: Version {
                major: 1,
                minor: 2,
                patch: 3,
                build: 4,
                pre_release: "rc".into(),
            },
            correlation_id: Uuid::from_u128(3),
            claims: vec![Claim {
                key: "k".into(),
                value: "v".into(),
                value_type: "t".into(),
            }],
            environment: "Development".into(),
            span_id: Some([7; 8]),
        }
    }

    const EVENT_TYPE: EventType = EventType {
        id: Uuid::from_u128(4),
        generation: 1,
    };
    const OCCURRED_NS: i64 = 1_700_000_000_123_456_789;

    /// A commit's answer, prepared before its sequence numbers are known and numbered after,
    /// is byte for byte the contract's answer; so is a failed one.
    #[test]
    fn a_prepared_commit_answer_is_the_contracts_answer() {
        use crate::proto::dolittle::runtime::events::CommitEventsResponse;
        let event = |content: &str, public, horizon, generation| UncommittedEvent {
            event_source_id: if public { "es".into() } else { String::new() },
            event_type: EventType {
                id: Uuid::from_u128(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10),
                generation,
            },
            public,
            content: content.into(),
            aggregate: None,
            event_horizon: horizon,
        };
        let received = EventHorizonOrigin {
            external_sequence_number: 9,
            received_ns: OCCURRED_NS + 5,
            consent_id: Uuid::from_u128(8),
        };
        let at_zero = EventHorizonOrigin {
            external_sequence_number: 0,
            received_ns: 0,
            consent_id: Uuid::nil(),
        };
        let long = format!("{{\"a\":\"{}\"}}", "x".repeat(300));
        for (occurred_ns, first, context) in [
            (OCCURRED_NS, 41, context()),
            (0, 0, ExecutionContext::default()),
            (-1_500_000_000, 7, context()),
            (OCCURRED_NS, u64::MAX - 10, context()),
            (OCCURRED_NS, 127, context()),
        ] {
            let commit = Commit {
                occurred_ns,
                execution_context: context,
                events: vec![
                    event(r#"{"a":1}"#, true, None, 1),
                    event("", false, Some(received), 0),
                    event("{}", true, Some(at_zero), 300),
                    event(&long, false, None, u32::MAX),
                ],
            };
            let receipt = CommitReceipt {
                first: EventLogSequenceNumber(first),
                count: 4,
            };
            let contract =
                CommitEventsResponse::ok(committed_events(commit.clone(), receipt)).encode_to_vec();
            let answer = PreparedCommitAnswer::of(&commit).numbered(receipt);
            let mut prepared = Vec::new();
            answer.encode(&mut prepared);
            assert_eq!(prepared, contract, "occurred {occurred_ns}, first {first}");
            assert_eq!(answer.encoded_len(), contract.len());
            let answer = CommitEventsAnswer::ok(answer);
            assert_eq!(answer.encoded_len(), contract.len());
        }
        let failure = Failure::no_events();
        let contract = CommitEventsResponse::failed(&failure).encode_to_vec();
        let answer = CommitEventsAnswer::failed(&failure);
        let mut encoded = Vec::new();
        answer.encode(&mut encoded);
        assert_eq!(encoded, contract);
        assert_eq!(answer.encoded_len(), contract.len());
    }

    /// A commit for an aggregate's answer, prepared before its sequence numbers are known and
    /// numbered after, is byte for byte the contract's answer; its entries are the contract's
    /// events; a failed one is the contract's failure.
    #[test]
    fn a_prepared_aggregate_answer_is_the_contracts_answer() {
        use crate::proto::dolittle::runtime::events::CommitAggregateEventsResponse;
        let event = |content: &str, public, generation| AggregateEvent {
            event_type: EventType {
                id: Uuid::from_u128(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10),
                generation,
            },
            public,
            content: content.into(),
        };
        let long = format!("{{\"a\":\"{}\"}}", "x".repeat(300));
        for (occurred_ns, first, expected, source, context) in [
            (OCCURRED_NS, 41, 3, "order-1", context()),
            (0, 0, 0, "", ExecutionContext::default()),
            (-1_500_000_000, 7, 1, "x", context()),
            (
                OCCURRED_NS,
                u64::MAX - 10,
                u64::MAX - 4,
                "order-2",
                context(),
            ),
            (OCCURRED_NS, 127, 127, &*"s".repeat(200), context()),
        ] {
            let commit = AggregateCommit {
                occurred_ns,
                execution_context: context,
                aggregate_root: Uuid::from_u128(0xabcd),
                event_source_id: source.into(),
                expected_version: expected,
                events: vec![
                    event(r#"{"a":1}"#, true, 1),
                    event("", false, 0),
                    event("{}", true, 300),
                    event(&long, false, u32::MAX),
                ],
            };
            let receipt = AggregateCommitReceipt {
                first: EventLogSequenceNumber(first),
                count: 4,
                version_before: expected,
            };
            let committed = committed_aggregate_events(commit.clone(), receipt);
            let contract = CommitAggregateEventsResponse::ok(committed.clone()).encode_to_vec();
            let answer = PreparedAggregateAnswer::of(&commit).numbered(receipt);
            let mut prepared = Vec::new();
            answer.encode(&mut prepared);
            assert_eq!(prepared, contract, "occurred {occurred_ns}, first {first}");
            assert_eq!(answer.encoded_len(), contract.len());
            assert_eq!(answer.count(), 4);
            assert_eq!(answer.aggregate(), (source, expected + 4));
            for (i, event) in committed.events.iter().enumerate() {
                let mut entry = Vec::new();
                answer.write_entry(i, &mut entry);
                let mut contract = Vec::new();
                prost::encoding::message::encode(4, event, &mut contract);
                assert_eq!(entry, contract, "event {i}");
            }
            let answer = AggregateEventsAnswer::ok(answer);
            assert_eq!(answer.encoded_len(), contract.len());
        }
        // A commit whose versions would overflow is refused by the engine; preparing its
        // answer must not fail.
        let at_the_end = AggregateCommit {
            occurred_ns: OCCURRED_NS,
            execution_context: context(),
            aggregate_root: Uuid::from_u128(1),
            event_source_id: "es".into(),
            expected_version: u64::MAX,
            events: vec![event("{}", false, 1), event("{}", false, 1)],
        };
        drop(PreparedAggregateAnswer::of(&at_the_end));
        let failure = Failure::invalid("no");
        let contract = CommitAggregateEventsResponse::failed(&failure).encode_to_vec();
        let answer = AggregateEventsAnswer::failed(&failure);
        let mut encoded = Vec::new();
        answer.encode(&mut encoded);
        assert_eq!(encoded, contract);
        assert_eq!(answer.encoded_len(), contract.len());
    }

    /// The encoder writes what `committed_event` encodes to, for events with and without
    /// every optional part, and notices when the execution context changes between events.
    #[test]
    fn encoded_from_the_view_as_the_contract_encodes_it() {
        use annals_log::EventHorizonOrigin;
        let view =
            |n: u64, claims, correlation: u128, horizon, source, content, public| EventView {
                sequence_number: EventLogSequenceNumber(n),
                occurred_ns: if n == 0 {
                    0
                } else {
                    OCCURRED_NS + i64::try_from(n).unwrap_or(0)
                },
                microservice_id: Uuid::from_u128(1),
                tenant_id: Uuid::from_u128(2),
                version: if n.is_multiple_of(2) {
                    [0; 4]
                } else {
                    [1, 2, 3, 4]
                },
                pre_release: if n.is_multiple_of(2) { "" } else { "rc" },
                correlation_id: Uuid::from_u128(correlation),
                claims,
                environment: "Development",
                span_id: n.is_multiple_of(3).then_some([7; 8]),
                event_source_id: source,
                event_type: EVENT_TYPE,
                public,
                aggregate: (n == 5).then_some(AppliedByAggregate {
                    root_id: Uuid::from_u128(6),
                    version: 2,
                }),
                event_horizon: horizon,
                content,
            };
        let received = Some(EventHorizonOrigin {
            external_sequence_number: 9,
            received_ns: OCCURRED_NS + 5,
            consent_id: Uuid::from_u128(8),
        });
        let at_zero = Some(EventHorizonOrigin::default());
        let views = [
            view(0, vec![], 0, None, "", "", false),
            view(1, vec![("k", "v", "t")], 3, None, "es", r#"{"a":1}"#, true),
            view(2, vec![("k", "v", "t")], 3, None, "es", "{}", false),
            view(
                3,
                vec![("k", "v", "t"), ("k2", "", "")],
                3,
                received,
                "es",
                "{}",
                true,
            ),
            view(4, vec![("k", "v", "u")], 3, at_zero, "\u{e9}", "{}", false),
            view(5, vec![("k", "v", "u")], 4, None, "es", "{\"b\":[]}", true),
            view(5, vec![("k", "v", "u")], 4, None, "es", "{\"b\":[]}", true),
            view(u64::MAX, vec![], 4, received, "es", "{}", true),
        ];
        let mut encoder = CommittedEventEncoder::default();
        for view in &views {
            let contract = committed_event(view).encode_to_vec();
            assert_eq!(encoder.encode(view).to_vec(), contract, "{view:?}");
            // A fresh encoder agrees too (nothing depends on the event before).
            assert_eq!(
                CommittedEventEncoder::default().encode(view).to_vec(),
                contract
            );
        }
    }

    /// A commit's answer and the same events delivered from the log are the same on the wire.
    #[test]
    fn events_are_the_same_committed_or_read_from_the_log() {
        let commit = Commit {
            occurred_ns: OCCURRED_NS,
            execution_context: context(),
            events: ["a", "b"]
                .map(|content| UncommittedEvent {
                    event_source_id: "es".into(),
                    event_type: EVENT_TYPE,
                    public: true,
                    content: content.into(),
                    aggregate: None,
                    event_horizon: None,
                })
                .to_vec(),
        };
        let receipt = CommitReceipt {
            first: EventLogSequenceNumber(41),
            count: 2,
        };
        let read: Vec<_> = [(41, "a"), (42, "b")]
            .map(|(sequence_number, content)| {
                committed_event(&EventView {
                    sequence_number: EventLogSequenceNumber(sequence_number),
                    occurred_ns: OCCURRED_NS,
                    microservice_id: Uuid::from_u128(1),
                    tenant_id: Uuid::from_u128(2),
                    version: [1, 2, 3, 4],
                    pre_release: "rc",
                    correlation_id: Uuid::from_u128(3),
                    claims: vec![("k", "v", "t")],
                    environment: "Development",
                    span_id: Some([7; 8]),
                    event_source_id: "es",
                    event_type: EVENT_TYPE,
                    public: true,
                    aggregate: None,
                    event_horizon: None,
                    content,
                })
            })
            .to_vec();
        assert_eq!(committed_events(commit, receipt), read);
    }

    /// A commit for an aggregate's answer and the same events fetched are the same on the wire.
    #[test]
    fn aggregate_events_are_the_same_committed_or_fetched() {
        let (root, event_source_id) = (Uuid::from_u128(5), "order-1");
        let commit = AggregateCommit {
            occurred_ns: OCCURRED_NS,
            execution_context: context(),
            aggregate_root: root,
            event_source_id: event_source_id.into(),
            expected_version: 3,
            events: ["a", "b"]
                .map(|content| AggregateEvent {
                    event_type: EVENT_TYPE,
                    public: false,
                    content: content.into(),
                })
                .to_vec(),
        };
        let receipt = AggregateCommitReceipt {
            first: EventLogSequenceNumber(41),
            count: 2,
            version_before: 3,
        };
        let fetched =
            [(41, 3, "a"), (42, 4, "b")].map(|(sequence_number, version, content)| Event {
                sequence_number: EventLogSequenceNumber(sequence_number),
                occurred_ns: OCCURRED_NS,
                execution_context: context(),
                event_source_id: event_source_id.into(),
                event_type: EVENT_TYPE,
                public: false,
                aggregate: Some(AppliedByAggregate {
                    root_id: root,
                    version,
                }),
                event_horizon: None,
                content: content.into(),
            });
        assert_eq!(
            committed_aggregate_events(commit, receipt),
            aggregate_events(root, event_source_id, 5, &fetched)
        );
    }
}
