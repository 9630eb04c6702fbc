//! The event hooks Envoy calls (`envoy_dynamic_module_on_*`), each guarded
//! against unwinding. Hooks the filter has no use for answer "continue".
//!
//! Pointers: Envoy hands back, unchanged, the pointers our hooks returned —
//! a `Box<FilterConfig>` from `config_new` until `config_destroy`, a
//! `Box<Filter>` from `filter_new` until `filter_destroy` — and calls the hooks
//! of one stream one at a time on its worker thread.

use std::cell::RefCell;
use std::ffi::c_void;
use std::sync::Arc;

use switchyard_plugin::{Outcome, ResponseHeaders, Table};

use crate::abi::{self, ConfigEnvoyPtr, EnvoyBuffer, EnvoyHttpHeader, FilterEnvoyPtr, HookStatus};
use crate::host::{self, NativeHost};
use crate::metrics::Metrics;
use crate::{guard, log};

/// One filter configuration: the compiled table and its counters, shared by
/// every stream (on every worker) the configuration serves.
struct Shared {
    table: Table,
    metrics: Metrics,
}

// Streams on every worker share one configuration's table and counters.
const _: fn() = || {
    fn shared_across_workers<T: Send + Sync>() {}
    shared_across_workers::<Shared>();
};

/// What `config_new` returns to Envoy.
struct FilterConfig {
    shared: Arc<Shared>,
}

/// One HTTP stream.
struct Filter {
    shared: Arc<Shared>,
    response: Option<ResponseHeaders>,
}

/// The request header map being routed, and the array Envoy fills with
/// pointers into its map.
type HeaderBuffers = (Vec<(String, String)>, Vec<EnvoyHttpHeader>);

