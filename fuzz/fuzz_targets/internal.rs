#![no_main]
// The `internal` target: see `switchyard_fuzz::internal` (fuzz/src/targets.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard_fuzz::internal(data));
