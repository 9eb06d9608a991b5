//! Byte layouts of segment files: header, record frame, sealed block index and trailer.
//!
//! engine/log/FORMAT.md is the normative description; this module is its only implementation.
//! All integers are little-endian. Checksums are CRC-32/IEEE (crc32fast).
//!
//! Invariants:
//! - every encoder has a decoder that rejects anything the encoder cannot produce;
//! - a frame's checksum covers the segment's base sequence number and the frame's offset, so a
//!   frame copied to another place or another segment fails its check;
//! - decoders never panic on any bytes and never allocate based on unchecked lengths (the one
//!   assert, in [`BlockEntry::decode`], checks its caller's slicing, not the bytes).

use crate::ids::{EventLogSequenceNumber, ScopeId, TenantId};

/// The newest format version this build reads and writes: version 3, whose sealed segments
/// hold compact blocks ([`COMPACT_SEALED_VERSION`]).
pub const FORMAT_VERSION: u16 = 3;
/// The version of a raw segment in a recycled file ([`FLAG_RECYCLED`]), the one feature of
/// version 2: such a file needs a reader of version 2 or later, not 3.
pub const RECYCLED_VERSION: u16 = 2;
/// The version of a sealed segment whose blocks are compact (FORMAT.md section 6.5): every
/// sealed segment this build writes. A sealed segment of an older version holds raw frames.
pub const COMPACT_SEALED_VERSION: u16 = 3;
/// The version (`format_version` and `min_compatible_version`) of every file that uses no
/// feature newer than version 1, so that builds of version 1 still read it.
pub const BASE_FORMAT_VERSION: u16 = 1;
/// The oldest file format version this build reads.
pub const OLDEST_READABLE_VERSION: u16 = 1;

/// Header flag (version 2, raw segments only): the file held other segments before this one,
/// so bytes after its last complete commit may be theirs (FORMAT.md sections 3 and 8.2).
pub const FLAG_RECYCLED: u8 = 0x01;

/// Segment header magic: a non-ASCII first byte, CR LF and ^Z catch text-mode mangling.
pub const SEGMENT_MAGIC: [u8; 8] = [0x89, b'A', b'N', b'L', b'\r', b'\n', 0x1A, b'\n'];
/// Sealed trailer magic: the completion marker of a sealed segment.
pub const SEAL_MAGIC: [u8; 8] = [0x89, b'S', b'E', b'A', b'L', b'\r', b'\n', 0x1A];

/// The hard upper bound of a record payload, whatever the configuration: readers and
/// recovery check frame lengths against this, never against the (changeable) configured
/// write limit, so lowering `record-bytes-max` can never make stored records unreadable.
pub const RECORD_BYTES_LIMIT: usize = 1 << 30;

/// The largest sequence number a log may reach. Far beyond any real log (2^62 events), it
/// leaves room so that no arithmetic on sequence numbers read from disk can overflow; files
/// claiming more are corrupt.
pub const SEQUENCE_NUMBER_MAX: u64 = 1 << 62;

/// Segment header length.
pub const HEADER_LEN: usize = 64;
/// Record frame header length.
pub const FRAME_HEADER_LEN: usize = 24;
/// One block index entry.
pub const BLOCK_ENTRY_LEN: usize = 40;
/// Sealed trailer length.
pub const TRAILER_LEN: usize = 64;

const _: () = assert!(HEADER_LEN == 8 + 2 + 2 + 1 + 1 + 2 + 16 + 16 + 8 + 4 + 4);
const _: () = assert!(FRAME_HEADER_LEN == 4 + 4 + 8 + 4 + 4);
const _: () = assert!(RECORD_BYTES_LIMIT < u32::MAX as usize);
const _: () = assert!(BLOCK_ENTRY_LEN == 8 + 8 + 8 + 4 + 4 + 4 + 4);
const _: () = assert!(TRAILER_LEN == 8 + 4 + 4 + 8 + 8 + 8 + 4 + 4 + 8 + 4 + 4);

/// What a segment file holds after its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentKind {
    /// Record frames back to back (the active segment, or a full one awaiting sealing).
    Raw = 1,
    /// zstd blocks, block index and trailer.
    Sealed = 2,
}

