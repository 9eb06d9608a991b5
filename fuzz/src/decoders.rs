//! The decoder targets: segment header, record frame, record payload, seal trailer, compact
//! sealed block.
//!
//! Every decoder of `segment::format` promises to reject whatever its encoder cannot produce,
//! so anything that decodes must re-encode to exactly the bytes it came from: a decoder that
//! accepts two spellings of one value (a stray reserved bit, a non-canonical length) fails
//! here. [`record_payload`] re-encodes with the writer's own encoder
//! (`annals_log::testing::encode_payload`).

use annals_log::{
    decode_index_fields,
    testing::{
        compact::{expand, raw_span, CompactEncoder},
        decode_payload,
        format::{
            encode_frame, frame_crc, parse_frame, FrameParse, SealTrailer, SegmentHeader,
            FORMAT_VERSION, FRAME_HEADER_LEN, HEADER_LEN, TRAILER_LEN,
        },
    },
    EventLogSequenceNumber,
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

/// The payload bytes, as is: decodes one record payload, with the full decoder and with the
/// indexer's (`decode_index_fields`), which must agree.
pub fn record_payload(data: &[u8]) {
    let index = decode_index_fields(data);
    match decode_payload(data) {
        Ok(event) => {
            let encoded = annals_log::testing::encode_payload(&event);
            assert!(
                encoded == data,
                "payload decoded to {event:?}, which encodes to other bytes:\n  input   {data:02x?}\n  encoded {encoded:02x?}"
            );
            let fields = index.unwrap_or_else(|e| {
                panic!(
                    "the index decoder refused a payload that decodes to {event:?}: {}",
                    e.0
                )
            });
            assert_eq!(fields.event_type, event.event_type);
            assert_eq!(fields.event_source_id, event.event_source_id);
            assert_eq!(fields.aggregate, event.aggregate);
        }
        // It may accept what only the strings it steps over make invalid, nothing else.
        Err(e) => {
            if index.is_ok() {
                assert!(
                    e.contains("invalid UTF-8") && !e.contains("event source id"),
                    "the index decoder accepted a payload the full decoder refuses: {e}"
                );
            }
        }
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

/// Mode of [`compact_block`]: expand the input as a block.
pub(crate) const COMPACT_EXPAND: u8 = 0;
/// Mode of [`compact_block`]: encode the input's payloads into a block and expand it back.
pub(crate) const COMPACT_ROUND_TRIP: u8 = 1;

/// Encodes `payloads` into one compact block and expands it: they must come back exactly.
fn round_trip(payloads: &[Vec<u8>]) {
    let mut out = Vec::new();
    let mut ranges = Vec::new();
    let count = u32::try_from(payloads.len()).expect("a fuzz input holds few payloads");
    let end = expand(
        &CompactEncoder::block_of(payloads),
        count,
        raw_span(payloads),
        &mut out,
        0,
        &mut ranges,
    )
    .unwrap_or_else(|e| panic!("the encoder's own block does not expand: {e}"));
    let back: Vec<&[u8]> = ranges.iter().map(|r| &out[r.clone()]).collect();
    assert_eq!(back.len(), payloads.len());
    for (got, want) in back.iter().zip(payloads) {
        assert!(
            got == want,
            "payload changed: {want:02x?} came back as {got:02x?}"
        );
    }
    assert_eq!(ranges.last().map_or(0, |r| r.end), end);
}

/// `[mode: u8][count: u16][raw span: u32][bytes]`. Mode [`COMPACT_EXPAND`] expands `bytes` as a
/// compact block of `count` entries whose records took `raw span` bytes in their raw segment:
/// it never panics, writes no more than the span, and what it accepts re-encodes into a block
/// that expands to the same payloads. Mode [`COMPACT_ROUND_TRIP`] cuts `bytes` into payloads (a
/// `u16` length, then that many bytes, each) and round-trips them through the sealer's encoder.
pub fn compact_block(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.u8();
    let count = u32::from(input.u16());
    let span = u64::from(input.u32());
    if mode & 1 == COMPACT_ROUND_TRIP {
        let mut payloads = Vec::new();
        while !input.is_empty() {
            let len = usize::from(input.u16());
            payloads.push(input.bytes(len).to_vec());
        }
        round_trip(&payloads);
        return;
    }
    let block = input.rest();
    let mut out = Vec::new();
    let mut ranges = Vec::new();
    if let Ok(end) = expand(block, count, span, &mut out, 0, &mut ranges) {
        assert_eq!(ranges.len(), count as usize);
        assert!(
            (out.len() as u64) <= span,
            "expanded {} bytes from a block whose span is {span}",
            out.len()
        );
        let payloads: Vec<Vec<u8>> = ranges.iter().map(|r| out[r.clone()].to_vec()).collect();
        assert_eq!(raw_span(&payloads), span);
        assert_eq!(ranges.last().map_or(0, |r| r.end), end);
        round_trip(&payloads);
    }
}