thread_local! {
    /// Reused from request to request on a worker.
    static HEADERS: RefCell<HeaderBuffers> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// The bytes of a buffer Envoy lent us for this hook.
///
/// # Safety
/// `b.ptr` must be null or point to `b.length` bytes valid for the hook.
unsafe fn bytes_of<'a>(b: EnvoyBuffer) -> &'a [u8] {
    if b.ptr.is_null() || b.length == 0 {
        &[]
    } else {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts(b.ptr, b.length) }
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const u8 {
    guard(std::ptr::null(), || {
        std::panic::set_hook(Box::new(|info| {
            log::error(&format!("switchyard: panic: {info}"));
        }));
        abi::ABI_VERSION.as_ptr()
    })
}

/// Parses and compiles the configuration; `None` (logged) refuses it.
fn new_config(config_envoy: ConfigEnvoyPtr, name: &[u8], config: &[u8]) -> Option<FilterConfig> {
    let name = String::from_utf8_lossy(name);
    let refuse = |why: &dyn std::fmt::Display| {
        log::error(&format!("switchyard: {name}: configuration refused: {why}"));
        None
    };
    let plugin = match switchyard_plugin::parse_config(config) {
        Ok(plugin) => plugin,
        Err(e) => return refuse(&e),
    };
    if plugin.settings.pull.is_some() {
        return refuse(
            &"the native filter has no pull mode (settings.pull): pull mode shares the pulled \
              table between Envoy's workers through proxy-wasm shared data; use the wasm filter \
              for pull mode, or deliver the table by ECDS (switchyard serve) or inline",
        );
    }
    let table = match Table::compile(&plugin, false, &Default::default()) {
        Ok(table) => table,
        Err(e) => return refuse(&e),
    };
    log::info(&format!(
        "switchyard: {name}: configuration accepted ({} clusters)",
        table.index.clusters().len()
    ));
    let metrics = Metrics::define(config_envoy, &plugin);
    Some(FilterConfig {
        shared: Arc::new(Shared { table, metrics }),
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: ConfigEnvoyPtr,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> *const c_void {
    guard(std::ptr::null(), || {
        // SAFETY: Envoy lends the filter's name and configuration for this hook.
        let (name, config) = unsafe { (bytes_of(name), bytes_of(config)) };
        match new_config(config_envoy, name, config) {
            Some(c) => Box::into_raw(Box::new(c)) as *const c_void,
            None => std::ptr::null(),
        }
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: *const c_void) {
    guard((), || {
        if !config.is_null() {
            // SAFETY: `config` came from `Box::into_raw` in `config_new` and
            // Envoy destroys it once, after its last filter.
            drop(unsafe { Box::from_raw(config as *mut FilterConfig) });
        }
    });
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: *const c_void,
    _filter_envoy: FilterEnvoyPtr,
) -> *const c_void {
    guard(std::ptr::null(), || {
        // SAFETY: `config` is a live `FilterConfig` from `config_new` (Envoy
        // keeps a configuration alive while it creates filters from it).
        let Some(config) = (unsafe { (config as *const FilterConfig).as_ref() }) else {
            return std::ptr::null();
        };
        let filter = Filter {
            shared: Arc::clone(&config.shared),
            response: None,
        };
        Box::into_raw(Box::new(filter)) as *const c_void
    })
}

/// The stream behind a filter pointer.
///
/// # Safety
/// `filter` must be null or a live `Filter` from `filter_new`, used by no one
/// else during the hook (Envoy runs a stream's hooks one at a time).
unsafe fn filter_mut<'a>(filter: *const c_void) -> Option<&'a mut Filter> {
    // SAFETY: guaranteed by the caller; the pointer came from `Box::into_raw`.
    unsafe { (filter as *mut Filter).as_mut() }
}

impl Filter {
    fn on_request_headers(&mut self, envoy: FilterEnvoyPtr) -> HookStatus {
        let shared = Arc::clone(&self.shared);
        HEADERS.with(|buffers| {
            let mut fresh = Default::default();
            let mut borrowed = buffers.try_borrow_mut();
            // Not reachable (one hook at a time per thread); fresh buffers if it were.
            let (headers, raw) = match &mut borrowed {
                Ok(b) => &mut **b,
                Err(_) => &mut fresh,
            };
            if let Err(e) = host::request_headers_into(envoy, headers, raw) {
                log::warn(&format!("switchyard: {e}"));
                return abi::CONTINUE;
            }
            let mut host = NativeHost {
                filter: envoy,
                metrics: &shared.metrics,
            };
            match switchyard_plugin::route_request(&mut host, &shared.table, headers) {
                Outcome::Continue(response) => {
                    self.response = response;
                    abi::CONTINUE
                }
                Outcome::Refused => abi::STOP_ITERATION,
            }
        })
    }

    fn on_response_headers(&mut self, envoy: FilterEnvoyPtr) {
        if let Some(r) = self.response.take() {
            let mut host = NativeHost {
                filter: envoy,
                metrics: &self.shared.metrics,
            };
            switchyard_plugin::respond(&mut host, Some(&self.shared.table), &r);
        }
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    envoy: FilterEnvoyPtr,
    filter: *const c_void,
    _end_of_stream: bool,
) -> HookStatus {
    guard(abi::CONTINUE, || {
        // SAFETY: a live filter of this stream (see the module comment).
        match unsafe { filter_mut(filter) } {
            Some(f) => f.on_request_headers(envoy),
            None => abi::CONTINUE,
        }
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    envoy: FilterEnvoyPtr,
    filter: *const c_void,
    _end_of_stream: bool,
) -> HookStatus {
    guard(abi::CONTINUE, || {
        // SAFETY: a live filter of this stream (see the module comment).
        if let Some(f) = unsafe { filter_mut(filter) } {
            f.on_response_headers(envoy);
        }
        abi::CONTINUE
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter: *const c_void) {
    guard((), || {
        if !filter.is_null() {
            // SAFETY: `filter` came from `Box::into_raw` in `filter_new`;
            // Envoy destroys each filter once, after its last hook.
            drop(unsafe { Box::from_raw(filter as *mut Filter) });
        }
    });
}

// The hooks Envoy requires that the filter has no use for.

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    _envoy: FilterEnvoyPtr,
    _filter: *const c_void,
    _end_of_stream: bool,
) -> HookStatus {
    abi::CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _envoy: FilterEnvoyPtr,
    _filter: *const c_void,
) -> HookStatus {
    abi::CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _envoy: FilterEnvoyPtr,
    _filter: *const c_void,
    _end_of_stream: bool,
) -> HookStatus {
    abi::CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _envoy: FilterEnvoyPtr,
    _filter: *const c_void,
) -> HookStatus {
    abi::CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _envoy: FilterEnvoyPtr,
    _filter: *const c_void,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _envoy: FilterEnvoyPtr,
    _filter: *const c_void,
    _callout_id: u64,
    _result: u32,
    _headers: *mut EnvoyHttpHeader,
    _headers_size: usize,
    _body_chunks: *mut EnvoyBuffer,
    _body_chunks_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _envoy: FilterEnvoyPtr,
    _filter: *const c_void,
    _stream_id: u64,
    _headers: *mut EnvoyHttpHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _envoy: FilterEnvoyPtr,
    _filter: *const c_void,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _envoy: FilterEnvoyPtr,
    _filter: *const c_void,
    _stream_id: u64,
    _trailers: *mut EnvoyHttpHeader,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _envoy: FilterEnvoyPtr,
    _filter: *const c_void,
    _stream_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _envoy: FilterEnvoyPtr,
    _filter: *const c_void,
    _stream_id: u64,
    _reason: u32,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _envoy: FilterEnvoyPtr,
    _filter: *const c_void,
    _event_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _envoy: FilterEnvoyPtr,
    _filter: *const c_void,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _envoy: FilterEnvoyPtr,
    _filter: *const c_void,
) {
}

/// Per-route configuration is not used; refusing it makes a per-route entry
/// for this filter a configuration error rather than silently ignored.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_new(
    _name: EnvoyBuffer,
    _config: EnvoyBuffer,
) -> *const c_void {
    std::ptr::null()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_destroy(
    _config: *const c_void,
) {
}
