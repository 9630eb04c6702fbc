//! The driver, owned by the process (`daemon` runs it): every [`TICK`] it
//! gathers (the served store and index, the Envoys' reports — on etcd also
//! what the other replicas' Envoys reported), assesses them ([`Assessor`],
//! pure) and applies the moves as store changes (validated, persisted, served
//! — an abort is one config version, pushed through ECDS). What it measured
//! goes to the control plane's [`Observed`](super::observed::Observed), for
//! `canary status` and `/metrics`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::analyzer::Counts;
use super::assess::{Assessor, Move};
use crate::clock::now_unix_ms;
use crate::serve::ControlPlane;

/// How often the driver looks at the reports.
pub const TICK: Duration = Duration::from_millis(100);

/// The driver's state: what it follows, and what the other replicas' Envoys
/// reported since the last look (leading on etcd).
#[derive(Debug)]
pub struct Driver {
    assessor: Assessor,
    remote: BTreeMap<String, Counts>,
}

impl Default for Driver {
    fn default() -> Self {
        Self {
            assessor: Assessor::new(now_unix_ms()),
            remote: BTreeMap::new(),
        }
    }
}

impl Driver {
    /// Leading: counts the other replicas' Envoys reported, for the next look.
    pub fn add_remote(&mut self, counts: BTreeMap<String, Counts>) {
        for (cluster, n) in counts {
            self.remote.entry(cluster).or_default().add(n);
        }
    }

    /// One look at the reports; returns the decisions taken (for logs and tests).
    pub fn tick(&mut self, plane: &ControlPlane, now_ms: u64) -> Vec<(String, String)> {
        let observed = plane.progressive();
        // gather
        let store = plane.store();
        let index = plane.index();
        let mut counts = observed.reports.take();
        for (cluster, n) in std::mem::take(&mut self.remote) {
            counts.entry(cluster).or_default().add(n);
        }
        // assess
        let assessment = self.assessor.assess(&store, &index, &counts, now_ms);
        observed.set_measured(self.assessor.measured());
        // apply
        let mut decisions = Vec::new();
        for m in assessment.moves {
            apply(plane, m, now_ms, &mut decisions);
        }
        observed.reports.want(assessment.wanted);
        decisions
    }
}

/// Makes one move as a store change; a decision taken is added to `decisions`.
fn apply(plane: &ControlPlane, m: Move, now_ms: u64, decisions: &mut Vec<(String, String)>) {
    match m {
        Move::End { canary } => {
            if let Err(e) = plane.change(|s| s.canary_gone(&canary, now_ms)) {
                tracing::warn!(%canary, error = %e, "could not end the rollout");
            }
        }
        Move::Reconcile { canary } => match plane.change(|s| s.canary_reconcile(&canary, now_ms)) {
            Ok((summary, _)) => decisions.push((canary, summary.canary.join("; "))),
            Err(e) => tracing::warn!(%canary, error = %e, "could not restore the weight"),
        },
        Move::Decide {
            canary,
            action,
            webhooks,
        } => match plane.change(|st| st.canary_decision(&canary, &action, now_ms)) {
            Ok((summary, generation)) => {
                let line = summary.canary.join("; ");
                tracing::info!(%canary, generation, "{line}");
                super::notify::after_change(&webhooks, &plane.store(), &canary);
                decisions.push((canary, line));
            }
            Err(e) => tracing::warn!(%canary, error = %e, "rollout decision not applied"),
        },
    }
}

