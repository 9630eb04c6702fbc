//! The HTTP API of `switchyard serve` (JSON), used by the CLI.
//!
//! | method | path | body / query | answer |
//! |---|---|---|---|
//! | GET | /v1/status | | releases per VE, canaries, connected Envoys (per type sent/ACKed versions, last NACK), context key ids |
//! | GET | /v1/resources | | every resource |
//! | POST | /v1/apply | `{filename, text}` or `{files: [{filename, text}]}`, `who` | what was created/updated/unchanged, releases recorded |
//! | POST | /v1/publish | same as apply, AppDeployments only | same |
//! | POST | /v1/delete | `{kind, name}` | what was deleted |
//! | POST | /v1/release | `{deployment, virtualEnv, who}` | the release record |
//! | POST | /v1/rollback | `{virtualEnv, app?, who}` | the release record |
//! | GET | /v1/history | `?virtualEnv=` | release records, oldest first |
//! | POST | /v1/explain | `{path, method?, headers?: [[name, value]], source?}` | the engine's decision |
//! | GET | /v1/config | header `x-switchyard-node` | the genesis filter's plugin configuration (pull mode; contains the context keys); the poll is recorded per node |
//! | GET | /v1/canaries | | every progressive rollout: phase, step, weight, per-version counts, the test statistic and its bound, the last decision, events |
//! | GET | /v1/canaries/{name} | | one of them |
//! | POST | /v1/canary/{start,pause,resume,promote,abort} | `{name, full?, who}` | what changed (`canary`), the generation to wait for |
//! | GET | /metrics | | Prometheus text metrics (`crate::metrics`) |
//! | GET | /v1/live | `?generation=G&timeoutMs=T` | waits (at most T, ≤ 10 min) until every connected Envoy ACKed generation G or later for every type, or NACKed it; where each Envoy is (with replicas on etcd: every replica's Envoys, each with its `replica`), when each was first seen live (`liveAfterMs`), and the pulling Envoys |
//! | GET | /v1/tokens | | every API token's name, role and creation time |
//! | POST | /v1/tokens | `{name, role}` | a new token (shown only in this answer) |
//! | POST | /v1/tokens/revoke | `{name}` | the revoked token's name and role |
//! | GET | /healthz | | `{"ok": true}`, without a credential (liveness probes) |
//!
//! Every call but `/healthz` needs `Authorization: Bearer TOKEN` of a role that
//! grants it ([`crate::auth`], [`required_role`]). Bodies are limited to
//! [`MAX_BODY`] bytes, read within [`BODY_TIMEOUT`].
//!
//! Errors are `{error, message, problems?}`: 400 `invalid_resources` (with every
//! problem, file and line), 400 `bad_request`, 401 `unauthenticated`, 403
//! `forbidden`, 404 `not_found`, 408 `request_timeout`, 409 `conflict`, 413
//! `body_too_large`, 413 `state_too_large` (the state would pass etcd's request
//! limit), 422 `snapshot_invalid`, 500 `state_not_saved`, 503
//! `store_unavailable` (etcd cannot be reached: nothing changed, Envoys keep
//! the last configuration; reads answer from the last known state).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, State};
use axum::http::{request::Parts, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use switchyard_engine::{Request, Resource};

use crate::auth::{AuthError, Identity, Role, Tokens};
use crate::load::{self, Located};
use crate::serve::{snapshot_version, ChangeError, ControlPlane};
use crate::state::{ChangeSummary, Store, StoreError};
use crate::xds::NodeStatus;

/// The largest request body accepted (resource files come in one body).
pub const MAX_BODY: usize = 8 * 1024 * 1024;
/// A request body must arrive within this time.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The API's routes over `plane`; with `tokens`, every call but `/healthz`
/// must carry a token of a role that grants it. Without (`serve
/// --insecure-no-auth`, loopback only) anyone who can connect may do anything.
pub fn router(plane: Arc<ControlPlane>, tokens: Option<Arc<Tokens>>) -> Router {
    let mut api = plane_routes(plane);
    if let Some(tokens) = tokens {
        api = api
            .merge(token_routes(tokens.clone()))
            .layer(axum::middleware::from_fn_with_state(tokens, authorize));
    }
    api.layer(axum::middleware::from_fn(change_id))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .route("/healthz", get(|| async { Json(json!({"ok": true})) }))
}

/// The `Idempotency-Key` header of a change (else a new id): the id of the
/// change the request makes ([`crate::change_log`]); answered in the same header.
async fn change_id(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<Response, ApiError> {
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

fn plane_routes(plane: Arc<ControlPlane>) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/resources", get(resources))
        .route("/v1/apply", post(apply))
        .route("/v1/publish", post(publish))
        .route("/v1/delete", post(delete))
        .route("/v1/release", post(release))
        .route("/v1/rollback", post(rollback))
        .route("/v1/history", get(history))
        .route("/v1/explain", post(explain))
        .route("/v1/keys/rotate", post(rotate_key))
        .route("/v1/keys/retire", post(retire_key))
        .route("/v1/config", get(config))
        .route("/v1/live", get(live))
        .merge(crate::progressive::api::routes())
        .route("/metrics", get(metrics))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such API path")
        })
        .with_state(plane)
}

