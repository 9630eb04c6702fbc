//! The rollouts' HTTP API (merged into [`crate::api`]'s router): status and the
//! human commands (`switchyard canary …`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use switchyard_engine::Resource;

use super::analyzer::H_SHIFT;
use super::machine::Phase;
use super::spec::Plan;
use crate::api::{changed, parse, who, ApiError, Caller};
use crate::clock::now_unix_ms;
use crate::kind::Kind;
use crate::serve::ControlPlane;
use crate::state::rollout_ops::{plan_of, released, Command};
use crate::state::Store;

type Plane = State<Arc<ControlPlane>>;

pub fn routes() -> Router<Arc<ControlPlane>> {
    Router::new()
        .route("/v1/canaries", get(list))
        .route("/v1/canaries/{name}", get(one))
        .route("/v1/canary/{action}", post(command))
}

/// The status of `name`'s rollout: its Canary (if it still exists) and record.
fn status(plane: &ControlPlane, store: &Store, name: &str, now_ms: u64) -> Option<Value> {
    let canary = match store.get(Kind::Canary, name) {
        Some(Resource::Canary(c)) if !c.spec.steps.is_empty() => Some(c),
        _ => None,
    };
    let rollout = store.rollouts.get(name);
    if canary.is_none() && rollout.is_none() {
        return None;
    }
    let plan = canary.and_then(|c| Plan::of(name, &c.spec).ok().flatten());
    let (ve, app, deployment) = match (rollout, canary) {
        (Some(r), _) => (r.virtual_env.clone(), r.app.clone(), r.deployment.clone()),
        (None, Some(c)) => (
            c.spec.virtual_environment.clone(),
            c.spec.app.clone(),
            c.spec.deployment.clone(),
        ),
        (None, None) => return None,
    };
    let phase = rollout.map_or(Phase::Pending, |r| r.phase);
    let weight = match (rollout, canary) {
        (Some(r), _) => r.weight.clone(),
        (None, Some(c)) => c.spec.weight.clone().unwrap_or_else(|| "0%".into()),
        _ => "0%".into(),
    };
    let live = plane.progressive().measured(name);
    let mut v = json!({
        "name": name,
        "virtualEnv": ve,
        "app": app,
        "deployment": deployment,
        "stable": rollout.map(|r| r.stable.clone()).or_else(|| released(store, &ve, &app)),
        "phase": phase.as_str(),
        "step": rollout.map_or(0, |r| r.step + 1),
        "steps": plan.as_ref().map(|p| p.steps.clone())
            .or_else(|| rollout.map(|r| r.steps.clone()))
            .unwrap_or_default(),
        "weight": weight,
        "reason": rollout.map_or("not started: `switchyard canary start` begins the rollout".to_string(), |r| r.reason.clone()),
        "events": rollout.map(|r| r.events.clone()).unwrap_or_default(),
        "reporting": plane.progressive().reports.nodes().into_iter()
            .map(|(node, at)| json!({"node": node, "lastReportMsAgo": now_ms.saturating_sub(at)}))
            .collect::<Vec<_>>(),
    });
    if let Some(p) = &plan {
        v["analysis"] = json!({
            "stepTimeMs": p.step_time_ms, "minRequests": p.min_requests, "maxWaitMs": p.max_wait_ms,
            "maxErrorRatio": p.max_error_ratio, "maxErrorRate": p.max_error_rate,
            "minErrorRate": p.min_error_rate, "onFailure": p.on_failure,
            "gates": p.gates.iter().map(|&g| p.steps[g].clone()).collect::<Vec<_>>(),
            "bakeTimeMs": p.bake_time_ms,
        });
    }
    match live {
        Some(l) => {
            v["stepElapsedMs"] = json!(now_ms.saturating_sub(l.step_clock_from_ms));
            v["counts"] = json!({
                "canary": l.canary, "stable": l.stable,
                "canaryStep": l.canary_step, "stableStep": l.stable_step,
            });
            v["statistic"] = json!(l.statistic);
            v["canaryClusters"] = json!(l.canary_clusters);
            v["stableClusters"] = json!(l.stable_clusters);
        }
        None => {
            v["statistic"] = json!({"test": "shift", "value": 0.0, "bound": H_SHIFT});
        }
    }
    Some(v)
}

async fn list(State(plane): Plane) -> Json<Value> {
    let store = plane.store();
    let now = now_unix_ms();
    let mut names: Vec<String> = store.rollouts.keys().cloned().collect();
    for r in store.resources.values() {
        if let Resource::Canary(c) = r {
            if !c.spec.steps.is_empty() && !names.contains(&c.metadata.name) {
                names.push(c.metadata.name.clone());
            }
        }
    }
    names.sort();
    let canaries: Vec<Value> = names
        .iter()
        .filter_map(|n| status(&plane, &store, n, now))
        .collect();
    Json(json!({ "canaries": canaries }))
}

async fn one(State(plane): Plane, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let store = plane.store();
    status(&plane, &store, &name, now_unix_ms())
        .map(Json)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no progressive Canary named {name} (a Canary with steps)"),
            )
        })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandBody {
    name: String,
    #[serde(default)]
    full: bool,
    #[serde(default)]
    who: Option<String>,
}

async fn command(
    State(plane): Plane,
    Path(action): Path<String>,
    caller: Caller,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: CommandBody = parse(&body)?;
    let command = match action.as_str() {
        "start" => Command::Start,
        "pause" => Command::Pause,
        "resume" => Command::Resume,
        "promote" => Command::Promote { full: b.full },
        "abort" => Command::Abort,
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no canary command '{other}': start, pause, resume, promote or abort"),
            ))
        }
    };
    let who = who(&caller, b.who);
    let now = now_unix_ms();
    let hooks = plan_of(&plane.store(), &b.name)
        .map(|p| p.webhooks)
        .unwrap_or_default();
    let name = b.name.clone();
    let (summary, generation) = plane
        .change_blocking(move |s| s.canary_command(&name, command, &who, now))
        .await?;
    if summary.changed() {
        super::notify::after_change(&hooks, &plane.store(), &b.name);
    }
    Ok(changed(summary, generation))
}
