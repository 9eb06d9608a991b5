//! What a runtime accepts from a client on the wire, the same on every port and service, and
//! the status a client gets when its message is beyond that or cannot be decoded.
//!
//! Invariants:
//! - Every gRPC service of a runtime decodes messages of up to `MESSAGE_BYTES_MAX` and no
//!   more: a Commit of one event of 8 MiB, or of many smaller ones, fits.
//! - What a runtime sends may be larger by `ENVELOPE_BYTES_MAX` (an event of a full Commit
//!   wrapped in a request to a head, or in an event horizon message), and a consumer of the
//!   event horizon accepts that much, so any event one runtime took can reach another.
//! - tonic answers a message it cannot decode with INTERNAL and one over the limit with
//!   OUT_OF_RANGE; `for_client` turns these into INVALID_ARGUMENT and RESOURCE_EXHAUSTED, which
//!   say whose fault it was.

use tonic::{Code, Status};

/// The largest message a runtime decodes, on every port.
pub const MESSAGE_BYTES_MAX: usize = 16 << 20;

/// Room for what a runtime wraps around an event it took (execution context, ids, positions).
pub const ENVELOPE_BYTES_MAX: usize = 1 << 20;

/// The largest message a runtime encodes, and a consumer of the event horizon decodes.
pub const SENT_BYTES_MAX: usize = MESSAGE_BYTES_MAX + ENVELOPE_BYTES_MAX;

/// The status a client should get for `status`, an error tonic raised while reading what the
/// client sent (`what`: the message, e.g. "an EventHandlerClientToRuntimeMessage"): the
/// client's fault said as INVALID_ARGUMENT or RESOURCE_EXHAUSTED; None for anything else
/// (the client went away, a transport error), which keeps its status.
pub fn for_client(status: &Status, what: &str) -> Option<Status> {
    let message = status.message();
    match status.code() {
        Code::Internal
            if message.starts_with("failed to decode Protobuf message")
                || message.starts_with("protocol error")
                || message.starts_with("Unexpected EOF decoding stream") =>
        {
            Some(Status::invalid_argument(format!(
                "{what} could not be decoded: {message}"
            )))
        }
        Code::OutOfRange if message.contains("message length too large") => {
            Some(Status::resource_exhausted(format!(
                "{what} is larger than the {MESSAGE_BYTES_MAX} bytes this runtime accepts: \
                 {message}"
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undecodable_and_oversized_are_the_clients_fault() {
        let s = for_client(
            &Status::internal("failed to decode Protobuf message: invalid wire type value: 7"),
            "a CommitEventsRequest",
        )
        .unwrap();
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(
            s.message(),
            "a CommitEventsRequest could not be decoded: failed to decode Protobuf message: \
             invalid wire type value: 7"
        );
        let s = for_client(
            &Status::out_of_range(
                "Error, decoded message length too large: found 17825792 bytes, the limit is: \
                 16777216 bytes",
            ),
            "the request",
        )
        .unwrap();
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert!(s
            .message()
            .starts_with("the request is larger than the 16777216 bytes this runtime accepts: "));
        // Our own statuses and the client's own end stay as they are.
        assert!(for_client(&Status::internal("the index failed"), "x").is_none());
        assert!(for_client(&Status::cancelled("gone"), "x").is_none());
        assert!(for_client(&Status::out_of_range("position 9 is past the end"), "x").is_none());
    }
}
