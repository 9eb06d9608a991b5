//! The poison flag of a log.
//!
//! After a failed write or fdatasync the kernel may have dropped dirty pages and cleared the
//! error (the 2018 "fsyncgate" lesson), so retrying the fsync can report success for data that
//! is gone. A log therefore never retries: the first failure poisons it, every later append
//! fails with [`Error::Poisoned`](crate::Error::Poisoned), and only a reopen or a heal
//! ([`Log::heal`](crate::Log::heal)), which cut the log back to what was acknowledged, make it
//! durable again and re-validate it, clear it.

use parking_lot::Mutex;

/// Set by the first failure; cleared only by a heal that made the log whole again.
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

    /// Clears the flag; returns the cause it held.
    pub(crate) fn clear(&self) -> Option<String> {
        self.cause.lock().take()
    }

    /// The cause, if poisoned.
    pub(crate) fn cause(&self) -> Option<String> {
        self.cause.lock().clone()
    }
}
