#![no_main]
//! Fuzz target `frame`: see [`switchboard_fuzz::frame`] for what it checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_fuzz::frame(data));