/// What the other replicas' published load sums grew by since `baselines`
/// (which become the sums now). A replica seen for the first time only sets
/// its baseline; one whose sums went down restarted, and counts from zero.
pub fn remote_growth(
    baselines: &mut BTreeMap<String, BTreeMap<String, Counts>>,
    others: Vec<crate::replicas::ReplicaStatus>,
) -> BTreeMap<String, Counts> {
    let mut grown: BTreeMap<String, Counts> = BTreeMap::new();
    for r in others {
        if let Some(before) = baselines.get(&r.id) {
            for (cluster, now) in &r.lrs_counts {
                let was = before.get(cluster).copied().unwrap_or_default();
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
    grown
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
    let driver = Arc::new(std::sync::Mutex::new(Driver::default()));
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
        let grown = remote_growth(&mut baselines, others);
        let (p, d) = (plane.clone(), driver.clone());
        // store changes build snapshots: keep them off the async workers
        let _ = tokio::task::spawn_blocking(move || {
            let mut d = d.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if !grown.is_empty() {
                d.add_remote(grown);
            }
            d.tick(&p, now_unix_ms())
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leader_adds_what_other_replicas_sums_grew_by() {
        let replica = |id: &str, sums: &[(&str, u64, u64)]| crate::replicas::ReplicaStatus {
            id: id.into(),
            xds_addr: String::new(),
            api_addr: String::new(),
            leader: false,
            generation: 1,
            at_unix_ms: 0,
            envoys: Vec::new(),
            lrs_wanted: Vec::new(),
            lrs_counts: sums
                .iter()
                .map(|(c, requests, errors)| {
                    (
                        c.to_string(),
                        Counts {
                            requests: *requests,
                            errors: *errors,
                        },
                    )
                })
                .collect(),
        };
        let mut base = BTreeMap::new();
        // first sight: a baseline only (those counts were another leader's)
        let g = remote_growth(&mut base, vec![replica("r1", &[("c", 100, 5)])]);
        assert!(g.is_empty());
        let g = remote_growth(
            &mut base,
            vec![
                replica("r1", &[("c", 130, 6), ("d", 4, 0)]),
                replica("r2", &[("c", 50, 0)]),
            ],
        );
        assert_eq!(
            g["c"],
            Counts {
                requests: 30,
                errors: 1
            }
        );
        assert_eq!(
            g["d"],
            Counts {
                requests: 4,
                errors: 0
            }
        );
        // r1 restarted: its sums start again from zero
        let g = remote_growth(
            &mut base,
            vec![
                replica("r1", &[("c", 7, 0)]),
                replica("r2", &[("c", 50, 0)]),
            ],
        );
        assert_eq!(
            g["c"],
            Counts {
                requests: 7,
                errors: 0
            }
        );
    }
    use crate::clock::now_unix_ms;
    use crate::state::rollout_ops::Command;
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
        let mut driver = Driver::default();
        let t0 = now_unix_ms();
        driver.tick(&p, t0);
        // every Canary with steps is reported on before it starts
        assert_eq!(
            p.progressive().reports.wanted(),
            [V1.to_string(), V2.to_string()].into()
        );
        p.change(|s| s.canary_command("c", Command::Start, "t", t0))
            .unwrap();
        // time alone does not advance a step: it needs its sample
        let t = t0 + 2_500;
        assert!(driver.tick(&p, t).is_empty());
        report(&p, &[(V1, 90, 1), (V2, 10, 0)]);
        let d = driver.tick(&p, t + 100);
        assert!(d[0].1.contains("progressing 100%"), "{d:?}");
        report(&p, &[(V2, 100, 1)]);
        let d = driver.tick(&p, t + 2_200);
        assert!(d[0].1.contains("promoting 100%"), "{d:?}");
        let d = driver.tick(&p, t + 3_300);
        assert!(d[0].1.contains("succeeded"), "{d:?}");
        assert_eq!(
            crate::state::rollout_ops::released(&p.store(), "team-a", "web").as_deref(),
            Some("web-v2")
        );
    }

    #[test]
    fn the_driver_aborts_a_crashing_canary_but_not_for_the_stables_errors() {
        let p = plane();
        let mut driver = Driver::default();
        let t0 = now_unix_ms();
        p.change(|s| s.canary_command("c", Command::Start, "t", t0))
            .unwrap();
        // the stable failing alone is no reason
        report(&p, &[(V1, 0, 90), (V2, 10, 0)]);
        assert!(driver.tick(&p, t0 + 100).is_empty());
        // a handful of canary 5xx is
        report(&p, &[(V1, 90, 0), (V2, 0, 10)]);
        let d = driver.tick(&p, t0 + 200);
        assert!(d[0].1.contains("aborted 0%"), "{d:?}");
        let live = p.progressive().measured("c").unwrap();
        assert_eq!(live.canary.errors, 10);
        assert!(live.statistic.value >= live.statistic.bound);
    }
}
