//! The HTTP API's answers as types: what `switchyard serve` sends and what
//! the CLI, the replicas and the tests read. They are the wire contract
//! (field names and shapes are kept; fields are added, never renamed), so
//! they depend on nothing of the control plane: the server maps its state
//! into them (`crate::api`), the CLI prints them (`crate::cli`).

mod canary;
mod change;
mod explain;
mod live;
mod status;
mod tokens;

pub use canary::{
    AnalysisView, CanaryCountsView, CanaryListView, CanaryStatusView, CountsView, EventView,
    ReportingView, SampleView, SeriesView, StatisticView,
};
pub use change::{ChangeView, HistoryView, ReleaseView};
pub use explain::{ExplainOutcome, ExplainView, IstioSubsetView, RefusedView, RoutedView};
pub use live::{EnvoyLiveView, EnvoyStateView, LiveView};
pub use status::{
    CanarySummaryView, NackView, NodeView, PollView, RefusalView, ReleaseStatusView,
    ReplicaSummaryView, StatusView, TlsRefusedView, XdsTypeView,
};
pub use tokens::{TokenCreatedView, TokenListView, TokenRevokedView, TokenView, WhoAmIView};

use serde::{Deserialize, Serialize};

/// An error answer: `{error, message, problems?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorView {
    /// The machine-readable code (`bad_request`, `not_found`, ...).
    pub error: String,
    pub message: String,
    /// Every problem of invalid resources (`invalid_resources`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problems: Option<Vec<ProblemView>>,
    /// The change whose outcome is unknown (`outcome_unknown`): send it again
    /// with this `Idempotency-Key` to learn its outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
}

/// One problem with a resource file, located.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProblemView {
    pub file: String,
    pub line: usize,
    pub column: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub reason: String,
}

impl std::fmt::Display for ProblemView {
    /// `file:line:column: resource: field: reason`, as `validate` prints it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        for part in [&self.resource, &self.field].into_iter().flatten() {
            write!(f, "{part}: ")?;
        }
        f.write_str(&self.reason)
    }
}

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthView {
    pub ok: bool,
}

/// `GET /v1/resources`: every resource, secrets redacted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourcesView {
    pub resources: Vec<switchyard_engine::Resource>,
}

/// `switchyard validate`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidateView {
    pub valid: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clusters: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<ProblemView>>,
}

/// Serializes `view` and reads it back through `T`, for the tests of every
/// view: the JSON must come back identical.
#[cfg(test)]
pub(crate) fn assert_round_trip<T>(json: serde_json::Value)
where
    T: Serialize + serde::de::DeserializeOwned,
{
    let view: T = serde_json::from_value(json.clone()).expect("the answer reads as its view");
    let again = serde_json::to_string(&view).expect("the view serializes");
    assert_eq!(again, serde_json::to_string(&json).unwrap());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_round_trip() {
        assert_round_trip::<ErrorView>(json!({"error": "not_found", "message": "m"}));
        assert_round_trip::<ErrorView>(
            json!({"error": "invalid_resources", "message": "1 problem found; nothing was changed",
            "problems": [{"file": "x.yaml", "line": 3, "column": 1, "resource": "Environment/dev", "reason": "r"},
                         {"file": "x.yaml", "line": 4, "column": 2, "field": "spec", "reason": "r"}]}),
        );
        assert_round_trip::<HealthView>(json!({"ok": true}));
        assert_round_trip::<ValidateView>(json!({"valid": true, "resources": 3, "clusters": 2}));
        assert_round_trip::<ValidateView>(
            json!({"valid": false, "errors": [{"file": "f", "line": 1, "column": 1, "reason": "r"}]}),
        );
    }

    #[test]
    fn problems_print_as_validate_does() {
        let p = ProblemView {
            file: "x.yaml".into(),
            line: 3,
            column: 5,
            resource: Some("Environment/dev".into()),
            field: Some("spec.subPath".into()),
            reason: "must not be empty".into(),
        };
        assert_eq!(
            p.to_string(),
            "x.yaml:3:5: Environment/dev: spec.subPath: must not be empty"
        );
    }
}
