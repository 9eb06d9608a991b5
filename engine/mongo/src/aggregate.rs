//! The `aggregates` document: one per aggregate instance (event source and aggregate root).
//!
//! Layout (Runtime v9.9.0, `Events.Store.MongoDB/Aggregates/AggregateRoot.cs`; dolittle.md
//! section 3.3): `{ _id: ObjectId, EventSource: String, AggregateType: Binary(4),
//! Version: Decimal128 }`. The class has no `_id` member: the server gives each instance an
//! ObjectId when it is first upserted, so a dump of the original's database holds one first in
//! every document. The caller chooses it (fresh, or kept from an import).
//!
//! `Version` is the number of events applied so far, that is the next version to expect (the
//! events themselves carry 0-based versions).
//!
//! Invariants: a pure function of its arguments; it cannot fail.

use annals_engine::uuid::Uuid;
use bson::{oid::ObjectId, Document};

use crate::values::{counter, guid};

/// The collection of aggregate instance versions (there is no scoped variant).
pub const AGGREGATES_COLLECTION: &str = "aggregates";

/// The document the original keeps for one aggregate instance.
pub fn aggregate_document(
    id: ObjectId,
    event_source_id: &str,
    aggregate_root: Uuid,
    version: u64,
) -> Document {
    let mut document = Document::new();
    document.insert("_id", id);
    document.insert("EventSource", event_source_id);
    document.insert("AggregateType", guid(aggregate_root));
    document.insert("Version", counter(version));
    document
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_byte_for_byte() {
        let id = ObjectId::from_bytes([0x65, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let root = Uuid::parse_str("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0").unwrap();
        let got = aggregate_document(id, "cart-1", root, 3).to_vec().unwrap();
        // Written out by hand from the BSON spec and the layout above.
        let mut want: Vec<u8> = vec![0, 0, 0, 0]; // length, patched below
        want.extend_from_slice(b"\x07_id\0"); // ObjectId
        want.extend_from_slice(&[0x65, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        want.extend_from_slice(b"\x02EventSource\0"); // string: length with NUL, bytes, NUL
        want.extend_from_slice(&[7, 0, 0, 0]);
        want.extend_from_slice(b"cart-1\0");
        want.extend_from_slice(b"\x05AggregateType\0"); // binary: length, subtype 4, bytes
        want.extend_from_slice(&[16, 0, 0, 0, 4]);
        want.extend_from_slice(&[
            0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78, 0x87, 0x96, 0xa5, 0xb4, 0xc3, 0xd2,
            0xe1, 0xf0,
        ]);
        want.extend_from_slice(b"\x13Version\0"); // decimal128: 3E0, little-endian
        want.extend_from_slice(&[3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0x30]);
        want.push(0);
        let len = u32::try_from(want.len()).unwrap().to_le_bytes();
        want[..4].copy_from_slice(&len);
        assert_eq!(got, want);
    }
}
