//! The key layout of a tenant's column family.
//!
//! Every key starts with one byte naming its kind, so each kind is one contiguous range and
//! a kind can be dropped with one range delete. Numbers that order keys are big-endian (so
//! byte order is numeric order); values are little-endian like the log. Strings inside a key
//! carry a 4-byte big-endian length before them, so no string can run into the next field.
//!
//! | kind | key | value |
//! |---|---|---|
//! | `M` meta | `M` name | per entry |
//! | `A` aggregate version | `A` root(16) len es | u64 count of events applied |
//! | `E` event-source index | `A`'s key with `E`, then version(8) | seq(8) type(16) generation(4) |
//! | `N` stream end | `N` scope(16) stream(16) | u64 next position |
//! | `S` stream entry | `S` scope stream position(8) | seq(8) partition (rest) |
//! | `P` stream by partition | `P` scope stream len partition position(8) | seq(8) |
//! | `B` public stream end | `B` stream(16) | u64 next position |
//! | `C` public stream entry | `C` stream position(8) | seq(8) partition (rest) |
//! | `D` public stream by partition | `D` stream len partition position(8) | seq(8) |
//! | `Q` stream processor state | `Q` scope(16) processor(16) source stream(16) | JSON |
//! | `J` projection state | `J` scope(16) projection(16) key (rest) | JSON text |
//! | `K` projection history | `K` scope(16) projection(16) len key seq(8) | 1 occurred(8) JSON, or 0 occurred(8) (deleted) |
//! | `W` projection history floor | `W` scope(16) projection(16) | u64: history before it is trimmed |
//! | `G` projection definition | `G` scope(16) projection(16) | the server's text |
//! | `H` subscription state | `H` producer microservice, tenant, scope, stream (16 each) partition | JSON |
//! | `F` stream definition | `F` scope(16) stream(16) | JSON |
//!
//! `N`, `S` and `P` hold the streams private filters write, by scope; `B`, `C` and `D` hold the
//! public streams public filters write (what the event horizon serves), with no scope: there is
//! one namespace of public streams per tenant, and no scope id can reach it. Their entries are
//! the same as those of the scoped kinds, and the same code writes both (`StreamSpace`). Older
//! versions kept public streams under the reserved scope `LEGACY_PUBLIC_SCOPE` in `N`, `S` and
//! `P`; opening a tenant moves such keys to `B`, `C` and `D` (`tenant/stream.rs`), and that
//! scope is refused for scoped streams so nothing can be written there again.
//!
//! The partition at the end of an `H` key has no length before it: it runs to the end of the
//! key, which is 65 bytes plus the partition's UTF-8 ([`split_subscription`]).
//!
//! Engine-wide entries (aliases) live in the default column family: `T` event type id(16)
//! and `R` aggregate root id(16), each to the alias text.

#![allow(
    clippy::big_endian_bytes,
    reason = "keys sort bytewise in RocksDB, so their numbers are big-endian on purpose"
)]

use uuid::Uuid;

pub(crate) const META_INDEXED: &[u8] = b"Mindexed";
pub(crate) const META_FORMAT: &[u8] = b"Mformat";
/// Bumped when the derived keys change shape: a mismatch rebuilds them from the log.
pub(crate) const INDEX_FORMAT: u32 = 1;

pub(crate) const AGGREGATE: u8 = b'A';
pub(crate) const EVENT_SOURCE: u8 = b'E';
pub(crate) const STREAM_END: u8 = b'N';
pub(crate) const STREAM: u8 = b'S';
pub(crate) const STREAM_PARTITION: u8 = b'P';
pub(crate) const STREAM_PROCESSOR: u8 = b'Q';
pub(crate) const PUBLIC_STREAM_END: u8 = b'B';
pub(crate) const PUBLIC_STREAM: u8 = b'C';
pub(crate) const PUBLIC_STREAM_PARTITION: u8 = b'D';
pub(crate) const PROJECTION: u8 = b'J';
pub(crate) const PROJECTION_HISTORY: u8 = b'K';
pub(crate) const PROJECTION_HISTORY_FLOOR: u8 = b'W';
pub(crate) const PROJECTION_DEFINITION: u8 = b'G';
pub(crate) const SUBSCRIPTION: u8 = b'H';
pub(crate) const STREAM_DEFINITION: u8 = b'F';
pub(crate) const EVENT_TYPE_ALIAS: u8 = b'T';
pub(crate) const AGGREGATE_ROOT_ALIAS: u8 = b'R';

