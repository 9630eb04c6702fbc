//! The HTTP API of `switchyard serve` (JSON), used by the CLI.
//!
//! | method | path | role | body / query | answer ([`crate::views`]) |
//! |---|---|---|---|---|
//! | GET | /healthz | none | | `{"ok": true}` (liveness probes) |
//! | GET | /v1/status | read | | releases per VE, canaries, connected Envoys (per type sent/ACKed versions, last NACK), context key ids |
//! | GET | /v1/resources | read | | every resource (secrets redacted) |
//! | GET | /v1/history | read | `?virtualEnv=` | release records, oldest first |
//! | GET | /v1/live | read | `?generation=G&timeoutMs=T` | waits (at most T, ≤ 10 min) until every connected Envoy ACKed generation G or later for every type, or NACKed it; where each Envoy is (with replicas on etcd: every replica's Envoys, each with its `replica`), when each was first seen live (`liveAfterMs`), and the pulling Envoys |
//! | GET | /metrics | read | | Prometheus text metrics (`crate::metrics`) |
//! | POST | /v1/explain | read | `{path, method?, headers?: [[name, value]], source?}` | the engine's decision |
//! | GET | /v1/canaries | read | | every progressive rollout: phase, step, weight, per-version counts, the test statistic and its bound, the last decision, events |
//! | GET | /v1/canaries/{name} | read | | one of them |
//! | GET | /v1/canaries/{name}/series | read | | the rollout's LRS counts, one sample a second, oldest first ([`crate::ui::series`]) |
//! | POST | /v1/canary/{action} | release | `{name, full?, who}`; action: start, pause, resume, promote, abort | what changed (`canary`), the generation to wait for |
//! | POST | /v1/release | release | `{deployment, virtualEnv, who}` | the release record |
//! | POST | /v1/rollback | release | `{virtualEnv, app?, who}` | the release record |
//! | POST | /v1/apply | admin | `{filename, text}` or `{files: [{filename, text}]}`, `who` | what was created/updated/unchanged, releases recorded |
//! | POST | /v1/publish | admin | same as apply, AppDeployments only | same |
//! | POST | /v1/delete | admin | `{kind, name}` | what was deleted |
//! | POST | /v1/keys/rotate | admin | `{}` | the new context key |
//! | POST | /v1/keys/retire | admin | `{kid}` | the retired context key |
//! | GET | /v1/tokens | admin | | every API token's name, role and creation time |
//! | POST | /v1/tokens | admin | `{name, role}` | a new token (shown only in this answer) |
//! | POST | /v1/tokens/revoke | admin | `{name}` | the revoked token's name and role |
//! | GET | /v1/whoami | read | | the calling token's name and role, whether tokens are checked |
//! | GET | /ui | none | | a redirect to `/ui/` |
//! | GET | /ui/ | none | | the dashboard's page ([`crate::ui`]; its files hold no data) |
//! | GET | /ui/{file} | none | | the dashboard's script, style sheet and icon |
//! | GET | /v1/config | pull | header `x-switchyard-node` | the genesis filter's plugin configuration (pull mode; contains the context keys); the poll is recorded per node |
//!
//! [`routes`] is this table in code: each route names its handler and the
//! role it needs, so a route cannot be added without one; any other path
//! needs admin (and then answers 404). Bodies are limited to [`MAX_BODY`]
//! bytes, read within [`BODY_TIMEOUT`] ([`plumbing`]).
//!
//! Errors are `{error, message, problems?}`: 400 `invalid_resources` (with every
//! problem, file and line), 400 `bad_request`, 401 `unauthenticated`, 403
//! `forbidden`, 404 `not_found`, 408 `request_timeout`, 409 `conflict`, 413
//! `body_too_large`, 413 `state_too_large` (the state would pass etcd's request
//! limit), 422 `snapshot_invalid`, 500 `state_not_saved`, 503
//! `store_unavailable` (etcd cannot be reached: nothing changed, Envoys keep
//! the last configuration; reads answer from the last known state).

mod canaries;
mod config;
mod keys;
pub mod plumbing;
mod releases;
mod resources;
mod status;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::http::Method;
use axum::middleware::from_fn_with_state;
use axum::routing::{any, get, post, MethodRouter};
use axum::Router;

use crate::auth::{Role, Tokens};
use crate::serve::ControlPlane;
pub use config::NODE_HEADER;
pub use plumbing::{ApiError, ApiState, BODY_TIMEOUT, MAX_BODY};
pub use status::node_view;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without a credential (`/healthz`).
    Anyone,
    /// A token of a role that grants this one.
    Needs(Role),
}

/// One route: method, path, who may call it, and its handler.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    handler: MethodRouter<ApiState>,
}

