//! `GET /v1/canaries[/{name}]`: progressive rollouts.

use serde::{Deserialize, Serialize};

/// Every progressive rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryListView {
    pub canaries: Vec<CanaryStatusView>,
}

/// One rollout: where it is, what it measured, what it decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatusView {
    pub name: String,
    pub virtual_env: String,
    pub app: String,
    /// The canary AppDeployment.
    pub deployment: String,
    /// The released AppDeployment it is judged against.
    pub stable: Option<String>,
    /// `pending`, `progressing`, `paused`, `gated`, `promoting`, ...
    pub phase: String,
    /// 1-based; 0 before the start.
    pub step: usize,
    pub steps: Vec<String>,
    pub weight: String,
    /// The last decision.
    pub reason: String,
    pub events: Vec<EventView>,
    /// The Envoys that report load, and when they last did.
    pub reporting: Vec<ReportingView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_elapsed_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<CanaryCountsView>,
    pub statistic: StatisticView,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_clusters: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_clusters: Option<Vec<String>>,
}

/// One entry of a rollout's event history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    pub at: String,
    pub at_unix_ms: u64,
    pub phase: String,
    pub step: usize,
    pub weight: String,
    pub reason: String,
    pub who: String,
}

/// An Envoy reporting load (LRS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportingView {
    pub node: String,
    pub last_report_ms_ago: u64,
}

/// How each step is judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisView {
    pub step_time_ms: u64,
    pub min_requests: u64,
    pub max_wait_ms: u64,
    pub max_error_ratio: f64,
    pub max_error_rate: Option<f64>,
    pub min_error_rate: f64,
    /// `abort` or `pause`.
    pub on_failure: String,
    /// The steps that wait for `promote`.
    pub gates: Vec<String>,
    pub bake_time_ms: u64,
}

/// Requests and errors of each version, since the start and in this step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryCountsView {
    pub canary: CountsView,
    pub stable: CountsView,
    pub canary_step: CountsView,
    pub stable_step: CountsView,
}

/// Finished requests and errors (5xx).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountsView {
    pub requests: u64,
    pub errors: u64,
}

/// The error test closest to its bound.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatisticView {
    /// `shift`, `crash` or `cap`.
    pub test: String,
    pub value: f64,
    pub bound: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::assert_round_trip;
    use serde_json::json;

    #[test]
    fn canaries_round_trip() {
        let counts = json!({"requests": 10, "errors": 1});
        let started = json!({"name": "c", "virtualEnv": "team-a", "app": "web",
            "deployment": "web-v2", "stable": "web-v1", "phase": "progressing", "step": 1,
            "steps": ["10%", "50%"], "weight": "10%", "reason": "started",
            "events": [{"at": "t", "atUnixMs": 1, "phase": "progressing", "step": 0,
                        "weight": "10%", "reason": "started", "who": "admin"}],
            "reporting": [{"node": "envoy-1", "lastReportMsAgo": 300}],
            "analysis": {"stepTimeMs": 60000, "minRequests": 100, "maxWaitMs": 600000,
                "maxErrorRatio": 2.0, "maxErrorRate": null, "minErrorRate": 0.001,
                "onFailure": "abort", "gates": ["50%"], "bakeTimeMs": 0},
            "stepElapsedMs": 1200,
            "counts": {"canary": counts, "stable": counts, "canaryStep": counts, "stableStep": counts},
            "statistic": {"test": "shift", "value": 0.5, "bound": 12.0},
            "canaryClusters": ["web-v2"], "stableClusters": ["web-v1"]});
        assert_round_trip::<CanaryStatusView>(started.clone());
        let pending = json!({"name": "c", "virtualEnv": "team-a", "app": "web",
            "deployment": "web-v2", "stable": null, "phase": "pending", "step": 0,
            "steps": [], "weight": "0%", "reason": "not started", "events": [], "reporting": [],
            "statistic": {"test": "shift", "value": 0.0, "bound": 12.0}});
        assert_round_trip::<CanaryListView>(json!({"canaries": [started, pending]}));
    }
}
