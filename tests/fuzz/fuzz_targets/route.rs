#![no_main]
//! Fuzz target `route`: see [`switchboard_fuzz::route`] for what it checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_fuzz::route(data));
