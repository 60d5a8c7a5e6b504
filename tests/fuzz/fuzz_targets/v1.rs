#![no_main]
//! Fuzz target `v1`: see [`switchboard_fuzz::v1`] for what it checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_fuzz::v1(data));
