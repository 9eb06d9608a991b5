//! libFuzzer entry point of the `json_object` harness; the logic is `annals_fuzz::json_object`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| annals_fuzz::json_object(data));
