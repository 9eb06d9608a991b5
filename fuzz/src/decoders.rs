//! The decoder targets: segment header, record frame, record payload, seal trailer.
//!
//! Every decoder of `segment::format` promises to reject whatever its encoder cannot produce,
//! so anything that decodes must re-encode to exactly the bytes it came from: a decoder that
//! accepts two spellings of one value (a stray reserved bit, a non-canonical length) fails
//! here. The record payload has no public encoder, so [`record_payload`] re-encodes with an
//! independent one written from the payload layout (`engine/src/event.rs` module docs), which
//! also cross-checks that layout.

use annals_engine::{
    testing::{
        decode_payload,
        format::{
            encode_frame, frame_crc, parse_frame, FrameParse, SealTrailer, SegmentHeader,
            FORMAT_VERSION, FRAME_HEADER_LEN, HEADER_LEN, TRAILER_LEN,
        },
    },
    Event, EventLogSequenceNumber,
};

use crate::Input;

/// Mode bit: recompute the checksum of the bytes before decoding them.
pub(crate) const MODE_FIX_CHECKSUM: u8 = 1;

/// Recomputes the CRC of a header or trailer of `len` bytes at the start of `b` (if `b` is that
/// long): both keep it in their last 4 bytes, covering every byte before it.
pub(crate) fn fix_block_crc(b: &mut [u8], len: usize) {
    if b.len() >= len {
        let crc = crc32fast::hash(&b[..len - 4]);
        b[len - 4..len].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Recomputes the CRC of the frame at the start of `buf` (at file offset `offset` of the segment
/// with base `base`); returns the frame's length, or `None` when `buf` does not hold it whole.
pub(crate) fn fix_frame_crc(
    buf: &mut [u8],
    base: EventLogSequenceNumber,
    offset: u64,
) -> Option<usize> {
    if buf.len() < FRAME_HEADER_LEN {
        return None;
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let total = FRAME_HEADER_LEN
        .checked_add(len)
        .filter(|t| *t <= buf.len())?;
    // The CRC covers the length, the fields after the CRC, and the payload (FORMAT.md 4.1).
    let mut fields = [0u8; FRAME_HEADER_LEN - 4];
    fields[..4].copy_from_slice(&buf[..4]);
    fields[4..].copy_from_slice(&buf[8..FRAME_HEADER_LEN]);
    let crc = frame_crc(base, offset, &fields, &buf[FRAME_HEADER_LEN..total]);
    buf[4..8].copy_from_slice(&crc.to_le_bytes());
    Some(total)
}

/// `[mode: u8][bytes]`: decodes a segment header from `bytes` (its first 64 bytes; the rest
/// is ignored, as when reading a file's start).
pub fn segment_header(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.u8();
    let mut bytes = input.rest().to_vec();
    if mode & MODE_FIX_CHECKSUM != 0 {
        fix_block_crc(&mut bytes, HEADER_LEN);
    }
    if let Ok(header) = SegmentHeader::decode(&bytes) {
        let encoded = header.encode();
        assert_eq!(
            encoded[..],
            bytes[..HEADER_LEN],
            "header {header:?} decoded from bytes it does not encode to"
        );
        assert_eq!(SegmentHeader::decode(&encoded), Ok(header));
        assert!(
            header.min_compatible_version <= FORMAT_VERSION,
            "accepted a header that needs version {}",
            header.min_compatible_version
        );
    }
}

/// `[mode: u8][base: u64][offset: u64][payload_max: u32][bytes]`: parses the frame at the start
/// of `bytes` as if it sat at `offset` of the segment starting at `base`.
pub fn record_frame(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.u8();
    let base = EventLogSequenceNumber(input.u64());
    let offset = input.u64();
    let payload_max = input.u32() as usize;
    let mut buf = input.rest().to_vec();
    if mode & MODE_FIX_CHECKSUM != 0 {
        fix_frame_crc(&mut buf, base, offset);
    }
    match parse_frame(&buf, base, offset, payload_max) {
        FrameParse::Frame(frame) => {
            assert_eq!(frame.total_len, FRAME_HEADER_LEN + frame.payload.len());
            assert!(
                frame.payload.len() <= payload_max,
                "payload above the limit accepted"
            );
            assert!(
                offset.checked_sub(u64::from(frame.group_back)) >= Some(HEADER_LEN as u64),
                "the frame's write group starts inside the header or before the file"
            );
            let mut encoded = Vec::with_capacity(frame.total_len);
            encode_frame(
                &mut encoded,
                base,
                offset,
                frame.seq,
                frame.commit_rest,
                frame.group_back,
                frame.payload,
            );
            assert_eq!(
                encoded[..],
                buf[..frame.total_len],
                "frame {frame:?} parsed from bytes it does not encode to"
            );
        }
        FrameParse::Incomplete(needed) => {
            assert!(
                needed > buf.len(),
                "incomplete, needing {needed} of {} bytes",
                buf.len()
            );
            assert!(
                needed == FRAME_HEADER_LEN || needed - FRAME_HEADER_LEN <= payload_max,
                "asks for {needed} bytes, beyond the limit {payload_max}"
            );
        }
        FrameParse::Bad(_) => {}
    }
}

/// The payload bytes, as is: decodes one record payload.
pub fn record_payload(data: &[u8]) {
    if let Ok(event) = decode_payload(data) {
        let encoded = encode_payload(&event);
        assert!(
            encoded == data,
            "payload decoded to {event:?}, which encodes to other bytes:\n  input   {data:02x?}\n  encoded {encoded:02x?}"
        );
    }
}

/// `[mode: u8][bytes]`: decodes a seal trailer from `bytes` (which must be exactly 64 bytes).
pub fn seal_trailer(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.u8();
    let mut bytes = input.rest().to_vec();
    if mode & MODE_FIX_CHECKSUM != 0 {
        fix_block_crc(&mut bytes, TRAILER_LEN);
    }
    if let Ok(trailer) = SealTrailer::decode(&bytes) {
        let encoded = trailer.encode();
        assert_eq!(
            encoded[..],
            bytes[..],
            "trailer {trailer:?} decoded from bytes it does not encode to"
        );
        assert_eq!(SealTrailer::decode(&encoded), Ok(trailer));
    }
}

// Payload layout, from engine/src/event.rs: version u8 = 1, flags u8 (public 1, aggregate 2,
// event horizon 4, span id 8), occurred i64, event type id (16) and generation u32, event
// source id, then the execution context (microservice id, tenant id, version as four i32,
// pre-release, correlation id, claims count u32 and per claim key, value, value type,
// environment, span id if flagged), aggregate (root id, version u64) if flagged, event horizon
// origin (external sequence number u64, received i64, consent id) if flagged, content.
// Strings are a u32 byte length and UTF-8; integers little-endian; UUIDs in RFC 4122 order.

fn put_str(out: &mut Vec<u8>, s: &str) {
    let len = u32::try_from(s.len()).expect("a decoded string fits its u32 length");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// An encoder of record payloads independent of the engine's.
fn encode_payload(e: &Event) -> Vec<u8> {
    let ec = &e.execution_context;
    let mut flags = 0u8;
    for (set, bit) in [
        (e.public, 1),
        (e.aggregate.is_some(), 2),
        (e.event_horizon.is_some(), 4),
        (ec.span_id.is_some(), 8),
    ] {
        if set {
            flags |= bit;
        }
    }
    let mut out = vec![1, flags];
    out.extend_from_slice(&e.occurred_ns.to_le_bytes());
    out.extend_from_slice(e.event_type.id.as_bytes());
    out.extend_from_slice(&e.event_type.generation.to_le_bytes());
    put_str(&mut out, &e.event_source_id);
    out.extend_from_slice(ec.microservice_id.as_bytes());
    out.extend_from_slice(ec.tenant_id.as_bytes());
    for part in [
        ec.version.major,
        ec.version.minor,
        ec.version.patch,
        ec.version.build,
    ] {
        out.extend_from_slice(&part.to_le_bytes());
    }
    put_str(&mut out, &ec.version.pre_release);
    out.extend_from_slice(ec.correlation_id.as_bytes());
    let claims = u32::try_from(ec.claims.len()).expect("a decoded claims count fits u32");
    out.extend_from_slice(&claims.to_le_bytes());
    for claim in &ec.claims {
        put_str(&mut out, &claim.key);
        put_str(&mut out, &claim.value);
        put_str(&mut out, &claim.value_type);
    }
    put_str(&mut out, &ec.environment);
    if let Some(span) = ec.span_id {
        out.extend_from_slice(&span);
    }
    if let Some(a) = &e.aggregate {
        out.extend_from_slice(a.root_id.as_bytes());
        out.extend_from_slice(&a.version.to_le_bytes());
    }
    if let Some(h) = &e.event_horizon {
        out.extend_from_slice(&h.external_sequence_number.to_le_bytes());
        out.extend_from_slice(&h.received_ns.to_le_bytes());
        out.extend_from_slice(h.consent_id.as_bytes());
    }
    put_str(&mut out, &e.content);
    out
}