impl Route {
    fn get<H: Handler<T, ApiState>, T: 'static>(path: &'static str, access: Access, h: H) -> Self {
        let handler = get(h);
        let method = Method::GET;
        Self {
            method,
            path,
            access,
            handler,
        }
    }

    fn post<H: Handler<T, ApiState>, T: 'static>(path: &'static str, access: Access, h: H) -> Self {
        let handler = post(h);
        let method = Method::POST;
        Self {
            method,
            path,
            access,
            handler,
        }
    }
}

/// Every route of the API (the table of the module comment).
pub fn routes() -> Vec<Route> {
    use Access::{Anyone, Needs};
    use Role::{Admin, Pull, Read, Release};
    vec![
        Route::get("/healthz", Anyone, status::healthz),
        Route::get("/v1/status", Needs(Read), status::status),
        Route::get("/v1/resources", Needs(Read), resources::resources),
        Route::get("/v1/history", Needs(Read), releases::history),
        Route::get("/v1/live", Needs(Read), status::live),
        Route::get("/metrics", Needs(Read), status::metrics),
        Route::post("/v1/explain", Needs(Read), config::explain),
        Route::get("/v1/canaries", Needs(Read), canaries::list),
        Route::get("/v1/canaries/{name}", Needs(Read), canaries::one),
        Route::get("/v1/canaries/{name}/series", Needs(Read), canaries::series),
        Route::post("/v1/canary/{action}", Needs(Release), canaries::command),
        Route::post("/v1/release", Needs(Release), releases::release),
        Route::post("/v1/rollback", Needs(Release), releases::rollback),
        Route::post("/v1/apply", Needs(Admin), resources::apply),
        Route::post("/v1/publish", Needs(Admin), resources::publish),
        Route::post("/v1/delete", Needs(Admin), resources::delete),
        Route::post("/v1/keys/rotate", Needs(Admin), keys::rotate_key),
        Route::post("/v1/keys/retire", Needs(Admin), keys::retire_key),
        Route::get("/v1/tokens", Needs(Admin), keys::list_tokens),
        Route::post("/v1/tokens", Needs(Admin), keys::create_token),
        Route::post("/v1/tokens/revoke", Needs(Admin), keys::revoke_token),
        Route::get("/v1/whoami", Needs(Read), keys::whoami),
        Route::get("/ui", Anyone, crate::ui::redirect),
        Route::get("/ui/", Anyone, crate::ui::page),
        Route::get("/ui/{file}", Anyone, crate::ui::file),
        Route::get("/v1/config", Needs(Pull), config::config),
    ]
}

/// The API over `plane`; with `tokens`, every route but the open ones must be
/// called with a token of a role that grants the route's. Without (`serve
/// --insecure-no-auth`, loopback only) anyone who can connect may do anything.
pub fn router(plane: Arc<ControlPlane>, tokens: Option<Arc<Tokens>>) -> Router {
    let guard = |needed: Role| {
        let tokens = tokens.clone();
        move |handler: MethodRouter<ApiState>| match tokens {
            Some(tokens) => {
                handler.layer(from_fn_with_state((tokens, needed), plumbing::authorize))
            }
            None => handler,
        }
    };
    let mut router = Router::new();
    for route in routes() {
        let handler = match route.access {
            Access::Anyone => route.handler,
            Access::Needs(role) => guard(role)(route.handler),
        };
        router = router.route(route.path, handler);
    }
    let not_found = guard(Role::Admin)(any(|| async { ApiError::not_found("no such API path") }));
    let state = ApiState {
        series: crate::ui::series::Series::start(&plane),
        plane,
        tokens,
    };
    router
        .fallback_service(not_found.with_state(state.clone()))
        .layer(axum::middleware::from_fn(plumbing::change_id))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Reads `body` as each request body the API accepts, the way its handler does
/// before touching the store: an apply/publish body down to its located
/// resource documents, an explain body down to the request it routes (by
/// `index` at `now`). For the fuzz targets (`fuzz/`), which cannot run the
/// handlers without a control plane; nothing here changes any state.
#[doc(hidden)]
pub fn read_bodies(body: &[u8], index: &switchyard_engine::Index, now: u64) {
    use plumbing::{parse, who};
    let body = Bytes::copy_from_slice(body);
    if let Ok(b) = parse::<resources::ApplyBody>(&body) {
        let _ = b.documents();
    }
    let _ = parse::<resources::DeleteBody>(&body);
    let _ = parse::<releases::ReleaseBody>(&body).map(|b| who(&None, b.who));
    let _ = parse::<releases::RollbackBody>(&body).map(|b| who(&None, b.who));
    let _ = parse::<keys::RetireBody>(&body);
    let _ = parse::<keys::CreateTokenBody>(&body).map(|b| b.role.parse::<Role>());
    let _ = parse::<keys::RevokeTokenBody>(&body);
    let _ = parse::<canaries::CommandBody>(&body).map(|b| who(&None, b.who));
    if let Ok(b) = parse::<config::ExplainBody>(&body) {
        if let Ok(headers) = b.headers() {
            crate::explain::explain(index, &b.request(&headers, now));
        }
    }
}

#[cfg(test)]
mod tests;
