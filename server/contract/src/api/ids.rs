//! Ids on the wire: `dolittle.protobuf.Uuid { bytes value = 1 }` holding the 16 bytes of .NET's
//! `Guid.ToByteArray()`, whose first three groups are little-endian (the SDKs write the same
//! mixed-endian layout). This module is the only place that converts between that layout and
//! proper RFC 4122 UUIDs; everything past it uses `uuid::Uuid`.

use uuid::Uuid;

use crate::api::failure::Failure;
use crate::proto::dolittle::protobuf::Uuid as WireUuid;

/// The wire form of `id`.
pub fn to_wire(id: Uuid) -> WireUuid {
    WireUuid {
        value: wire_bytes(id).to_vec(),
    }
}

/// The 16 bytes the wire form of `id` holds (for a writer that encodes it itself).
pub fn wire_bytes(id: Uuid) -> [u8; 16] {
    id.to_bytes_le()
}

/// The key of `dolittle.protobuf.Uuid`'s value: field 1, length-delimited.
const UUID_VALUE_KEY: u8 = 1 << 3 | 2;
/// The length of an encoded `dolittle.protobuf.Uuid`: its value's key, length and 16 bytes.
pub const UUID_MESSAGE_LEN: usize = 2 + 16;

/// The wire form of `id` encoded (for a writer that encodes the message around it itself).
pub fn uuid_message(id: Uuid) -> [u8; UUID_MESSAGE_LEN] {
    let mut message = [0; UUID_MESSAGE_LEN];
    message[0] = UUID_VALUE_KEY;
    message[1] = 16;
    message[2..].copy_from_slice(&wire_bytes(id));
    message
}

/// The id a wire Uuid holds, or why it holds none. `field` names the field for the reason.
pub fn from_wire(field: impl std::fmt::Display, id: &WireUuid) -> Result<Uuid, Failure> {
    let bytes: [u8; 16] = id.value.as_slice().try_into().map_err(|_| {
        Failure::invalid(format!(
            "{field} is not a GUID: {} bytes where 16 were expected",
            id.value.len()
        ))
    })?;
    Ok(Uuid::from_bytes_le(bytes))
}

/// A required id field: missing is as bad as malformed.
pub fn required(field: impl std::fmt::Display, id: Option<&WireUuid>) -> Result<Uuid, Failure> {
    match id {
        Some(id) => from_wire(field, id),
        None => Err(Failure::invalid(format!("{field} is missing"))),
    }
}

/// The Guid `text` is to .NET's `Guid.TryParse`, which decides where the original fills a
/// legacy Guid field beside a text one (event sources, partitions): white space around it is
/// ignored, and the formats are 32 digits (`N`), hyphenated (`D`), hyphenated in braces (`B`)
/// or parentheses (`P`), and the hexadecimal structure `{0x...,0x...,0x...,{0x..,...}}` (`X`).
/// Anything else, such as a `urn:uuid:` prefix that `Uuid::parse_str` takes, is no Guid.
pub fn parse_dotnet_guid(text: &str) -> Option<Uuid> {
    let text = text.trim();
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    let hyphenated = |s: &str| -> Option<Uuid> {
        let groups: Vec<&str> = s.split('-').collect();
        let lengths = [8, 4, 4, 4, 12];
        if groups.len() != 5
            || groups
                .iter()
                .zip(lengths)
                .any(|(g, n)| g.len() != n || !hex(g))
        {
            return None;
        }
        Uuid::try_parse(s).ok()
    };
    match text.len() {
        32 if hex(text) => Uuid::try_parse(text).ok(),
        36 => hyphenated(text),
        38 if (text.starts_with('{') && text.ends_with('}'))
            || (text.starts_with('(') && text.ends_with(')')) =>
        {
            hyphenated(&text[1..37])
        }
        _ => parse_dotnet_hex_structure(text),
    }
}

