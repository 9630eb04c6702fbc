#![no_main]
// The `plugin_config` target: see `switchyard_fuzz::plugin_config` (fuzz/src/targets.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard_fuzz::plugin_config(data));
