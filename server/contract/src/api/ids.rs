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
        value: id.to_bytes_le().to_vec(),
    }
}

/// The id a wire Uuid holds, or why it holds none. `field` names the field for the reason.
pub fn from_wire(field: &str, id: &WireUuid) -> Result<Uuid, Failure> {
    let bytes: [u8; 16] = id.value.as_slice().try_into().map_err(|_| {
        Failure::invalid(format!(
            "{field} is not a GUID: {} bytes where 16 were expected",
            id.value.len()
        ))
    })?;
    Ok(Uuid::from_bytes_le(bytes))
}

/// A required id field: missing is as bad as malformed.
pub fn required(field: &str, id: Option<&WireUuid>) -> Result<Uuid, Failure> {
    match id {
        Some(id) => from_wire(field, id),
        None => Err(Failure::invalid(format!("{field} is missing"))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

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
