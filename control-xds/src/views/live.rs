//! `GET /v1/live`: where every Envoy is with respect to a generation.

use serde::{Deserialize, Serialize};

use super::PollView;

/// Where every connected Envoy is with respect to `generation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveView {
    pub generation: u64,
    /// ADS-connected Envoys.
    pub envoys: Vec<EnvoyLiveView>,
    /// Pull-mode Envoys (not waited for).
    pub pulling: Vec<PollView>,
    /// How many Envoys route by the generation.
    pub live: usize,
    /// How many Envoys are connected.
    pub connected: usize,
    /// Every connected Envoy is live.
    pub complete: bool,
    /// How long the change and the wait took (the CLI adds it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_ms: Option<u64>,
}

/// One Envoy in a rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvoyLiveView {
    pub id: String,
    /// The replica it is connected to (replicas on etcd only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    /// How long after the wait began it was first seen live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_after_ms: Option<u64>,
    #[serde(flatten)]
    pub state: EnvoyStateView,
}

/// Where one Envoy is: `{"state": "live" | "nacked" | "pending", ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum EnvoyStateView {
    /// Every type ACKed at or after the generation.
    Live,
    /// Envoy NACKed a version at or after the generation.
    Nacked {
        /// The type (`CDS`, `EDS`, ...) NACKed.
        kind: String,
        version: String,
        /// Envoy's error message.
        message: String,
    },
    /// Not (yet) ACKed for some type. (The field is `waiting_for` on the
    /// wire: the enum's `rename_all` renames variants only, and the contract
    /// keeps the name it has.)
    Pending {
        /// The types not ACKed at or after the generation.
        waiting_for: Vec<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::assert_round_trip;
    use serde_json::json;

    #[test]
    fn live_round_trips() {
        assert_round_trip::<LiveView>(json!({"generation": 4, "envoys": [
            {"id": "a", "replica": "r1", "liveAfterMs": 20, "state": "live"},
            {"id": "b", "state": "nacked", "kind": "LDS", "version": "4", "message": "bad"},
            {"id": "c", "state": "pending", "waiting_for": ["CDS", "RDS"]}],
            "pulling": [{"id": "p", "lastPollUnixMs": 5, "generation": 3}],
            "live": 1, "connected": 3, "complete": false}));
    }
}
