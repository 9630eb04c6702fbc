//! Resources: read them (secrets redacted), apply, publish and delete them.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use switchyard_engine::Resource;

use super::plumbing::{changed, parse, who, ApiError, Body, Caller, Plane};
use crate::load::{self, Located};
use crate::serve::ControlPlane;
use crate::state::{ChangeSummary, Store, StoreError};
use crate::views::{ChangeView, ResourcesView};

/// `GET /v1/resources`.
pub async fn resources(State(state): Plane) -> Json<ResourcesView> {
    let mut resources = state.plane.store().resource_list();
    for r in &mut resources {
        redact_secrets(r);
    }
    Json(ResourcesView { resources })
}

/// Replaces the HMAC secrets of an Environment's JWT keys by `(redacted)`:
/// only the pull role (`/v1/config`) gets secrets.
fn redact_secrets(resource: &mut Resource) {
    let Resource::Environment(env) = resource else {
        return;
    };
    for key in env.spec.jwt.iter_mut().flat_map(|jwt| jwt.keys.iter_mut()) {
        if key.secret.is_some() {
            key.secret = Some("(redacted)".into());
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileText {
    filename: String,
    text: String,
}

/// The body of `apply` and `publish`: one file or several, and who.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ApplyBody {
    #[serde(default)]
    filename: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    files: Vec<FileText>,
    #[serde(default)]
    who: Option<String>,
}

impl ApplyBody {
    /// Every document of every file; all parse problems at once.
    pub(super) fn documents(self) -> Result<(Vec<Located>, Option<String>), ApiError> {
        let mut files = self.files;
        match (self.filename, self.text) {
            (filename, Some(text)) => files.push(FileText {
                filename: filename.unwrap_or_else(|| "<request>".into()),
                text,
            }),
            (Some(_), None) => return Err(ApiError::bad_request("'filename' without 'text'")),
            (None, None) => {}
        }
        if files.is_empty() {
            return Err(ApiError::bad_request(
                "give 'filename' and 'text', or 'files'",
            ));
        }
        let mut docs = Vec::new();
        let mut problems = Vec::new();
        for f in files {
            match load::parse_text(std::path::Path::new(&f.filename), &f.text) {
                Ok(mut d) => docs.append(&mut d),
                Err(mut e) => problems.append(&mut e.0),
            }
        }
        if !problems.is_empty() {
            return Err(StoreError::Invalid(load::LoadErrors(problems)).into());
        }
        Ok((docs, self.who))
    }
}

/// A store operation over resource documents (`apply`, `publish`).
type DocumentsChange = fn(&Store, &[Located], &str) -> Result<(Store, ChangeSummary), StoreError>;

/// `apply` and `publish`: the body's documents through `change`, by the caller.
async fn change_documents(
    plane: Arc<ControlPlane>,
    caller: Caller,
    body: Bytes,
    change: DocumentsChange,
) -> Result<Json<ChangeView>, ApiError> {
    let (docs, said) = parse::<ApplyBody>(&body)?.documents()?;
    let who = who(&caller, said);
    let (summary, generation) = plane
        .change_blocking(move |s| change(s, &docs, &who))
        .await?;
    Ok(changed(summary, generation))
}

/// `POST /v1/apply`.
pub async fn apply(
    State(state): Plane,
    caller: Caller,
    Body(body): Body,
) -> Result<Json<ChangeView>, ApiError> {
    change_documents(state.plane, caller, body, Store::apply).await
}

/// `POST /v1/publish`.
pub async fn publish(
    State(state): Plane,
    caller: Caller,
    Body(body): Body,
) -> Result<Json<ChangeView>, ApiError> {
    change_documents(state.plane, caller, body, Store::publish).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeleteBody {
    kind: String,
    name: String,
    #[serde(default)]
    #[allow(dead_code)]
    who: Option<String>,
}

/// `POST /v1/delete`.
pub async fn delete(State(state): Plane, Body(body): Body) -> Result<Json<ChangeView>, ApiError> {
    let b: DeleteBody = parse(&body)?;
    let (summary, generation) = state
        .plane
        .change_blocking(move |s| s.delete(&b.kind, &b.name))
        .await?;
    Ok(changed(summary, generation))
}
