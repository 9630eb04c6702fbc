#![no_main]
// The `jwt` target: see `switchyard_fuzz::jwt` (fuzz/src/targets.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard_fuzz::jwt(data));
