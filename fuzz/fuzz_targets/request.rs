#![no_main]
// The `request` target: see `switchyard_fuzz::request` (fuzz/src/targets.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard_fuzz::request(data));