/// A decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Format version that wrote the file.
    pub format_version: u16,
    /// Oldest reader version that can read it.
    pub min_compatible_version: u16,
    /// Raw or sealed.
    pub kind: SegmentKind,
    /// Owning tenant.
    pub tenant: TenantId,
    /// Owning scope.
    pub scope: ScopeId,
    /// Sequence number of the first record.
    pub base: EventLogSequenceNumber,
    /// A raw segment in a recycled file ([`FLAG_RECYCLED`]).
    pub recycled: bool,
}

/// Why a header, frame or trailer failed to decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// Bytes are not what the format allows.
    Invalid(String),
    /// A checksum did not match.
    Checksum {
        /// Stored value.
        expected: u32,
        /// Computed value.
        actual: u32,
    },
    /// The file needs a newer reader.
    TooNew {
        /// The file's minimum compatible version.
        found: u16,
    },
    /// The file is older than this build reads.
    TooOld {
        /// The file's format version.
        found: u16,
    },
}

fn read_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(raw)
}

fn read_16(b: &[u8], at: usize) -> [u8; 16] {
    let mut raw = [0u8; 16];
    raw.copy_from_slice(&b[at..at + 16]);
    raw
}

impl SegmentHeader {
    /// Encodes the header with its checksum.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..10].copy_from_slice(&self.format_version.to_le_bytes());
        b[10..12].copy_from_slice(&self.min_compatible_version.to_le_bytes());
        b[12] = self.kind as u8;
        b[13] = if self.recycled { FLAG_RECYCLED } else { 0 };
        // 14..16: reserved, zero.
        b[16..32].copy_from_slice(self.tenant.as_bytes());
        b[32..48].copy_from_slice(self.scope.as_bytes());
        b[48..56].copy_from_slice(&self.base.0.to_le_bytes());
        // 56..60 reserved, zero.
        let crc = crc32fast::hash(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// The header of a segment that uses no version-2 feature: version 1, which every build
    /// reads.
    pub fn new(
        kind: SegmentKind,
        tenant: TenantId,
        scope: ScopeId,
        base: EventLogSequenceNumber,
    ) -> Self {
        Self {
            format_version: BASE_FORMAT_VERSION,
            min_compatible_version: BASE_FORMAT_VERSION,
            kind,
            tenant,
            scope,
            base,
            recycled: false,
        }
    }

    /// The header of a raw segment written into a recycled file: version 2, which builds of
    /// version 1 refuse by its version.
    pub fn new_recycled(tenant: TenantId, scope: ScopeId, base: EventLogSequenceNumber) -> Self {
        Self {
            format_version: RECYCLED_VERSION,
            min_compatible_version: RECYCLED_VERSION,
            recycled: true,
            ..Self::new(SegmentKind::Raw, tenant, scope, base)
        }
    }

    /// The header of a sealed segment of compact blocks: version 3, which older builds refuse
    /// by its version (they would read its blocks as raw frames).
    pub fn new_compact_sealed(
        tenant: TenantId,
        scope: ScopeId,
        base: EventLogSequenceNumber,
    ) -> Self {
        Self {
            format_version: COMPACT_SEALED_VERSION,
            min_compatible_version: COMPACT_SEALED_VERSION,
            ..Self::new(SegmentKind::Sealed, tenant, scope, base)
        }
    }

    /// Whether this is a sealed segment of compact blocks (FORMAT.md section 6.5).
    pub fn compact(&self) -> bool {
        self.kind == SegmentKind::Sealed && self.min_compatible_version >= COMPACT_SEALED_VERSION
    }

    /// Decodes and checks a header.
    pub fn decode(b: &[u8]) -> Result<Self, FormatError> {
        if b.len() < HEADER_LEN {
            return Err(FormatError::Invalid(format!(
                "header needs {HEADER_LEN} bytes, file has {}",
                b.len()
            )));
        }
        if b[0..8] != SEGMENT_MAGIC {
            return Err(FormatError::Invalid(format!(
                "magic: expected {SEGMENT_MAGIC:02x?}, found {:02x?}",
                &b[0..8]
            )));
        }
        let expected = read_u32(b, 60);
        let actual = crc32fast::hash(&b[..60]);
        if expected != actual {
            return Err(FormatError::Checksum { expected, actual });
        }
        let format_version = read_u16(b, 8);
        let min_compatible_version = read_u16(b, 10);
        if min_compatible_version > FORMAT_VERSION {
            return Err(FormatError::TooNew {
                found: min_compatible_version,
            });
        }
        if format_version < OLDEST_READABLE_VERSION {
            return Err(FormatError::TooOld {
                found: format_version,
            });
        }
        if format_version < min_compatible_version {
            return Err(FormatError::Invalid(format!(
                "format version {format_version} is below its own minimum compatible version \
                 {min_compatible_version}"
            )));
        }
        let kind = match b[12] {
            1 => SegmentKind::Raw,
            2 => SegmentKind::Sealed,
            other => {
                return Err(FormatError::Invalid(format!(
                    "segment kind: unknown value {other}"
                )))
            }
        };
        if b[14..16] != [0, 0] || b[56..60] != [0; 4] {
            return Err(FormatError::Invalid(
                "reserved header bytes must be zero".into(),
            ));
        }
        // Version 1 defines no flag; version 2 defines one, for raw segments, and a file that
        // uses it needs a reader of version 2.
        let recycled = match b[13] {
            0 => false,
            FLAG_RECYCLED if kind == SegmentKind::Raw && min_compatible_version >= 2 => true,
            other => {
                return Err(FormatError::Invalid(format!(
                    "flags {other:#04x} are not valid in a {kind:?} segment of minimum \
                     compatible version {min_compatible_version}"
                )))
            }
        };
        Ok(Self {
            format_version,
            min_compatible_version,
            kind,
            tenant: TenantId::from_bytes(read_16(b, 16)),
            scope: ScopeId::from_bytes(read_16(b, 32)),
            base: EventLogSequenceNumber(read_u64(b, 48)),
            recycled,
        })
    }
}

/// The checksum of a frame: binds header fields, payload and location together.
pub fn frame_crc(
    segment_base: EventLogSequenceNumber,
    offset: u64,
    header_fields: &[u8; FRAME_HEADER_LEN - 4],
    payload: &[u8],
) -> u32 {
    // One contiguous prefix: crc32fast's small-input path is slow, so fewer updates is faster.
    let mut prefix = [0u8; 16 + FRAME_HEADER_LEN - 4];
    prefix[0..8].copy_from_slice(&segment_base.0.to_le_bytes());
    prefix[8..16].copy_from_slice(&offset.to_le_bytes());
    prefix[16..].copy_from_slice(header_fields);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&prefix);
    hasher.update(payload);
    hasher.finalize()
}

