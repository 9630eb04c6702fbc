//! A benchmark probe filter (never used in production).
//!
//! Plugin configuration (a plain string) selects what it does per request:
//! - empty: nothing — the floor of any proxy-wasm filter (context creation and
//!   callbacks only); this is listener C of BENCHMARKS.md;
//! - a comma-separated list of steps, e.g. `get,set=9,clear,metric,resp=3`:
//!   `get` reads the whole request header map once (one `get_header_map_pairs`),
//!   `prop` reads `source.address`, `time` reads the clock (one call each),
//!   `set=N` sets N request headers one call each, `clear` clears the route
//!   cache (`clear_route_cache` foreign function), `metric` increments a counter,
//!   `resp=N` adds N response headers, `cluster=NAME` sets the cluster header to
//!   NAME (one more set), `add=N` adds N request headers (`add_header_map_value`
//!   instead of a replace), `state=N` sets N filter-state values (`set_property`),
//!   `setmap` replaces the whole request header map once (`set_header_map_pairs`,
//!   the pairs read by `get` plus 9 headers). This isolates host-call cost from the
//!   engine's cost.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};
use std::rc::Rc;

#[derive(Default, Clone)]
struct Plan {
    get: bool,
    prop: bool,
    time: bool,
    sets: usize,
    clear: bool,
    metric: Option<u32>,
    resp: usize,
    cluster: Option<String>,
    adds: usize,
    states: usize,
    setmap: bool,
}

const NAMES: [&str; 16] = [
    "kf-environment",
    "kf-virtual-env",
    "kf-app",
    "kf-deployment",
    "kf-component",
    "kf-component-version",
    "kf-decision",
    "kf-var-who",
    "kf-context",
    "kf-x9",
    "kf-x10",
    "kf-x11",
    "kf-x12",
    "kf-x13",
    "kf-x14",
    "kf-x15",
];

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Default)]
struct Root {
    plan: Rc<Plan>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let text = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let mut plan = Plan::default();
        for step in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (k, v) = step.split_once('=').unwrap_or((step, ""));
            match k {
                "get" => plan.get = true,
                "prop" => plan.prop = true,
                "time" => plan.time = true,
                "set" => plan.sets = v.parse().unwrap_or(0).min(NAMES.len()),
                "clear" => plan.clear = true,
                "metric" => {
                    plan.metric = hostcalls::define_metric(MetricType::Counter, "probe.routed").ok()
                }
                "resp" => plan.resp = v.parse().unwrap_or(0).min(NAMES.len()),
                "cluster" => plan.cluster = Some(v.to_string()),
                "add" => plan.adds = v.parse().unwrap_or(0).min(NAMES.len()),
                "state" => plan.states = v.parse().unwrap_or(0).min(NAMES.len()),
                "setmap" => plan.setmap = true,
                _ => return false,
            }
        }
        self.plan = Rc::new(plan);
        true
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Probe {
            plan: self.plan.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Probe {
    plan: Rc<Plan>,
}

impl Context for Probe {}

impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        let p = &self.plan;
        let map = if p.get || p.setmap {
            hostcalls::get_map(MapType::HttpRequestHeaders).unwrap_or_default()
        } else {
            Vec::new()
        };
        if p.setmap {
            let mut pairs: Vec<(&str, &str)> =
                map.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            pairs.extend(NAMES[..9].iter().map(|n| (*n, "probe-value-0001")));
            let _ = hostcalls::set_map(MapType::HttpRequestHeaders, pairs);
        }
        for name in &NAMES[..p.adds] {
            let _ = hostcalls::add_map_value(MapType::HttpRequestHeaders, name, "probe-value-0001");
        }
        for name in &NAMES[..p.states] {
            let _ = hostcalls::set_property(vec![name], Some(b"probe-value-0001"));
        }
        if p.prop {
            let _ = hostcalls::get_property(vec!["source", "address"]);
        }
        if p.time {
            let _ = hostcalls::get_current_time();
        }
        for name in &NAMES[..p.sets] {
            let _ = hostcalls::set_map_value(
                MapType::HttpRequestHeaders,
                name,
                Some("probe-value-0001"),
            );
        }
        if let Some(c) = &p.cluster {
            let _ = hostcalls::set_map_value(
                MapType::HttpRequestHeaders,
                "x-switchyard-cluster",
                Some(c),
            );
        }
        if p.clear {
            let _ = hostcalls::call_foreign_function("clear_route_cache", Some(&[]));
        }
        if let Some(id) = p.metric {
            let _ = hostcalls::increment_metric(id, 1);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _n: usize, _eos: bool) -> Action {
        for name in &NAMES[..self.plan.resp] {
            let _ =
                hostcalls::add_map_value(MapType::HttpResponseHeaders, name, "probe-value-0001");
        }
        Action::Continue
    }
}
