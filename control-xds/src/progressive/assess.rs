//! The driver's judgement, pure: from a store, its index, the counts the
//! Envoys reported since the last look and the time, it updates what it
//! measured per rollout and says which store changes to make ([`Move`]) and
//! which clusters the Envoys should report on. Applying the moves is the
//! driver's ([`super::driver`]).
//!
//! The counts are those of each version's *own* clusters: component versions
//! the canary shares with the stable (deployment distillation) serve both, so
//! they prove nothing and are left out. What is measured lives in memory
//! ([`Measured`]); the rollout's phase, step and clock are in the store. After
//! a restart a step's clock starts again at the restart (its evidence is gone):
//! a step's minimum time and sample are never skipped.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use switchyard_engine::{Index, Resource};

use super::analyzer::{Analyzer, Counts, Criterion, Statistic, Verdict};
use super::machine::{decide, Action, Phase, Rollout, StepProgress};
use super::spec::Plan;
use crate::kind::Kind;
use crate::state::rollout_ops::{pending_rollout, plan_of, released};
use crate::state::Store;

/// What was measured for one rollout, as `canary status` and `/metrics` show it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Measured {
    pub canary_clusters: Vec<String>,
    pub stable_clusters: Vec<String>,
    /// Since the rollout (or the driver) started.
    pub canary: Counts,
    pub stable: Counts,
    /// During the current step.
    pub canary_step: Counts,
    pub stable_step: Counts,
    pub statistic: Statistic,
    /// When the step's clock started (Unix ms).
    pub step_clock_from_ms: u64,
}

/// One rollout followed: its analyzer, the step it measures, and the view.
#[derive(Debug, Clone)]
struct Followed {
    analyzer: Analyzer,
    /// The (phase, step, step start) measured; a new one restarts the step.
    key: (Phase, usize, u64),
    /// The rollout this was measured for (its start).
    started_ms: u64,
    progress: StepProgress,
    measured: Measured,
}

/// A store change the assessment asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Move {
    /// The Canary is gone: end its rollout.
    End { canary: String },
    /// The served weight is not the rollout's: write the rollout's back.
    Reconcile { canary: String },
    /// The state machine's decision; `webhooks` hear of it once applied.
    Decide {
        canary: String,
        action: Action,
        webhooks: Vec<String>,
    },
}

/// One look's outcome: the moves to apply, in order, and the clusters every
/// Envoy should report on.
#[derive(Debug, Default)]
pub struct Assessment {
    pub moves: Vec<Move>,
    pub wanted: BTreeSet<String>,
}

/// What the driver follows between looks.
#[derive(Debug)]
pub struct Assessor {
    followed: BTreeMap<String, Followed>,
    /// When the driver started: no step's clock starts earlier.
    started_ms: u64,
}

fn criterion(plan: &Plan) -> Criterion {
    Criterion {
        max_ratio: plan.max_error_ratio,
        max_rate: plan.max_error_rate,
        min_rate: plan.min_error_rate,
    }
}

/// The clusters of `deployment`'s component versions that `other` does not share.
fn own_clusters(
    store: &Store,
    index: &Index,
    deployment: &str,
    other: Option<&str>,
) -> Vec<String> {
    let versions = |name: &str| -> BTreeSet<(String, String, String)> {
        match store.get(Kind::AppDeployment, name) {
            Some(Resource::AppDeployment(d)) => d
                .spec
                .components
                .iter()
                .map(|(c, spec)| (d.spec.app.clone(), c.clone(), spec.version.clone()))
                .collect(),
            _ => BTreeSet::new(),
        }
    };
    let mine = versions(deployment);
    let theirs = other.map(versions).unwrap_or_default();
    index
        .clusters()
        .iter()
        .filter(|c| {
            let v = (c.app.clone(), c.component.clone(), c.version.clone());
            mine.contains(&v) && !theirs.contains(&v)
        })
        .map(|c| c.name.clone())
        .collect()
}

fn sum(counts: &BTreeMap<String, Counts>, clusters: &[String]) -> Counts {
    let mut total = Counts::default();
    for c in clusters {
        if let Some(n) = counts.get(c) {
            total.add(*n);
        }
    }
    total
}

/// The clusters to be reported on: every Canary with steps, started or not
/// (Envoy drops the first period after a cluster is named, so name them early).
fn wanted(store: &Store, index: &Index) -> BTreeSet<String> {
    let mut wanted = BTreeSet::new();
    for r in store.resources.values() {
        let Resource::Canary(c) = r else { continue };
        if c.spec.steps.is_empty() {
            continue;
        }
        let stable = released(store, &c.spec.virtual_environment, &c.spec.app);
        wanted.extend(own_clusters(
            store,
            index,
            &c.spec.deployment,
            stable.as_deref(),
        ));
        if let Some(s) = &stable {
            wanted.extend(own_clusters(store, index, s, Some(&c.spec.deployment)));
        }
    }
    wanted
}

