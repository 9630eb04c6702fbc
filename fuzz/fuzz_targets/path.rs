#![no_main]
// The `path` target: see `switchyard_fuzz::path` (fuzz/src/targets.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard_fuzz::path(data));
