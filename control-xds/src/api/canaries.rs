//! Progressive rollouts: their status and the human commands (`switchyard
//! canary …`: start, pause, resume, promote, abort).

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use switchyard_engine::Resource;

use super::plumbing::{changed, parse, who, ApiError, Body, Caller, Plane};
use crate::clock::now_unix_ms;
use crate::kind::Kind;
use crate::progressive::analyzer::{Counts, H_SHIFT};
use crate::progressive::machine::Phase;
use crate::progressive::spec::{OnFailure, Plan};
use crate::serve::ControlPlane;
use crate::state::rollout_ops::{plan_of, released, Command};
use crate::state::Store;
use crate::views::{
    AnalysisView, CanaryCountsView, CanaryListView, CanaryStatusView, ChangeView, CountsView,
    EventView, ReportingView, StatisticView,
};

fn counts(c: Counts) -> CountsView {
    CountsView {
        requests: c.requests,
        errors: c.errors,
    }
}

fn analysis(p: &Plan) -> AnalysisView {
    AnalysisView {
        step_time_ms: p.step_time_ms,
        min_requests: p.min_requests,
        max_wait_ms: p.max_wait_ms,
        max_error_ratio: p.max_error_ratio,
        max_error_rate: p.max_error_rate,
        min_error_rate: p.min_error_rate,
        on_failure: match p.on_failure {
            OnFailure::Abort => "abort",
            OnFailure::Pause => "pause",
        }
        .to_string(),
        gates: p.gates.iter().map(|&g| p.steps[g].clone()).collect(),
        bake_time_ms: p.bake_time_ms,
    }
}

/// The status of `name`'s rollout: its Canary (if it still exists) and record.
fn status(
    plane: &ControlPlane,
    store: &Store,
    name: &str,
    now_ms: u64,
) -> Option<CanaryStatusView> {
    let canary = match store.get(Kind::Canary, name) {
        Some(Resource::Canary(c)) if !c.spec.steps.is_empty() => Some(c),
        _ => None,
    };
    let rollout = store.rollouts.get(name);
    let plan = canary.and_then(|c| Plan::of(name, &c.spec).ok().flatten());
    let (ve, app, deployment, weight) = match (rollout, canary) {
        (Some(r), _) => (&r.virtual_env, &r.app, &r.deployment, r.weight.clone()),
        (None, Some(c)) => (
            &c.spec.virtual_environment,
            &c.spec.app,
            &c.spec.deployment,
            c.spec.weight.clone().unwrap_or_else(|| "0%".into()),
        ),
        (None, None) => return None,
    };
    let mut view = CanaryStatusView {
        name: name.to_string(),
        virtual_env: ve.clone(),
        app: app.clone(),
        deployment: deployment.clone(),
        stable: rollout
            .map(|r| r.stable.clone())
            .or_else(|| released(store, ve, app)),
        phase: rollout
            .map_or(Phase::Pending, |r| r.phase)
            .as_str()
            .to_string(),
        step: rollout.map_or(0, |r| r.step + 1),
        steps: plan
            .as_ref()
            .map(|p| p.steps.clone())
            .or_else(|| rollout.map(|r| r.steps.clone()))
            .unwrap_or_default(),
        weight,
        reason: rollout.map_or(
            "not started: `switchyard canary start` begins the rollout".to_string(),
            |r| r.reason.clone(),
        ),
        events: rollout.map_or_else(Vec::new, |r| r.events.iter().map(event).collect()),
        reporting: (plane.progressive().reports.nodes().into_iter())
            .map(|(node, at)| ReportingView {
                node,
                last_report_ms_ago: now_ms.saturating_sub(at),
            })
            .collect(),
        analysis: plan.as_ref().map(analysis),
        step_elapsed_ms: None,
        counts: None,
        statistic: StatisticView {
            test: "shift".into(),
            value: 0.0,
            bound: H_SHIFT,
        },
        canary_clusters: None,
        stable_clusters: None,
    };
    if let Some(l) = plane.progressive().measured(name) {
        view.step_elapsed_ms = Some(now_ms.saturating_sub(l.step_clock_from_ms));
        view.counts = Some(CanaryCountsView {
            canary: counts(l.canary),
            stable: counts(l.stable),
            canary_step: counts(l.canary_step),
            stable_step: counts(l.stable_step),
        });
        view.statistic = StatisticView {
            test: l.statistic.test.to_string(),
            value: l.statistic.value,
            bound: l.statistic.bound,
        };
        view.canary_clusters = Some(l.canary_clusters.clone());
        view.stable_clusters = Some(l.stable_clusters.clone());
    }
    Some(view)
}

fn event(e: &crate::progressive::machine::Event) -> EventView {
    EventView {
        at: e.at.clone(),
        at_unix_ms: e.at_unix_ms,
        phase: e.phase.as_str().to_string(),
        step: e.step,
        weight: e.weight.clone(),
        reason: e.reason.clone(),
        who: e.who.clone(),
    }
}

/// `GET /v1/canaries`.
pub async fn list(State(state): Plane) -> Json<CanaryListView> {
    let plane = &state.plane;
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
    let canaries = names
        .iter()
        .filter_map(|n| status(plane, &store, n, now))
        .collect();
    Json(CanaryListView { canaries })
}

/// `GET /v1/canaries/{name}`.
pub async fn one(
    State(state): Plane,
    Path(name): Path<String>,
) -> Result<Json<CanaryStatusView>, ApiError> {
    let store = state.plane.store();
    status(&state.plane, &store, &name, now_unix_ms())
        .map(Json)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no progressive Canary named {name} (a Canary with steps)"
            ))
        })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CommandBody {
    name: String,
    #[serde(default)]
    full: bool,
    #[serde(default)]
    pub(super) who: Option<String>,
}

/// `POST /v1/canary/{action}`.
pub async fn command(
    State(state): Plane,
    Path(action): Path<String>,
    caller: Caller,
    Body(body): Body,
) -> Result<Json<ChangeView>, ApiError> {
    let plane = state.plane;
    let b: CommandBody = parse(&body)?;
    let command = match action.as_str() {
        "start" => Command::Start,
        "pause" => Command::Pause,
        "resume" => Command::Resume,
        "promote" => Command::Promote { full: b.full },
        "abort" => Command::Abort,
        other => {
            return Err(ApiError::not_found(format!(
                "no canary command '{other}': start, pause, resume, promote or abort"
            )))
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
        crate::progressive::notify::after_change(&hooks, &plane.store(), &b.name);
    }
    Ok(changed(summary, generation))
}
