//! A future kept across turns of a processor's loop (the read or the position write under
//! way), polled by the loop's `select!` without being lost when another branch wins.
//!
//! Invariants: a slot holds at most one future; it is empty again as soon as that future
//! has completed, so its output is seen exactly once.

use std::future::Future;
use std::pin::Pin;

/// A future under way, owned across turns of a loop.
pub(crate) type Pending<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Holds at most one future under way.
pub(crate) struct Slot<T>(Option<Pending<T>>);

impl<T> Slot<T> {
    pub(crate) fn empty() -> Slot<T> {
        Slot(None)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// Starts keeping `future` (the slot is empty: see `is_empty`).
    pub(crate) fn put(&mut self, future: Pending<T>) {
        assert!(self.0.is_none(), "a slot holds one future at a time");
        self.0 = Some(future);
    }

    /// The future under way, taken out of the slot.
    pub(crate) fn take(&mut self) -> Option<Pending<T>> {
        self.0.take()
    }

    /// Awaits the future under way and empties the slot; pending for ever while it is empty.
    pub(crate) async fn finished(&mut self) -> T {
        let Some(future) = self.0.as_mut() else {
            return std::future::pending().await;
        };
        let output = future.await;
        self.0 = None;
        output
    }
}