type Plane = State<Arc<ControlPlane>>;

// ------------------------------------------------------------------ authorization

/// The role a request needs: `GET /v1/config` is the pull role's alone; reads
/// need read; releases, rollbacks and canary operations release; everything
/// else (apply, publish, delete, keys, tokens, and any path added later) admin.
pub fn required_role(method: &Method, path: &str) -> Role {
    match (method.as_str(), path) {
        ("GET", "/v1/config") => Role::Pull,
        ("GET", "/v1/status" | "/v1/resources" | "/v1/history" | "/v1/live" | "/metrics")
        | ("POST", "/v1/explain") => Role::Read,
        ("POST", "/v1/release" | "/v1/rollback") => Role::Release,
        (_, p) if p.starts_with("/v1/canar") => {
            if method == Method::GET {
                Role::Read
            } else {
                Role::Release
            }
        }
        _ => Role::Admin,
    }
}

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

async fn authorize(
    State(tokens): State<Arc<Tokens>>,
    request: axum::extract::Request,
    next: Next,
) -> Response {
    let needed = required_role(request.method(), request.uri().path());
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

/// An error answer: `{error, message, problems?}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    problems: Option<Box<Value>>,
    /// The change whose outcome is unknown (`outcome_unknown`).
    change: Option<String>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            problems: None,
            change: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.code, "message": self.message});
        if let Some(p) = self.problems {
            body["problems"] = *p;
        }
        if let Some(c) = self.change {
            body["change"] = json!(c);
        }
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
            AuthError::NotFound(m) => Self::new(StatusCode::NOT_FOUND, "not_found", m),
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
                ApiError {
                    status: StatusCode::BAD_REQUEST,
                    code: "invalid_resources",
                    message: format!(
                        "{n} problem{} found; nothing was changed",
                        if n == 1 { "" } else { "s" }
                    ),
                    problems: Some(Box::new(json!(errors.0))),
                    change: None,
                }
            }
            StoreError::NotFound(what) => Self::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{what} not found"),
            ),
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

pub(crate) fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("bad JSON body: {e}")))
}

pub(crate) fn changed(summary: ChangeSummary, generation: u64) -> Json<Value> {
    let mut v = json!(summary);
    v["changed"] = json!(summary_changed(&v));
    v["generation"] = json!(generation);
    v["version"] = json!(snapshot_version(generation));
    Json(v)
}

fn summary_changed(v: &Value) -> bool {
    [
        "created", "updated", "deleted", "releases", "keys", "canary",
    ]
    .iter()
    .any(|k| v[k].as_array().is_some_and(|a| !a.is_empty()))
}

// ------------------------------------------------------------------ reads

async fn metrics(State(plane): Plane) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::render(&plane),
    )
        .into_response()
}

