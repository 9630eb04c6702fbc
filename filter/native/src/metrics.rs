//! Envoy stats the native filter keeps, visible at `/stats` under the module's
//! metrics namespace (`dynamicmodulescustom.` unless the filter sets one):
//! - `switchyard.error.<code>`: refused requests, by DESIGN.md error code;
//! - `switchyard.jwt.<note>`: JWTs a canary could not use, by reason;
//! - `switchyard.decision.<app>.<deployment>.<decision>`: routed requests, by
//!   why (as the wasm filter names them). A table with more than
//!   [`MAX_DEPLOYMENT_COUNTERS`] of them counts into one counter with the labels
//!   `app`, `deployment`, `decision` instead
//!   (`switchyard.decision.app.<app>.deployment.<dep>.decision.<decision>`):
//!   Envoy makes the labelled stat on every increment, ~4 k instructions.
//!
//! Envoy lets a module define stats only while its configuration is created,
//! so every counter is defined there; per request a counter is found by name.

use std::collections::HashMap;

use switchyard_engine::canary::jwt::ALL_NOTES;
use switchyard_engine::{Decision, DecisionKind, ErrorCode, PluginConfig, Resource};

use crate::abi::{self, ConfigEnvoyPtr, FilterEnvoyPtr, ModuleBuffer};

#[derive(Debug, Default)]
pub struct Metrics {
    errors: HashMap<ErrorCode, usize>,
    notes: HashMap<&'static str, usize>,
    /// Deployment → its decision counters (empty for a table over the bound).
    decisions: HashMap<String, Vec<(DecisionKind, usize)>>,
    /// The labelled decision counter, for a table over the bound.
    labelled: Option<usize>,
}

/// The most per-deployment decision counters defined up front.
pub const MAX_DEPLOYMENT_COUNTERS: usize = 5_000;

/// Every decision a request to `deployment` can have, given its canaries'
/// match rules (`matches`: the most rules of a canary towards it).
fn kinds(matches: usize) -> impl Iterator<Item = DecisionKind> {
    [
        DecisionKind::Release,
        DecisionKind::Explicit,
        DecisionKind::CanaryWeight,
        DecisionKind::CanaryStable,
        DecisionKind::Internal,
    ]
    .into_iter()
    .chain((0..matches).map(DecisionKind::CanaryMatch))
}

/// The stat name's form of a decision (`canary-match:0` → `canary-match_0`).
fn kind_name(kind: DecisionKind) -> std::borrow::Cow<'static, str> {
    match kind {
        DecisionKind::CanaryMatch(n) => std::borrow::Cow::Owned(format!("canary-match_{n}")),
        kind => kind.name(),
    }
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
    pub fn define(config: ConfigEnvoyPtr, plugin: &PluginConfig) -> Self {
        let mut matches: HashMap<&str, usize> = HashMap::new();
        let mut deployments = Vec::new();
        for r in &plugin.resources {
            match r {
                Resource::AppDeployment(d) => deployments.push((&d.spec.app, &d.metadata.name)),
                Resource::Canary(c) => {
                    let m = matches.entry(c.spec.deployment.as_str()).or_default();
                    *m = (*m).max(c.spec.match_rules.len());
                }
                _ => {}
            }
        }
        let wanted: usize = deployments
            .iter()
            .map(|(_, name)| 5 + matches.get(name.as_str()).copied().unwrap_or(0))
            .sum();
        let mut decisions = HashMap::new();
        let mut labelled = None;
        if wanted <= MAX_DEPLOYMENT_COUNTERS {
            for (app, name) in deployments {
                let m = matches.get(name.as_str()).copied().unwrap_or(0);
                let ids = kinds(m)
                    .filter_map(|k| {
                        let stat = format!("switchyard.decision.{app}.{name}.{}", kind_name(k));
                        Some((k, define(config, &stat, &[])?))
                    })
                    .collect();
                decisions.insert(name.clone(), ids);
            }
        } else {
            labelled = define(config, "switchyard.decision", &DECISION_LABELS);
        }
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
            decisions,
            labelled,
        }
    }

    pub fn routed(&self, filter: FilterEnvoyPtr, d: &Decision<'_, '_>) {
        let id = self
            .decisions
            .get(d.deployment)
            .and_then(|ids| ids.iter().find(|(k, _)| *k == d.kind))
            .map(|(_, id)| *id);
        match id {
            Some(id) => bump(filter, Some(id), &[]),
            None if self.labelled.is_some() => {
                bump(
                    filter,
                    self.labelled,
                    &[d.app, d.deployment, &kind_name(d.kind)],
                );
            }
            None => {}
        }
        if let Some(note) = d.note {
            bump(filter, self.notes.get(note).copied(), &[]);
        }
    }

    pub fn error(&self, filter: FilterEnvoyPtr, code: ErrorCode) {
        bump(filter, self.errors.get(&code).copied(), &[]);
    }
}
