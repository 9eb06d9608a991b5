//! Compact sealed blocks (format version 3, FORMAT.md section 6.5): what a sealed block holds
//! before compression.
//!
//! A version-1 block is the raw record area byte for byte: every record keeps its 24-byte frame
//! header and its own copy of its commit's execution context. In a block that is already
//! checked as a whole (its CRC-32, its decompressed length, its record count) the frame headers
//! prove nothing more: the sequence numbers follow from the block's first, the checksums were
//! verified by the sealer, and the commit boundaries matter only to recovery of a raw segment.
//! A compact block keeps, per record, a one-byte tag and the payload, with the execution context
//! left out when it is the same as the record before it in the block. On the load tool's events
//! this leaves 0.77 of the bytes to compress and the sealed segment about 17% smaller.
//!
//! Entries, back to back, one per record in sequence order:
//! - [`TAG_WHOLE`]: a payload, context included; its length is found by walking its fields;
//! - [`TAG_SHARED_CONTEXT`]: the same without its execution context, which is the context of
//!   the last whole entry before it in the block;
//! - [`TAG_OPAQUE`]: a `u32` length and that many payload bytes, for a payload the sealer could
//!   not walk (the decoders report it when it is read, as from a raw segment).
//!
//! Invariants:
//! - `expand(encode(payloads)) == payloads`, byte for byte, for any payloads;
//! - expanding never panics, never reads past the block, and allocates no more than the
//!   reconstructed payloads (each at most [`RECORD_BYTES_LIMIT`], checked before it is copied).

use std::ops::Range;

use super::format::{FRAME_HEADER_LEN, RECORD_BYTES_LIMIT};
use crate::event::walk_payload;

/// A payload with its execution context.
pub const TAG_WHOLE: u8 = 0;
/// A payload without its execution context, which is the previous whole entry's.
pub const TAG_SHARED_CONTEXT: u8 = 1;
/// A `u32` length, then a payload the sealer did not walk.
pub const TAG_OPAQUE: u8 = 2;

/// The fewest bytes an entry takes (an opaque entry of an empty payload): bounds a block's
/// record count by its length before anything is allocated.
pub const ENTRY_MIN_LEN: usize = 1 + 4;

/// Builds one compact block, entry by entry.
#[derive(Debug, Default)]
pub struct CompactEncoder {
    /// The block's bytes so far.
    block: Vec<u8>,
    /// The execution context of the last whole entry, if any in this block.
    context: Option<Vec<u8>>,
}

impl CompactEncoder {
    /// An empty encoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The one block that `payloads` make, in order (for tools and tests; the sealer cuts
    /// blocks as it goes).
    pub fn block_of<P: AsRef<[u8]>>(payloads: &[P]) -> Vec<u8> {
        let mut encoder = Self::new();
        for p in payloads {
            encoder.push(p.as_ref());
        }
        encoder.block
    }

    /// Appends the entry of one payload.
    pub fn push(&mut self, payload: &[u8]) {
        let layout = walk_payload(payload, true).filter(|l| l.end == payload.len());
        let Some(layout) = layout else {
            self.block.push(TAG_OPAQUE);
            self.block
                .extend_from_slice(&(payload.len() as u32).to_le_bytes());
            self.block.extend_from_slice(payload);
            return;
        };
        let context = &payload[layout.context.clone()];
        if self.context.as_deref() == Some(context) {
            self.block.push(TAG_SHARED_CONTEXT);
            self.block
                .extend_from_slice(&payload[..layout.context.start]);
            self.block.extend_from_slice(&payload[layout.context.end..]);
        } else {
            self.block.push(TAG_WHOLE);
            self.block.extend_from_slice(payload);
            let kept = self.context.get_or_insert_with(Vec::new);
            kept.clear();
            kept.extend_from_slice(context);
        }
    }

    /// Bytes of the block so far.
    pub fn len(&self) -> usize {
        self.block.len()
    }

    /// Whether no entry has been pushed since the last [`take`](Self::take).
    pub fn is_empty(&self) -> bool {
        self.block.is_empty()
    }

    /// The block so far; the next entry starts a new block (no context carried over).
    pub fn block(&self) -> &[u8] {
        &self.block
    }

    /// Starts a new block.
    pub fn clear(&mut self) {
        self.block.clear();
        self.context = None;
    }
}

/// The bytes `payloads` take as records of a raw segment (a frame header and a payload each):
/// the raw span that [`expand`] checks a block of them against.
pub fn raw_span<P: AsRef<[u8]>>(payloads: &[P]) -> u64 {
    payloads
        .iter()
        .map(|p| (FRAME_HEADER_LEN + p.as_ref().len()) as u64)
        .sum()
}

/// What expanding a block found wrong: the entry and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpandError {
    /// The entry's index in the block.
    pub entry: u32,
    /// Where it starts in the decompressed block.
    pub at: usize,
    /// What is wrong.
    pub what: &'static str,
}

impl std::fmt::Display for ExpandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "compact entry {} at block offset {}: {}",
            self.entry, self.at, self.what
        )
    }
}

