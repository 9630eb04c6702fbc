//! What every handler shares: the token check (a route's role is given by
//! the route table, [`super::routes`]), the body and query extractors with
//! their limits, the change id of every request (`Idempotency-Key`), the
//! error answer and how domain errors map to it, and the answer of every
//! change.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, State};
use axum::http::{request::Parts, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::de::DeserializeOwned;

use crate::auth::{AuthError, Identity, Role, Tokens};
use crate::serve::{snapshot_version, ChangeError, ControlPlane};
use crate::state::{ChangeSummary, ReleaseRecord, StoreError};
use crate::views::{ChangeView, ErrorView, ProblemView, ReleaseView};

/// The largest request body accepted (resource files come in one body).
pub const MAX_BODY: usize = 8 * 1024 * 1024;
/// A request body must arrive within this time.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// What every handler gets: the control plane, and the tokens when the API
/// runs with them.
#[derive(Clone)]
pub struct ApiState {
    pub plane: Arc<ControlPlane>,
    pub tokens: Option<Arc<Tokens>>,
    /// The rollouts' counts over time (the dashboard's plots).
    pub series: Arc<crate::ui::series::Series>,
}

/// The handlers' state extractor.
pub type Plane = State<ApiState>;

// ------------------------------------------------------------------ authorization

fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Refused calls are logged within a budget (a flood of bad requests must not
/// flood the log); `left_out` says how many were not.
static REFUSALS_LOGGED: crate::log_limit::LogBudget = crate::log_limit::LogBudget::new();

/// The token check in front of one route: the caller's token must be of a
/// role that grants `needed`; its identity is handed to the handler.
pub async fn authorize(
    State((tokens, needed)): State<(Arc<Tokens>, Role)>,
    request: axum::extract::Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<crate::http_server::Peer>()
        .map(|p| p.0.to_string())
        .unwrap_or_default();
    let what = format!("{} {}", request.method(), request.uri().path());
    let Some(token) = bearer(request.headers()) else {
        if let Some(left_out) = REFUSALS_LOGGED.take() {
            tracing::warn!(%peer, request = %what, left_out, "API call without a credential refused");
        }
        return ApiError::unauthenticated(
            "this API needs a credential: 'Authorization: Bearer TOKEN'; the CLI reads \
             SWITCHYARD_TOKEN, --token-file / SWITCHYARD_TOKEN_FILE, or the file that \
             `switchyard serve` leaves in ~/.config/switchyard/credentials/",
        )
        .into_response();
    };
    let Some(identity) = tokens.verify_fresh(token).await else {
        // The token itself is never logged or echoed.
        if let Some(left_out) = REFUSALS_LOGGED.take() {
            tracing::warn!(%peer, request = %what, left_out, "API call with an unknown credential refused");
        }
        return ApiError::unauthenticated(
            "the credential is not valid (mistyped, revoked, or of another control plane)",
        )
        .into_response();
    };
    if !identity.role.grants(needed) {
        if let Some(left_out) = REFUSALS_LOGGED.take() {
            tracing::warn!(%peer, request = %what, token = %identity.name, role = %identity.role, left_out, "API call forbidden");
        }
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "the token '{}' has role {}; {what} needs {}",
                identity.name, identity.role, needed
            ),
        )
        .into_response();
    }
    if needed != Role::Read && needed != Role::Pull {
        // Who changed what: the audit trail of changes (the token, not a secret).
        tracing::info!(%peer, request = %what, token = %identity.name, role = %identity.role, "API change");
    }
    let mut request = request;
    request.extensions_mut().insert(identity);
    next.run(request).await
}

/// The caller's token, when the API runs with tokens (inserted by [`authorize`]).
pub type Caller = Option<Extension<Identity>>;

/// Who made a change, as the release history and canary events record it: the
/// name of the token that authenticated the call, so the record cannot be
/// forged by the client. A name the client gives (`who` in the body: the CLI's
/// `--who`, else `$USER`) is unverified; it is kept beside the token's name,
/// `ci (says alice)`, when it differs. Without tokens (`serve
/// --insecure-no-auth`, loopback only) the client's name is all there is.
pub fn who(caller: &Caller, said: Option<String>) -> String {
    let said = said.filter(|w| !w.trim().is_empty());
    match (caller, said) {
        (Some(Extension(id)), Some(said)) if said != id.name => {
            format!("{} (says {said})", id.name)
        }
        (Some(Extension(id)), _) => id.name.clone(),
        (None, said) => said.unwrap_or_else(|| "unknown".to_string()),
    }
}

// ------------------------------------------------------------------ extractors

/// A request body: at most [`MAX_BODY`] bytes, read within [`BODY_TIMEOUT`];
/// refusals are JSON errors.
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        match tokio::time::timeout(BODY_TIMEOUT, Bytes::from_request(req, state)).await {
            Err(_) => Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "the request body did not arrive within {} s",
                    BODY_TIMEOUT.as_secs()
                ),
            )),
            Ok(Err(rejection)) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!("request bodies are limited to {MAX_BODY} bytes"),
                ))
            }
            Ok(Err(rejection)) => Err(ApiError::bad_request(rejection.body_text())),
            Ok(Ok(bytes)) => Ok(Body(bytes)),
        }
    }
}

