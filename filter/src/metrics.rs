//! Envoy stats the filter keeps (visible at `/stats` as `wasmcustom.switchyard.*`).

use std::collections::HashMap;

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;
use switchyard_engine::ErrorCode;

/// Counter ids, defined once per VM at configure time.
#[derive(Debug, Default)]
pub struct Metrics {
    routed: Option<u32>,
    errors: HashMap<ErrorCode, u32>,
    config_rejected: Option<u32>,
}

fn counter(name: &str) -> Option<u32> {
    hostcalls::define_metric(MetricType::Counter, name).ok()
}

impl Metrics {
    pub fn define() -> Self {
        Self {
            routed: counter("switchyard.routed"),
            errors: ErrorCode::ALL
                .iter()
                .filter_map(|c| Some((*c, counter(&format!("switchyard.error.{}", c.as_str()))?)))
                .collect(),
            config_rejected: counter("switchyard.config_rejected"),
        }
    }

    fn bump(id: Option<u32>) {
        if let Some(id) = id {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }

    pub fn routed(&self) {
        Self::bump(self.routed);
    }

    pub fn error(&self, code: ErrorCode) {
        Self::bump(self.errors.get(&code).copied());
    }

    pub fn config_rejected(&self) {
        Self::bump(self.config_rejected);
    }
}
