#![no_main]
//! Fuzz target `serial`: see [`switchboard_fuzz::serial`] for what it checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_fuzz::serial(data));
