//! Test hooks (feature `test-util`), and the log's test utilities.

use std::sync::atomic::Ordering;

pub use annals_log::testing::*;

use crate::Engine;

/// Holds the engine's background indexer: while held, commits become durable in the log but
/// are not indexed, which is the state a crash between the two leaves. Returns once no index
/// step is under way, so every commit after it stays unindexed until [`release_indexer`].
pub fn hold_indexer(engine: &Engine) {
    engine.shared().indexer_held.store(true, Ordering::Release);
    engine.quiesce_indexer();
}

/// Lets the background indexer run again after [`hold_indexer`].
pub fn release_indexer(engine: &Engine) {
    engine.shared().indexer_held.store(false, Ordering::Release);
}