/// Appends a frame for `payload` at file offset `offset` to `out`.
///
/// `commit_rest` is how many records of the same commit follow this one (0 = last);
/// `group_back` is how many bytes before this frame its write group starts (0 for the first
/// frame of a group).
pub fn encode_frame(
    out: &mut Vec<u8>,
    segment_base: EventLogSequenceNumber,
    offset: u64,
    seq: EventLogSequenceNumber,
    commit_rest: u32,
    group_back: u32,
    payload: &[u8],
) {
    let start = out.len();
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]); // crc, filled below
    out.extend_from_slice(&seq.0.to_le_bytes());
    out.extend_from_slice(&commit_rest.to_le_bytes());
    out.extend_from_slice(&group_back.to_le_bytes());
    out.extend_from_slice(payload);
    let mut fields = [0u8; FRAME_HEADER_LEN - 4];
    fields[0..4].copy_from_slice(&out[start..start + 4]);
    fields[4..20].copy_from_slice(&out[start + 8..start + FRAME_HEADER_LEN]);
    let crc = frame_crc(segment_base, offset, &fields, payload);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// A frame that passed its checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The record's sequence number.
    pub seq: EventLogSequenceNumber,
    /// Records of the same commit that follow (0 = commit ends here).
    pub commit_rest: u32,
    /// Bytes from the start of the frame's write group to the frame.
    pub group_back: u32,
    /// The record payload.
    pub payload: &'a [u8],
    /// Frame header plus payload.
    pub total_len: usize,
}

