//! Commit requests decoded and checked in one pass, for the event store's Commit rpc.
//!
//! prost decodes a `CommitEventsRequest` into a list of wire events (each with its event
//! type's id in a list of bytes of its own, three allocations per event), which
//! `convert::uncommitted_events` then checks and moves into the engine's events. Here the
//! request's top level is decoded by prost with every event left as a slice of the request's
//! bytes (no copy), and each event is read from its slice straight into an engine event: its
//! event source and content copied once into their strings, its type's id read in place.
//!
//! The quick reading takes only what is plain: each field of an event and of its event type
//! once, with the wire type the contract gives it, ids of 16 bytes, varints of at most nine
//! bytes, and nothing it does not know. Anything else (an unknown field, a repeated one, a
//! malformed or odd encoding) sends the whole request to prost's decoding of the contract
//! message and `convert::uncommitted_events`, which decide it. So the result is always theirs:
//! the same events, the same failure of the same event, the same decode error (a differential
//! test here and the `requests` fuzz target check that).

use bytes::Bytes;
use prost::Message;
use uuid::Uuid;

use crate::api::convert;
use crate::api::failure::Failure;
use crate::proto::dolittle::artifacts::Artifact;
use crate::proto::dolittle::runtime::events::CommitEventsRequest;
use crate::proto::dolittle::services::CallRequestContext;
use annals_log::{EventType, UncommittedEvent};

/// A Commit request, its events checked.
#[derive(Debug, Clone, PartialEq)]
pub struct CommitRequest {
    /// The call context, as the request carries it.
    pub call_context: Option<CallRequestContext>,
    /// The events, checked as `convert::uncommitted_events` checks them: all of them, or the
    /// failure of the first that fails. An empty list when the request holds none.
    pub events: Result<Vec<UncommittedEvent>, Failure>,
}

impl CommitRequest {
    /// Decodes an encoded `CommitEventsRequest` and checks its events; the error is prost's
    /// for the contract message.
    pub fn decode(encoded: Bytes) -> Result<CommitRequest, prost::DecodeError> {
        if let Some(request) = quickly(encoded.clone()) {
            return Ok(request);
        }
        CommitEventsRequest::decode(encoded).map(CommitRequest::from)
    }
}

impl From<CommitEventsRequest> for CommitRequest {
    fn from(request: CommitEventsRequest) -> Self {
        CommitRequest {
            call_context: request.call_context,
            events: convert::uncommitted_events(request.events),
        }
    }
}

/// `CommitEventsRequest` with its events left encoded: prost decodes the top level (unknown
/// fields skipped, a repeated call context merged, as it does for the contract message).
#[derive(Clone, PartialEq, Message)]
struct Skeleton {
    #[prost(message, optional, tag = "1")]
    call_context: Option<CallRequestContext>,
    #[prost(bytes = "bytes", repeated, tag = "2")]
    events: Vec<Bytes>,
}

/// The request read quickly, or None when the quick reading is not sure of it.
fn quickly(encoded: Bytes) -> Option<CommitRequest> {
    let skeleton = Skeleton::decode(encoded).ok()?;
    let mut events = Vec::with_capacity(skeleton.events.len());
    let mut failure = None;
    for (i, encoded) in skeleton.events.iter().enumerate() {
        let event = WireEvent::read(encoded)?;
        // After the first failure the rest are only read: a later event that prost could not
        // decode still makes the whole request prost's to decide.
        if failure.is_none() {
            match event.checked(i) {
                Ok(event) => events.push(event),
                Err(f) => failure = Some(f),
            }
        }
    }
    Some(CommitRequest {
        call_context: skeleton.call_context,
        events: failure.map_or(Ok(events), Err),
    })
}

/// One `UncommittedEvent` read from its bytes, borrowed.
#[derive(Default)]
struct WireEvent<'a> {
    event_type: Option<WireEventType>,
    event_source_id: &'a str,
    public: bool,
    content: &'a str,
}

/// An `Artifact` as read: its id's 16 bytes, if it has an id.
#[derive(Clone, Copy)]
struct WireEventType {
    id: Option<[u8; 16]>,
    generation: u32,
}

/// `UncommittedEvent`'s fields, `Artifact`'s and `Uuid`'s.
const EVENT_TYPE: u32 = 1;
const EVENT_SOURCE_ID: u32 = 2;
const PUBLIC: u32 = 3;
const CONTENT: u32 = 4;
const ARTIFACT_ID: u32 = 1;
const ARTIFACT_GENERATION: u32 = 2;
const UUID_VALUE: u32 = 1;

/// Protobuf's wire types this reading takes.
const VARINT: u64 = 0;
const LENGTH_DELIMITED: u64 = 2;

