//! Releases: release a deployment, roll back, read the history.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;

use super::plumbing::{changed, parse, release_view, who, ApiError, Body, Caller, Plane, Query};
use crate::state::StoreError;
use crate::views::{ChangeView, HistoryView};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct ReleaseBody {
    deployment: String,
    virtual_env: String,
    #[serde(default)]
    pub(super) who: Option<String>,
}

/// `POST /v1/release`.
pub async fn release(
    State(state): Plane,
    caller: Caller,
    Body(body): Body,
) -> Result<Json<ChangeView>, ApiError> {
    let b: ReleaseBody = parse(&body)?;
    let who = who(&caller, b.who);
    let (summary, generation) = state
        .plane
        .change_blocking(move |s| s.release(&b.deployment, &b.virtual_env, &who))
        .await?;
    Ok(changed(summary, generation))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RollbackBody {
    virtual_env: String,
    #[serde(default)]
    app: Option<String>,
    #[serde(default)]
    pub(super) who: Option<String>,
}

/// `POST /v1/rollback`.
pub async fn rollback(
    State(state): Plane,
    caller: Caller,
    Body(body): Body,
) -> Result<Json<ChangeView>, ApiError> {
    let b: RollbackBody = parse(&body)?;
    let who = who(&caller, b.who);
    let (summary, generation) = state
        .plane
        .change_blocking(move |s| s.rollback(&b.virtual_env, b.app.as_deref(), &who))
        .await?;
    Ok(changed(summary, generation))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct HistoryQuery {
    virtual_env: Option<String>,
}

/// `GET /v1/history`.
pub async fn history(
    State(state): Plane,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<HistoryView>, ApiError> {
    let store = state.plane.store();
    if let Some(ve) = &q.virtual_env {
        if store
            .get(crate::kind::Kind::VirtualEnvironment, ve)
            .is_none()
            && !store.history.iter().any(|r| &r.virtual_env == ve)
        {
            return Err(StoreError::NotFound(format!("VirtualEnvironment/{ve}")).into());
        }
    }
    let history = store
        .history_of(q.virtual_env.as_deref())
        .into_iter()
        .map(release_view)
        .collect();
    Ok(Json(HistoryView { history }))
}
