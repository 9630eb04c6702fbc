//! Where things are: the control plane's status, whether a change is live on
//! every Envoy, Prometheus metrics and the liveness probe.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use switchyard_engine::Resource;

use super::plumbing::{Plane, Query};
use crate::propagation::{EnvoyState, Propagation};
use crate::serve::{snapshot_version, ControlPlane};
use crate::views::{
    CanarySummaryView, EnvoyLiveView, EnvoyStateView, HealthView, LiveView, NackView, NodeView,
    PollView, RefusalView, ReleaseStatusView, ReplicaSummaryView, StatusView, TlsRefusedView,
    XdsTypeView,
};
use crate::xds::NodeStatus;

/// `GET /healthz` (no credential: liveness probes).
pub async fn healthz() -> Json<HealthView> {
    Json(HealthView { ok: true })
}

/// `GET /metrics`: Prometheus text ([`crate::metrics`]).
pub async fn metrics(State(state): Plane) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::render(&state.plane),
    )
        .into_response()
}

/// The releases and the Canaries of the store.
fn releases_and_canaries(plane: &ControlPlane) -> (Vec<ReleaseStatusView>, Vec<CanarySummaryView>) {
    let store = plane.store();
    let mut releases = Vec::new();
    let mut canaries = Vec::new();
    for r in store.resources.values() {
        match r {
            Resource::VirtualEnvironment(ve) => {
                let release = ve.spec.release.clone().unwrap_or_default();
                releases.push(ReleaseStatusView {
                    virtual_env: ve.metadata.name.clone(),
                    environment: ve.spec.environment.clone(),
                    id: release.id,
                    apps: release.apps,
                });
            }
            Resource::Canary(c) => canaries.push(CanarySummaryView {
                name: c.metadata.name.clone(),
                virtual_env: c.spec.virtual_environment.clone(),
                app: c.spec.app.clone(),
                deployment: c.spec.deployment.clone(),
                weight: c.spec.weight.clone(),
                match_rules: c.spec.match_rules.len(),
                rollout: (!c.spec.steps.is_empty()).then(|| {
                    store
                        .rollouts
                        .get(&c.metadata.name)
                        .map_or("pending", |r| r.phase.as_str())
                        .to_string()
                }),
            }),
            _ => {}
        }
    }
    (releases, canaries)
}

/// `GET /v1/status`.
pub async fn status(State(state): Plane) -> Json<StatusView> {
    let plane = &state.plane;
    let (releases, canaries) = releases_and_canaries(plane);
    let (latest, total) = plane.refusals().list();
    // With replicas on etcd: every replica's Envoys, each with the replica
    // that holds it (an Envoy connected here is listed once, as ours).
    let mut envoys: Vec<NodeView> = plane.cache().nodes().iter().map(node_view).collect();
    let mut replicas = None;
    if let Some(view) = plane.replicas() {
        for e in &mut envoys {
            e.replica = Some(view.id.clone());
        }
        for (replica, mut n) in view.remote_envoys() {
            if !envoys.iter().any(|e| e.id == n.id) {
                n.replica = Some(replica);
                envoys.push(n);
            }
        }
        let all = view.all().into_iter().map(|r| ReplicaSummaryView {
            id: r.id,
            xds_addr: r.xds_addr,
            api_addr: r.api_addr,
            leader: r.leader,
            generation: r.generation,
            envoys: r.envoys.len(),
            at_unix_ms: r.at_unix_ms,
        });
        replicas = Some(all.collect());
    }
    let served = plane
        .cache()
        .snapshot()
        .map(|s| s.version(crate::xds::ResourceType::Listener).to_string());
    let store = plane.store();
    Json(StatusView {
        generation: store.generation,
        version: snapshot_version(store.generation),
        served_version: served,
        resources: store.resources.len(),
        context_kids: store.context_keys.iter().map(|k| k.kid.clone()).collect(),
        signing_kid: store.signing_kid().map(str::to_string),
        releases,
        canaries,
        envoys,
        replicas,
        pulling: plane.pollers().list().into_iter().map(poll_view).collect(),
        tls_refused: TlsRefusedView {
            latest: latest
                .into_iter()
                .map(|r| RefusalView {
                    listener: r.listener.to_string(),
                    peer: r.peer,
                    reason: r.reason,
                    at_unix_ms: r.at_unix_ms,
                })
                .collect(),
            total,
        },
    })
}

/// A node's status with types by their xDS short names (`CDS`, `EDS`, ...),
/// as `status` shows it and the replicas publish it.
pub fn node_view(n: &NodeStatus) -> NodeView {
    let types = n
        .types
        .iter()
        .map(|(kind, t)| {
            let view = XdsTypeView {
                sent_version: t.sent_version.clone(),
                acked_version: t.acked_version.clone(),
                last_nack: t.last_nack.as_ref().map(|k| NackView {
                    version: k.version.clone(),
                    message: k.message.clone(),
                    code: k.code,
                    at_unix_ms: k.at_unix_ms,
                }),
            };
            (kind.short_name().to_string(), view)
        })
        .collect();
    NodeView {
        id: n.id.clone(),
        cluster: n.cluster.clone(),
        connected: n.connected,
        streams: n.streams,
        last_seen_unix_ms: n.last_seen_unix_ms,
        types,
        replica: None,
    }
}

fn poll_view(p: crate::propagation::Poll) -> PollView {
    PollView {
        id: p.id,
        last_poll_unix_ms: p.last_poll_unix_ms,
        generation: p.generation,
    }
}

/// The longest `/v1/live` waits.
const MAX_LIVE_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct LiveQuery {
    generation: u64,
    #[serde(default)]
    timeout_ms: u64,
}

/// `GET /v1/live`: waits until every connected Envoy ACKed the generation or
/// NACKed it, or the timeout passed.
pub async fn live(State(state): Plane, Query(q): Query<LiveQuery>) -> Json<LiveView> {
    let plane = &state.plane;
    let timeout = std::time::Duration::from_millis(q.timeout_ms).min(MAX_LIVE_WAIT);
    let rollout = crate::propagation::wait_settled(
        plane.cache(),
        plane.pollers(),
        plane.replicas(),
        q.generation,
        timeout,
    )
    .await;
    Json(live_view(rollout))
}

fn live_view(rollout: Propagation) -> LiveView {
    let (live, connected, complete) = (rollout.live(), rollout.envoys.len(), rollout.complete());
    let envoys = rollout
        .envoys
        .into_iter()
        .map(|e| EnvoyLiveView {
            id: e.id,
            replica: e.replica,
            live_after_ms: e.live_after_ms,
            state: match e.state {
                EnvoyState::Live => EnvoyStateView::Live,
                EnvoyState::Nacked {
                    kind,
                    version,
                    message,
                } => EnvoyStateView::Nacked {
                    kind,
                    version,
                    message,
                },
                EnvoyState::Pending { waiting_for } => EnvoyStateView::Pending { waiting_for },
            },
        })
        .collect();
    LiveView {
        generation: rollout.generation,
        envoys,
        pulling: rollout.pulling.into_iter().map(poll_view).collect(),
        live,
        connected,
        complete,
        elapsed_ms: None,
    }
}