impl<'a> WireEvent<'a> {
    fn read(bytes: &'a [u8]) -> Option<WireEvent<'a>> {
        let mut event = WireEvent::default();
        each_field_once(bytes, |field, r| {
            match field {
                (EVENT_TYPE, LENGTH_DELIMITED) => {
                    event.event_type = Some(WireEventType::read(r.delimited()?)?);
                }
                (EVENT_SOURCE_ID, LENGTH_DELIMITED) => {
                    event.event_source_id = std::str::from_utf8(r.delimited()?).ok()?;
                }
                (PUBLIC, VARINT) => event.public = r.varint()? != 0,
                (CONTENT, LENGTH_DELIMITED) => {
                    event.content = std::str::from_utf8(r.delimited()?).ok()?;
                }
                _ => return None,
            }
            Some(())
        })?;
        Some(event)
    }

    /// The engine's event, checked as `convert::uncommitted_events` checks the `i`-th.
    fn checked(&self, i: usize) -> Result<UncommittedEvent, Failure> {
        let event_type = convert::checked_event(i, self.content, self.event_source_id, |field| {
            match self.event_type {
                Some(WireEventType {
                    id: Some(id),
                    generation,
                }) => Ok(EventType {
                    id: Uuid::from_bytes_le(id),
                    generation,
                }),
                // What it says of a missing type or id (no id bytes to carry).
                Some(WireEventType {
                    id: None,
                    generation,
                }) => convert::event_type(
                    field,
                    Some(&Artifact {
                        id: None,
                        generation,
                    }),
                ),
                None => convert::event_type(field, None),
            }
        })?;
        Ok(UncommittedEvent {
            event_type,
            event_source_id: self.event_source_id.to_owned(),
            public: self.public,
            content: self.content.to_owned(),
            aggregate: None,
            event_horizon: None,
        })
    }
}

impl WireEventType {
    fn read(bytes: &[u8]) -> Option<WireEventType> {
        let mut artifact = WireEventType {
            id: None,
            generation: 0,
        };
        each_field_once(bytes, |field, r| {
            match field {
                (ARTIFACT_ID, LENGTH_DELIMITED) => artifact.id = Some(read_uuid(r.delimited()?)?),
                (ARTIFACT_GENERATION, VARINT) => {
                    artifact.generation = u32::try_from(r.varint()?).ok()?;
                }
                _ => return None,
            }
            Some(())
        })?;
        Some(artifact)
    }
}

/// Reads each field of the message `bytes` with `field`, given the field's number and wire
/// type and the reader at its value. None when a field comes twice (prost merges a repeated
/// field, which is left to it), a key is malformed, or `field` is not sure of one.
fn each_field_once<'a>(
    bytes: &'a [u8],
    mut field: impl FnMut((u32, u64), &mut Reader<'a>) -> Option<()>,
) -> Option<()> {
    let mut seen = 0_u32;
    let mut r = Reader(bytes);
    while !r.0.is_empty() {
        let key = r.key()?;
        let bit = 1 << (key.0 & 31);
        if seen & bit != 0 {
            return None;
        }
        seen |= bit;
        field(key, &mut r)?;
    }
    Some(())
}

/// A `Uuid` of exactly one value of 16 bytes (any other is left to prost and the checks).
fn read_uuid(bytes: &[u8]) -> Option<[u8; 16]> {
    let mut r = Reader(bytes);
    if r.key()? != (UUID_VALUE, LENGTH_DELIMITED) {
        return None;
    }
    let value = r.delimited()?.try_into().ok()?;
    r.0.is_empty().then_some(value)
}

/// Reads protobuf from the front of a slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// A varint of at most nine bytes (up to 2^63 - 1; longer ones are left to prost).
    fn varint(&mut self) -> Option<u64> {
        let mut value = 0_u64;
        for (i, &byte) in self.0.iter().take(9).enumerate() {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                self.0 = &self.0[i + 1..];
                return Some(value);
            }
        }
        None
    }

    /// A field's number and wire type.
    fn key(&mut self) -> Option<(u32, u64)> {
        let key = self.varint()?;
        let field = u32::try_from(key >> 3).ok()?;
        Some((field, key & 7))
    }

    /// A length-delimited field's bytes.
    fn delimited(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.varint()?).ok()?;
        let bytes = self.0.get(..len)?;
        self.0 = &self.0[len..];
        Some(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::dolittle::artifacts::Artifact;
    use crate::proto::dolittle::protobuf::Uuid as WireUuid;
    use crate::proto::dolittle::runtime::events::UncommittedEvent as ContractEvent;

    /// What prost and `convert` make of `encoded`, and what the quick reading makes of it
    /// (None when it leaves it to them).
    fn both(encoded: &[u8]) -> (Result<CommitRequest, String>, Option<CommitRequest>) {
        let reference = CommitEventsRequest::decode(encoded)
            .map(CommitRequest::from)
            .map_err(|e| e.to_string());
        let quick = quickly(Bytes::copy_from_slice(encoded));
        let decoded = CommitRequest::decode(Bytes::copy_from_slice(encoded));
        assert_eq!(
            decoded.map_err(|e| e.to_string()),
            reference,
            "{encoded:02x?}"
        );
        (reference, quick)
    }

    fn event(content: &str) -> ContractEvent {
        ContractEvent {
            event_type: Some(Artifact {
                id: Some(WireUuid {
                    value: (1..=16).collect(),
                }),
                generation: 3,
            }),
            event_source_id: "source".into(),
            public: true,
            content: content.into(),
        }
    }

    fn request(events: Vec<ContractEvent>) -> Vec<u8> {
        CommitEventsRequest {
            call_context: Some(CallRequestContext::default()),
            events,
        }
        .encode_to_vec()
    }

    #[test]
    fn a_plain_request_is_read_quickly_as_prost_and_convert_read_it() {
        let encoded = request(vec![event(r#"{"a":1}"#), event("{}")]);
        let (reference, quick) = both(&encoded);
        assert_eq!(quick.as_ref(), reference.as_ref().ok());
        let events = quick.unwrap().events.unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].event_type.generation, 3);
        assert_eq!(
            events[0].event_type.id,
            Uuid::from_bytes_le((1..=16).collect::<Vec<u8>>().try_into().unwrap())
        );
    }

    #[test]
    fn failures_are_the_first_failing_events_as_convert_says_it() {
        let mut no_type = event("{}");
        no_type.event_type = None;
        let mut no_id = event("{}");
        no_id.event_type.as_mut().unwrap().id = None;
        let mut no_source = event("{}");
        no_source.event_source_id.clear();
        for bad in [event("[]"), no_type, no_id, no_source] {
            let encoded = request(vec![event("{}"), bad, event("nope")]);
            let (reference, quick) = both(&encoded);
            assert_eq!(quick.as_ref(), reference.as_ref().ok());
            assert!(quick
                .unwrap()
                .events
                .unwrap_err()
                .reason
                .contains("events[1]"));
        }
        let (reference, quick) = both(&request(Vec::new()));
        assert_eq!(quick.as_ref(), reference.as_ref().ok());
        assert_eq!(quick.unwrap().events, Ok(Vec::new()));
    }

    #[test]
    fn what_the_quick_reading_is_not_sure_of_is_prosts() {
        let mut short_id = event("{}");
        short_id.event_type.as_mut().unwrap().id = Some(WireUuid { value: vec![1; 15] });
        let mut cases = vec![request(vec![short_id])];
        // A plain event, then one more that holds `raw`.
        let with_event = |raw: &[u8]| {
            let mut encoded = request(vec![event("{}")]);
            encoded.push(0x12);
            encoded.push(u8::try_from(raw.len()).unwrap());
            encoded.extend_from_slice(raw);
            encoded
        };
        // A repeated field (prost keeps the last content), an unknown one, a varint of ten
        // bytes for `public`, an event source that is not UTF-8, a content longer than its
        // event, a type with two generations.
        let mut repeated = event("{}").encode_to_vec();
        repeated.extend_from_slice(&[0x22, 2, b'{', b'}']);
        cases.push(with_event(&repeated));
        cases.push(with_event(&[0x28, 1]));
        let mut long = vec![0x18];
        long.extend_from_slice(&[0xff; 9]);
        long.push(0x01);
        cases.push(with_event(&long));
        cases.push(with_event(&[0x12, 1, 0xff]));
        cases.push(with_event(&[0x22, 9, b'{']));
        cases.push(with_event(&[0x0a, 4, 0x10, 1, 0x10, 2]));
        for encoded in cases {
            let (_, quick) = both(&encoded);
            assert!(quick.is_none(), "{encoded:02x?}");
        }
    }

    #[test]
    fn every_prefix_and_bit_flip_decodes_as_prost_and_convert_decode_it() {
        let encoded = request(vec![event(r#"{"a":[1,2]}"#), event("{}")]);
        for end in 0..=encoded.len() {
            let _ = both(&encoded[..end]);
        }
        // Random edits (xorshift): bytes replaced, inserted and removed, a few at a time.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = |below: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            usize::try_from(state % below as u64).unwrap()
        };
        for _ in 0..20_000 {
            let mut edited = encoded.clone();
            for _ in 0..=next(3) {
                let at = next(edited.len() + 1);
                let byte = u8::try_from(next(256)).unwrap();
                match next(3) {
                    0 if at < edited.len() => edited[at] = byte,
                    1 => edited.insert(at, byte),
                    _ if at < edited.len() => drop(edited.remove(at)),
                    _ => {}
                }
            }
            let (reference, quick) = both(&edited);
            if let Some(quick) = quick {
                assert_eq!(Ok(quick), reference, "{edited:02x?}");
            }
        }
        for at in 0..encoded.len() {
            for bit in 0..8 {
                let mut flipped = encoded.clone();
                flipped[at] ^= 1 << bit;
                let (reference, quick) = both(&flipped);
                if let Some(quick) = quick {
                    assert_eq!(Ok(quick), reference, "{flipped:02x?}");
                }
            }
        }
    }
}
