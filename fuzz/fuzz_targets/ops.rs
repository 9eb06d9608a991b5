//! libFuzzer entry point of the `ops` harness; the logic is `annals_fuzz::ops`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| annals_fuzz::ops(data));
