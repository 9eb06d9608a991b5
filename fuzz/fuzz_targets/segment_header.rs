//! libFuzzer entry point of the `segment_header` harness; the logic is `annals_fuzz::segment_header`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| annals_fuzz::segment_header(data));
