//! libFuzzer entry point of the `seal_trailer` harness; the logic is `annals_fuzz::seal_trailer`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| annals_fuzz::seal_trailer(data));
