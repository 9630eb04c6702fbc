//! `POST /v1/explain` and `switchyard explain`: the engine's decision for a
//! described request.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

/// A decision or a refusal, with its human form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplainView {
    #[serde(flatten)]
    pub outcome: ExplainOutcome,
    /// Istio mode (`explain --config … --istio-namespace`): where Istio sends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub istio: Option<IstioSubsetView>,
    /// The decision in words (the API's answer; the CLI prints it instead of JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub human: Option<String>,
}

impl ExplainView {
    /// Whether the request was routed.
    pub fn routed(&self) -> bool {
        matches!(self.outcome, ExplainOutcome::Routed(_))
    }
}

/// Routed (`routed: true`) or refused (`routed: false`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ExplainOutcome {
    Routed(Box<RoutedView>),
    Refused(RefusedView),
}

/// Where a routed request goes, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoutedView {
    /// Always `true`.
    pub routed: bool,
    pub environment: String,
    pub virtual_environment: String,
    pub app: String,
    pub deployment: String,
    pub component: String,
    pub component_version: String,
    pub cluster: String,
    /// `explicit`, `release` or a canary decision.
    pub decision: String,
    /// The component's vars, in declaration order.
    pub vars: IndexMap<String, String>,
    pub forwarded_path: String,
    pub stripped_headers: Vec<String>,
}

/// A refused request: the status the filter answers and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedView {
    /// Always `false`.
    pub routed: bool,
    pub status: u32,
    pub error: String,
    pub message: String,
}

/// Istio's view of a routed request: selection header, host, subset, cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IstioSubsetView {
    pub header: String,
    pub host: String,
    pub subset: String,
    pub cluster: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::assert_round_trip;
    use serde_json::json;

    #[test]
    fn explains_round_trip() {
        assert_round_trip::<ExplainView>(json!({"routed": true, "environment": "dev",
            "virtualEnvironment": "team-a", "app": "web", "deployment": "web-v1",
            "component": "hello", "componentVersion": "1.0.0", "cluster": "hello-1-0-0",
            "decision": "release", "vars": {"b": "2", "a": "1"}, "forwardedPath": "/hello",
            "strippedHeaders": ["kf-dep"], "istio": {"header": "h: k", "host": "hello.default.svc.cluster.local",
            "subset": "v1", "cluster": "outbound|80|v1|hello"}, "human": "GET /dev/hello → …"}));
        let refused = json!({"routed": false, "status": 404,
            "error": "environment_not_found", "message": "no environment"});
        assert_round_trip::<ExplainView>(refused.clone());
        let view: ExplainView = serde_json::from_value(refused).unwrap();
        assert!(!view.routed());
    }
}