/// The outcome of parsing the bytes at one offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameParse<'a> {
    /// A valid frame.
    Frame(Frame<'a>),
    /// The buffer ends before the frame does (needs this many bytes in all).
    Incomplete(usize),
    /// The bytes are not a valid frame here.
    Bad(FormatError),
}

/// Parses the frame at the start of `buf`, which sits at file offset `offset` of the segment
/// with base `segment_base`. `payload_max` bounds the length field.
pub fn parse_frame(
    buf: &[u8],
    segment_base: EventLogSequenceNumber,
    offset: u64,
    payload_max: usize,
) -> FrameParse<'_> {
    parse_frame_checked(buf, segment_base, offset, payload_max, true)
}

/// Like [`parse_frame`] but without recomputing the frame checksum: for frames inside a sealed
/// block, whose bytes were verified as a whole by the block's CRC just before (the sealer
/// verified every frame checksum when it built the block). Structure is still checked.
pub fn parse_frame_in_verified_block(
    buf: &[u8],
    segment_base: EventLogSequenceNumber,
    offset: u64,
    payload_max: usize,
) -> FrameParse<'_> {
    parse_frame_checked(buf, segment_base, offset, payload_max, false)
}

/// Checks the checksum of `frame`, one whole frame (header and payload) at file offset
/// `offset` of the segment with base `segment_base`: what [`parse_frame`] adds to the
/// structural checks of [`parse_frame_in_verified_block`].
pub fn check_frame_crc(
    frame: &[u8],
    segment_base: EventLogSequenceNumber,
    offset: u64,
) -> Result<(), FormatError> {
    let expected = read_u32(frame, 4);
    let mut fields = [0u8; FRAME_HEADER_LEN - 4];
    fields[0..4].copy_from_slice(&frame[0..4]);
    fields[4..20].copy_from_slice(&frame[8..FRAME_HEADER_LEN]);
    let actual = frame_crc(segment_base, offset, &fields, &frame[FRAME_HEADER_LEN..]);
    if expected == actual {
        Ok(())
    } else {
        Err(FormatError::Checksum { expected, actual })
    }
}

fn parse_frame_checked(
    buf: &[u8],
    segment_base: EventLogSequenceNumber,
    offset: u64,
    payload_max: usize,
    verify_crc: bool,
) -> FrameParse<'_> {
    if buf.len() < FRAME_HEADER_LEN {
        return FrameParse::Incomplete(FRAME_HEADER_LEN);
    }
    let len = read_u32(buf, 0) as usize;
    if len > payload_max {
        return FrameParse::Bad(FormatError::Invalid(format!(
            "frame length {len} exceeds the record limit {payload_max}"
        )));
    }
    let total_len = FRAME_HEADER_LEN + len;
    if buf.len() < total_len {
        return FrameParse::Incomplete(total_len);
    }
    let payload = &buf[FRAME_HEADER_LEN..total_len];
    if verify_crc {
        if let Err(e) = check_frame_crc(&buf[..total_len], segment_base, offset) {
            return FrameParse::Bad(e);
        }
    }
    let group_back = read_u32(buf, 20);
    if offset
        .checked_sub(u64::from(group_back))
        .is_none_or(|start| start < HEADER_LEN as u64)
    {
        return FrameParse::Bad(FormatError::Invalid(format!(
            "group start {group_back} bytes back from offset {offset} is inside the header"
        )));
    }
    FrameParse::Frame(Frame {
        seq: EventLogSequenceNumber(read_u64(buf, 8)),
        commit_rest: read_u32(buf, 16),
        group_back,
        payload,
        total_len,
    })
}

/// One entry of a sealed segment's block index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockEntry {
    /// Sequence number of the block's first record.
    pub first_seq: EventLogSequenceNumber,
    /// Offset of the block's first frame in the raw segment (in a version-1 block frames keep
    /// their raw offsets, so their checksums still verify after decompression; in a compact
    /// block it places the records in the raw segment they came from).
    pub logical_offset: u64,
    /// Where the compressed block starts in the sealed file.
    pub file_offset: u64,
    /// Compressed length.
    pub compressed_len: u32,
    /// Uncompressed length (of the frames, or of the compact entries).
    pub uncompressed_len: u32,
    /// Records in the block.
    pub records_count: u32,
    /// CRC-32 of the compressed bytes.
    pub crc: u32,
}

