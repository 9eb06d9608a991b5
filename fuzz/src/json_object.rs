//! The `json_object` target: the quick check that an event's content is a JSON object
//! (`annals_contract::api::json_object`) against `serde_json` alone.
//!
//! Input: the content's bytes (texts that are not UTF-8 never reach the check: the request's
//! decoding refuses them).
//!
//! Checks: neither check panics; every text the quick check accepts, `serde_json` accepts; and
//! the check commits make (the quick one, then `serde_json` for what it is not sure of) gives
//! `serde_json`'s verdict and reason on every text.

use annals_contract::api::{convert, json_object};

/// Runs the harness on one input.
pub fn json_object(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let by_serde = convert::content_by_serde("content", text);
    if json_object::surely_object(text) {
        assert!(
            by_serde.is_ok(),
            "the quick check accepted what serde_json refuses: {text:?}"
        );
    }
    let checked = convert::content("content", text);
    assert_eq!(
        checked.as_ref().map_err(|f| &f.reason),
        by_serde.as_ref().map_err(|f| &f.reason),
        "{text:?}"
    );
}
