#![no_main]
// The `api_bodies` target: see `switchyard_fuzz::api_bodies` (fuzz/src/targets.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard_fuzz::api_bodies(data));