impl BlockEntry {
    /// Appends the entry's bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.first_seq.0.to_le_bytes());
        out.extend_from_slice(&self.logical_offset.to_le_bytes());
        out.extend_from_slice(&self.file_offset.to_le_bytes());
        out.extend_from_slice(&self.compressed_len.to_le_bytes());
        out.extend_from_slice(&self.uncompressed_len.to_le_bytes());
        out.extend_from_slice(&self.records_count.to_le_bytes());
        out.extend_from_slice(&self.crc.to_le_bytes());
    }

    /// Decodes one entry from exactly [`BLOCK_ENTRY_LEN`] bytes (callers cut the index into
    /// entries; the length is theirs to get right, never the file's).
    pub fn decode(b: &[u8]) -> Self {
        assert_eq!(
            b.len(),
            BLOCK_ENTRY_LEN,
            "a block entry is cut to the wrong length"
        );
        Self {
            first_seq: EventLogSequenceNumber(read_u64(b, 0)),
            logical_offset: read_u64(b, 8),
            file_offset: read_u64(b, 16),
            compressed_len: read_u32(b, 24),
            uncompressed_len: read_u32(b, 28),
            records_count: read_u32(b, 32),
            crc: read_u32(b, 36),
        }
    }
}

/// A trailer with plausible values, for tests and fuzz seeds.
#[cfg(any(test, feature = "test-util"))]
pub const SAMPLE_TRAILER: SealTrailer = SealTrailer {
    index_offset: 4096,
    blocks_count: 3,
    records_count: 100,
    next_seq: EventLogSequenceNumber(200),
    raw_len: 30_000,
    index_crc: 0xdead_beef,
};

/// The fixed trailer at the end of a sealed segment: its completion marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealTrailer {
    /// Where the block index starts.
    pub index_offset: u64,
    /// Blocks in the index.
    pub blocks_count: u32,
    /// Records in the segment.
    pub records_count: u64,
    /// Sequence number after the last record.
    pub next_seq: EventLogSequenceNumber,
    /// Length of the raw segment's record area (what the blocks decompress to, in all).
    pub raw_len: u64,
    /// CRC-32 of the block index bytes.
    pub index_crc: u32,
}

