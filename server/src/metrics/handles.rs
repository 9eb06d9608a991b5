//! Series kept by what labels them, so that counting a request, a commit or a handler's attempt
//! of a kind seen before neither formats nor hashes label strings: a family's own lookup builds its label set
//! (a tenant's id as text, an event type's, their aliases) and hashes all of it with SipHash,
//! several times per request. A kept handle is the family's series itself (prometheus_client's
//! metrics share their value between clones), so what is counted through it is what the family
//! exports.
//!
//! Bound: one entry per series its family holds, which the family keeps as long.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;

/// Handles to series of one or more families, by key.
#[derive(Debug)]
pub(super) struct Handles<K, V> {
    by_key: RwLock<HashMap<K, V, ahash::RandomState>>,
    /// Bumped by [`Handles::forget`]: a handle made from labels read before it is not kept.
    generation: AtomicU64,
}

impl<K, V> Default for Handles<K, V> {
    fn default() -> Self {
        Handles {
            by_key: RwLock::new(HashMap::default()),
            generation: AtomicU64::new(0),
        }
    }
}

impl<K: Hash + Eq, V> Handles<K, V> {
    /// Calls `count` with the handle kept under `key`, made by `make` (from the families) and
    /// kept if there is none.
    pub(super) fn with(&self, key: K, make: impl FnOnce() -> V, count: impl FnOnce(&V)) {
        if let Some(handle) = self.by_key.read().get(&key) {
            count(handle);
            return;
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let handle = make();
        count(&handle);
        let mut by_key = self.by_key.write();
        // Labels changed while `make` read them (an alias registered): the family has the
        // series, but the next count makes its handle again from the new labels.
        if self.generation.load(Ordering::SeqCst) == generation {
            by_key.entry(key).or_insert(handle);
        }
    }

    /// Drops every handle: what labels the series changed (call it after the change).
    pub(super) fn forget(&self) {
        let mut by_key = self.by_key.write();
        self.generation.fetch_add(1, Ordering::SeqCst);
        by_key.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;

    #[test]
    fn a_kept_handle_counts_into_its_familys_series() {
        let family = Family::<Vec<(String, String)>, Counter>::default();
        let handles = Handles::<u32, Counter>::default();
        let labels = |n: u32| vec![("n".to_owned(), n.to_string())];
        let mut made = 0;
        for n in [1, 2, 1, 1, 2] {
            handles.with(
                n,
                || {
                    made += 1;
                    family.get_or_create(&labels(n)).clone()
                },
                |c| {
                    c.inc();
                },
            );
        }
        assert_eq!(made, 2, "one handle made per key");
        assert_eq!(family.get_or_create(&labels(1)).get(), 3);
        assert_eq!(family.get_or_create(&labels(2)).get(), 2);
    }

    #[test]
    fn forgotten_handles_are_made_again() {
        let handles = Handles::<u32, u32>::default();
        let mut counted = Vec::new();
        handles.with(1, || 10, |v| counted.push(*v));
        handles.forget();
        handles.with(1, || 11, |v| counted.push(*v));
        handles.with(1, || 12, |v| counted.push(*v));
        assert_eq!(counted, [10, 11, 11]);
    }

    #[test]
    fn a_handle_made_across_a_forget_is_not_kept() {
        let handles = Handles::<u32, u32>::default();
        let mut counted = Vec::new();
        handles.with(
            1,
            || {
                // The labels change while this handle is made from the old ones.
                handles.forget();
                20
            },
            |v| counted.push(*v),
        );
        handles.with(1, || 21, |v| counted.push(*v));
        handles.with(1, || 22, |v| counted.push(*v));
        assert_eq!(counted, [20, 21, 21]);
    }
}
