//! `GET /v1/whoami` (role `read`): the calling token's name and role, so the
//! dashboard shows only the actions that role allows (the server still checks
//! every call: [`crate::api::required_role`]).

use std::sync::Arc;

use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::api::Caller;
use crate::auth::Role;
use crate::serve::ControlPlane;

/// The answer of `GET /v1/whoami`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct WhoAmI {
    /// The token's name; `None` when the API runs without tokens.
    pub name: Option<String>,
    pub role: Role,
    /// Whether the API checks tokens (`false`: `serve --insecure-no-auth`).
    pub authenticated: bool,
}

/// The path of the call.
pub const PATH: &str = "/v1/whoami";

pub fn routes() -> Router<Arc<ControlPlane>> {
    Router::new().route(PATH, get(whoami))
}

/// Without tokens anyone who can connect may do anything: role admin.
async fn whoami(caller: Caller) -> Json<WhoAmI> {
    Json(match caller {
        Some(axum::Extension(id)) => WhoAmI {
            name: Some(id.name),
            role: id.role,
            authenticated: true,
        },
        None => WhoAmI {
            name: None,
            role: Role::Admin,
            authenticated: false,
        },
    })
}
