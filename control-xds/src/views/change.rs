//! The answer to every change (apply, publish, delete, release, rollback,
//! keys, canary commands).

use serde::{Deserialize, Serialize};

use super::LiveView;

/// What a change did, the generation to wait for, and (added by the CLI when
/// it waited) where the Envoys are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeView {
    /// The change's id (its `Idempotency-Key`), once it was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
    /// Resource ids (`Kind/name`).
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: Vec<String>,
    pub deleted: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub releases: Vec<ReleaseView>,
    /// Context-key changes, e.g. `added k-1a2b3c4d (signing)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    /// Progressive rollout changes, e.g. `web-v2-canary: progressing 10%`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub canary: Vec<String>,
    /// Whether the store changed at all.
    pub changed: bool,
    pub generation: u64,
    /// The config version Envoys are sent for `generation`.
    pub version: String,
    /// Where every Envoy is with the change (the CLI adds it after waiting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<LiveView>,
}

/// One entry of a virtual environment's release history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseView {
    pub id: String,
    pub virtual_env: String,
    pub app: String,
    /// What the change released; `None` when it removed the app's release.
    pub deployment: Option<String>,
    /// What was released before.
    pub previous: Option<String>,
    /// `release`, `rollback` or `apply`.
    pub action: String,
    /// For a rollback: the id of the release it undid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undoes: Option<String>,
    pub who: String,
    /// The id of the change that made this record (the request's
    /// `Idempotency-Key`, or one the server made up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
    /// RFC 3339, UTC.
    pub at: String,
    pub at_unix_ms: u64,
}

/// `GET /v1/history`: release records, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryView {
    pub history: Vec<ReleaseView>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::assert_round_trip;
    use serde_json::json;

    fn record() -> serde_json::Value {
        json!({"id": "r-2", "virtualEnv": "team-a", "app": "web", "deployment": "web-v2",
            "previous": null, "action": "rollback", "undoes": "r-1", "who": "admin (says joe)",
            "at": "2026-12-07T09:00:00Z", "atUnixMs": 1})
    }

    #[test]
    fn changes_round_trip() {
        assert_round_trip::<ChangeView>(json!({"created": ["Environment/dev"], "updated": [],
            "unchanged": ["AppDeployment/web-v1"], "deleted": [], "changed": true,
            "generation": 2, "version": "2"}));
        assert_round_trip::<ChangeView>(json!({"created": [], "updated": [], "unchanged": [],
            "deleted": [], "releases": [record()], "keys": ["added k-1 (signing)"],
            "canary": ["c: progressing 10%"], "changed": true, "generation": 3, "version": "3",
            "live": {"generation": 3, "envoys": [], "pulling": [], "live": 0, "connected": 0,
                "complete": true, "elapsedMs": 12}}));
        assert_round_trip::<HistoryView>(json!({"history": [record()]}));
    }
}
