//! Rewriting one encoded message between the two generations, without decoding it: the
//! fields a [`Plan`] names are rewritten, everything else (known or not) is copied byte for
//! byte, in its order. So a field either generation added passes through untouched, and a
//! message with nothing to rewrite costs one scan.
//!
//! The one rewrite is an id: a `dolittle.protobuf.Uuid` message (5.4: 16 bytes of .NET's
//! `Guid.ToByteArray()`) on one side, its text on the other (7.8.1, where event sources and
//! partitions became free text). Toward a 5.4 head, text that is not a Guid gets a
//! name-based id ([`legacy_id`]), so every event reaches it with an event source.

use uuid::Uuid;

use crate::api::ids;
use crate::legacy::plan::{Action, Plan};

/// Which way a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From a 5.4 head to the runtime: ids become text.
    FromLegacy,
    /// From the runtime to a 5.4 head: text becomes ids.
    ToLegacy,
}

/// Why a message could not be rewritten: the bytes are not protobuf, or an id field does not
/// hold a Guid. `field` names the field as the contract does (`UncommittedEvent.eventSourceId`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct WireError {
    /// The field, or the message when the bytes themselves are broken.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

/// The namespace of the name-based ids that event sources and partitions which are not Guids
/// get toward 5.4 heads (a random UUID, fixed forever: changing it would move every such
/// event source to another id).
pub const LEGACY_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f0e_1c35_2a7b_4d1e_9c3f_5b8a_04d2_7e61);

/// The id a 5.4 head sees for the event source or partition `text`: the Guid it spells (any
/// of .NET's formats), or a name-based UUID (RFC 4122 version 5) of the text, the same every
/// time.
pub fn legacy_id(text: &str) -> Uuid {
    ids::parse_dotnet_guid(text)
        .unwrap_or_else(|| Uuid::new_v5(&LEGACY_ID_NAMESPACE, text.as_bytes()))
}

/// Rewrites `input`, a message of `plan`'s type, into `out`.
pub fn rewrite(
    plan: &Plan,
    direction: Direction,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    rewrite_at(plan, direction, input, out, 0)
}

/// Deeper than any message of the contract nests; a guard against hostile nesting.
const DEPTH_MAX: usize = 32;

fn rewrite_at(
    plan: &Plan,
    direction: Direction,
    input: &[u8],
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), WireError> {
    if depth > DEPTH_MAX {
        return Err(broken(plan, "nested too deeply"));
    }
    let mut at = 0;
    while at < input.len() {
        let field_start = at;
        let key = varint(input, &mut at).ok_or_else(|| broken(plan, "a field key is cut short"))?;
        let number =
            u32::try_from(key >> 3).map_err(|_| broken(plan, "a field number is out of range"))?;
        let wire_type = key & 7;
        let action = if wire_type == LENGTH_DELIMITED {
            plan.action(number)
        } else {
            None
        };
        match wire_type {
            VARINT => {
                varint(input, &mut at).ok_or_else(|| broken(plan, "a varint is cut short"))?;
            }
            FIXED64 => at = skip(plan, input, at, 8)?,
            FIXED32 => at = skip(plan, input, at, 4)?,
            LENGTH_DELIMITED => {
                let length =
                    varint(input, &mut at).ok_or_else(|| broken(plan, "a length is cut short"))?;
                let length = usize::try_from(length)
                    .map_err(|_| broken(plan, "a length is out of range"))?;
                let payload_start = at;
                at = skip(plan, input, at, length)?;
                if let Some(action) = action {
                    let payload = &input[payload_start..at];
                    rewrite_field(plan, action, direction, number, payload, out, depth)?;
                    continue;
                }
            }
            _ => {
                return Err(broken(
                    plan,
                    &format!("field {number} has wire type {wire_type}, which proto3 does not use"),
                ))
            }
        }
        out.extend_from_slice(&input[field_start..at]);
    }
    Ok(())
}