fn put_str(key: &mut Vec<u8>, s: &str) {
    key.extend_from_slice(&(s.len() as u32).to_be_bytes());
    key.extend_from_slice(s.as_bytes());
}

/// `A` root len es: one aggregate instance.
pub(crate) fn aggregate(root: Uuid, event_source: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(21 + event_source.len() + 8);
    key.push(AGGREGATE);
    key.extend_from_slice(root.as_bytes());
    put_str(&mut key, event_source);
    key
}

/// The root and event source of an `A` key.
pub(crate) fn split_aggregate(key: &[u8]) -> Option<(Uuid, String)> {
    let rest = key.strip_prefix(&[AGGREGATE])?;
    let (root, rest) = rest.split_first_chunk::<16>()?;
    let (len, rest) = rest.split_first_chunk::<4>()?;
    if rest.len() != u32::from_be_bytes(*len) as usize {
        return None;
    }
    let event_source = String::from_utf8(rest.to_vec()).ok()?;
    Some((Uuid::from_bytes(*root), event_source))
}

/// `E` root len es: the prefix of an aggregate's event-source index entries.
pub(crate) fn event_source_prefix(root: Uuid, event_source: &str) -> Vec<u8> {
    let mut key = aggregate(root, event_source);
    key[0] = EVENT_SOURCE;
    key
}

/// `E` root len es version: the index entry of one applied event.
pub(crate) fn event_source_entry(root: Uuid, event_source: &str, version: u64) -> Vec<u8> {
    let mut key = event_source_prefix(root, event_source);
    key.extend_from_slice(&version.to_be_bytes());
    key
}

/// The version at the end of an `E` key.
pub(crate) fn version_of_entry(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

/// `kind` then two ids.
fn two_ids(kind: u8, a: Uuid, b: Uuid) -> Vec<u8> {
    let mut key = Vec::with_capacity(41);
    key.push(kind);
    key.extend_from_slice(a.as_bytes());
    key.extend_from_slice(b.as_bytes());
    key
}

/// The two ids of a key of `kind` made by [`two_ids`]; `None` for another kind or length.
pub(crate) fn split_two_ids(key: &[u8], kind: u8) -> Option<(Uuid, Uuid)> {
    let rest = key.strip_prefix(&[kind])?;
    let (a, b) = rest.split_first_chunk::<16>()?;
    let b = <[u8; 16]>::try_from(b).ok()?;
    Some((Uuid::from_bytes(*a), Uuid::from_bytes(b)))
}

/// The scope under which versions before the public kinds (`B`, `C`, `D`) kept public streams.
pub(crate) const LEGACY_PUBLIC_SCOPE: Uuid = Uuid::max();

/// Which namespace a stream is in: a scope's filtered streams, or the tenant's public streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamSpace {
    /// Streams that private filters write, in a scope (`N`, `S`, `P`).
    Scoped(Uuid),
    /// Public streams (`B`, `C`, `D`).
    Public,
}

/// What a stream key holds.
#[derive(Debug, Clone, Copy)]
enum StreamPart {
    End,
    Entry,
    Partition,
}

