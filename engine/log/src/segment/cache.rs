//! A cache of decompressed sealed blocks, shared by every log of a store and bounded in bytes.
//!
//! Fetching an aggregate reads a few events from many places of a log; in a sealed segment each
//! read would decompress a whole block (64 KiB by default) for one record. The cache keeps
//! recently decompressed blocks, keyed by the segment (an id unique to the open segment, so a
//! re-sealed or re-created segment never sees another's blocks) and the block's index. Only
//! reads that ask for it fill the cache (`Log::read_into_cached`, `Log::read_selected_into`); a
//! catch-up reader that streams through a log once would only evict what others use, so its
//! reads look up but never insert. A block is cached only after its checksum, its
//! decompression and every record in it have been checked, with the place of each record's
//! payload, so a hit copies just the payloads wanted.
//!
//! Invariants:
//! - a cached block is exactly a verified block of the open segment its key names, and a key
//!   ([`CacheId`]) is never given to two open segments in one process;
//! - the cache holds about `read-cache-bytes` at most (every block weighs at least its bytes).

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use quick_cache::{sync::Cache, Weighter};

/// An open sealed segment's key in the cache. Not its [`SegmentId`](crate::SegmentId): a
/// segment sealed again, or opened again, under the same id must never see the blocks of the
/// file it replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct CacheId(u64);

/// Gives every sealed segment opened in this process its own id.
static NEXT_CACHE_ID: AtomicU64 = AtomicU64::new(1);

impl CacheId {
    /// A key no segment opened before in this process has.
    pub(crate) fn next() -> Self {
        Self(NEXT_CACHE_ID.fetch_add(1, Ordering::Relaxed))
    }
}

/// A decompressed, verified block: its records' payloads and where each lies.
#[derive(Debug)]
pub(crate) struct CachedBlock {
    bytes: Box<[u8]>,
    payloads: Box<[(u32, u32)]>,
}

impl CachedBlock {
    /// Records in the block.
    pub(crate) fn records(&self) -> usize {
        self.payloads.len()
    }

    /// The payload of record `k` of the block.
    pub(crate) fn payload(&self, k: usize) -> &[u8] {
        let (start, end) = self.payloads[k];
        &self.bytes[start as usize..end as usize]
    }
}

#[derive(Debug, Clone, Copy)]
struct BlockWeight;

impl Weighter<(CacheId, u32), Arc<CachedBlock>> for BlockWeight {
    fn weight(&self, _key: &(CacheId, u32), block: &Arc<CachedBlock>) -> u64 {
        // Never zero (a zero-weight item is never evicted).
        (block.bytes.len() + block.payloads.len() * 8) as u64 + 64
    }
}

/// Decompressed blocks by (segment's cache id, block index).
pub(crate) struct BlockCache {
    blocks: Cache<(CacheId, u32), Arc<CachedBlock>, BlockWeight>,
}

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCache")
            .field("bytes", &self.blocks.weight())
            .field("capacity", &self.blocks.capacity())
            .finish()
    }
}

impl BlockCache {
    /// A cache of at most `bytes` (about), or `None` when `bytes` is 0.
    pub(crate) fn new(bytes: u64) -> Option<Arc<Self>> {
        (bytes > 0).then(|| {
            // quick_cache wants an estimate of the item count: blocks are about 64 KiB.
            let items = usize::try_from(bytes / (32 << 10))
                .unwrap_or(usize::MAX)
                .max(16);
            Arc::new(Self {
                blocks: Cache::with_weighter(items, bytes, BlockWeight),
            })
        })
    }

    pub(crate) fn get(&self, segment: CacheId, block: u32) -> Option<Arc<CachedBlock>> {
        self.blocks.get(&(segment, block))
    }

    /// Caches a block whose records have all been verified: `bytes` were at `start` of the
    /// buffer that `payloads` index.
    pub(crate) fn insert(
        &self,
        segment: CacheId,
        block: u32,
        bytes: &[u8],
        start: usize,
        payloads: &[std::ops::Range<usize>],
    ) {
        let payloads = payloads
            .iter()
            .map(|r| ((r.start - start) as u32, (r.end - start) as u32))
            .collect();
        self.blocks.insert(
            (segment, block),
            Arc::new(CachedBlock {
                bytes: bytes.into(),
                payloads,
            }),
        );
    }
}