async fn status(State(plane): Plane) -> Json<Value> {
    let store = plane.store();
    let mut releases = Vec::new();
    let mut canaries = Vec::new();
    for r in store.resources.values() {
        match r {
            Resource::VirtualEnvironment(ve) => {
                let release = ve.spec.release.clone().unwrap_or_default();
                releases.push(json!({
                    "virtualEnv": ve.metadata.name,
                    "environment": ve.spec.environment,
                    "id": release.id,
                    "apps": release.apps,
                }));
            }
            Resource::Canary(c) => canaries.push(json!({
                "name": c.metadata.name,
                "virtualEnv": c.spec.virtual_environment,
                "app": c.spec.app,
                "deployment": c.spec.deployment,
                "weight": c.spec.weight,
                "matchRules": c.spec.match_rules.len(),
                "rollout": if c.spec.steps.is_empty() {
                    None
                } else {
                    Some(store.rollouts.get(&c.metadata.name).map_or("pending", |r| r.phase.as_str()))
                },
            })),
            _ => {}
        }
    }
    let (refused, refused_total) = plane.refusals().list();
    // With replicas on etcd: every replica's Envoys, each with the replica
    // that holds it (an Envoy connected here is listed once, as ours).
    let mut envoys: Vec<Value> = plane.cache().nodes().iter().map(node_json).collect();
    let mut replicas = Value::Null;
    if let Some(view) = plane.replicas() {
        for e in &mut envoys {
            e["replica"] = json!(view.id);
        }
        for (replica, mut n) in view.remote_envoys() {
            if !envoys.iter().any(|e| e["id"] == n["id"]) {
                n["replica"] = json!(replica);
                envoys.push(n);
            }
        }
        let all = view.all();
        replicas = json!(all
            .iter()
            .map(|r| json!({
                "id": r.id,
                "xdsAddr": r.xds_addr,
                "apiAddr": r.api_addr,
                "leader": r.leader,
                "generation": r.generation,
                "envoys": r.envoys.len(),
                "atUnixMs": r.at_unix_ms,
            }))
            .collect::<Vec<_>>());
    }
    let served = plane
        .cache()
        .snapshot()
        .map(|s| s.version(crate::xds::ResourceType::Listener).to_string());
    let mut v = json!({
        "generation": store.generation,
        "version": snapshot_version(store.generation),
        "servedVersion": served,
        "resources": store.resources.len(),
        "contextKids": store.context_keys.iter().map(|k| k.kid.clone()).collect::<Vec<_>>(),
        "signingKid": store.signing_kid(),
        "releases": releases,
        "canaries": canaries,
        "envoys": envoys,
        "replicas": replicas.clone(),
        "pulling": plane.pollers().list(),
        "tlsRefused": {"latest": refused, "total": refused_total},
    });
    if replicas.is_null() {
        if let Some(o) = v.as_object_mut() {
            o.remove("replicas");
        }
    }
    Json(v)
}

/// A node's status with types by their xDS short names (`CDS`, `EDS`, ...).
pub fn node_json(n: &NodeStatus) -> Value {
    let types: serde_json::Map<String, Value> = n
        .types
        .iter()
        .map(|(kind, t)| {
            (
                kind.short_name().to_string(),
                json!({
                    "sentVersion": t.sent_version,
                    "ackedVersion": t.acked_version,
                    "lastNack": t.last_nack.as_ref().map(|k| json!({
                        "version": k.version,
                        "message": k.message,
                        "code": k.code,
                        "atUnixMs": k.at_unix_ms,
                    })),
                }),
            )
        })
        .collect();
    json!({
        "id": n.id,
        "cluster": n.cluster,
        "connected": n.connected,
        "streams": n.streams,
        "lastSeenUnixMs": n.last_seen_unix_ms,
        "types": types,
    })
}

async fn resources(State(plane): Plane) -> Json<Value> {
    let mut resources = json!(plane.store().resource_list());
    for r in resources.as_array_mut().into_iter().flatten() {
        redact_secrets(r);
    }
    Json(json!({ "resources": resources }))
}