/// The kind byte, the scope (scoped streams only) and the stream: where every key of a stream
/// begins.
fn stream_head(space: StreamSpace, part: StreamPart, stream: Uuid) -> Vec<u8> {
    let kind = match (space, part) {
        (StreamSpace::Scoped(_), StreamPart::End) => STREAM_END,
        (StreamSpace::Scoped(_), StreamPart::Entry) => STREAM,
        (StreamSpace::Scoped(_), StreamPart::Partition) => STREAM_PARTITION,
        (StreamSpace::Public, StreamPart::End) => PUBLIC_STREAM_END,
        (StreamSpace::Public, StreamPart::Entry) => PUBLIC_STREAM,
        (StreamSpace::Public, StreamPart::Partition) => PUBLIC_STREAM_PARTITION,
    };
    let mut key = Vec::with_capacity(41);
    key.push(kind);
    if let StreamSpace::Scoped(scope) = space {
        key.extend_from_slice(scope.as_bytes());
    }
    key.extend_from_slice(stream.as_bytes());
    key
}

/// `N` scope stream or `B` stream: a stream's next position.
pub(crate) fn stream_end(space: StreamSpace, stream: Uuid) -> Vec<u8> {
    stream_head(space, StreamPart::End, stream)
}

/// `S` scope stream or `C` stream: the prefix of a stream's entries.
pub(crate) fn stream_prefix(space: StreamSpace, stream: Uuid) -> Vec<u8> {
    stream_head(space, StreamPart::Entry, stream)
}

/// `S` scope stream position or `C` stream position.
pub(crate) fn stream_entry(space: StreamSpace, stream: Uuid, position: u64) -> Vec<u8> {
    let mut key = stream_prefix(space, stream);
    key.extend_from_slice(&position.to_be_bytes());
    key
}

/// `P` scope stream len partition or `D` stream len partition: the prefix of one partition's
/// entries.
pub(crate) fn stream_partition_prefix(
    space: StreamSpace,
    stream: Uuid,
    partition: &str,
) -> Vec<u8> {
    let mut key = stream_head(space, StreamPart::Partition, stream);
    put_str(&mut key, partition);
    key
}

/// `P` scope stream len partition position, or `D` stream len partition position.
pub(crate) fn stream_partition_entry(
    space: StreamSpace,
    stream: Uuid,
    partition: &str,
    position: u64,
) -> Vec<u8> {
    let mut key = stream_partition_prefix(space, stream, partition);
    key.extend_from_slice(&position.to_be_bytes());
    key
}

/// The stream id of a `B` key.
pub(crate) fn split_public_stream_end(key: &[u8]) -> Option<Uuid> {
    let rest = key.strip_prefix(&[PUBLIC_STREAM_END])?;
    <[u8; 16]>::try_from(rest).ok().map(Uuid::from_bytes)
}

/// The key a legacy public-stream key (`N`, `S` or `P` under [`LEGACY_PUBLIC_SCOPE`]) moves to:
/// the public kind, the scope left out, the rest unchanged. `None` for any other key.
pub(crate) fn migrated_public_key(key: &[u8]) -> Option<Vec<u8>> {
    let (&kind, rest) = key.split_first()?;
    let kind = match kind {
        STREAM_END => PUBLIC_STREAM_END,
        STREAM => PUBLIC_STREAM,
        STREAM_PARTITION => PUBLIC_STREAM_PARTITION,
        _ => return None,
    };
    let rest = rest.strip_prefix(LEGACY_PUBLIC_SCOPE.as_bytes())?;
    let mut moved = Vec::with_capacity(1 + rest.len());
    moved.push(kind);
    moved.extend_from_slice(rest);
    Some(moved)
}

/// `Q` scope processor source-stream.
pub(crate) fn stream_processor(scope: Uuid, processor: Uuid, source_stream: Uuid) -> Vec<u8> {
    let mut key = two_ids(STREAM_PROCESSOR, scope, processor);
    key.extend_from_slice(source_stream.as_bytes());
    key
}

/// `F` scope stream: a stream's definition.
pub(crate) fn stream_definition(scope: Uuid, stream: Uuid) -> Vec<u8> {
    two_ids(STREAM_DEFINITION, scope, stream)
}

/// `J` scope projection: the prefix of a projection's states.
pub(crate) fn projection_prefix(scope: Uuid, projection: Uuid) -> Vec<u8> {
    two_ids(PROJECTION, scope, projection)
}

