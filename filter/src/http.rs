//! One request on the proxy-wasm host: read the headers once, then let the
//! shared plugin logic (`switchyard-plugin`) route the request and apply the
//! decision through [`WasmHost`].
//!
//! Per request the glue allocates little: the header map is read into a per-VM
//! buffer whose `String`s are reused, and the response headers are remembered in
//! one `String`.

use std::cell::RefCell;
use std::fmt::Display;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use switchyard_engine::{Decision, ErrorCode};
use switchyard_plugin::{Host, Outcome, ResponseHeaders, Table};

use crate::host;
use crate::metrics::Metrics;

thread_local! {
    /// The request header map of the request being routed, reused from request
    /// to request (a VM runs one request callback at a time).
    static HEADERS: RefCell<Vec<(String, String)>> = const { RefCell::new(Vec::new()) };
}

/// The proxy-wasm host calls, as the plugin logic sees them.
struct WasmHost<'a> {
    metrics: &'a Metrics,
}

impl Host for WasmHost<'_> {
    type Error = host::HostError;

    fn set_request_header(&mut self, name: &str, value: Option<&str>) -> Result<(), Self::Error> {
        host::set_request_header(name, value)
    }

    fn add_response_header(&mut self, name: &str, value: &str) -> Result<(), Self::Error> {
        host::add_response_header(name, value)
    }

    fn clear_route_cache(&mut self) -> Result<(), Self::Error> {
        host::clear_route_cache()
    }

    fn send_json(&mut self, status: u32, body: &str) -> Result<(), Self::Error> {
        host::send_json(status, body)
    }

    fn source_address(&mut self) -> Option<String> {
        host::source_address()
    }

    fn now_unix_seconds(&mut self) -> u64 {
        host::now_unix_seconds()
    }

    fn warn(&mut self, message: &dyn Display) {
        log::warn!("switchyard: {message}");
    }

    fn routed(&mut self, decision: &Decision<'_, '_>) {
        self.metrics.routed(decision);
    }

    fn refused(&mut self, code: ErrorCode) {
        self.metrics.error(code);
    }
}

pub struct RequestContext {
    table: Option<Rc<Table>>,
    metrics: Rc<Metrics>,
    response: Option<ResponseHeaders>,
}

impl RequestContext {
    pub fn new(table: Option<Rc<Table>>, metrics: Rc<Metrics>) -> Self {
        Self {
            table,
            metrics,
            response: None,
        }
    }

    fn route_request(&mut self, headers: &mut Vec<(String, String)>) -> Action {
        let mut host = WasmHost {
            metrics: &self.metrics,
        };
        let Some(table) = self.table.as_deref() else {
            // No configuration was ever accepted: nothing can be routed.
            switchyard_plugin::refuse_unconfigured(&mut host);
            return Action::Pause;
        };
        if let Err(e) = host::request_headers_into(headers) {
            log::warn!("switchyard: {e}");
            return Action::Continue;
        }
        match switchyard_plugin::route_request(&mut host, table, headers) {
            Outcome::Continue(response) => {
                self.response = response;
                Action::Continue
            }
            Outcome::Refused => Action::Pause,
        }
    }
}

impl Context for RequestContext {}

impl HttpContext for RequestContext {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        HEADERS.with(|buffer| match buffer.try_borrow_mut() {
            Ok(mut headers) => self.route_request(&mut headers),
            // Not reachable (one callback at a time); a fresh buffer if it were.
            Err(_) => self.route_request(&mut Vec::new()),
        })
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(r) = self.response.take() else {
            return Action::Continue;
        };
        let mut host = WasmHost {
            metrics: &self.metrics,
        };
        switchyard_plugin::respond(&mut host, self.table.as_deref(), &r);
        Action::Continue
    }
}
