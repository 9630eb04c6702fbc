//! Envoy stats the filter keeps, visible at `/stats` as `wasmcustom.switchyard.*`:
//! - `switchyard.decision.<app>.<deployment>.<decision>`: routed requests, by why;
//! - `switchyard.error.<code>`: refused requests, by DESIGN.md error code;
//! - `switchyard.jwt.<note>`: JWTs a canary could not use, by reason;
//! - `switchyard.config_rejected`: configurations refused (plugin or pulled);
//! - `switchyard.pull.ok` / `switchyard.pull.failed`: polls in pull mode.
//!
//! Fixed counters are defined at configure time; per-deployment counters on first
//! use (a table may have thousands of deployments), then looked up by index.

use std::cell::RefCell;
use std::collections::HashMap;

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;
use switchyard_engine::canary::jwt::ALL_NOTES;
use switchyard_engine::{Decision, DecisionKind, ErrorCode};

#[derive(Debug, Default)]
pub struct Metrics {
    errors: HashMap<ErrorCode, u32>,
    notes: HashMap<&'static str, u32>,
    config_rejected: Option<u32>,
    pull_ok: Option<u32>,
    pull_failed: Option<u32>,
    /// (deployment index, decision) → counter; reset when the index changes.
    decisions: RefCell<HashMap<(usize, DecisionKind), Option<u32>>>,
}

fn counter(name: &str) -> Option<u32> {
    hostcalls::define_metric(MetricType::Counter, name).ok()
}

fn bump(id: Option<u32>) {
    if let Some(id) = id {
        let _ = hostcalls::increment_metric(id, 1);
    }
}

impl Metrics {
    pub fn define() -> Self {
        Self {
            errors: ErrorCode::ALL
                .iter()
                .filter_map(|c| Some((*c, counter(&format!("switchyard.error.{}", c.as_str()))?)))
                .collect(),
            notes: ALL_NOTES
                .iter()
                .filter_map(|n| Some((*n, counter(&format!("switchyard.jwt.{n}"))?)))
                .collect(),
            config_rejected: counter("switchyard.config_rejected"),
            pull_ok: counter("switchyard.pull.ok"),
            pull_failed: counter("switchyard.pull.failed"),
            decisions: RefCell::default(),
        }
    }

    /// Forgets per-deployment counters: deployment indices change with the index.
    pub fn new_index(&self) {
        self.decisions.borrow_mut().clear();
    }

    pub fn routed(&self, d: &Decision<'_, '_>) {
        let key = (d.deployment_id, d.kind);
        let id = *self.decisions.borrow_mut().entry(key).or_insert_with(|| {
            counter(&format!(
                "switchyard.decision.{}.{}.{}",
                d.app,
                d.deployment,
                d.kind.to_string().replace(':', "_")
            ))
        });
        bump(id);
        if let Some(note) = d.note {
            bump(self.notes.get(note).copied());
        }
    }

    pub fn error(&self, code: ErrorCode) {
        bump(self.errors.get(&code).copied());
    }

    pub fn config_rejected(&self) {
        bump(self.config_rejected);
    }

    pub fn pull_ok(&self) {
        bump(self.pull_ok);
    }

    pub fn pull_failed(&self) {
        bump(self.pull_failed);
    }
}
