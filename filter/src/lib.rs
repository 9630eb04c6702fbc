//! Switchyard's proxy-wasm HTTP filter: thin host glue around `switchyard-engine`.
//!
//! `on_configure` compiles the plugin configuration into an [`Index`] once (and
//! refuses a bad one, so Envoy keeps the last good configuration); per request the
//! filter reads the header map in one host call, asks the engine, and applies the
//! decision. No host call can panic: those of the request path and of
//! configuration go through [`host`], which maps failures to errors, and the
//! pull mode's shared data and the stats handle the `Result` of `hostcalls`
//! where they call it. A panic would take the VM down for every later request.

mod host;
mod http;
mod metrics;
mod root;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    std::panic::set_hook(Box::new(|info| {
        log::error!("switchyard: panic: {info}");
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::SwitchyardRoot::default())
    });
}}