/// `J` scope projection key.
pub(crate) fn projection(scope: Uuid, projection: Uuid, state_key: &str) -> Vec<u8> {
    let mut key = projection_prefix(scope, projection);
    key.extend_from_slice(state_key.as_bytes());
    key
}

/// `K` scope projection: the prefix of a projection's history.
pub(crate) fn projection_history_prefix(scope: Uuid, projection: Uuid) -> Vec<u8> {
    two_ids(PROJECTION_HISTORY, scope, projection)
}

/// `K` scope projection len key: the prefix of one key's history.
pub(crate) fn projection_key_history(scope: Uuid, projection: Uuid, state_key: &str) -> Vec<u8> {
    let mut key = projection_history_prefix(scope, projection);
    put_str(&mut key, state_key);
    key
}

/// `K` scope projection len key seq: the state of one key after the event at `seq`.
pub(crate) fn projection_history(
    scope: Uuid,
    projection: Uuid,
    state_key: &str,
    seq: u64,
) -> Vec<u8> {
    projection_history_at(&projection_key_history(scope, projection, state_key), seq)
}

/// One key's history prefix (see [`projection_key_history`]) and `seq`.
pub(crate) fn projection_history_at(group: &[u8], seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(group.len() + 8);
    key.extend_from_slice(group);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// Splits a `K` key after its 33-byte prefix: the key's own history prefix (everything but
/// the sequence number), the state key and the sequence number.
pub(crate) fn split_projection_history(key: &[u8]) -> Option<(&[u8], &str, u64)> {
    let rest = key.get(33..)?;
    let (len, rest) = rest.split_first_chunk::<4>()?;
    let len = u32::from_be_bytes(*len) as usize;
    let state_key = std::str::from_utf8(rest.get(..len)?).ok()?;
    let seq: [u8; 8] = rest.get(len..)?.try_into().ok()?;
    Some((&key[..33 + 4 + len], state_key, u64::from_be_bytes(seq)))
}

/// `W` scope projection: where a projection's history begins.
pub(crate) fn projection_history_floor(scope: Uuid, projection: Uuid) -> Vec<u8> {
    two_ids(PROJECTION_HISTORY_FLOOR, scope, projection)
}

/// `G` scope projection: a projection's definition.
pub(crate) fn projection_definition(scope: Uuid, projection: Uuid) -> Vec<u8> {
    two_ids(PROJECTION_DEFINITION, scope, projection)
}

/// `H` producer-microservice producer-tenant scope stream partition.
pub(crate) fn subscription(
    microservice: Uuid,
    tenant: Uuid,
    scope: Uuid,
    stream: Uuid,
    partition: &str,
) -> Vec<u8> {
    let mut key = Vec::with_capacity(65 + partition.len());
    key.push(SUBSCRIPTION);
    for id in [microservice, tenant, scope, stream] {
        key.extend_from_slice(id.as_bytes());
    }
    key.extend_from_slice(partition.as_bytes());
    key
}

/// The producer microservice, producer tenant, scope, stream and partition of an `H` key.
pub(crate) fn split_subscription(key: &[u8]) -> Option<(Uuid, Uuid, Uuid, Uuid, String)> {
    let rest = key.strip_prefix(&[SUBSCRIPTION])?;
    let (ids, partition) = rest.split_first_chunk::<64>()?;
    let id = |i: usize| {
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&ids[i * 16..(i + 1) * 16]);
        Uuid::from_bytes(bytes)
    };
    let partition = String::from_utf8(partition.to_vec()).ok()?;
    Some((id(0), id(1), id(2), id(3), partition))
}

/// `T` or `R` id: an alias.
pub(crate) fn alias(kind: u8, id: Uuid) -> Vec<u8> {
    let mut key = Vec::with_capacity(17);
    key.push(kind);
    key.extend_from_slice(id.as_bytes());
    key
}