/// Query parameters; a bad query is a JSON `bad_request`.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

/// A JSON body as `T`; a bad one is a `bad_request`.
pub fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("bad JSON body: {e}")))
}

// ------------------------------------------------------------------ answers

/// The answer of every change: what changed and the generation to wait for.
pub fn changed(summary: ChangeSummary, generation: u64) -> Json<ChangeView> {
    let changed = summary.changed();
    let releases = summary.releases.into_iter().map(release_view).collect();
    Json(ChangeView {
        change: summary.change,
        created: summary.created,
        updated: summary.updated,
        unchanged: summary.unchanged,
        deleted: summary.deleted,
        releases,
        keys: summary.keys,
        canary: summary.canary,
        changed,
        generation,
        version: snapshot_version(generation),
        live: None,
    })
}

/// A release record as the API shows it.
pub fn release_view(r: ReleaseRecord) -> ReleaseView {
    ReleaseView {
        id: r.id,
        virtual_env: r.virtual_env,
        app: r.app,
        deployment: r.deployment,
        previous: r.previous,
        action: r.action,
        undoes: r.undoes,
        who: r.who,
        change: r.change,
        at: r.at,
        at_unix_ms: r.at_unix_ms,
    }
}

/// The `Idempotency-Key` header of a change (else a new id): the id of the
/// change the request makes ([`crate::change_log`]); answered in the same header.
pub async fn change_id(request: axum::extract::Request, next: Next) -> Result<Response, ApiError> {
    let id = match request.headers().get("idempotency-key") {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| crate::change_log::parse_change_id(v.trim()).ok())
            .ok_or_else(|| ApiError::bad_request(crate::change_log::BadChangeId.to_string()))?,
        None => crate::change_log::new_change_id(),
    };
    let mut response = crate::change_log::with_change_id(id.clone(), next.run(request)).await;
    if let Ok(v) = axum::http::HeaderValue::from_str(&id) {
        response.headers_mut().insert("idempotency-key", v);
    }
    Ok(response)
}

/// An error answer: `{error, message, problems?, change?}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    problems: Option<Vec<ProblemView>>,
    /// The change whose outcome is unknown (`outcome_unknown`).
    change: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            problems: None,
            change: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorView {
            error: self.code.to_string(),
            message: self.message,
            problems: self.problems,
            change: self.change,
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::BadRequest(m) => Self::bad_request(m),
            AuthError::NotFound(m) => Self::not_found(m),
            AuthError::Conflict(m) => Self::new(StatusCode::CONFLICT, "conflict", m),
            AuthError::Store(e @ crate::state_store::BackendError::Unavailable { .. }) => {
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    format!("the tokens were not changed: {e}"),
                )
            }
            AuthError::Store(e) => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "state_not_saved",
                format!("the tokens were not changed: {e}"),
            ),
            other => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "state_not_saved",
                format!("{other}; nothing was changed"),
            ),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(errors) => {
                let n = errors.0.len();
                let problems = errors
                    .0
                    .into_iter()
                    .map(|p| ProblemView {
                        file: p.file,
                        line: p.line,
                        column: p.column,
                        resource: p.resource,
                        field: p.field,
                        reason: p.reason,
                    })
                    .collect();
                ApiError {
                    status: StatusCode::BAD_REQUEST,
                    code: "invalid_resources",
                    message: format!(
                        "{n} problem{} found; nothing was changed",
                        if n == 1 { "" } else { "s" }
                    ),
                    problems: Some(problems),
                    change: None,
                }
            }
            StoreError::NotFound(what) => Self::not_found(format!("{what} not found")),
            StoreError::Conflict(m) => Self::new(StatusCode::CONFLICT, "conflict", m),
            StoreError::BadRequest(m) => Self::bad_request(m),
        }
    }
}

impl From<ChangeError> for ApiError {
    fn from(e: ChangeError) -> Self {
        match e {
            ChangeError::Store(s) => s.into(),
            ChangeError::Snapshot(m) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "snapshot_invalid",
                format!("{m}; nothing was changed, the last good configuration stays"),
            ),
            ChangeError::Persist(p) => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "state_not_saved",
                format!("{p}; nothing was changed"),
            ),
            e @ ChangeError::Corrupt(_) => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "state_not_saved",
                format!("{e}; nothing was changed"),
            ),
            e @ (ChangeError::Unavailable(_) | ChangeError::Contended(_)) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                format!("{e}; Envoys keep the last configuration"),
            ),
            ChangeError::OutcomeUnknown { change, reason } => {
                let message = ChangeError::OutcomeUnknown {
                    change: change.clone(),
                    reason,
                }
                .to_string();
                let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "outcome_unknown", message);
                e.change = Some(change);
                e
            }
            e @ ChangeError::TooLarge(_) => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "state_too_large",
                e.to_string(),
            ),
        }
    }
}
