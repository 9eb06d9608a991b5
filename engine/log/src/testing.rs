//! Test support (feature `test-util`): the fault-injecting file system and format helpers for
//! fixtures and fuzzing.

pub use crate::io::fault::{CrashMode, FaultIo};
pub use crate::segment::{compact, format};

/// Decodes one record payload (for fuzzing the decoder).
pub fn decode_payload(payload: &[u8]) -> Result<crate::Event, String> {
    crate::event::decode_payload(crate::EventLogSequenceNumber(0), payload)
        .map(|v| v.to_event())
        .map_err(|e| e.0)
}

/// Encodes `event`'s record payload exactly as the writer does (its sequence number lives in
/// the frame, not the payload): for fuzzing and fixtures.
pub fn encode_payload(event: &crate::Event) -> Vec<u8> {
    let ec = &event.execution_context;
    let ec_bytes = crate::event::encode_execution_context(ec);
    let mut out = Vec::new();
    crate::event::encode_payload(&mut out, event.occurred_ns, ec, &ec_bytes, &event.into());
    out
}
