//! libFuzzer entry point of the `record_frame` harness; the logic is `annals_fuzz::record_frame`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| annals_fuzz::record_frame(data));
