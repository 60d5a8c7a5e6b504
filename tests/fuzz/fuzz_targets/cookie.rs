#![no_main]
//! Fuzz target `cookie`: see [`switchboard_fuzz::cookie`] for what it checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_fuzz::cookie(data));
