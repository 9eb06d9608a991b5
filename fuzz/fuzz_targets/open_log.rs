//! libFuzzer entry point of the `open_log` harness; the logic is `annals_fuzz::open_log`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| annals_fuzz::open_log(data));
