#![no_main]
//! Fuzz target `envelope`: see [`switchboard_fuzz::envelope`] for what it checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_fuzz::envelope(data));