/// Rollouts not finished, and pending ones (a Canary with steps not started
/// yet: its match rules or written weight may already send it traffic).
fn active(store: &Store) -> Vec<Rollout> {
    let mut active: Vec<Rollout> = store
        .rollouts
        .values()
        .filter(|r| !r.phase.terminal())
        .cloned()
        .collect();
    for r in store.resources.values() {
        if let Resource::Canary(c) = r {
            active.extend(pending_rollout(store, &c.metadata.name));
        }
    }
    active
}

impl Assessor {
    /// An assessor whose steps' clocks start no earlier than `started_ms`.
    pub fn new(started_ms: u64) -> Self {
        Self {
            followed: BTreeMap::new(),
            started_ms,
        }
    }

    /// What was measured, by Canary name (finished rollouts keep their last).
    pub fn measured(&self) -> BTreeMap<String, Measured> {
        self.followed
            .iter()
            .map(|(name, f)| (name.clone(), f.measured.clone()))
            .collect()
    }

    /// One look: adds `counts` (by cluster) to every active rollout's
    /// measurements and says what to change.
    pub fn assess(
        &mut self,
        store: &Store,
        index: &Index,
        counts: &BTreeMap<String, Counts>,
        now_ms: u64,
    ) -> Assessment {
        let mut out = Assessment {
            moves: Vec::new(),
            wanted: wanted(store, index),
        };
        let active = active(store);
        // A finished rollout keeps its last measurements (for `status`); a new
        // start of the same Canary measures afresh.
        self.followed
            .retain(|name, f| match store.rollouts.get(name) {
                Some(r) => r.started_ms == f.started_ms,
                None => active.iter().any(|r| &r.canary == name),
            });
        for rollout in active {
            let name = rollout.canary.clone();
            let Some(Resource::Canary(canary)) = store.get(Kind::Canary, &name) else {
                out.moves.push(Move::End { canary: name });
                continue;
            };
            let Ok(plan) = plan_of(store, &name) else {
                continue;
            };
            let served = canary.spec.weight.as_deref();
            if rollout.phase != Phase::Pending && served != Some(rollout.weight.as_str()) {
                out.moves.push(Move::Reconcile { canary: name });
                continue;
            }
            if let Some(action) = self.measure(store, index, counts, &rollout, &plan, now_ms) {
                out.moves.push(Move::Decide {
                    canary: name,
                    action,
                    webhooks: plan.webhooks.clone(),
                });
            }
        }
        out
    }

    /// Adds `counts` to `rollout`'s measurements; the state machine's decision.
    fn measure(
        &mut self,
        store: &Store,
        index: &Index,
        counts: &BTreeMap<String, Counts>,
        rollout: &Rollout,
        plan: &Plan,
        now_ms: u64,
    ) -> Option<Action> {
        let stable = released(store, &rollout.virtual_env, &rollout.app)
            .filter(|s| *s != rollout.deployment)
            .unwrap_or_else(|| rollout.stable.clone());
        let canary_clusters = own_clusters(store, index, &rollout.deployment, Some(&stable));
        let stable_clusters = own_clusters(store, index, &stable, Some(&rollout.deployment));
        let key = (rollout.phase, rollout.step, rollout.step_started_ms);
        let clock_from_ms = rollout.step_started_ms.max(self.started_ms);
        let progress = StepProgress {
            clock_from_ms,
            canary_requests: 0,
        };
        let f = self
            .followed
            .entry(rollout.canary.clone())
            .or_insert_with(|| Followed {
                analyzer: Analyzer::new(criterion(plan)),
                key,
                started_ms: rollout.started_ms,
                progress,
                measured: Measured {
                    canary_clusters: Vec::new(),
                    stable_clusters: Vec::new(),
                    canary: Counts::default(),
                    stable: Counts::default(),
                    canary_step: Counts::default(),
                    stable_step: Counts::default(),
                    statistic: Analyzer::new(criterion(plan)).statistic(),
                    step_clock_from_ms: clock_from_ms,
                },
            });
        if f.key != key {
            if f.key.0 == Phase::Paused && key.0 == Phase::Progressing {
                // a human resumed: what made it pause is forgiven
                f.analyzer.reset();
            }
            f.key = key;
            f.progress = progress;
            f.measured.canary_step = Counts::default();
            f.measured.stable_step = Counts::default();
            f.measured.step_clock_from_ms = clock_from_ms;
        }
        let c = sum(counts, &canary_clusters);
        let s = sum(counts, &stable_clusters);
        let m = &mut f.measured;
        m.canary_clusters = canary_clusters;
        m.stable_clusters = stable_clusters;
        m.canary.add(c);
        m.stable.add(s);
        m.canary_step.add(c);
        m.stable_step.add(s);
        f.progress.canary_requests += c.requests;
        let verdict = if m.canary_clusters.is_empty() {
            Verdict::Healthy
        } else {
            f.analyzer.observe(c, s)
        };
        m.statistic = f.analyzer.statistic();
        decide(plan, rollout, &f.progress, &verdict, now_ms)
    }
}
