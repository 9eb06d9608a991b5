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

/// Encodes `event`'s record payload exactly as the writer does (its sequence number lives in
/// the frame, not the payload): for fuzzing and fixtures.
pub fn encode_payload(event: &crate::Event) -> Vec<u8> {
    let ec = &event.execution_context;
    let ec_bytes = crate::event::encode_execution_context(ec);
    let uncommitted = crate::EventRef {
        event_source_id: &event.event_source_id,
        event_type: event.event_type,
        public: event.public,
        content: &event.content,
        aggregate: event.aggregate,
        event_horizon: event.event_horizon,
    };
    let mut out = Vec::new();
    crate::event::encode_payload(&mut out, event.occurred_ns, ec, &ec_bytes, &uncommitted);
    out
}