/// The first key after every key that starts with `prefix` (the prefix's upper bound).
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff (never one of ours): no upper bound short of the key space's end.
    vec![u8::MAX; prefix.len() + 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_source_entries_sort_by_version_and_never_mix_sources() {
        let root = Uuid::from_u128(1);
        let a5 = event_source_entry(root, "a", 5);
        let a300 = event_source_entry(root, "a", 300);
        let ab0 = event_source_entry(root, "ab", 0);
        assert!(a5 < a300);
        // "a" and "ab" differ in their length prefix, so "ab" never falls inside "a"'s range.
        let a = event_source_prefix(root, "a");
        assert!(!ab0.starts_with(&a));
        assert!(a300.starts_with(&a) && a300 < prefix_end(&a));
        assert_eq!(version_of_entry(&a300), Some(300));
    }

    #[test]
    fn aggregate_keys_split_back() {
        let root = Uuid::from_u128(7);
        let key = aggregate(root, "order-1");
        assert_eq!(split_aggregate(&key), Some((root, "order-1".to_owned())));
        assert_eq!(split_aggregate(&key[..key.len() - 1]), None);
        assert_eq!(split_aggregate(&event_source_prefix(root, "x")), None);
    }

    #[test]
    fn subscription_keys_split_back_whatever_the_partition() {
        let ids = [1u128, 2, 3, 4].map(Uuid::from_u128);
        for partition in ["", "p", "\u{e6}\u{f8}\u{e5} \u{1f600}", "\0\u{7f}"] {
            let key = subscription(ids[0], ids[1], ids[2], ids[3], partition);
            assert_eq!(
                split_subscription(&key),
                Some((ids[0], ids[1], ids[2], ids[3], partition.to_owned()))
            );
        }
        let key = subscription(ids[0], ids[1], ids[2], ids[3], "");
        assert_eq!(split_subscription(&key[..key.len() - 1]), None);
        let mut bad = key.clone();
        bad.push(0xff);
        assert_eq!(
            split_subscription(&bad),
            None,
            "a partition that is not UTF-8"
        );
    }

    #[test]
    fn public_stream_keys_have_no_scope_and_never_meet_scoped_ones() {
        let stream = Uuid::from_u128(9);
        let public = stream_entry(StreamSpace::Public, stream, 3);
        assert_eq!(public.len(), 1 + 16 + 8);
        assert_eq!(public[0], PUBLIC_STREAM);
        for scope in [Uuid::nil(), LEGACY_PUBLIC_SCOPE] {
            let scoped = stream_entry(StreamSpace::Scoped(scope), stream, 3);
            assert_ne!(scoped[0], public[0]);
        }
        assert_eq!(
            split_public_stream_end(&stream_end(StreamSpace::Public, stream)),
            Some(stream)
        );
    }

    #[test]
    fn legacy_public_keys_move_to_the_public_kinds() {
        let stream = Uuid::from_u128(9);
        let legacy = StreamSpace::Scoped(LEGACY_PUBLIC_SCOPE);
        let cases = [
            (
                stream_end(legacy, stream),
                stream_end(StreamSpace::Public, stream),
            ),
            (
                stream_entry(legacy, stream, 7),
                stream_entry(StreamSpace::Public, stream, 7),
            ),
            (
                stream_partition_entry(legacy, stream, "p", 7),
                stream_partition_entry(StreamSpace::Public, stream, "p", 7),
            ),
        ];
        for (old, new) in cases {
            assert_eq!(migrated_public_key(&old), Some(new));
        }
        let other_scope = stream_end(StreamSpace::Scoped(Uuid::from_u128(1)), stream);
        assert_eq!(migrated_public_key(&other_scope), None);
        assert_eq!(
            migrated_public_key(&stream_processor(LEGACY_PUBLIC_SCOPE, stream, stream)),
            None
        );
    }

    #[test]
    fn prefix_end_carries() {
        assert_eq!(prefix_end(&[1, 2, 0xff]), vec![1, 3]);
        assert_eq!(prefix_end(b"E"), b"F".to_vec());
    }
}
