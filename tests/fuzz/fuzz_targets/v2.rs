#![no_main]
//! Fuzz target `v2`: see [`switchboard_fuzz::v2`] for what it checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_fuzz::v2(data));
