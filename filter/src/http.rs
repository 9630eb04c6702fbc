//! One request: read the headers once, ask the engine, apply its decision.
//!
//! Per request the glue allocates little: the header map is read into a per-VM
//! buffer whose `String`s are reused, and the response headers are remembered in
//! one `String`.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use switchyard_engine::{Decision, ErrorCode, Index, Mode, Request, RouteError, UnreadyClusters};

use crate::host;
use crate::metrics::Metrics;

/// What the response must carry, remembered from the request phase: the
/// deployment, VE and component version in one `String` (one allocation).
struct ResponseHeaders {
    values: String,
    /// Where the VE and the component version start in `values`.
    cuts: (usize, usize),
    set_cookie: Option<String>,
}

impl ResponseHeaders {
    fn new(d: &Decision<'_, '_>) -> Self {
        let mut values = String::with_capacity(
            d.deployment.len() + d.virtual_env.len() + d.component_version.len(),
        );
        values.push_str(d.deployment);
        let ve_at = values.len();
        values.push_str(d.virtual_env);
        let version_at = values.len();
        values.push_str(d.component_version);
        Self {
            values,
            cuts: (ve_at, version_at),
            set_cookie: d.set_cookie.clone(),
        }
    }

    /// (deployment, virtual env, component version).
    fn parts(&self) -> (&str, &str, &str) {
        let (ve_at, version_at) = self.cuts;
        (
            self.values.get(..ve_at).unwrap_or(""),
            self.values.get(ve_at..version_at).unwrap_or(""),
            self.values.get(version_at..).unwrap_or(""),
        )
    }
}

thread_local! {
    /// The request header map of the request being routed, reused from request
    /// to request (a VM runs one request callback at a time).
    static HEADERS: RefCell<Vec<(String, String)>> = const { RefCell::new(Vec::new()) };
}

/// The routing table in force: the compiled index and, computed when it was
/// installed, its clusters this Envoy does not have (pull mode).
pub struct Table {
    pub index: Index,
    pub unready: UnreadyClusters,
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

    fn refuse(&self, error: &RouteError) -> Action {
        self.metrics.error(error.code);
        if let Err(e) = host::send_json(error.code.status(), &error.body()) {
            log::warn!("switchyard: {e}");
        }
        Action::Pause
    }

    fn apply(&self, index: &Index, d: &Decision<'_, '_>) -> Result<(), host::HostError> {
        let settings = index.settings();
        for name in &d.strip_headers {
            host::set_request_header(name, None)?;
        }
        if let Some(path) = &d.rewritten_path {
            host::set_request_header(":path", Some(path))?;
        }
        let kind = d.kind.name();
        let wanted = settings.metadata_headers.names();
        for (name, value) in [
            ("kf-environment", d.environment),
            ("kf-virtual-env", d.virtual_env),
            ("kf-app", d.app),
            ("kf-deployment", d.deployment),
            ("kf-component", d.component),
            ("kf-component-version", d.component_version),
            ("kf-decision", &*kind),
        ] {
            if wanted.contains(&name) {
                host::set_request_header(name, Some(value))?;
            }
        }
        let mut var_header = String::new();
        for (name, value) in d.vars.iter() {
            var_header.clear();
            var_header.push_str("kf-var-");
            var_header.push_str(name);
            host::set_request_header(&var_header, Some(value))?;
        }
        if let Some(context) = &d.context {
            host::set_request_header("kf-context", Some(context))?;
        }
        if let Some(key) = d.hash_key {
            host::set_request_header(&settings.hash_key_header, Some(key))?;
        }
        host::set_request_header(&settings.cluster_header, Some(d.cluster))?;
        host::clear_route_cache()
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
        let show = self
            .table
            .as_ref()
            .is_some_and(|t| t.index.settings().response_headers);
        let mut result = Ok(());
        if show {
            let (deployment, virtual_env, component_version) = r.parts();
            result = result
                .and_then(|_| host::add_response_header("kf-deployment", deployment))
                .and_then(|_| host::add_response_header("kf-virtual-env", virtual_env))
                .and_then(|_| host::add_response_header("kf-component-version", component_version));
        }
        if let Some(cookie) = &r.set_cookie {
            result = result.and_then(|_| host::add_response_header("set-cookie", cookie));
        }
        if let Err(e) = result {
            log::warn!("switchyard: {e}");
        }
        Action::Continue
    }
}

impl RequestContext {
    fn route_request(&mut self, headers: &mut Vec<(String, String)>) -> Action {
        let Some(table) = self.table.clone() else {
            // No configuration was ever accepted: nothing can be routed.
            return self.refuse(&RouteError::new(
                ErrorCode::EnvironmentNotFound,
                "no routing configuration loaded",
            ));
        };
        let index = &table.index;
        if let Err(e) = host::request_headers_into(headers) {
            log::warn!("switchyard: {e}");
            return Action::Continue;
        }
        let headers: &[(String, String)] = headers;
        let pseudo = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map_or("", |(_, v)| v.as_str())
        };
        let source = index
            .needs_source_address()
            .then(host::source_address)
            .flatten();
        let request = Request {
            method: pseudo(":method"),
            path: pseudo(":path"),
            headers,
            source_address: source.as_deref(),
            now_unix_seconds: if index.needs_clock() {
                host::now_unix_seconds()
            } else {
                0
            },
        };
        let routed = match index.settings().mode {
            Mode::Genesis => index.route(&request),
            // Istio: the sidecar carries every call of the pod; only calls to
            // components are Switchyard's.
            Mode::Internal if index.is_foreign_host(&request) => return Action::Continue,
            Mode::Internal => index.route_internal(&request),
        };
        match routed.and_then(|d| table.unready.check(&d).map(|()| d)) {
            Ok(decision) => {
                if let Err(e) = self.apply(index, &decision) {
                    log::warn!("switchyard: {e}");
                }
                self.metrics.routed(&decision);
                if index.settings().response_headers || decision.set_cookie.is_some() {
                    self.response = Some(ResponseHeaders::new(&decision));
                }
                Action::Continue
            }
            Err(error) => self.refuse(&error),
        }
    }
}
