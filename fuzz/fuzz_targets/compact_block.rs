//! libFuzzer entry point of the `compact_block` harness; the logic is `annals_fuzz::compact_block`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| annals_fuzz::compact_block(data));
