//! `GET /v1/status`: releases, canaries, Envoys, replicas, pulling Envoys and
//! refused TLS handshakes.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

/// The control plane at a glance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    /// The store generation.
    pub generation: u64,
    /// The config version of `generation`.
    pub version: String,
    /// The version in the snapshot served now (`None` before the first).
    pub served_version: Option<String>,
    /// How many resources the store holds.
    pub resources: usize,
    pub context_kids: Vec<String>,
    pub signing_kid: Option<String>,
    pub releases: Vec<ReleaseStatusView>,
    pub canaries: Vec<CanarySummaryView>,
    pub envoys: Vec<NodeView>,
    /// Every replica (replicas on etcd only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<Vec<ReplicaSummaryView>>,
    pub pulling: Vec<PollView>,
    pub tls_refused: TlsRefusedView,
}

/// A virtual environment's release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseStatusView {
    pub virtual_env: String,
    pub environment: String,
    /// The release id (`None` before the first release).
    pub id: Option<String>,
    /// App → released AppDeployment.
    pub apps: BTreeMap<String, String>,
}

/// A Canary, briefly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanarySummaryView {
    pub name: String,
    pub virtual_env: String,
    pub app: String,
    pub deployment: String,
    pub weight: Option<String>,
    /// How many match rules it has.
    pub match_rules: usize,
    /// The rollout's phase (a Canary with steps only).
    pub rollout: Option<String>,
}

/// One Envoy as the xDS server knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeView {
    pub id: String,
    pub cluster: String,
    pub connected: bool,
    /// Open ADS streams (2 during a hot restart).
    pub streams: usize,
    pub last_seen_unix_ms: u64,
    /// Per xDS type by short name (`CDS`, ...), in push order.
    pub types: IndexMap<String, XdsTypeView>,
    /// The replica that holds it (replicas on etcd only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
}

/// What one Envoy has of one xDS type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct XdsTypeView {
    pub sent_version: Option<String>,
    pub acked_version: Option<String>,
    /// The last NACK, kept after later ACKs.
    pub last_nack: Option<NackView>,
}

/// A NACK: the version Envoy rejected and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NackView {
    pub version: String,
    pub message: String,
    /// Envoy's `error_detail.code` (a gRPC status code).
    pub code: i32,
    pub at_unix_ms: u64,
}

/// A replica on etcd, briefly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaSummaryView {
    pub id: String,
    pub xds_addr: String,
    pub api_addr: String,
    pub leader: bool,
    pub generation: u64,
    /// How many Envoys it holds.
    pub envoys: usize,
    pub at_unix_ms: u64,
}

/// A pull-mode Envoy's last poll of `/v1/config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PollView {
    /// The node id the filter sent (`x-switchyard-node`).
    pub id: String,
    pub last_poll_unix_ms: u64,
    /// The store generation it was given.
    pub generation: u64,
}

/// The latest refused TLS handshakes, with a total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsRefusedView {
    pub latest: Vec<RefusalView>,
    pub total: u64,
}

/// One refused TLS handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefusalView {
    /// `xds` or `api`.
    pub listener: String,
    pub peer: String,
    pub reason: String,
    pub at_unix_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::assert_round_trip;
    use serde_json::json;

    #[test]
    fn status_round_trips() {
        let types = json!({
            "CDS": {"sentVersion": "2", "ackedVersion": "2", "lastNack": null},
            "EDS": {"sentVersion": "2", "ackedVersion": "1",
                    "lastNack": {"version": "2", "message": "bad", "code": 13, "atUnixMs": 9}},
            "ECDS": {"sentVersion": null, "ackedVersion": null, "lastNack": null}});
        assert_round_trip::<StatusView>(json!({
            "generation": 2, "version": "2", "servedVersion": "2", "resources": 3,
            "contextKids": ["k-1"], "signingKid": "k-1",
            "releases": [{"virtualEnv": "team-a", "environment": "dev", "id": "r-1", "apps": {"web": "web-v1"}},
                         {"virtualEnv": "team-b", "environment": "dev", "id": null, "apps": {}}],
            "canaries": [{"name": "c", "virtualEnv": "team-a", "app": "web", "deployment": "web-v2",
                          "weight": "10%", "matchRules": 1, "rollout": "progressing"},
                         {"name": "d", "virtualEnv": "team-a", "app": "web", "deployment": "web-v3",
                          "weight": null, "matchRules": 0, "rollout": null}],
            "envoys": [{"id": "e", "cluster": "c", "connected": true, "streams": 1,
                        "lastSeenUnixMs": 7, "types": types, "replica": "r1"}],
            "replicas": [{"id": "r1", "xdsAddr": "a", "apiAddr": "b", "leader": true,
                          "generation": 2, "envoys": 1, "atUnixMs": 8}],
            "pulling": [{"id": "p", "lastPollUnixMs": 5, "generation": 2}],
            "tlsRefused": {"latest": [{"listener": "xds", "peer": "127.0.0.1:1", "reason": "r", "atUnixMs": 3}], "total": 1}}));
        assert_round_trip::<StatusView>(json!({
            "generation": 0, "version": "0", "servedVersion": null, "resources": 0,
            "contextKids": [], "signingKid": null, "releases": [], "canaries": [], "envoys": [],
            "pulling": [], "tlsRefused": {"latest": [], "total": 0}}));
    }
}
