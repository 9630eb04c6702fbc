//! Switchyard's filter as an Envoy dynamic module (`envoy.filters.http.dynamic_modules`):
//! a shared object loaded into Envoy's process, running the same engine and
//! plugin logic (`switchyard-plugin`) as the proxy-wasm filter, without a VM.
//!
//! - `on_program_init` returns the ABI version the module is built for
//!   ([`abi::ABI_VERSION`]); Envoy checks it at load.
//! - `on_http_filter_config_new` (main thread) parses and compiles the plugin
//!   configuration once; a bad one is refused (Envoy then rejects the filter
//!   configuration and keeps the last good one). Pull mode is refused: it
//!   shares the pulled table between workers through proxy-wasm shared data,
//!   which a dynamic module has not got.
//! - per request (worker threads) the header map is read once, the engine
//!   decides, the decision is applied, and the route cache is cleared.
//!
//! A module runs inside Envoy: a panic or a bad pointer would take Envoy down.
//! Every hook runs its body under [`guard`] (`catch_unwind`, with a harmless
//! answer if the body panicked); the module is built with `panic = "unwind"`
//! (profile `native`, `scripts/build-native.sh`) so that the guard can catch.

mod abi;
mod hooks;
mod host;
mod log;
mod metrics;

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs one hook body; if it panics, the panic is logged (by the hook set in
/// `on_program_init`) and `fallback` is returned instead of unwinding into Envoy.
fn guard<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}
