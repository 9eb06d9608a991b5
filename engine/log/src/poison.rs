//! The poison flag of a log.
//!
//! After a failed write or fdatasync the kernel may have dropped dirty pages and cleared the
//! error (the 2018 "fsyncgate" lesson), so retrying the fsync can report success for data that
//! is gone. A log therefore never retries: the first failure poisons it, every later append
//! fails with [`Error::Poisoned`](crate::Error::Poisoned), and only a reopen, which re-reads and
//! re-validates what is really on disk, clears it.

use parking_lot::Mutex;

/// Set once, never cleared for the lifetime of the open log.
#[derive(Debug, Default)]
pub(crate) struct Poison {
    cause: Mutex<Option<String>>,
}

impl Poison {
    /// Records the first failure; later ones keep the first cause.
    pub(crate) fn set(&self, cause: String) {
        let mut slot = self.cause.lock();
        if slot.is_none() {
            *slot = Some(cause);
        }
    }

    /// The cause, if poisoned.
    pub(crate) fn cause(&self) -> Option<String> {
        self.cause.lock().clone()
    }
}
