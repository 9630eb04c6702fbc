//! `GET /v1/canaries/{name}/series` (role `read`, like every GET under
//! `/v1/canar…`): a progressive rollout's LRS counts over time, so the
//! dashboard plots per-version requests and error rates from the rollout's
//! start, not only from when the page was opened.
//!
//! A task samples, once a second, the cumulative counts the analyzer judges
//! ([`crate::progressive::driver::Progressive::live`]) of every rollout that is
//! still running (and once more when it ended); at most [`MAX_SAMPLES`] per
//! rollout are kept, in memory only (a restarted control plane starts again).
//! With replicas on etcd the counts are the leader's (the one that drives the
//! rollouts); another replica answers with the samples it has.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use axum::extract::Path;
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Serialize;

use crate::progressive::analyzer::Counts;
use crate::serve::ControlPlane;
use crate::xds::cache::now_unix_ms;

/// Samples kept per rollout: 15 minutes at one a second.
pub const MAX_SAMPLES: usize = 900;
/// How often the counts are sampled.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// One sample of a rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    pub at_unix_ms: u64,
    pub phase: String,
    pub weight: String,
    /// Since the rollout (or the control plane) started, as `/v1/canaries` says.
    pub canary: Counts,
    pub stable: Counts,
}

/// The answer of `GET /v1/canaries/{name}/series`, oldest sample first.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SeriesView {
    pub name: String,
    pub interval_ms: u64,
    pub samples: Vec<Sample>,
}

/// Every rollout's samples.
#[derive(Debug, Default)]
pub struct Series(Mutex<BTreeMap<String, VecDeque<Sample>>>);

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
            let Some(live) = plane.progressive().live(name) else {
                continue;
            };
            samples.push_back(Sample {
                at_unix_ms: now_ms,
                phase: rollout.phase.as_str().to_string(),
                weight: rollout.weight.clone(),
                canary: live.canary,
                stable: live.stable,
            });
            while samples.len() > MAX_SAMPLES {
                samples.pop_front();
            }
        }
    }

    fn of(&self, name: &str) -> Vec<Sample> {
        let all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        all.get(name)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// The route, with its sampler running as long as `plane` lives (when there
/// is a Tokio runtime to run it on).
pub fn routes(plane: &Arc<ControlPlane>) -> Router<Arc<ControlPlane>> {
    let series = Arc::new(Series::default());
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(sampler(Arc::downgrade(plane), series.clone()));
    }
    Router::new()
        .route("/v1/canaries/{name}/series", get(series_of))
        .layer(Extension(series))
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

async fn series_of(
    Extension(series): Extension<Arc<Series>>,
    Path(name): Path<String>,
) -> Json<SeriesView> {
    Json(SeriesView {
        samples: series.of(&name),
        name,
        interval_ms: INTERVAL.as_millis() as u64,
    })
}
