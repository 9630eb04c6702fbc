//! The samples behind `GET /v1/canaries/{name}/series` (role `read`): a
//! progressive rollout's LRS counts over time, so the
//! dashboard plots per-version requests and error rates from the rollout's
//! start, not only from when the page was opened.
//!
//! A task samples, once a second, the cumulative counts the analyzer judges
//! ([`crate::progressive::observed::Observed::measured`]) of every rollout that is
//! still running (and once more when it ended); at most [`MAX_SAMPLES`] per
//! rollout are kept, in memory only (a restarted control plane starts again).
//! With replicas on etcd the counts are the leader's (the one that drives the
//! rollouts); another replica answers with the samples it has.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use crate::clock::now_unix_ms;
use crate::serve::ControlPlane;
use crate::views::{CountsView, SampleView, SeriesView};

/// Samples kept per rollout: 15 minutes at one a second.
pub const MAX_SAMPLES: usize = 900;
/// How often the counts are sampled.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// Every rollout's samples.
#[derive(Debug, Default)]
pub struct Series(Mutex<BTreeMap<String, VecDeque<SampleView>>>);

impl Series {
    /// One look at `plane`'s rollouts: a sample of each running one (and of one
    /// that just ended); the samples of rollouts that are gone are dropped.
    pub fn sample(&self, plane: &ControlPlane, now_ms: u64) {
        let store = plane.store();
        let mut all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        all.retain(|name, _| store.rollouts.contains_key(name));
        for (name, rollout) in &store.rollouts {
            let samples = all.entry(name.clone()).or_default();
            let ended_before = samples
                .back()
                .is_some_and(|s| s.phase == rollout.phase.as_str());
            if rollout.phase.terminal() && ended_before {
                continue;
            }
            let Some(live) = plane.progressive().measured(name) else {
                continue;
            };
            let counts = |c: crate::progressive::analyzer::Counts| CountsView {
                requests: c.requests,
                errors: c.errors,
            };
            samples.push_back(SampleView {
                at_unix_ms: now_ms,
                phase: rollout.phase.as_str().to_string(),
                weight: rollout.weight.clone(),
                canary: counts(live.canary),
                stable: counts(live.stable),
            });
            while samples.len() > MAX_SAMPLES {
                samples.pop_front();
            }
        }
    }

    /// The answer for `name`'s rollout (no samples when there are none).
    pub fn view(&self, name: &str) -> SeriesView {
        let all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        SeriesView {
            name: name.to_string(),
            interval_ms: INTERVAL.as_millis() as u64,
            samples: all
                .get(name)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default(),
        }
    }

    /// A sampler that runs as long as `plane` lives (when there is a Tokio
    /// runtime to run it on).
    pub fn start(plane: &Arc<ControlPlane>) -> Arc<Series> {
        let series = Arc::new(Series::default());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(sampler(Arc::downgrade(plane), series.clone()));
        }
        series
    }
}

async fn sampler(plane: Weak<ControlPlane>, series: Arc<Series>) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let Some(plane) = plane.upgrade() else { return };
        series.sample(&plane, now_unix_ms());
    }
}
