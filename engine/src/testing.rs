//! Test support (feature `test-util`): the fault-injecting file system and format helpers for
//! fixtures and fuzzing.

pub use crate::io::fault::{CrashMode, FaultIo};
pub use crate::segment::format;

/// Decodes one record payload (for fuzzing the decoder).
pub fn decode_payload(payload: &[u8]) -> Result<crate::Event, String> {
    crate::event::decode_payload(crate::EventLogSequenceNumber(0), payload)
        .map(|v| v.to_event())
        .map_err(|e| e.0)
}
