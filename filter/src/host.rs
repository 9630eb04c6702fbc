//! The host calls the filter makes, each mapped to a `Result` (never a panic).

use proxy_wasm::hostcalls;
use proxy_wasm::types::{MapType, Status};

/// A host call that failed; logged by the caller, never fatal.
#[derive(Debug)]
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

pub fn request_headers() -> Result<Vec<(String, String)>, HostError> {
    wrap("get_map", hostcalls::get_map(MapType::HttpRequestHeaders))
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
