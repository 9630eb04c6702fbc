//! Credentials: the context-signing keys (rotate, retire) and the API's
//! tokens (list, create, revoke).

use axum::extract::State;
use axum::Json;
use serde::Deserialize;

use super::plumbing::{changed, parse, ApiError, Body, Plane};
use crate::auth::{Role, Tokens};
use crate::state::StoreError;
use crate::views::{ChangeView, TokenCreatedView, TokenListView, TokenRevokedView};

/// `POST /v1/keys/rotate`. The body (`{}`) is read so that the connection
/// stays usable for the next request (hyper closes a connection whose request
/// body was left unread).
pub async fn rotate_key(State(state): Plane, Body(_): Body) -> Result<Json<ChangeView>, ApiError> {
    let key = crate::context_keys::new_kid()
        .and_then(|kid| crate::context_keys::generate_context_key(&kid))
        .map_err(|e| StoreError::BadRequest(format!("no random key could be made: {e}")))?;
    let (summary, generation) = state
        .plane
        .change_blocking(move |s| s.rotate_key(key.clone()))
        .await?;
    Ok(changed(summary, generation))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RetireBody {
    kid: String,
}

/// `POST /v1/keys/retire`.
pub async fn retire_key(
    State(state): Plane,
    Body(body): Body,
) -> Result<Json<ChangeView>, ApiError> {
    let b: RetireBody = parse(&body)?;
    let (summary, generation) = state
        .plane
        .change_blocking(move |s| s.retire_key(&b.kid))
        .await?;
    Ok(changed(summary, generation))
}

/// The tokens; without them (`serve --insecure-no-auth`) there is no such path.
fn tokens(tokens: Option<&std::sync::Arc<Tokens>>) -> Result<&Tokens, ApiError> {
    tokens
        .map(AsRef::as_ref)
        .ok_or_else(|| ApiError::not_found("no such API path"))
}

/// `GET /v1/tokens`.
pub async fn list_tokens(State(state): Plane) -> Result<Json<TokenListView>, ApiError> {
    let list = tokens(state.tokens.as_ref())?.list();
    let tokens = serde_json::from_value(serde_json::Value::Array(list)).map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the token list is unreadable: {e}"),
        )
    })?;
    Ok(Json(TokenListView { tokens }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateTokenBody {
    name: String,
    pub(super) role: String,
}

/// `POST /v1/tokens`.
pub async fn create_token(
    State(state): Plane,
    Body(body): Body,
) -> Result<Json<TokenCreatedView>, ApiError> {
    let tokens = tokens(state.tokens.as_ref())?;
    let b: CreateTokenBody = parse(&body)?;
    let role: Role = b.role.parse()?;
    let token = tokens.create(&b.name, role)?;
    tracing::info!(name = %b.name, %role, "API token created");
    Ok(Json(TokenCreatedView {
        name: b.name,
        role: role.to_string(),
        token,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RevokeTokenBody {
    name: String,
}

/// `POST /v1/tokens/revoke`.
pub async fn revoke_token(
    State(state): Plane,
    Body(body): Body,
) -> Result<Json<TokenRevokedView>, ApiError> {
    let tokens = tokens(state.tokens.as_ref())?;
    let b: RevokeTokenBody = parse(&body)?;
    let revoked = tokens.revoke(&b.name)?;
    tracing::info!(name = %revoked.name, role = %revoked.role, "API token revoked");
    Ok(Json(TokenRevokedView {
        revoked: revoked.name,
        role: revoked.role.to_string(),
    }))
}
