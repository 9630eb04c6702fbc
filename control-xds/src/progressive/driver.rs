//! The driver: every [`TICK`], takes what the Envoys reported over LRS, feeds
//! each live rollout's analyzer with its canary's and stable's counts, asks the
//! state machine what to do and applies it as a store change (validated,
//! persisted, served — an abort is one config version, pushed through ECDS).
//!
//! The counts are those of each version's *own* clusters: component versions
//! the canary shares with the stable (deployment distillation) serve both, so
//! they prove nothing and are left out. What is measured lives in memory
//! ([`Live`]); the rollout's phase, step and clock are in the store. After a
//! restart a step's clock starts again at the restart (its evidence is gone):
//! a step's minimum time and sample are never skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Serialize;
use switchyard_engine::{Index, Resource};

use super::analyzer::{Analyzer, Counts, Criterion, Statistic, Verdict};
use super::lrs::LoadReports;
use super::machine::{decide, Phase, Rollout, StepProgress};
use super::spec::Plan;
use super::store_ops::{pending_rollout, plan_of, released};
use crate::serve::ControlPlane;
use crate::state::Store;
use crate::xds::cache::now_unix_ms;

/// How often the driver looks at the reports.
pub const TICK: Duration = Duration::from_millis(100);

/// What the driver measured for one rollout (in memory).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Live {
    #[serde(skip)]
    analyzer: Analyzer,
    #[serde(skip)]
    key: (Phase, usize, u64),
    /// The rollout this was measured for (its start).
    #[serde(skip)]
    started_ms: u64,
    #[serde(skip)]
    progress: StepProgress,
    pub canary_clusters: Vec<String>,
    pub stable_clusters: Vec<String>,
    /// Since the rollout (or the control plane) started.
    pub canary: Counts,
    pub stable: Counts,
    /// During the current step.
    pub canary_step: Counts,
    pub stable_step: Counts,
    pub statistic: Statistic,
    /// When the step's clock started (Unix ms).
    pub step_clock_from_ms: u64,
}

/// Progressive delivery's shared state: the LRS reports and what was measured.
#[derive(Debug)]
pub struct Progressive {
    pub reports: LoadReports,
    live: Mutex<BTreeMap<String, Live>>,
    started_ms: u64,
    /// Replicas on etcd, not leading: every count the Envoys connected here
    /// reported, summed since start (published for the leader, [`run`]).
    forwarded: Mutex<BTreeMap<String, Counts>>,
    /// Replicas on etcd, leading: what the other replicas' Envoys reported
    /// since the last tick.
    remote: Mutex<BTreeMap<String, Counts>>,
}

