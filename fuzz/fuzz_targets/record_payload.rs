//! libFuzzer entry point of the `record_payload` harness; the logic is `annals_fuzz::record_payload`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| annals_fuzz::record_payload(data));
