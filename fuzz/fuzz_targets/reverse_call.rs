//! libFuzzer entry point of the `reverse_call` harness; the logic is `annals_fuzz::reverse_call`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| annals_fuzz::reverse_call(data));
