//! The dynamic-module host calls the plugin logic makes, on one HTTP stream:
//! [`NativeHost`] implements `switchyard_plugin::Host` over the ABI callbacks
//! of `abi.rs`, plus the read of the request header map.

use std::fmt::Display;

use switchyard_engine::{Decision, ErrorCode};
use switchyard_plugin::Host;

use crate::abi::{self, EnvoyBuffer, EnvoyHttpHeader, FilterEnvoyPtr, ModuleBuffer};
use crate::log;
use crate::metrics::Metrics;

/// A host call Envoy answered with failure; logged, never fatal.
#[derive(Debug, Clone, Copy)]
pub struct HostError(pub &'static str);

impl Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "host call {} failed", self.0)
    }
}

/// The host calls of one HTTP stream.
pub struct NativeHost<'a> {
    /// Envoy's filter object of the stream, valid for the whole hook we are in
    /// (Envoy passes it to every hook; it lives until the filter's destroy hook).
    pub filter: FilterEnvoyPtr,
    pub metrics: &'a Metrics,
}

/// The bytes of a buffer Envoy lent us for the current hook (empty when null).
///
/// # Safety
/// `ptr` must be null or point to `len` readable bytes that stay valid and
/// unchanged for `'a`.
unsafe fn envoy_bytes<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if ptr.is_null() || len == 0 {
        &[]
    } else {
        // SAFETY: the caller guarantees `ptr` points to `len` valid bytes for 'a.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}

/// Copies `bytes` into `out`, reusing its allocation; not UTF-8 is read lossily.
fn copy_lossy(out: &mut String, bytes: &[u8]) {
    out.clear();
    match std::str::from_utf8(bytes) {
        Ok(s) => out.push_str(s),
        Err(_) => out.push_str(&String::from_utf8_lossy(bytes)),
    }
}

/// Reads the request header map of `filter` into `out`, reusing its `String`s
/// (and `raw`, the array Envoy fills with pointers into its map).
pub fn request_headers_into(
    filter: FilterEnvoyPtr,
    out: &mut Vec<(String, String)>,
    raw: &mut Vec<EnvoyHttpHeader>,
) -> Result<(), HostError> {
    // SAFETY: `filter` is the live filter object of the current hook.
    let count = unsafe {
        abi::envoy_dynamic_module_callback_http_get_headers_size(filter, abi::REQUEST_HEADER)
    };
    raw.clear();
    raw.resize(count, EnvoyHttpHeader::EMPTY);
    if count > 0 {
        // SAFETY: `raw` has room for `count` headers, the number Envoy just
        // reported; Envoy writes at most that many (nothing runs between the
        // two calls on this thread that could change the map).
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_http_get_headers(
                filter,
                abi::REQUEST_HEADER,
                raw.as_mut_ptr(),
            )
        };
        if !ok {
            return Err(HostError("get_headers"));
        }
    }
    out.truncate(count);
    for (n, h) in raw.iter().enumerate() {
        // SAFETY: Envoy filled `h` with pointers into its header map, valid
        // until the end of this hook unless a header is set; we copy them
        // here, before any setter runs.
        let (key, value) = unsafe {
            (
                envoy_bytes(h.key_ptr, h.key_length),
                envoy_bytes(h.value_ptr, h.value_length),
            )
        };
        match out.get_mut(n) {
            Some((k, v)) => {
                copy_lossy(k, key);
                copy_lossy(v, value);
            }
            None => out.push((
                String::from_utf8_lossy(key).into_owned(),
                String::from_utf8_lossy(value).into_owned(),
            )),
        }
    }
    Ok(())
}

impl Host for NativeHost<'_> {
    type Error = HostError;

    fn set_request_header(&mut self, name: &str, value: Option<&str>) -> Result<(), HostError> {
        // (Envoy's `add` for a header the request lacks costs the same: measured.)
        let value = value.map_or(ModuleBuffer::NULL, |v| ModuleBuffer::of(v.as_bytes()));
        // SAFETY: live filter object; both buffers borrow memory that outlives
        // the call (Envoy copies them into its header map).
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_http_set_header(
                self.filter,
                abi::REQUEST_HEADER,
                ModuleBuffer::of(name.as_bytes()),
                value,
            )
        };
        ok.then_some(()).ok_or(HostError("set_header"))
    }

    fn add_response_header(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        // SAFETY: as in `set_request_header`.
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_http_add_header(
                self.filter,
                abi::RESPONSE_HEADER,
                ModuleBuffer::of(name.as_bytes()),
                ModuleBuffer::of(value.as_bytes()),
            )
        };
        ok.then_some(()).ok_or(HostError("add_header"))
    }

    fn clear_route_cache(&mut self) -> Result<(), HostError> {
        // SAFETY: live filter object of a request-phase hook.
        unsafe { abi::envoy_dynamic_module_callback_http_clear_route_cache(self.filter) };
        Ok(())
    }

    fn send_json(&mut self, status: u32, body: &str) -> Result<(), HostError> {
        let (name, value) = (b"content-type", b"application/json");
        let mut headers = [abi::ModuleHttpHeader {
            key_ptr: name.as_ptr(),
            key_length: name.len(),
            value_ptr: value.as_ptr(),
            value_length: value.len(),
        }];
        // SAFETY: live filter object; `headers` (one entry) and `body` outlive
        // the call, which copies them into the local reply; `details` is the
        // optional null buffer.
        unsafe {
            abi::envoy_dynamic_module_callback_http_send_response(
                self.filter,
                status,
                headers.as_mut_ptr(),
                headers.len(),
                ModuleBuffer::of(body.as_bytes()),
                ModuleBuffer::NULL,
            )
        };
        Ok(())
    }

    fn source_address(&mut self) -> Option<String> {
        let mut out = EnvoyBuffer::EMPTY;
        // SAFETY: live filter object; `out` is a valid place for the result.
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_get_attribute_string(
                self.filter,
                abi::ATTRIBUTE_SOURCE_ADDRESS,
                &mut out,
            )
        };
        if !ok {
            return None;
        }
        // SAFETY: on success Envoy points `out` at the attribute's bytes, valid
        // for the rest of this hook; we copy them at once.
        let bytes = unsafe { envoy_bytes(out.ptr, out.length) };
        std::str::from_utf8(bytes).ok().map(str::to_owned)
    }

    fn now_unix_seconds(&mut self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    fn warn(&mut self, message: &dyn Display) {
        log::warn(&format!("switchyard: {message}"));
    }

    fn routed(&mut self, decision: &Decision<'_, '_>) {
        self.metrics.routed(self.filter, decision);
    }

    fn refused(&mut self, code: ErrorCode) {
        self.metrics.error(self.filter, code);
    }
}
