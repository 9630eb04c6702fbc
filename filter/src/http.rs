//! One request: read the headers once, ask the engine, apply its decision.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use switchyard_engine::{Decision, ErrorCode, Index, Mode, Request, RouteError, UnreadyClusters};

use crate::host;
use crate::metrics::Metrics;

/// What the response must carry, remembered from the request phase.
struct ResponseHeaders {
    deployment: String,
    virtual_env: String,
    component_version: String,
    set_cookie: Option<String>,
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
        let kind = d.kind.to_string();
        let wanted = settings.metadata_headers.names();
        for (name, value) in [
            ("kf-environment", d.environment),
            ("kf-virtual-env", d.virtual_env),
            ("kf-app", d.app),
            ("kf-deployment", d.deployment),
            ("kf-component", d.component),
            ("kf-component-version", d.component_version),
            ("kf-decision", kind.as_str()),
        ] {
            if wanted.contains(&name) {
                host::set_request_header(name, Some(value))?;
            }
        }
        let mut var_header = String::with_capacity(32);
        for (name, value) in &d.vars {
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
        let Some(table) = self.table.clone() else {
            // No configuration was ever accepted: nothing can be routed.
            return self.refuse(&RouteError::new(
                ErrorCode::EnvironmentNotFound,
                "no routing configuration loaded",
            ));
        };
        let index = &table.index;
        let headers = match host::request_headers() {
            Ok(h) => h,
            Err(e) => {
                log::warn!("switchyard: {e}");
                return Action::Continue;
            }
        };
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
            headers: &headers,
            source_address: source.as_deref(),
            now_unix_seconds: if index.needs_clock() {
                host::now_unix_seconds()
            } else {
                0
            },
        };
        let routed = match index.settings().mode {
            Mode::Genesis => index.route(&request),
            Mode::Internal => index.route_internal(&request),
        };
        match routed.and_then(|d| table.unready.check(&d).map(|()| d)) {
            Ok(decision) => {
                if let Err(e) = self.apply(index, &decision) {
                    log::warn!("switchyard: {e}");
                }
                self.metrics.routed(&decision);
                if index.settings().response_headers || decision.set_cookie.is_some() {
                    self.response = Some(ResponseHeaders {
                        deployment: decision.deployment.to_string(),
                        virtual_env: decision.virtual_env.to_string(),
                        component_version: decision.component_version.to_string(),
                        set_cookie: decision.set_cookie.clone(),
                    });
                }
                Action::Continue
            }
            Err(error) => self.refuse(&error),
        }
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
            result = result
                .and_then(|_| host::add_response_header("kf-deployment", &r.deployment))
                .and_then(|_| host::add_response_header("kf-virtual-env", &r.virtual_env))
                .and_then(|_| {
                    host::add_response_header("kf-component-version", &r.component_version)
                });
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
