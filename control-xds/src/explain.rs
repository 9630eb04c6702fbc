//! `switchyard explain`: route a described request with the real engine and say why.

use std::process::ExitCode;

use serde_json::json;
use switchyard_engine::{Index, Request};

/// Routes `request` and hands the result to `print` as JSON and as human text.
pub fn explain(
    index: &Index,
    request: &Request<'_>,
    print: impl FnOnce(&serde_json::Value, String),
) -> ExitCode {
    match index.route(request) {
        Ok(d) => {
            let vars: serde_json::Map<String, serde_json::Value> = d
                .vars
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            let value = json!({
                "routed": true,
                "environment": d.environment,
                "virtualEnvironment": d.virtual_env,
                "app": d.app,
                "deployment": d.deployment,
                "component": d.component,
                "componentVersion": d.component_version,
                "cluster": d.cluster,
                "decision": d.kind.to_string(),
                "vars": vars,
                "forwardedPath": d.rewritten_path.as_deref().unwrap_or(request.path),
                "strippedHeaders": d.strip_headers,
            });
            let why = match d.kind {
                switchyard_engine::DecisionKind::Explicit => {
                    "kf-dep selected the deployment".to_string()
                }
                switchyard_engine::DecisionKind::Release => {
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
            print(&value, human);
            ExitCode::SUCCESS
        }
        Err(e) => {
            let value = json!({"routed": false, "status": e.code.status(), "error": e.code.as_str(), "message": e.message});
            print(
                &value,
                format!(
                    "{} {} → refused {} {}: {}",
                    request.method,
                    request.path,
                    e.code.status(),
                    e.code.as_str(),
                    e.message
                ),
            );
            ExitCode::from(2)
        }
    }
}
