//! A cache of decompressed sealed blocks, shared by every log of a store and bounded in bytes.
//!
//! Fetching an aggregate reads a few events from many places of a log; in a sealed segment each
//! read would decompress a whole block (64 KiB by default) for one record. The cache keeps
//! recently decompressed blocks, keyed by the segment (an id unique to the open segment, so a
//! re-sealed or re-created segment never sees another's blocks) and the block's index. Only
//! reads that ask for it fill the cache (`Log::read_into_cached`); a catch-up reader that
//! streams through a log once would only evict what others use, so its reads look up but never
//! insert. A block is cached only after its checksum, its decompression and every frame in it
//! have been checked, with the offset of each frame, so a hit copies just the frames wanted.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use quick_cache::{sync::Cache, Weighter};

/// Gives every sealed segment opened in this process its own id.
static NEXT_SEGMENT_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) fn next_segment_id() -> u64 {
    NEXT_SEGMENT_ID.fetch_add(1, Ordering::Relaxed)
}

/// A decompressed, verified block and where each of its frames starts.
#[derive(Debug)]
pub(crate) struct CachedBlock {
    bytes: Box<[u8]>,
    offsets: Box<[u32]>,
}

impl CachedBlock {
    /// Frames in the block.
    pub(crate) fn frames(&self) -> usize {
        self.offsets.len()
    }

    /// Frame `k` (header and payload).
    pub(crate) fn frame(&self, k: usize) -> &[u8] {
        let start = self.offsets[k] as usize;
        let end = self
            .offsets
            .get(k + 1)
            .map_or(self.bytes.len(), |o| *o as usize);
        &self.bytes[start..end]
    }
}

#[derive(Debug, Clone, Copy)]
struct BlockWeight;

impl Weighter<(u64, u32), Arc<CachedBlock>> for BlockWeight {
    fn weight(&self, _key: &(u64, u32), block: &Arc<CachedBlock>) -> u64 {
        // Never zero (a zero-weight item is never evicted).
        (block.bytes.len() + block.offsets.len() * 4) as u64 + 64
    }
}

/// Decompressed blocks by (segment id, block index).
pub(crate) struct BlockCache {
    blocks: Cache<(u64, u32), Arc<CachedBlock>, BlockWeight>,
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

    pub(crate) fn get(&self, segment: u64, block: u32) -> Option<Arc<CachedBlock>> {
        self.blocks.get(&(segment, block))
    }

    /// Caches a block whose frames (starting at `offsets`) have all been verified.
    pub(crate) fn insert(&self, segment: u64, block: u32, bytes: &[u8], offsets: Vec<u32>) {
        self.blocks.insert(
            (segment, block),
            Arc::new(CachedBlock {
                bytes: bytes.into(),
                offsets: offsets.into_boxed_slice(),
            }),
        );
    }
}
