#![no_main]
// The `resources` target: see `switchyard_fuzz::resources` (fuzz/src/targets.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard_fuzz::resources(data));