fn rewrite_field(
    plan: &Plan,
    action: &Action,
    direction: Direction,
    number: u32,
    payload: &[u8],
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), WireError> {
    match action {
        Action::Nested(inner) => {
            let mut rewritten = Vec::with_capacity(payload.len() + 32);
            rewrite_at(inner, direction, payload, &mut rewritten, depth + 1)?;
            put_length_delimited(out, number, &rewritten);
        }
        Action::Id { field } => match direction {
            Direction::FromLegacy => {
                let id = id_from_uuid_message(payload).map_err(|reason| WireError {
                    field: format!("{}.{field}", plan.message()),
                    reason,
                })?;
                put_length_delimited(out, number, id.hyphenated().to_string().as_bytes());
            }
            Direction::ToLegacy => {
                let text = std::str::from_utf8(payload).map_err(|_| WireError {
                    field: format!("{}.{field}", plan.message()),
                    reason: "is not UTF-8".into(),
                })?;
                let id = legacy_id(text).to_bytes_le();
                // Uuid { bytes value = 1 }: key 0x0a, length 16.
                let mut message = Vec::with_capacity(18);
                message.extend_from_slice(&[0x0a, 16]);
                message.extend_from_slice(&id);
                put_length_delimited(out, number, &message);
            }
        },
    }
    Ok(())
}

/// The id in an encoded `Uuid { bytes value = 1 }`: exactly 16 bytes, as the original reads
/// a Guid (the last `value` wins, as protobuf merges; other fields are skipped).
fn id_from_uuid_message(message: &[u8]) -> Result<Uuid, String> {
    let mut at = 0;
    let mut value: Option<&[u8]> = None;
    while at < message.len() {
        let key = varint(message, &mut at).ok_or("is not a Uuid message (a key is cut short)")?;
        match key & 7 {
            VARINT => {
                varint(message, &mut at).ok_or("is not a Uuid message (a varint is cut short)")?;
            }
            FIXED64 | FIXED32 => {
                let width = if key & 7 == FIXED64 { 8 } else { 4 };
                at = at
                    .checked_add(width)
                    .filter(|end| *end <= message.len())
                    .ok_or("is not a Uuid message (cut short)")?;
            }
            LENGTH_DELIMITED => {
                let length = varint(message, &mut at)
                    .ok_or("is not a Uuid message (a length is cut short)")?;
                let end = usize::try_from(length)
                    .ok()
                    .and_then(|l| at.checked_add(l))
                    .filter(|end| *end <= message.len())
                    .ok_or("is not a Uuid message (a field is cut short)")?;
                if key >> 3 == 1 {
                    value = Some(&message[at..end]);
                }
                at = end;
            }
            other => return Err(format!("is not a Uuid message (wire type {other})")),
        }
    }
    let value = value.unwrap_or_default();
    let bytes: [u8; 16] = value.try_into().map_err(|_| {
        format!(
            "is not a GUID: {} bytes where 16 were expected",
            value.len()
        )
    })?;
    Ok(Uuid::from_bytes_le(bytes))
}

const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LENGTH_DELIMITED: u64 = 2;
const FIXED32: u64 = 5;

fn broken(plan: &Plan, reason: &str) -> WireError {
    WireError {
        field: plan.message().to_owned(),
        reason: format!("is not a valid protobuf message: {reason}"),
    }
}

fn skip(plan: &Plan, input: &[u8], at: usize, width: usize) -> Result<usize, WireError> {
    at.checked_add(width)
        .filter(|end| *end <= input.len())
        .ok_or_else(|| broken(plan, "a field is cut short"))
}

/// Reads a varint at `*at` (at most 10 bytes), moving `at` past it.
fn varint(input: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in 0..10 {
        let byte = *input.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << (7 * shift);
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_length_delimited(out: &mut Vec<u8>, number: u32, payload: &[u8]) {
    put_varint(out, (u64::from(number) << 3) | LENGTH_DELIMITED);
    put_varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}
