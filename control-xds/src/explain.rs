//! Route a described request with the real engine and say why: the answer of
//! `switchyard explain` and of `POST /v1/explain`.

use switchyard_engine::{DecisionKind, Index, Request};

use crate::views::{ExplainOutcome, ExplainView, RefusedView, RoutedView};

/// Routes `request`: the decision or the refusal, with its human form.
pub fn explain(index: &Index, request: &Request<'_>) -> ExplainView {
    let (outcome, human) = match index.route(request) {
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