impl SealTrailer {
    /// Encodes the trailer with its checksum.
    pub fn encode(&self) -> [u8; TRAILER_LEN] {
        let mut b = [0u8; TRAILER_LEN];
        b[0..8].copy_from_slice(&self.index_offset.to_le_bytes());
        b[8..12].copy_from_slice(&self.blocks_count.to_le_bytes());
        b[16..24].copy_from_slice(&self.records_count.to_le_bytes());
        b[24..32].copy_from_slice(&self.next_seq.0.to_le_bytes());
        b[32..40].copy_from_slice(&self.raw_len.to_le_bytes());
        b[40..44].copy_from_slice(&self.index_crc.to_le_bytes());
        b[48..56].copy_from_slice(&SEAL_MAGIC);
        let crc = crc32fast::hash(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks a trailer.
    pub fn decode(b: &[u8]) -> Result<Self, FormatError> {
        if b.len() != TRAILER_LEN {
            return Err(FormatError::Invalid(format!(
                "trailer needs {TRAILER_LEN} bytes"
            )));
        }
        if b[48..56] != SEAL_MAGIC {
            return Err(FormatError::Invalid(format!(
                "seal marker: expected {SEAL_MAGIC:02x?}, found {:02x?}",
                &b[48..56]
            )));
        }
        let expected = read_u32(b, 60);
        let actual = crc32fast::hash(&b[..60]);
        if expected != actual {
            return Err(FormatError::Checksum { expected, actual });
        }
        if b[12..16] != [0; 4] || b[44..48] != [0; 4] || b[56..60] != [0; 4] {
            return Err(FormatError::Invalid(
                "reserved trailer bytes must be zero".into(),
            ));
        }
        Ok(Self {
            index_offset: read_u64(b, 0),
            blocks_count: read_u32(b, 8),
            records_count: read_u64(b, 16),
            next_seq: EventLogSequenceNumber(read_u64(b, 24)),
            raw_len: read_u64(b, 32),
            index_crc: read_u32(b, 40),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> SegmentHeader {
        SegmentHeader::new(
            SegmentKind::Raw,
            TenantId::from_bytes([7; 16]),
            ScopeId::DEFAULT,
            EventLogSequenceNumber(1000),
        )
    }

    #[test]
    fn header_round_trips_and_every_bit_flip_is_caught() {
        let bytes = header().encode();
        assert_eq!(SegmentHeader::decode(&bytes).unwrap(), header());
        for bit in 0..HEADER_LEN * 8 {
            let mut damaged = bytes;
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(
                SegmentHeader::decode(&damaged).is_err(),
                "bit {bit} flip undetected"
            );
        }
    }

    #[test]
    fn a_recycled_raw_header_is_version_2_and_its_flag_is_checked() {
        let tenant = TenantId::from_bytes([7; 16]);
        let h = SegmentHeader::new_recycled(tenant, ScopeId::DEFAULT, EventLogSequenceNumber(9));
        assert_eq!((h.format_version, h.min_compatible_version), (2, 2));
        let bytes = h.encode();
        assert_eq!(bytes[13], FLAG_RECYCLED);
        assert_eq!(SegmentHeader::decode(&bytes), Ok(h));
        assert_eq!(
            header().encode()[8..12],
            [1, 0, 1, 0],
            "plain segments stay version 1"
        );
        // The flag in a header that version 1 readers would accept, in a sealed segment, or an
        // unknown flag: damage, not a newer format.
        let mut v1_flagged = header();
        v1_flagged.recycled = true;
        let mut sealed_flagged = h;
        sealed_flagged.kind = SegmentKind::Sealed;
        let mut unknown = h.encode();
        unknown[13] = 0x02;
        let crc = crc32fast::hash(&unknown[..60]);
        unknown[60..64].copy_from_slice(&crc.to_le_bytes());
        for bad in [v1_flagged.encode(), sealed_flagged.encode(), unknown] {
            assert!(matches!(
                SegmentHeader::decode(&bad),
                Err(FormatError::Invalid(_))
            ));
        }
    }

    #[test]
    fn newer_format_is_refused_by_version() {
        let mut h = header();
        h.min_compatible_version = FORMAT_VERSION + 1;
        assert_eq!(
            SegmentHeader::decode(&h.encode()),
            Err(FormatError::TooNew {
                found: FORMAT_VERSION + 1
            })
        );
    }

    #[test]
    fn frame_round_trips_and_is_bound_to_its_location() {
        let base = EventLogSequenceNumber(10);
        let mut out = Vec::new();
        encode_frame(
            &mut out,
            base,
            64,
            EventLogSequenceNumber(12),
            1,
            0,
            b"payload",
        );
        match parse_frame(&out, base, 64, 1024) {
            FrameParse::Frame(f) => {
                assert_eq!(f.seq, EventLogSequenceNumber(12));
                assert_eq!(f.commit_rest, 1);
                assert_eq!(f.group_back, 0);
                assert_eq!(f.payload, b"payload");
                assert_eq!(f.total_len, out.len());
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_frame(&out, base, 65, 1024),
            FrameParse::Bad(_)
        ));
        assert!(matches!(
            parse_frame(&out, EventLogSequenceNumber(11), 64, 1024),
            FrameParse::Bad(_)
        ));
        assert!(matches!(
            parse_frame(&out[..10], base, 64, 1024),
            FrameParse::Incomplete(_)
        ));
        for bit in 0..out.len() * 8 {
            let mut damaged = out.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(
                !matches!(parse_frame(&damaged, base, 64, 1024), FrameParse::Frame(_)),
                "bit {bit} flip undetected"
            );
        }
    }

    #[test]
    fn trailer_round_trips_and_rejects_damage() {
        let t = SAMPLE_TRAILER;
        let bytes = t.encode();
        assert_eq!(SealTrailer::decode(&bytes).unwrap(), t);
        for bit in 0..TRAILER_LEN * 8 {
            let mut damaged = bytes;
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(SealTrailer::decode(&damaged).is_err(), "bit {bit}");
        }
    }
}
