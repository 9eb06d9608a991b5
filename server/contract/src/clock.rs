//! Wall-clock time as the engine stores it: Unix nanoseconds in an `i64` (when a commit
//! occurred, when a processor last succeeded or retries). The one place the runtime reads
//! the clock for stored times; durations and deadlines use `Instant`.
//!
//! Invariant: a clock before 1970 reads as 0 and one past 2262 as `i64::MAX`; never a panic.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in Unix nanoseconds.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}
