//! The host calls of the request path and of configuration, each mapped to a
//! `Result` (never a panic).

use proxy_wasm::hostcalls;
use proxy_wasm::types::{MapType, Status};

/// A host call that failed; logged by the caller, never fatal.
#[derive(Debug, Clone, Copy)]
pub struct HostError {
    pub call: &'static str,
    pub status: Status,
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "host call {} failed: {:?}", self.call, self.status)
    }
}

fn wrap<T>(call: &'static str, r: Result<T, Status>) -> Result<T, HostError> {
    r.map_err(|status| HostError { call, status })
}

#[link(wasm_import_module = "env")]
extern "C" {
    /// The ABI call behind the SDK's `get_map`, declared here so that the map is
    /// read into reused buffers instead of two new `String`s per header (and so
    /// that an unexpected status or a non-UTF-8 value is an error, not a panic).
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
}

/// Reads the request header map into `out`, reusing its `String`s: after the
/// first requests on a VM this allocates only the host's one serialized buffer.
/// Values that are not UTF-8 are read lossily (the SDK would panic).
pub fn request_headers_into(out: &mut Vec<(String, String)>) -> Result<(), HostError> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a pointer to a buffer it allocated through the
    // SDK's `proxy_on_memory_allocate` (a `Vec<u8>` of capacity `size`, leaked)
    // and its size; ownership passes to us, and `from_raw_parts` gives it back to
    // the allocator when `bytes` is dropped, exactly as the SDK's `get_map` does.
    let status =
        unsafe { proxy_get_header_map_pairs(MapType::HttpRequestHeaders, &mut data, &mut size) };
    if status != Status::Ok as u32 {
        return Err(HostError {
            call: "get_header_map_pairs",
            status: Status::InternalFailure,
        });
    }
    if data.is_null() {
        out.clear();
        return Ok(());
    }
    // SAFETY: see above.
    let bytes = unsafe { Vec::from_raw_parts(data, size, size) };
    read_pairs(&bytes, out).ok_or(HostError {
        call: "get_header_map_pairs (malformed map)",
        status: Status::InternalFailure,
    })
}

/// Decodes the ABI's serialized map (count, then (key length, value length) per
/// pair, then each key and value NUL-terminated) into `out`, reusing its
/// `String`s; `None` if the bytes are malformed.
fn read_pairs(bytes: &[u8], out: &mut Vec<(String, String)>) -> Option<()> {
    let word = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let count = word(0)?;
    let mut p = count.checked_mul(8)?.checked_add(4)?;
    if p > bytes.len() {
        return None;
    }
    out.truncate(count);
    for n in 0..count {
        let (klen, vlen) = (word(4 + n * 8)?, word(8 + n * 8)?);
        let key = bytes.get(p..p.checked_add(klen)?)?;
        p += klen + 1;
        let value = bytes.get(p..p.checked_add(vlen)?)?;
        p += vlen + 1;
        let key = String::from_utf8_lossy(key);
        let value = String::from_utf8_lossy(value);
        match out.get_mut(n) {
            Some((k, v)) => {
                k.clear();
                k.push_str(&key);
                v.clear();
                v.push_str(&value);
            }
            None => out.push((key.into_owned(), value.into_owned())),
        }
    }
    Some(())
}

pub fn set_request_header(name: &str, value: Option<&str>) -> Result<(), HostError> {
    wrap(
        "set_map_value",
        hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value),
    )
}

pub fn add_response_header(name: &str, value: &str) -> Result<(), HostError> {
    wrap(
        "add_map_value",
        hostcalls::add_map_value(MapType::HttpResponseHeaders, name, value),
    )
}

/// `source.address` of the downstream connection, `ip:port`.
pub fn source_address() -> Option<String> {
    hostcalls::get_property(vec!["source", "address"])
        .ok()
        .flatten()
        .and_then(|bytes| String::from_utf8(bytes).ok())
}

pub fn now_unix_seconds() -> u64 {
    now_unix_millis() / 1000
}

pub fn now_unix_millis() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

/// Tells Envoy to pick the route again now that the cluster header is set.
pub fn clear_route_cache() -> Result<(), HostError> {
    wrap(
        "clear_route_cache",
        hostcalls::call_foreign_function("clear_route_cache", Some(&[])).map(|_| ()),
    )
}

pub fn send_json(status: u32, body: &str) -> Result<(), HostError> {
    wrap(
        "send_http_response",
        hostcalls::send_http_response(
            status,
            vec![("content-type", "application/json")],
            Some(body.as_bytes()),
        ),
    )
}

pub fn plugin_configuration() -> Result<Option<Vec<u8>>, HostError> {
    wrap(
        "get_buffer",
        hostcalls::get_buffer(
            proxy_wasm::types::BufferType::PluginConfiguration,
            0,
            usize::MAX,
        ),
    )
}

/// This Envoy's node id (`node.id` of the bootstrap), if it has one. Envoy 1.40
/// serves it as the attribute `xds.node`; older Envoys as `node`.
pub fn node_id() -> Option<String> {
    [vec!["xds", "node", "id"], vec!["node", "id"]]
        .into_iter()
        .find_map(|path| hostcalls::get_property(path).ok().flatten())
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|id| !id.is_empty())
}

/// The name of this plugin (`PluginConfig.name`: the filter's name, or
/// `<namespace>.<name>` for an Istio WasmPlugin), if the host says.
pub fn plugin_name() -> Option<String> {
    hostcalls::get_property(vec!["plugin_name"])
        .ok()
        .flatten()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|name| !name.is_empty())
}

#[cfg(test)]
mod tests {
    use super::read_pairs;

    fn serialize(pairs: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
        for (k, v) in pairs {
            out.extend((k.len() as u32).to_le_bytes());
            out.extend((v.len() as u32).to_le_bytes());
        }
        for (k, v) in pairs {
            out.extend(k.as_bytes());
            out.push(0);
            out.extend(*v);
            out.push(0);
        }
        out
    }

    #[test]
    fn reads_pairs_into_reused_strings() {
        let mut out = vec![("old".to_string(), "x".repeat(64)); 3];
        let bytes = serialize(&[(":path", b"/dev/hello"), ("kf-ve", b"joe")]);
        assert_eq!(read_pairs(&bytes, &mut out), Some(()));
        assert_eq!(
            out,
            vec![
                (":path".to_string(), "/dev/hello".to_string()),
                ("kf-ve".to_string(), "joe".to_string())
            ]
        );
        assert!(out[0].1.capacity() >= 64, "the String was reused");
    }

    #[test]
    fn non_utf8_values_are_read_lossily_and_malformed_maps_refused() {
        let mut out = Vec::new();
        let bytes = serialize(&[("x-bin", b"a\xffb")]);
        assert_eq!(read_pairs(&bytes, &mut out), Some(()));
        assert_eq!(out[0].1, "a\u{fffd}b");
        assert_eq!(read_pairs(&bytes[..bytes.len() - 3], &mut out), None);
        assert_eq!(read_pairs(&[1, 0, 0, 0, 9], &mut out), None);
        assert_eq!(read_pairs(&[255, 255, 255, 255], &mut out), None);
        assert_eq!(read_pairs(&[], &mut out), None);
    }
}