/// Replaces the HMAC secrets of an Environment's JWT keys by `(redacted)`:
/// only the pull role (`/v1/config`) gets secrets.
fn redact_secrets(resource: &mut Value) {
    if resource["kind"] != "Environment" {
        return;
    }
    if let Some(keys) = resource
        .pointer_mut("/spec/jwt/keys")
        .and_then(Value::as_array_mut)
    {
        for k in keys {
            if let Some(secret) = k.get_mut("secret") {
                *secret = json!("(redacted)");
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HistoryQuery {
    virtual_env: Option<String>,
}

async fn history(
    State(plane): Plane,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<Value>, ApiError> {
    let store = plane.store();
    if let Some(ve) = &q.virtual_env {
        if store.get("VirtualEnvironment", ve).is_none()
            && !store.history.iter().any(|r| &r.virtual_env == ve)
        {
            return Err(StoreError::NotFound(format!("VirtualEnvironment/{ve}")).into());
        }
    }
    Ok(Json(
        json!({"history": store.history_of(q.virtual_env.as_deref())}),
    ))
}

/// The header a pulling filter names its Envoy node with.
pub const NODE_HEADER: &str = "x-switchyard-node";

async fn config(State(plane): Plane, headers: axum::http::HeaderMap) -> Json<Value> {
    let config = plane.plugin_config();
    if let Some(node) = headers.get(NODE_HEADER).and_then(|v| v.to_str().ok()) {
        let node: String = node.chars().take(256).collect();
        plane.pollers().record(&node, plane.store().generation);
    }
    Json(json!(config))
}

/// The longest `/v1/live` waits.
const MAX_LIVE_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LiveQuery {
    generation: u64,
    #[serde(default)]
    timeout_ms: u64,
}

async fn live(State(plane): Plane, Query(q): Query<LiveQuery>) -> Json<Value> {
    let timeout = std::time::Duration::from_millis(q.timeout_ms).min(MAX_LIVE_WAIT);
    let rollout = crate::rollout::wait_settled(
        plane.cache(),
        plane.pollers(),
        plane.replicas(),
        q.generation,
        timeout,
    )
    .await;
    let mut v = json!(rollout);
    v["live"] = json!(rollout.live());
    v["connected"] = json!(rollout.envoys.len());
    v["complete"] = json!(rollout.complete());
    Json(v)
}

// ------------------------------------------------------------------ changes

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileText {
    filename: String,
    text: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyBody {
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
    fn documents(self) -> Result<(Vec<Located>, Option<String>), ApiError> {
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

/// The caller's token, when the API runs with tokens (inserted by [`authorize`]).
pub(crate) type Caller = Option<Extension<Identity>>;

/// Who made a change, as the release history and canary events record it: the
/// name of the token that authenticated the call, so the record cannot be
/// forged by the client. A name the client gives (`who` in the body: the CLI's
/// `--who`, else `$USER`) is unverified; it is kept beside the token's name,
/// `ci (says alice)`, when it differs. Without tokens (`serve
/// --insecure-no-auth`, loopback only) the client's name is all there is.
pub(crate) fn who(caller: &Caller, said: Option<String>) -> String {
    let said = said.filter(|w| !w.trim().is_empty());
    match (caller, said) {
        (Some(Extension(id)), Some(said)) if said != id.name => {
            format!("{} (says {said})", id.name)
        }
        (Some(Extension(id)), _) => id.name.clone(),
        (None, said) => said.unwrap_or_else(|| "unknown".to_string()),
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
) -> Result<Json<Value>, ApiError> {
    let (docs, said) = parse::<ApplyBody>(&body)?.documents()?;
    let who = who(&caller, said);
    let (summary, generation) = plane
        .change_blocking(move |s| change(s, &docs, &who))
        .await?;
    Ok(changed(summary, generation))
}

async fn apply(
    State(plane): Plane,
    caller: Caller,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    change_documents(plane, caller, body, Store::apply).await
}

async fn publish(
    State(plane): Plane,
    caller: Caller,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    change_documents(plane, caller, body, Store::publish).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteBody {
    kind: String,
    name: String,
    #[serde(default)]
    #[allow(dead_code)]
    who: Option<String>,
}

async fn delete(State(plane): Plane, Body(body): Body) -> Result<Json<Value>, ApiError> {
    let b: DeleteBody = parse(&body)?;
    let (summary, generation) = plane
        .change_blocking(move |s| s.delete(&b.kind, &b.name))
        .await?;
    Ok(changed(summary, generation))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ReleaseBody {
    deployment: String,
    virtual_env: String,
    #[serde(default)]
    who: Option<String>,
}

async fn release(
    State(plane): Plane,
    caller: Caller,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    let b: ReleaseBody = parse(&body)?;
    let who = who(&caller, b.who);
    let (summary, generation) = plane
        .change_blocking(move |s| s.release(&b.deployment, &b.virtual_env, &who))
        .await?;
    Ok(changed(summary, generation))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RollbackBody {
    virtual_env: String,
    #[serde(default)]
    app: Option<String>,
    #[serde(default)]
    who: Option<String>,
}

async fn rollback(
    State(plane): Plane,
    caller: Caller,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    let b: RollbackBody = parse(&body)?;
    let who = who(&caller, b.who);
    let (summary, generation) = plane
        .change_blocking(move |s| s.rollback(&b.virtual_env, b.app.as_deref(), &who))
        .await?;
    Ok(changed(summary, generation))
}

// ------------------------------------------------------------------ context keys

// The body (`{}`) is read so that the connection stays usable for the next
// request (hyper closes a connection whose request body was left unread).
async fn rotate_key(State(plane): Plane, Body(_): Body) -> Result<Json<Value>, ApiError> {
    let key = crate::context_keys::new_kid()
        .and_then(|kid| crate::context_keys::generate_context_key(&kid))
        .map_err(|e| StoreError::BadRequest(format!("no random key could be made: {e}")))?;
    let (summary, generation) = plane
        .change_blocking(move |s| s.rotate_key(key.clone()))
        .await?;
    Ok(changed(summary, generation))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetireBody {
    kid: String,
}

async fn retire_key(State(plane): Plane, Body(body): Body) -> Result<Json<Value>, ApiError> {
    let b: RetireBody = parse(&body)?;
    let (summary, generation) = plane.change_blocking(move |s| s.retire_key(&b.kid)).await?;
    Ok(changed(summary, generation))
}

// ------------------------------------------------------------------ explain

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExplainBody {
    path: String,
    #[serde(default = "get_method")]
    method: String,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    source: Option<String>,
}

fn get_method() -> String {
    "GET".into()
}

impl ExplainBody {
    /// The request to explain, with header names and values as Envoy would hand
    /// them over (trimmed, names lower-cased).
    fn headers(&self) -> Result<Vec<(String, String)>, ApiError> {
        if !self.path.starts_with('/') {
            return Err(ApiError::bad_request("'path' must start with '/'"));
        }
        Ok(self
            .headers
            .iter()
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect())
    }

    fn request<'a>(&'a self, headers: &'a [(String, String)], now: u64) -> Request<'a> {
        Request {
            method: &self.method,
            path: &self.path,
            headers,
            source_address: self.source.as_deref(),
            now_unix_seconds: now,
        }
    }
}

async fn explain(State(plane): Plane, Body(body): Body) -> Result<Json<Value>, ApiError> {
    let b: ExplainBody = parse(&body)?;
    let headers = b.headers()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let request = b.request(&headers, now);
    let index = plane.index();
    let mut out = Value::Null;
    crate::explain::explain(&index, &request, |v, human| {
        out = v.clone();
        out["human"] = json!(human);
    });
    Ok(Json(out))
}

// ------------------------------------------------------------------ tokens

fn token_routes(tokens: Arc<Tokens>) -> Router {
    Router::new()
        .route("/v1/tokens", get(list_tokens).post(create_token))
        .route("/v1/tokens/revoke", post(revoke_token))
        .with_state(tokens)
}

type TokenState = State<Arc<Tokens>>;

async fn list_tokens(State(tokens): TokenState) -> Json<Value> {
    Json(json!({"tokens": tokens.list()}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTokenBody {
    name: String,
    role: String,
}

async fn create_token(
    State(tokens): TokenState,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    let b: CreateTokenBody = parse(&body)?;
    let role: Role = b.role.parse()?;
    let token = tokens.create(&b.name, role)?;
    tracing::info!(name = %b.name, %role, "API token created");
    Ok(Json(json!({"name": b.name, "role": role, "token": token})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeTokenBody {
    name: String,
}

async fn revoke_token(
    State(tokens): TokenState,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    let b: RevokeTokenBody = parse(&body)?;
    let revoked = tokens.revoke(&b.name)?;
    tracing::info!(name = %revoked.name, role = %revoked.role, "API token revoked");
    Ok(Json(json!({"revoked": revoked.name, "role": revoked.role})))
}

/// Reads `body` as each request body the API accepts, the way its handler does
/// before touching the store: an apply/publish body down to its located
/// resource documents, an explain body down to the request it routes (by
/// `index` at `now`). For the fuzz targets (`fuzz/`), which cannot run the
/// handlers without a control plane; nothing here changes any state.
#[doc(hidden)]
pub fn read_bodies(body: &[u8], index: &switchyard_engine::Index, now: u64) {
    let body = Bytes::copy_from_slice(body);
    if let Ok(b) = parse::<ApplyBody>(&body) {
        let _ = b.documents();
    }
    let _ = parse::<DeleteBody>(&body);
    let _ = parse::<ReleaseBody>(&body).map(|b| who(&None, b.who));
    let _ = parse::<RollbackBody>(&body).map(|b| who(&None, b.who));
    let _ = parse::<RetireBody>(&body);
    let _ = parse::<CreateTokenBody>(&body).map(|b| b.role.parse::<Role>());
    let _ = parse::<RevokeTokenBody>(&body);
    if let Ok(b) = parse::<ExplainBody>(&body) {
        if let Ok(headers) = b.headers() {
            crate::explain::explain(index, &b.request(&headers, now), |_, _| {});
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{Client, ClientError};
    use crate::snapshot_builder::BuildOptions;
    use crate::state::Store;
    use crate::xds::SnapshotCache;

    use crate::test_fixtures::WEB_V1 as RESOURCES;

    fn server() -> String {
        server_with(None)
    }

    /// Serves the API (with `tokens`: authenticated) through the server loop
    /// `serve` uses, in a background runtime; returns its URL.
    fn server_with(tokens: Option<Arc<Tokens>>) -> String {
        let docs = load::parse_text(std::path::Path::new("r.yaml"), RESOURCES).unwrap();
        let (store, _) = Store::new().apply(&docs, "t").unwrap();
        let opts = BuildOptions {
            wasm_path: "/filter.wasm".into(),
            genesis_listen: ("127.0.0.1".into(), 8080),
            internal_listen: None,
            context_keys: Vec::new(),
        };
        let plane = Arc::new(ControlPlane::start(store, SnapshotCache::new(), opts, None).unwrap());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(listener).unwrap();
                crate::http_server::serve(
                    l,
                    router(plane, tokens),
                    None,
                    Default::default(),
                    std::future::pending(),
                )
                .await;
            });
        });
        format!("http://{addr}")
    }

    fn api_error(r: Result<Value, ClientError>) -> (u16, String, Value) {
        match r {
            Err(ClientError::Api {
                status, code, body, ..
            }) => (status, code, *body),
            other => panic!("expected an API error, got {other:?}"),
        }
    }

    #[test]
    fn errors_are_json_with_status_codes() {
        let c = Client::new(&server());
        let (status, code, _) = api_error(c.post("/v1/apply", &json!({"nope": 1})));
        assert_eq!((status, code.as_str()), (400, "bad_request"));

        let bad = RESOURCES.replace("/hello", "hello");
        let (status, code, body) =
            api_error(c.post("/v1/apply", &json!({"filename": "x.yaml", "text": bad})));
        assert_eq!((status, code.as_str()), (400, "invalid_resources"));
        assert_eq!(body["problems"][0]["file"], "x.yaml");
        assert!(body["problems"][0]["line"].as_u64().unwrap() > 10, "{body}");

        let (status, code, _) = api_error(c.post(
            "/v1/release",
            &json!({"deployment": "web-v9", "virtualEnv": "team-a"}),
        ));
        assert_eq!((status, code.as_str()), (404, "not_found"));
        let (status, code, _) = api_error(c.post(
            "/v1/rollback",
            &json!({"virtualEnv": "team-a", "app": "web"}),
        ));
        assert_eq!((status, code.as_str()), (409, "conflict"));
        let (status, _, _) = api_error(c.get("/v1/history", &[("virtualEnv", "nope")]));
        assert_eq!(status, 404);
        let (status, _, _) = api_error(c.get("/v1/nothing", &[]));
        assert_eq!(status, 404);
    }

    #[test]
    fn every_call_needs_a_token_of_a_role_that_grants_it() {
        let (tokens, admin) = Tokens::open(None).unwrap();
        let tokens = Arc::new(tokens);
        let url = server_with(Some(tokens.clone()));
        let admin = Client::new(&url).with_token(admin);
        let token = |role: &str| {
            let t = admin
                .post("/v1/tokens", &json!({"name": role, "role": role}))
                .unwrap();
            Client::new(&url).with_token(t["token"].as_str().map(str::to_string))
        };
        let (read, release, pull) = (token("read"), token("release"), token("pull"));
        let nobody = Client::new(&url);
        let wrong = Client::new(&url).with_token(Some("syt_wrong".into()));
        let release_body = json!({"deployment": "web-v1", "virtualEnv": "team-a"});
        let apply_body = json!({"filename": "r.yaml", "text": RESOURCES});

        for c in [&nobody, &wrong] {
            let (status, code, body) = api_error(c.get("/v1/status", &[]));
            assert_eq!((status, code.as_str()), (401, "unauthenticated"), "{body}");
        }
        // read: reads, not changes, not the secrets
        assert!(read.get("/v1/status", &[]).is_ok());
        assert!(read.get("/v1/history", &[]).is_ok());
        assert!(read
            .post("/v1/explain", &json!({"path": "/dev/hello"}))
            .is_ok());
        for r in [
            read.post("/v1/release", &release_body),
            read.get("/v1/config", &[]),
            read.post("/v1/apply", &apply_body),
        ] {
            let (status, code, body) = api_error(r);
            assert_eq!((status, code.as_str()), (403, "forbidden"), "{body}");
            assert!(
                body["message"].as_str().unwrap().contains("role read"),
                "{body}"
            );
        }
        // release: releases, not apply, keys, tokens or the secrets
        assert!(release.post("/v1/release", &release_body).is_ok());
        for r in [
            release.post("/v1/apply", &apply_body),
            release.post("/v1/keys/rotate", &json!({})),
            release.get("/v1/tokens", &[]),
            release.get("/v1/config", &[]),
        ] {
            assert_eq!(api_error(r).0, 403);
        }
        // admin: everything but the secrets
        assert!(admin.post("/v1/apply", &apply_body).is_ok());
        assert_eq!(api_error(admin.get("/v1/config", &[])).0, 403);
        // pull: only the secrets
        assert!(pull.get("/v1/config", &[]).unwrap()["resources"].is_array());
        assert_eq!(api_error(pull.get("/v1/status", &[])).0, 403);
        // a revoked token stops working at once; the last admin stays
        admin
            .post("/v1/tokens/revoke", &json!({"name": "read"}))
            .unwrap();
        assert_eq!(api_error(read.get("/v1/status", &[])).0, 401);
        let (status, _, _) = api_error(admin.post("/v1/tokens/revoke", &json!({"name": "admin"})));
        assert_eq!(status, 409);
        // no token appears in any answer but the one that created it
        let list = admin.get("/v1/tokens", &[]).unwrap().to_string();
        assert!(!list.contains("syt_") && !list.contains("sha256"), "{list}");
        assert!(Client::new(&url).get("/healthz", &[]).is_ok());
    }

    #[test]
    fn bodies_are_limited_and_bad_input_is_a_json_error() {
        let c = Client::new(&server());
        let big = "x".repeat(MAX_BODY + 1);
        let (status, code, _) =
            api_error(c.post("/v1/apply", &json!({"filename": "a", "text": big})));
        assert_eq!((status, code.as_str()), (413, "body_too_large"));
        let (status, code, _) = api_error(c.get("/v1/live", &[("generation", "x")]));
        assert_eq!((status, code.as_str()), (400, "bad_request"));
        let (status, code, _) = api_error(c.post("/v1/release", &json!([1, 2])));
        assert_eq!((status, code.as_str()), (400, "bad_request"));
    }

    #[test]
    fn resources_never_show_secrets() {
        let env = "kind: Environment\nmetadata: {name: dev}\nspec:\n  subPath: dev\n  defaultVirtualEnvironment: team-a\n  jwt:\n    keys: [{kid: k, alg: HS256, secret: this-hmac-secret-is-longer-than-32-bytes}]\n";
        let c = Client::new(&server());
        c.post("/v1/apply", &json!({"filename": "e.yaml", "text": env}))
            .unwrap();
        let all = c.get("/v1/resources", &[]).unwrap().to_string();
        assert!(
            !all.contains("this-hmac-secret-is-longer-than-32-bytes"),
            "{all}"
        );
        assert!(all.contains("(redacted)"), "{all}");
    }

    #[test]
    fn reads_and_explain() {
        let c = Client::new(&server());
        let status = c.get("/v1/status", &[]).unwrap();
        assert_eq!(status["version"], "1");
        assert_eq!(status["releases"][0]["apps"]["web"], "web-v1");
        assert!(!status.to_string().contains("secret"));
        let config = c.get("/v1/config", &[]).unwrap();
        assert_eq!(config["resources"].as_array().unwrap().len(), 3);
        assert_eq!(
            c.get("/v1/resources", &[]).unwrap()["resources"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
        let e = c
            .post(
                "/v1/explain",
                &json!({"path": "/dev/hello", "headers": [["X-A", "1"]]}),
            )
            .unwrap();
        assert_eq!(
            (e["routed"].clone(), e["deployment"].clone()),
            (json!(true), json!("web-v1"))
        );
        assert!(e["human"].as_str().unwrap().contains("web-v1"));
        let e = c.post("/v1/explain", &json!({"path": "/nowhere"})).unwrap();
        assert_eq!(e["error"], "environment_not_found");
    }
}
