//! The `stream-definitions` document: what a handler's or filter's stream selects.
//!
//! Layout (Runtime v9.9.0, `Streams/StreamDefinition.cs`, `Streams/Filters/*.cs`, the filter
//! discriminator convention registered in `DatabaseConnection.cs`):
//!
//! ```text
//! _id          Binary(4)  the stream id (the handler's or filter's id)
//! Partitioned  Boolean
//! Public       Boolean
//! Filter       { Type: "EventTypeId", Types: [Binary(4), ...] }   event handlers
//!              { Type: "Remote" }                                 filters, private or public
//! ```
//!
//! Event handlers' definitions are in their scope's collection, private filters' in theirs,
//! public filters' always in the default one (`stream-definitions`), which is where annals
//! records them too. The types keep the registration's order.
//!
//! Invariants: a pure function of its arguments.

use annals_engine::{uuid::Uuid, ScopeId, StreamDefinition, StreamFilter};
use bson::{Bson, Document};

use crate::values::guid;

/// The collection of a scope's stream definitions: `stream-definitions`, or
/// `x-<scope>-stream-definitions`.
pub fn stream_definitions_collection(scope: ScopeId) -> String {
    if scope.is_default() {
        "stream-definitions".to_owned()
    } else {
        format!("x-{}-stream-definitions", scope.0.hyphenated())
    }
}

/// The document the original keeps for one stream's definition.
pub fn stream_definition_document(stream: Uuid, definition: &StreamDefinition) -> Document {
    let mut filter = Document::new();
    match &definition.filter {
        StreamFilter::EventTypes(types) => {
            filter.insert("Type", "EventTypeId");
            filter.insert(
                "Types",
                types.iter().copied().map(guid).collect::<Vec<Bson>>(),
            );
        }
        StreamFilter::Remote => {
            filter.insert("Type", "Remote");
        }
    }
    let mut document = Document::new();
    document.insert("_id", guid(stream));
    document.insert("Partitioned", definition.partitioned);
    document.insert("Public", definition.public);
    document.insert("Filter", filter);
    document
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_kinds_byte_for_byte() {
        let stream = Uuid::from_u128(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10);
        let handler = StreamDefinition {
            partitioned: true,
            public: false,
            filter: StreamFilter::EventTypes(vec![Uuid::from_u128(0xff), Uuid::from_u128(0xaa)]),
        };
        let got = stream_definition_document(stream, &handler)
            .to_vec()
            .unwrap();
        // Written out by hand from the BSON spec and the layout above.
        let mut want: Vec<u8> = vec![0, 0, 0, 0];
        want.extend_from_slice(b"\x05_id\0\x10\0\0\0\x04");
        want.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
        want.extend_from_slice(b"\x08Partitioned\0\x01");
        want.extend_from_slice(b"\x08Public\0\x00");
        want.extend_from_slice(b"\x03Filter\0");
        let filter_at = want.len();
        want.extend_from_slice(&[0, 0, 0, 0]);
        want.extend_from_slice(b"\x02Type\0\x0c\0\0\0EventTypeId\0");
        want.extend_from_slice(b"\x04Types\0");
        let types_at = want.len();
        want.extend_from_slice(&[0, 0, 0, 0]);
        for (index, last) in [(b'0', 0xff), (b'1', 0xaa)] {
            want.extend_from_slice(&[0x05, index, 0, 16, 0, 0, 0, 4]);
            want.extend_from_slice(&[0; 15]);
            want.push(last);
        }
        want.push(0);
        let types_len = u32::try_from(want.len() - types_at).unwrap();
        want[types_at..types_at + 4].copy_from_slice(&types_len.to_le_bytes());
        want.push(0);
        let filter_len = u32::try_from(want.len() - filter_at).unwrap();
        want[filter_at..filter_at + 4].copy_from_slice(&filter_len.to_le_bytes());
        want.push(0);
        let len = u32::try_from(want.len()).unwrap();
        want[..4].copy_from_slice(&len.to_le_bytes());
        assert_eq!(got, want);

        let public = StreamDefinition {
            partitioned: true,
            public: true,
            filter: StreamFilter::Remote,
        };
        let got = stream_definition_document(stream, &public);
        let want = bson::doc! {
            "_id": guid(stream),
            "Partitioned": true,
            "Public": true,
            "Filter": { "Type": "Remote" },
        };
        assert_eq!(got.to_vec().unwrap(), want.to_vec().unwrap());
    }

    #[test]
    fn collections_by_scope() {
        assert_eq!(
            stream_definitions_collection(ScopeId::DEFAULT),
            "stream-definitions"
        );
        assert_eq!(
            stream_definitions_collection(ScopeId(Uuid::from_u128(0xab))),
            "x-00000000-0000-0000-0000-0000000000ab-stream-definitions"
        );
    }
}