/// The `X` format: `{0xAAAAAAAA,0xBBBB,0xCCCC,{0xDD,0xDD,0xDD,0xDD,0xDD,0xDD,0xDD,0xDD}}`,
/// each number with up to its width in hex digits, without white space inside.
fn parse_dotnet_hex_structure(text: &str) -> Option<Uuid> {
    let inner = text.strip_prefix('{')?.strip_suffix("}}")?;
    let (head, bytes) = inner.split_once(",{")?;
    let number = |part: &str, digits_max: usize| -> Option<u64> {
        let digits = part
            .strip_prefix("0x")
            .or_else(|| part.strip_prefix("0X"))?;
        if digits.is_empty()
            || digits.len() > digits_max
            || !digits.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return None;
        }
        u64::from_str_radix(digits, 16).ok()
    };
    let head: Vec<&str> = head.split(',').collect();
    let tail: Vec<&str> = bytes.split(',').collect();
    if head.len() != 3 || tail.len() != 8 {
        return None;
    }
    let a = u32::try_from(number(head[0], 8)?).ok()?;
    let b = u16::try_from(number(head[1], 4)?).ok()?;
    let c = u16::try_from(number(head[2], 4)?).ok()?;
    let mut d = [0u8; 8];
    for (slot, part) in d.iter_mut().zip(&tail) {
        *slot = u8::try_from(number(part, 2)?).ok()?;
    }
    Some(Uuid::from_fields(a, b, c, &d))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn guids_parse_as_dotnet_parses_them() {
        let id = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        for text in [
            "0123456789abcdef0123456789abcdef",
            "01234567-89ab-cdef-0123-456789abcdef",
            "01234567-89AB-CDEF-0123-456789ABCDEF",
            "{01234567-89ab-cdef-0123-456789abcdef}",
            "(01234567-89ab-cdef-0123-456789abcdef)",
            "  01234567-89ab-cdef-0123-456789abcdef\t",
            "{0x01234567,0x89ab,0xcdef,{0x01,0x23,0x45,0x67,0x89,0xab,0xcd,0xef}}",
        ] {
            assert_eq!(parse_dotnet_guid(text), Some(id), "{text:?}");
        }
        for text in [
            "urn:uuid:01234567-89ab-cdef-0123-456789abcdef",
            "{01234567-89ab-cdef-0123-456789abcdef)",
            "0123456789abcdef0123456789abcdeg",
            "01234567-89ab-cdef-0123-456789abcde",
            "order-1",
            "",
        ] {
            assert_eq!(parse_dotnet_guid(text), None, "{text:?}");
        }
    }

    #[test]
    fn dotnet_byte_order_by_hand() {
        // Guid("445f8ea8-1a6f-40d7-b2fc-796dba92dc44").ToByteArray(), written out by hand:
        // the first group reversed (a8 8e 5f 44), then each of the next two (6f 1a, d7 40),
        // then the last eight bytes as written.
        let wire = [
            0xa8, 0x8e, 0x5f, 0x44, 0x6f, 0x1a, 0xd7, 0x40, 0xb2, 0xfc, 0x79, 0x6d, 0xba, 0x92,
            0xdc, 0x44,
        ];
        let id = Uuid::parse_str("445f8ea8-1a6f-40d7-b2fc-796dba92dc44").unwrap();
        assert_eq!(to_wire(id).value, wire);
        assert_eq!(
            from_wire(
                "x",
                &WireUuid {
                    value: wire.to_vec()
                }
            )
            .unwrap(),
            id
        );
    }

    #[test]
    fn wrong_lengths_and_missing_ids_are_failures() {
        let e = from_wire(
            "eventType.id",
            &WireUuid {
                value: vec![1, 2, 3],
            },
        )
        .unwrap_err();
        assert!(
            e.reason.contains("eventType.id is not a GUID: 3 bytes"),
            "{}",
            e.reason
        );
        assert!(required("aggregateRootId", None).is_err());
    }
}
