//! libFuzzer entry point of the `requests` harness; the logic is `annals_fuzz::requests`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| annals_fuzz::requests(data));
