//! `switchyard explain` and `POST /v1/explain`: route a described request with
//! the real engine and say why.
//!
//! In HCMs Switchyard renders or serves, Envoy leaves the path to the filter
//! (README "Paths"), so the engine's answer is the request's answer — except
//! for what Envoy refuses before any filter runs, which is said as such.

use switchyard_engine::{DecisionKind, Index, Request};

use crate::views::{ExplainOutcome, ExplainView, RefusedView, RoutedView};

/// Why Envoy (1.40) refuses a request target before any filter runs: a `#`
/// anywhere in it (a fragment is never sent to a server) gets Envoy's own 400
/// with an empty body, whatever its connection manager's path settings.
const FRAGMENT_REFUSED_BY_ENVOY: &str =
    "Envoy refuses a request target with '#' (a fragment) before any filter: 400, empty body";

/// Why Envoy (1.40) refuses to forward a routed request: characters its
/// upstream HTTP/1 encoder does not send, in the path (`<`, `>`, `` ` ``) or in
/// the query (`"`, `<`, `>`); the client gets Envoy's 400 with an empty body.
const TARGET_REFUSED_BY_ENVOY: &str = "Envoy refuses to send '<', '>' or '`' in a path, or '\"', '<' or '>' in a query, upstream: 400, empty body";

/// Whether Envoy refuses to send `target` (path and query) upstream.
fn refused_upstream(target: &str) -> bool {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    path.contains(['<', '>', '`']) || query.contains(['"', '<', '>'])
}

/// Envoy's own 400 (empty body) instead of the filter's answer.
fn refused_by_envoy(request: &Request<'_>, why: &str) -> ExplainView {
    ExplainView {
        outcome: ExplainOutcome::Refused(RefusedView {
            routed: false,
            status: 400,
            error: "rejected_by_envoy".to_string(),
            by: Some("envoy".to_string()),
            message: why.to_string(),
        }),
        istio: None,
        human: Some(format!(
            "{} {} → refused 400 by Envoy: {why}",
            request.method, request.path
        )),
    }
}

/// Routes `request`: the decision or the refusal, with its human form. What
/// Envoy itself refuses, before the filter or after it, is said so
/// (`"error": "rejected_by_envoy"`, `"by": "envoy"`).
pub fn explain(index: &Index, request: &Request<'_>) -> ExplainView {
    if request.path.contains('#') {
        return refused_by_envoy(request, FRAGMENT_REFUSED_BY_ENVOY);
    }
    let (outcome, human) = match index.route(request) {
        Ok(d) if refused_upstream(d.rewritten_path.as_deref().unwrap_or(request.path)) => {
            return refused_by_envoy(request, TARGET_REFUSED_BY_ENVOY);
        }
        Ok(d) => {
            let why = match d.kind {
                DecisionKind::Explicit => "kf-dep selected the deployment".to_string(),
                DecisionKind::Release => {
                    format!("the release of virtual environment {}", d.virtual_env)
                }
                k => format!("canary decision {k}"),
            };
            let human = format!(
                "{} {} → {}/{} ({}) component {}@{}\n  cluster: {}\n  why: {why}",
                request.method,
                request.path,
                d.environment,
                d.virtual_env,
                d.deployment,
                d.component,
                d.component_version,
                d.cluster
            );
            let routed = RoutedView {
                routed: true,
                environment: d.environment.to_string(),
                virtual_environment: d.virtual_env.to_string(),
                app: d.app.to_string(),
                deployment: d.deployment.to_string(),
                component: d.component.to_string(),
                component_version: d.component_version.to_string(),
                cluster: d.cluster.to_string(),
                decision: d.kind.to_string(),
                vars: d
                    .vars
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                forwarded_path: d
                    .rewritten_path
                    .clone()
                    .unwrap_or_else(|| request.path.to_string()),
                stripped_headers: d.strip_headers.iter().map(|h| h.to_string()).collect(),
            };
            (ExplainOutcome::Routed(Box::new(routed)), human)
        }
        Err(e) => {
            let human = format!(
                "{} {} → refused {} {}: {}",
                request.method,
                request.path,
                e.code.status(),
                e.code.as_str(),
                e.message
            );
            let refused = RefusedView {
                routed: false,
                status: e.code.status(),
                error: e.code.as_str().to_string(),
                by: None,
                message: e.message.to_string(),
            };
            (ExplainOutcome::Refused(refused), human)
        }
    };
    ExplainView {
        outcome,
        istio: None,
        human: Some(human),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn index() -> Index {
        Index::from_json(
            r#"{"resources": [
              {"kind": "Environment", "metadata": {"name": "dev"},
               "spec": {"subPath": "dev", "defaultVirtualEnvironment": "team-a"}},
              {"kind": "VirtualEnvironment", "metadata": {"name": "team-a"},
               "spec": {"environment": "dev", "release": {"apps": {"web": "web-v1"}}}},
              {"kind": "AppDeployment", "metadata": {"name": "web-v1"},
               "spec": {"app": "web", "version": "v1", "components": {"frontend": {
                 "version": "f1", "endpoints": ["127.0.0.1:9101"],
                 "routes": [{"match": {"pathPrefix": "/hello"}}]}}}}
            ]}"#,
        )
        .unwrap()
    }

    fn explained(path: &str) -> serde_json::Value {
        let request = Request {
            method: "GET",
            path,
            headers: &[],
            source_address: None,
            now_unix_seconds: 0,
        };
        serde_json::to_value(explain(&index(), &request)).unwrap()
    }

    #[test]
    fn what_envoy_refuses_itself_is_said_so() {
        for path in [
            "/dev/hello#x",
            "/dev/hello?a#",
            "/nowhere#x",
            "/dev/hello/a<b",
            "/dev/hello/a`b",
            "/dev/hello?q=\"",
            "/dev/hello?q=>",
        ] {
            let v = explained(path);
            assert_eq!(
                (&v["status"], &v["error"], &v["by"]),
                (&json!(400), &json!("rejected_by_envoy"), &json!("envoy")),
                "{path}: {v}"
            );
        }
        // Not routed upstream: the filter's own answer stands.
        assert_eq!(explained("/nowhere/a<b")["error"], "environment_not_found");
        // Allowed by Envoy's upstream encoder.
        for path in ["/dev/hello/a\"b", "/dev/hello?q=`", "/dev/hello/{|}^"] {
            assert_eq!(explained(path)["routed"], true, "{path}");
        }
    }
}
