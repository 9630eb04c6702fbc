//! Our declarations of the part of Envoy's dynamic-module ABI the filter uses,
//! written against Envoy's public `source/extensions/dynamic_modules/abi/abi.h`
//! (ABI `v0.1.0`, which Envoy 1.40's `v0.2.0` still serves: "v0.1.y is
//! guaranteed to be compatible with v0.2.x"). Only the types and callbacks
//! listed here are used; the event hooks Envoy calls are in `hooks.rs`.
//!
//! C enums are `int`-sized on the platforms Envoy runs on (x86-64, aarch64
//! System V), hence `u32`/`i32` newtypes; C `bool` is Rust `bool`.

use std::ffi::c_void;

/// The ABI version this module is built for, returned by
/// `envoy_dynamic_module_on_program_init` (NUL-terminated). Envoy compares it
/// with its own: equal is "matched", an older compatible one is "deprecated".
pub const ABI_VERSION: &[u8] = b"v0.2.0\0";

/// Envoy's `DynamicModuleHttpFilterConfig` (opaque).
pub type ConfigEnvoyPtr = *mut c_void;
/// Envoy's `DynamicModuleHttpFilter` (opaque), valid until the filter's destroy hook.
pub type FilterEnvoyPtr = *mut c_void;

/// A buffer owned by Envoy (`envoy_dynamic_module_type_envoy_buffer`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyBuffer {
    pub ptr: *const u8,
    pub length: usize,
}

impl EnvoyBuffer {
    pub const EMPTY: Self = Self {
        ptr: std::ptr::null(),
        length: 0,
    };
}

/// A buffer owned by the module (`envoy_dynamic_module_type_module_buffer`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleBuffer {
    pub ptr: *const u8,
    pub length: usize,
}

impl ModuleBuffer {
    /// Borrows `bytes` for the duration of one callback (Envoy copies what it keeps).
    pub fn of(bytes: &[u8]) -> Self {
        Self {
            ptr: bytes.as_ptr(),
            length: bytes.len(),
        }
    }

    /// The null buffer: "no value" (removes a header in `set_header`).
    pub const NULL: Self = Self {
        ptr: std::ptr::null(),
        length: 0,
    };
}

/// A header owned by Envoy's header map (`envoy_dynamic_module_type_envoy_http_header`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyHttpHeader {
    pub key_ptr: *const u8,
    pub key_length: usize,
    pub value_ptr: *const u8,
    pub value_length: usize,
}

impl EnvoyHttpHeader {
    pub const EMPTY: Self = Self {
        key_ptr: std::ptr::null(),
        key_length: 0,
        value_ptr: std::ptr::null(),
        value_length: 0,
    };
}

/// A header owned by the module (`envoy_dynamic_module_type_module_http_header`).
#[repr(C)]
pub struct ModuleHttpHeader {
    pub key_ptr: *const u8,
    pub key_length: usize,
    pub value_ptr: *const u8,
    pub value_length: usize,
}

/// `envoy_dynamic_module_type_http_header_type`.
#[repr(transparent)]
#[derive(Clone, Copy)]
pub struct HeaderType(pub u32);
pub const REQUEST_HEADER: HeaderType = HeaderType(0);
pub const RESPONSE_HEADER: HeaderType = HeaderType(2);

/// `envoy_dynamic_module_type_log_level`.
#[repr(transparent)]
#[derive(Clone, Copy)]
pub struct LogLevel(pub u32);
pub const LOG_INFO: LogLevel = LogLevel(2);
pub const LOG_WARN: LogLevel = LogLevel(3);
pub const LOG_ERROR: LogLevel = LogLevel(4);

/// `envoy_dynamic_module_type_attribute_id`: `source.address` is the 25th.
#[repr(transparent)]
#[derive(Clone, Copy)]
pub struct AttributeId(pub u32);
pub const ATTRIBUTE_SOURCE_ADDRESS: AttributeId = AttributeId(24);

/// `envoy_dynamic_module_type_metrics_result`: 0 is success.
pub type MetricsResult = u32;
pub const METRICS_SUCCESS: MetricsResult = 0;

/// The status enums of the request/response hooks: 0 is `Continue` for all;
/// 1 is `StopIteration` for headers.
pub type HookStatus = u32;
pub const CONTINUE: HookStatus = 0;
pub const STOP_ITERATION: HookStatus = 1;

extern "C" {
    pub fn envoy_dynamic_module_callback_log(level: LogLevel, message: ModuleBuffer);

    pub fn envoy_dynamic_module_callback_http_get_headers_size(
        filter: FilterEnvoyPtr,
        header_type: HeaderType,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_http_get_headers(
        filter: FilterEnvoyPtr,
        header_type: HeaderType,
        result_headers: *mut EnvoyHttpHeader,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_set_header(
        filter: FilterEnvoyPtr,
        header_type: HeaderType,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_add_header(
        filter: FilterEnvoyPtr,
        header_type: HeaderType,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_clear_route_cache(filter: FilterEnvoyPtr);
    pub fn envoy_dynamic_module_callback_http_send_response(
        filter: FilterEnvoyPtr,
        status_code: u32,
        headers_vector: *mut ModuleHttpHeader,
        headers_vector_size: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );
    pub fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter: FilterEnvoyPtr,
        attribute_id: AttributeId,
        result: *mut EnvoyBuffer,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: ConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        counter_id: *mut usize,
    ) -> MetricsResult;
    pub fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter: FilterEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> MetricsResult;
}
