//! The routing table: what a pulling filter gets (`/v1/config`) and what the
//! engine decides for a described request (`/v1/explain`).

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use switchyard_engine::{PluginConfig, Request};

use super::plumbing::{parse, ApiError, Body, Plane};
use crate::views::ExplainView;

/// The header a pulling filter names its Envoy node with.
pub const NODE_HEADER: &str = "x-switchyard-node";

/// `GET /v1/config`: the genesis filter's plugin configuration; the poll is
/// recorded per node.
pub async fn config(State(state): Plane, headers: axum::http::HeaderMap) -> Json<PluginConfig> {
    let plane = state.plane;
    let config = plane.plugin_config();
    if let Some(node) = headers.get(NODE_HEADER).and_then(|v| v.to_str().ok()) {
        let node: String = node.chars().take(256).collect();
        plane.pollers().record(&node, plane.store().generation);
    }
    Json(config)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExplainBody {
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
    pub(super) fn headers(&self) -> Result<Vec<(String, String)>, ApiError> {
        if !self.path.starts_with('/') {
            return Err(ApiError::bad_request("'path' must start with '/'"));
        }
        Ok(self
            .headers
            .iter()
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect())
    }

    pub(super) fn request<'a>(&'a self, headers: &'a [(String, String)], now: u64) -> Request<'a> {
        Request {
            method: &self.method,
            path: &self.path,
            headers,
            source_address: self.source.as_deref(),
            now_unix_seconds: now,
        }
    }
}

/// `POST /v1/explain`.
pub async fn explain(State(state): Plane, Body(body): Body) -> Result<Json<ExplainView>, ApiError> {
    let b: ExplainBody = parse(&body)?;
    let headers = b.headers()?;
    let now = crate::clock::now_unix_ms() / 1000;
    let request = b.request(&headers, now);
    Ok(Json(crate::explain::explain(
        &state.plane.index(),
        &request,
    )))
}
