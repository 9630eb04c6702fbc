#![no_main]
// The `explain_vs_filter` target: see `switchyard_fuzz::explain_vs_filter` (fuzz/src/targets.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard_fuzz::explain_vs_filter(data));