/// Reconstructs the `count` payloads of a compact `block` into `out` from `out_at` on (growing
/// `out` as needed and never shrinking it), pushing each payload's range in `out` onto
/// `ranges`; returns the end of the last payload in `out`. The block must hold exactly `count`
/// entries whose records took exactly `span` bytes in their raw segment (a frame header and
/// a payload each, what the block index says): this also bounds what is written to `out`.
pub fn expand(
    block: &[u8],
    count: u32,
    span: u64,
    out: &mut Vec<u8>,
    out_at: usize,
    ranges: &mut Vec<Range<usize>>,
) -> Result<usize, ExpandError> {
    let mut at = 0usize;
    let mut put = out_at;
    let mut raw_bytes = 0u64;
    // The last whole entry's context, as a range of `block`.
    let mut context: Option<Range<usize>> = None;
    for entry in 0..count {
        let fail = |what| ExpandError { entry, at, what };
        let tag = *block.get(at).ok_or_else(|| fail("block ends before it"))?;
        let body = at + 1;
        let rest = &block[body..];
        // The payload's pieces, in order, as ranges of `block`, and where the entry ends.
        let (pieces, end): ([Range<usize>; 3], usize) = match tag {
            TAG_WHOLE => {
                let l = walk_payload(rest, true).ok_or_else(|| fail("not a whole payload"))?;
                context = Some(body + l.context.start..body + l.context.end);
                ([body..body + l.end, 0..0, 0..0], body + l.end)
            }
            TAG_SHARED_CONTEXT => {
                let shared = context
                    .clone()
                    .ok_or_else(|| fail("shares a context before any whole entry"))?;
                let l = walk_payload(rest, false)
                    .ok_or_else(|| fail("not a payload without its context"))?;
                let split = body + l.context.start;
                ([body..split, shared, split..body + l.end], body + l.end)
            }
            TAG_OPAQUE => {
                let len = rest
                    .get(..4)
                    .and_then(|b| b.try_into().ok())
                    .map(u32::from_le_bytes)
                    .ok_or_else(|| fail("opaque length runs past the block"))?
                    as usize;
                let start = body + 4;
                let end = start
                    .checked_add(len)
                    .filter(|end| *end <= block.len())
                    .ok_or_else(|| fail("opaque payload runs past the block"))?;
                ([start..end, 0..0, 0..0], end)
            }
            _ => return Err(fail("unknown tag")),
        };
        let len: usize = pieces.iter().map(ExactSizeIterator::len).sum();
        if len > RECORD_BYTES_LIMIT {
            return Err(fail("payload longer than any record"));
        }
        raw_bytes += (FRAME_HEADER_LEN + len) as u64;
        if raw_bytes > span {
            return Err(fail("records take more than the block's raw span"));
        }
        let payload_end = put + len;
        if out.len() < payload_end {
            // Amortised by `Vec`; the region stays initialised for the batch's next reads.
            out.resize(payload_end, 0);
        }
        for piece in pieces {
            let n = piece.len();
            out[put..put + n].copy_from_slice(&block[piece]);
            put += n;
        }
        ranges.push(payload_end - len..payload_end);
        at = end;
    }
    let fail = |what| ExpandError {
        entry: count,
        at,
        what,
    };
    if at != block.len() {
        return Err(fail("bytes after the last entry"));
    }
    if raw_bytes != span {
        return Err(fail("records take less than the block's raw span"));
    }
    Ok(put)
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::event::{encode_execution_context, encode_payload, tests::sample_commit};
    use crate::{Commit, UncommittedEvent};

    /// A commit of `events` events; `variant` changes its execution context.
    fn commit(variant: u8, events: usize) -> Commit {
        let mut commit = sample_commit();
        commit.occurred_ns += i64::from(variant);
        let ec = &mut commit.execution_context;
        ec.version.build = i32::from(variant);
        if variant.is_multiple_of(2) {
            ec.version.pre_release.clear();
        }
        ec.correlation_id = Uuid::from_u128(u128::from(variant));
        ec.claims.truncate(usize::from(variant % 2));
        ec.span_id = (variant % 4 == 1).then_some([variant, 2, 3, 4, 5, 6, 7, 8]);
        let template = commit.events[0].clone();
        commit.events = (0..events)
            .map(|i| UncommittedEvent {
                event_source_id: format!("source-{i}"),
                public: i % 2 == 0,
                content: format!(r#"{{"i":{i},"v":{variant}}}"#),
                aggregate: template.aggregate.filter(|_| i % 3 == 1),
                event_horizon: template.event_horizon.filter(|_| i % 4 == 2),
                ..template.clone()
            })
            .collect();
        commit
    }

    fn payloads(commit: &Commit) -> Vec<Vec<u8>> {
        let ec = encode_execution_context(&commit.execution_context);
        commit
            .events
            .iter()
            .map(|e| {
                let mut out = Vec::new();
                encode_payload(
                    &mut out,
                    commit.occurred_ns,
                    &commit.execution_context,
                    &ec,
                    &e.into(),
                );
                out
            })
            .collect()
    }

    fn expand_all(block: &[u8], count: u32, span: u64) -> Result<Vec<Vec<u8>>, ExpandError> {
        // Start past a few bytes of an earlier read, as in a batch.
        let mut out = vec![0xAA; 7];
        let mut ranges = Vec::new();
        let end = expand(block, count, span, &mut out, 7, &mut ranges)?;
        assert_eq!(ranges.len(), count as usize);
        assert_eq!(ranges.last().map_or(7, |r| r.end), end);
        Ok(ranges.into_iter().map(|r| out[r].to_vec()).collect())
    }

    #[test]
    fn payloads_come_back_byte_for_byte_and_shared_contexts_are_stored_once() {
        let mut all = Vec::new();
        for variant in 0..8 {
            all.extend(payloads(&commit(variant, 5)));
        }
        // Payloads no walk accepts: empty, a version-2 record, one with bytes after its content.
        all.push(Vec::new());
        let mut v2 = all[0].clone();
        v2[0] = 2;
        all.push(v2);
        let mut trailing = all[1].clone();
        trailing.push(0);
        all.push(trailing);
        all.extend(payloads(&commit(3, 2)));
        let block = CompactEncoder::block_of(&all);
        let count = all.len() as u32;
        assert_eq!(expand_all(&block, count, raw_span(&all)).unwrap(), all);

        // Each commit's context is stored once: eight, and commit 3's again at the end, since
        // the last whole context before it was commit 7's (opaque entries leave it as it is).
        let whole = count_tags(&block, &all, TAG_WHOLE);
        let shared = count_tags(&block, &all, TAG_SHARED_CONTEXT);
        let opaque = count_tags(&block, &all, TAG_OPAQUE);
        assert_eq!((whole, shared, opaque), (9, 33, 3));
        let full: usize = all.iter().map(Vec::len).sum();
        assert!(block.len() < full, "{} >= {full}", block.len());
    }

    /// Tags of the block's entries, walked with the payloads' known lengths.
    fn count_tags(block: &[u8], payloads: &[Vec<u8>], tag: u8) -> usize {
        let mut at = 0;
        let mut n = 0;
        let mut context_len = 0;
        for p in payloads {
            let t = block[at];
            n += usize::from(t == tag);
            at += 1 + match t {
                TAG_WHOLE => {
                    let l = walk_payload(p, true).unwrap();
                    context_len = l.context.len();
                    p.len()
                }
                TAG_SHARED_CONTEXT => p.len() - context_len,
                _ => 4 + p.len(),
            };
        }
        assert_eq!(at, block.len());
        n
    }

    #[test]
    fn a_new_block_does_not_share_the_last_blocks_context() {
        let p = payloads(&commit(1, 3));
        let mut encoder = CompactEncoder::new();
        encoder.push(&p[0]);
        encoder.clear();
        assert!(encoder.is_empty());
        encoder.push(&p[1]);
        encoder.push(&p[2]);
        assert_eq!(encoder.block()[0], TAG_WHOLE);
        assert_eq!(
            expand_all(encoder.block(), 2, raw_span(&p[1..])).unwrap(),
            p[1..]
        );
    }

    #[test]
    fn damaged_blocks_are_refused_with_the_entry() {
        let p = payloads(&commit(2, 3));
        let block = CompactEncoder::block_of(&p);
        let span = raw_span(&p);
        let err = |block: &[u8], count: u32, span: u64| expand_all(block, count, span).unwrap_err();

        let mut shared_first = block.clone();
        shared_first[0] = TAG_SHARED_CONTEXT;
        let e = err(&shared_first, 3, span);
        assert_eq!((e.entry, e.at), (0, 0));
        assert!(e.what.contains("before any whole entry"), "{e}");

        let mut unknown = block.clone();
        unknown[0] = 9;
        assert!(err(&unknown, 3, span).what.contains("unknown tag"));

        let e = err(&block[..block.len() - 1], 3, span);
        assert_eq!(e.entry, 2);
        let e = err(&block, 2, span);
        assert!(e.what.contains("bytes after the last entry"), "{e}");
        let e = err(&block, 4, span);
        assert!(e.what.contains("block ends before it"), "{e}");
        let e = err(&block, 3, span - 1);
        assert!(e.what.contains("more than the block's raw span"), "{e}");
        let e = err(&block, 3, span + 1);
        assert!(e.what.contains("less than the block's raw span"), "{e}");

        let mut opaque = vec![TAG_OPAQUE];
        opaque.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(err(&opaque, 1, u64::MAX)
            .what
            .contains("runs past the block"));
    }

    #[test]
    fn shared_contexts_cannot_expand_past_the_raw_span() {
        // One whole entry with a large context, then many entries that share it: the output is
        // bounded by the span the index claims, not by what the entries could rebuild.
        let mut c = commit(0, 200);
        c.execution_context.environment = "e".repeat(4000);
        let p = payloads(&c);
        let block = CompactEncoder::block_of(&p);
        assert!(block.len() * 10 < raw_span(&p) as usize);
        let e = expand_all(&block, 200, 10_000).unwrap_err();
        assert!(e.what.contains("more than the block's raw span"), "{e}");
        assert_eq!(expand_all(&block, 200, raw_span(&p)).unwrap(), p);
    }
}