impl Default for Progressive {
    fn default() -> Self {
        Self {
            reports: LoadReports::default(),
            live: Mutex::default(),
            started_ms: now_unix_ms(),
            forwarded: Mutex::default(),
            remote: Mutex::default(),
        }
    }
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
        match store.get("AppDeployment", name) {
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

impl Progressive {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Live>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Not leading: adds what this replica's Envoys reported to the counts
    /// published for the leader.
    pub fn forward(&self) {
        let taken = self.reports.take();
        let mut forwarded = self
            .forwarded
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (cluster, n) in taken {
            forwarded.entry(cluster).or_default().add(n);
        }
    }

    /// Every count forwarded since start, by cluster.
    pub fn forwarded(&self) -> BTreeMap<String, Counts> {
        self.forwarded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Leading: counts the other replicas' Envoys reported, for the next tick.
    pub fn add_remote(&self, counts: BTreeMap<String, Counts>) {
        let mut remote = self.remote.lock().unwrap_or_else(PoisonError::into_inner);
        for (cluster, n) in counts {
            remote.entry(cluster).or_default().add(n);
        }
    }

    /// What was measured for `canary`'s rollout, if it is live.
    pub fn live(&self, canary: &str) -> Option<Live> {
        self.lock().get(canary).cloned()
    }

    /// One look at the reports; returns the decisions taken (for logs and tests).
    pub fn tick(&self, plane: &ControlPlane, now_ms: u64) -> Vec<(String, String)> {
        let store = plane.store();
        let index = plane.index();
        let mut counts = self.reports.take();
        let remote =
            std::mem::take(&mut *self.remote.lock().unwrap_or_else(PoisonError::into_inner));
        for (cluster, n) in remote {
            counts.entry(cluster).or_default().add(n);
        }
        let mut wanted = BTreeSet::new();
        let mut decisions = Vec::new();
        // Every Canary with steps is reported on, started or not: Envoy drops the
        // first period after a cluster is named, so name them early.
        for r in store.resources.values() {
            if let Resource::Canary(c) = r {
                if c.spec.steps.is_empty() {
                    continue;
                }
                let stable = released(&store, &c.spec.virtual_environment, &c.spec.app);
                wanted.extend(own_clusters(
                    &store,
                    &index,
                    &c.spec.deployment,
                    stable.as_deref(),
                ));
                if let Some(s) = &stable {
                    wanted.extend(own_clusters(&store, &index, s, Some(&c.spec.deployment)));
                }
            }
        }
        // Live rollouts, and pending ones (a Canary with steps not started yet:
        // its match rules or written weight may already send it traffic).
        let mut active: Vec<Rollout> = store
            .rollouts
            .values()
            .filter(|r| !r.phase.terminal())
            .cloned()
            .collect();
        for r in store.resources.values() {
            if r.kind() == "Canary" {
                active.extend(pending_rollout(&store, r.name()));
            }
        }
        let mut live = self.lock();
        // A finished rollout keeps its last measurements (for `status`); a new
        // start of the same Canary measures afresh.
        live.retain(|name, l| match store.rollouts.get(name) {
            Some(r) => r.started_ms == l.started_ms,
            None => active.iter().any(|r| &r.canary == name),
        });
        for rollout in active {
            let name = rollout.canary.clone();
            if store.get("Canary", &name).is_none() {
                drop(live);
                if let Err(e) = plane.change(|s| s.canary_gone(&name, now_ms)) {
                    tracing::warn!(canary = %name, error = %e, "could not end the rollout");
                }
                live = self.lock();
                continue;
            }
            let Ok(plan) = plan_of(&store, &name) else {
                continue;
            };
            let served = match store.get("Canary", &name) {
                Some(Resource::Canary(c)) => c.spec.weight.clone(),
                _ => None,
            };
            if rollout.phase != Phase::Pending && served.as_deref() != Some(rollout.weight.as_str())
            {
                drop(live);
                match plane.change(|s| s.canary_reconcile(&name, now_ms)) {
                    Ok((summary, _)) => decisions.push((name.clone(), summary.canary.join("; "))),
                    Err(e) => {
                        tracing::warn!(canary = %name, error = %e, "could not restore the weight")
                    }
                }
                live = self.lock();
                continue;
            }
            let stable = released(&store, &rollout.virtual_env, &rollout.app)
                .filter(|s| *s != rollout.deployment)
                .unwrap_or_else(|| rollout.stable.clone());
            let canary_clusters = own_clusters(&store, &index, &rollout.deployment, Some(&stable));
            let stable_clusters = own_clusters(&store, &index, &stable, Some(&rollout.deployment));
            let key = (rollout.phase, rollout.step, rollout.step_started_ms);
            let clock_from_ms = rollout.step_started_ms.max(self.started_ms);
            let entry = live.entry(name.clone()).or_insert_with(|| Live {
                analyzer: Analyzer::new(criterion(&plan)),
                key,
                started_ms: rollout.started_ms,
                progress: StepProgress {
                    clock_from_ms,
                    canary_requests: 0,
                },
                canary_clusters: Vec::new(),
                stable_clusters: Vec::new(),
                canary: Counts::default(),
                stable: Counts::default(),
                canary_step: Counts::default(),
                stable_step: Counts::default(),
                statistic: Analyzer::new(criterion(&plan)).statistic(),
                step_clock_from_ms: clock_from_ms,
            });
            if entry.key != key {
                if entry.key.0 == Phase::Paused && key.0 == Phase::Progressing {
                    // a human resumed: what made it pause is forgiven
                    entry.analyzer.reset();
                }
                entry.key = key;
                entry.progress = StepProgress {
                    clock_from_ms,
                    canary_requests: 0,
                };
                entry.canary_step = Counts::default();
                entry.stable_step = Counts::default();
                entry.step_clock_from_ms = clock_from_ms;
            }
            let c = sum(&counts, &canary_clusters);
            let s = sum(&counts, &stable_clusters);
            entry.canary_clusters = canary_clusters;
            entry.stable_clusters = stable_clusters;
            entry.canary.add(c);
            entry.stable.add(s);
            entry.canary_step.add(c);
            entry.stable_step.add(s);
            entry.progress.canary_requests += c.requests;
            let verdict = if entry.canary_clusters.is_empty() {
                Verdict::Healthy
            } else {
                entry.analyzer.observe(c, s)
            };
            entry.statistic = entry.analyzer.statistic();
            let Some(action) = decide(&plan, &rollout, &entry.progress, &verdict, now_ms) else {
                continue;
            };
            drop(live);
            match plane.change(|st| st.canary_decision(&name, &action, now_ms)) {
                Ok((summary, generation)) => {
                    let line = summary.canary.join("; ");
                    tracing::info!(canary = %name, generation, "{line}");
                    decisions.push((name.clone(), line));
                    super::notify::after_change(&plan.webhooks, &plane.store(), &name);
                }
                Err(e) => {
                    tracing::warn!(canary = %name, error = %e, "rollout decision not applied")
                }
            }
            live = self.lock();
        }
        drop(live);
        self.reports.want(wanted);
        decisions
    }
}

/// Runs the driver until `stop` says so. Only the leader drives rollouts
/// (always so with the file store; with replicas on etcd, the holder of the
/// lease, [`crate::etcd`]).
///
/// With replicas, every replica's Envoys report to their own replica: the
/// others ask their Envoys for the clusters the leader wants and publish the
/// sums of what they reported ([`crate::replicas`]); the leader adds what each
/// sum grew by since it last looked. (A replica first seen, or seen again
/// after a leadership change, only sets the baseline: its earlier counts were
/// measured for another leader.)
pub async fn run(plane: Arc<ControlPlane>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut baselines: BTreeMap<String, BTreeMap<String, Counts>> = BTreeMap::new();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let others = plane.replicas().map(|v| v.others()).unwrap_or_default();
        if !plane.is_leader() {
            if let Some(leader) = others.iter().find(|r| r.leader) {
                plane
                    .progressive()
                    .reports
                    .want(leader.lrs_wanted.iter().cloned().collect());
            }
            plane.progressive().forward();
            baselines.clear();
            continue;
        }
        let mut grown: BTreeMap<String, Counts> = BTreeMap::new();
        for r in others {
            if let Some(before) = baselines.get(&r.id) {
                for (cluster, now) in &r.lrs_counts {
                    let was = before.get(cluster).copied().unwrap_or_default();
                    // a replica that restarted counts from zero again
                    let d = if now.requests >= was.requests && now.errors >= was.errors {
                        Counts {
                            requests: now.requests - was.requests,
                            errors: now.errors - was.errors,
                        }
                    } else {
                        *now
                    };
                    if d != Counts::default() {
                        grown.entry(cluster.clone()).or_default().add(d);
                    }
                }
            }
            baselines.insert(r.id, r.lrs_counts);
        }
        if !grown.is_empty() {
            plane.progressive().add_remote(grown);
        }
        let p = plane.clone();
        // store changes build snapshots: keep them off the async workers
        let _ = tokio::task::spawn_blocking(move || p.progressive().tick(&p, now_unix_ms())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progressive::store_ops::Command;
    use crate::test_fixtures::{plane_with, WEB_V1, WEB_V2};
    use envoy_types::pb::envoy::config::endpoint::v3::{ClusterStats, UpstreamLocalityStats};
    use envoy_types::pb::envoy::service::load_stats::v3::LoadStatsRequest;

    const CANARY: &str = "kind: Canary\nmetadata: {name: c}\nspec: {virtualEnvironment: team-a, app: web, deployment: web-v2, steps: [\"10%\", \"100%\"], analysis: {stepTime: 2s, minRequests: 5, bakeTime: 1s}}\n";

    fn plane() -> ControlPlane {
        plane_with(&format!("{WEB_V1}---\n{WEB_V2}---\n{CANARY}"))
    }

    /// One Envoy's report: `(cluster, successes, errors)`.
    fn report(p: &ControlPlane, counts: &[(&str, u64, u64)]) {
        let r = LoadStatsRequest {
            node: None,
            cluster_stats: counts
                .iter()
                .map(|(c, ok, err)| ClusterStats {
                    cluster_name: (*c).into(),
                    upstream_locality_stats: vec![UpstreamLocalityStats {
                        total_successful_requests: *ok,
                        total_error_requests: *err,
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
        };
        p.progressive().reports.record("envoy-1", &r);
    }

    const V1: &str = "web/frontend/f1/round-robin";
    const V2: &str = "web/frontend/f2/round-robin";

    #[test]
    fn the_driver_names_the_clusters_advances_on_counts_and_releases() {
        let p = plane();
        let t0 = now_unix_ms();
        p.progressive().tick(&p, t0);
        // every Canary with steps is reported on before it starts
        assert_eq!(
            p.progressive().reports.wanted(),
            [V1.to_string(), V2.to_string()].into()
        );
        p.change(|s| s.canary_command("c", Command::Start, "t", t0))
            .unwrap();
        // time alone does not advance a step: it needs its sample
        let t = t0 + 2_500;
        assert!(p.progressive().tick(&p, t).is_empty());
        report(&p, &[(V1, 90, 1), (V2, 10, 0)]);
        let d = p.progressive().tick(&p, t + 100);
        assert!(d[0].1.contains("progressing 100%"), "{d:?}");
        report(&p, &[(V2, 100, 1)]);
        let d = p.progressive().tick(&p, t + 2_200);
        assert!(d[0].1.contains("promoting 100%"), "{d:?}");
        let d = p.progressive().tick(&p, t + 3_300);
        assert!(d[0].1.contains("succeeded"), "{d:?}");
        assert_eq!(
            crate::progressive::store_ops::released(&p.store(), "team-a", "web").as_deref(),
            Some("web-v2")
        );
    }

    #[test]
    fn the_driver_aborts_a_crashing_canary_but_not_for_the_stables_errors() {
        let p = plane();
        let t0 = now_unix_ms();
        p.change(|s| s.canary_command("c", Command::Start, "t", t0))
            .unwrap();
        // the stable failing alone is no reason
        report(&p, &[(V1, 0, 90), (V2, 10, 0)]);
        assert!(p.progressive().tick(&p, t0 + 100).is_empty());
        // a handful of canary 5xx is
        report(&p, &[(V1, 90, 0), (V2, 0, 10)]);
        let d = p.progressive().tick(&p, t0 + 200);
        assert!(d[0].1.contains("aborted 0%"), "{d:?}");
        let live = p.progressive().live("c").unwrap();
        assert_eq!(live.canary.errors, 10);
        assert!(live.statistic.value >= live.statistic.bound);
    }
}
