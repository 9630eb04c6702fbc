//! Envoy stats the native filter keeps, visible at `/stats` under the module's
//! metrics namespace (`dynamicmodulescustom.` unless the filter sets one):
//! - `switchyard.error.<code>`: refused requests, by DESIGN.md error code;
//! - `switchyard.jwt.<note>`: JWTs a canary could not use, by reason;
//! - `switchyard.decision` with the labels `app`, `deployment`, `decision`:
//!   routed requests, by why.
//!
//! Envoy lets a module define stats only while its configuration is created,
//! so every counter is defined there; per request a counter is found by index.

use std::collections::HashMap;

use switchyard_engine::canary::jwt::ALL_NOTES;
use switchyard_engine::{Decision, DecisionKind, ErrorCode};

use crate::abi::{self, ConfigEnvoyPtr, FilterEnvoyPtr, ModuleBuffer};

#[derive(Debug, Default)]
pub struct Metrics {
    errors: HashMap<ErrorCode, usize>,
    notes: HashMap<&'static str, usize>,
    decision: Option<usize>,
}

const DECISION_LABELS: [&str; 3] = ["app", "deployment", "decision"];

/// Defines one counter (with `labels`) on the configuration being created.
fn define(config: ConfigEnvoyPtr, name: &str, labels: &[&str]) -> Option<usize> {
    let mut names: Vec<ModuleBuffer> = labels
        .iter()
        .map(|l| ModuleBuffer::of(l.as_bytes()))
        .collect();
    let mut id = 0usize;
    // SAFETY: `config` is the configuration object of the running
    // `on_http_filter_config_new` hook; `names` and `name` outlive the call
    // (Envoy copies them); `id` is a valid place for the result.
    let result = unsafe {
        abi::envoy_dynamic_module_callback_http_filter_config_define_counter(
            config,
            ModuleBuffer::of(name.as_bytes()),
            if names.is_empty() {
                std::ptr::null_mut()
            } else {
                names.as_mut_ptr()
            },
            names.len(),
            &mut id,
        )
    };
    (result == abi::METRICS_SUCCESS).then_some(id)
}

fn bump(filter: FilterEnvoyPtr, id: Option<usize>, labels: &[&str]) {
    let Some(id) = id else { return };
    let mut values = [ModuleBuffer::NULL; DECISION_LABELS.len()];
    let count = labels.len().min(values.len());
    for (slot, label) in values.iter_mut().zip(labels) {
        *slot = ModuleBuffer::of(label.as_bytes());
    }
    // SAFETY: `filter` is the live filter object of the current hook, created
    // from the configuration that defined `id` with `labels.len()` labels;
    // `values` outlives the call.
    unsafe {
        abi::envoy_dynamic_module_callback_http_filter_increment_counter(
            filter,
            id,
            if count == 0 {
                std::ptr::null_mut()
            } else {
                values.as_mut_ptr()
            },
            count,
            1,
        );
    }
}

impl Metrics {
    /// Defines every counter; call only from `on_http_filter_config_new`.
    pub fn define(config: ConfigEnvoyPtr) -> Self {
        Self {
            errors: ErrorCode::ALL
                .iter()
                .filter_map(|c| {
                    Some((
                        *c,
                        define(config, &format!("switchyard.error.{}", c.as_str()), &[])?,
                    ))
                })
                .collect(),
            notes: ALL_NOTES
                .iter()
                .filter_map(|n| Some((*n, define(config, &format!("switchyard.jwt.{n}"), &[])?)))
                .collect(),
            decision: define(config, "switchyard.decision", &DECISION_LABELS),
        }
    }

    pub fn routed(&self, filter: FilterEnvoyPtr, d: &Decision<'_, '_>) {
        let kind = match d.kind {
            DecisionKind::CanaryMatch(n) => std::borrow::Cow::Owned(format!("canary-match_{n}")),
            kind => kind.name(),
        };
        bump(filter, self.decision, &[d.app, d.deployment, &kind]);
        if let Some(note) = d.note {
            bump(filter, self.notes.get(note).copied(), &[]);
        }
    }

    pub fn error(&self, filter: FilterEnvoyPtr, code: ErrorCode) {
        bump(filter, self.errors.get(&code).copied(), &[]);
    }
}
