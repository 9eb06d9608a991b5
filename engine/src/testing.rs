//! Test hooks (feature `test-util`), and the log's test utilities.

use std::sync::atomic::Ordering;

pub use annals_log::testing::*;

use crate::Engine;

/// Holds (or releases) the engine's background indexer: while held, commits become durable in
/// the log but are not indexed, which is the state a crash between the two leaves.
/// Returns once no index step is under way, so every commit after it stays unindexed until
/// the hold is released.
pub fn hold_indexer(engine: &Engine, hold: bool) {
    engine.shared().indexer_held.store(hold, Ordering::Release);
    if hold {
        engine.quiesce_indexer();
    }
}
