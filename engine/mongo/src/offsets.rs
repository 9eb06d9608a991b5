//! The `event-log-metadata` document: the next offset of one stream collection (9.6 and later).
//!
//! Layout (Runtime v9.9.0, `Events.Store.MongoDB/Events/StreamMetadata.cs` and
//! `Persistence/OffsetStore.cs`; dolittle.md section 3.3): `{ _id: String, NextEventOffset:
//! Decimal128 }`, `_id` being the collection's name (`event-log`, `x-<scope>-event-log`,
//! `stream-<id>`, ...). The original keeps it at the collection's highest `_id` plus one and
//! repairs a lower value at start-up, so the document is an optimisation a restore could do
//! without; a dump of the original's database holds it, so an export writes it.
//!
//! Invariants: a pure function of its arguments; it cannot fail. The collection has no index
//! but `_id_`.

use bson::Document;

use crate::values::counter;

/// The collection of stream offsets (one for all scopes).
pub const EVENT_LOG_METADATA_COLLECTION: &str = "event-log-metadata";

/// The document recording that the collection `stream_collection` continues at
/// `next_event_offset` (its event count, streams being gapless from 0 in annals).
pub fn event_log_metadata_document(stream_collection: &str, next_event_offset: u64) -> Document {
    let mut document = Document::new();
    document.insert("_id", stream_collection);
    document.insert("NextEventOffset", counter(next_event_offset));
    document
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_byte_for_byte() {
        let got = event_log_metadata_document("event-log", 1000)
            .to_vec()
            .unwrap();
        // Written out by hand from the BSON spec: string _id, then Decimal128 1000E0.
        let mut want: Vec<u8> = vec![0, 0, 0, 0];
        want.extend_from_slice(b"\x02_id\0");
        want.extend_from_slice(&[10, 0, 0, 0]);
        want.extend_from_slice(b"event-log\0");
        want.extend_from_slice(b"\x13NextEventOffset\0");
        want.extend_from_slice(&[0xe8, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0x30]);
        want.push(0);
        let len = u32::try_from(want.len()).unwrap().to_le_bytes();
        want[..4].copy_from_slice(&len);
        assert_eq!(got, want);
    }
}
