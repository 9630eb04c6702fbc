//! A change's propagation: it is *live* (the one meaning of "live" in this
//! crate) when every connected Envoy has ACKed, for every resource type it is
//! served, a snapshot version at or after the change's generation (snapshot
//! versions are store generations; see [`crate::serve::snapshot_version`]).
//!
//! Because the ADS server only sends the config that routes to new clusters once
//! those clusters are usable ([`crate::xds::server`]), "every type ACKed" means the
//! Envoy routes by the change. An Envoy that NACKed a version at or after the
//! generation will not get there without another change: it is reported, and
//! waiting for it ends. Pull-mode Envoys have no ACK: they are listed as pulling,
//! with the time and generation of their last poll.
//!
//! An ACK means Envoy's main thread has applied the config; it then posts it to
//! the worker threads, which take it on their next event-loop turn. So a wait
//! that ends with every Envoy live adds [`WORKER_GRACE`] before it answers: the
//! request a user sends right after `release` returns meets the new config.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::clock::now_unix_ms;
use crate::replicas::ReplicaView;
use crate::views::NodeView;
use crate::xds::{NodeStatus, SnapshotCache};

/// Where one ADS-connected Envoy is with respect to a generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum EnvoyState {
    /// Every type ACKed at or after the generation.
    Live,
    /// Envoy NACKed a version at or after the generation.
    Nacked {
        /// The type (`CDS`, `EDS`, ...) NACKed.
        kind: String,
        /// The NACKed version.
        version: String,
        /// Envoy's error message.
        message: String,
    },
    /// Not (yet) ACKed for some type.
    Pending {
        /// The types not ACKed at or after the generation.
        waiting_for: Vec<String>,
    },
}

/// Where one Envoy is in a change's propagation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvoyPropagation {
    pub id: String,
    /// The replica it is connected to (`serve --store etcd://…` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    /// How long after the wait began it was first seen live ([`wait_settled`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_after_ms: Option<u64>,
    #[serde(flatten)]
    pub state: EnvoyState,
}

/// A pull-mode Envoy's last poll of `/v1/config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Poll {
    /// The node id the filter sent (`x-switchyard-node`).
    pub id: String,
    pub last_poll_unix_ms: u64,
    /// The store generation it was given.
    pub generation: u64,
}

/// The pull-mode Envoys seen polling, by node id. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Pollers(Arc<Mutex<BTreeMap<String, Poll>>>);

impl Pollers {
    /// Records a poll by `id` answered with `generation`.
    pub fn record(&self, id: &str, generation: u64) {
        let mut table = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        table.insert(
            id.to_string(),
            Poll {
                id: id.to_string(),
                last_poll_unix_ms: now_unix_ms(),
                generation,
            },
        );
    }

    /// Every pulling Envoy seen, by node id.
    pub fn list(&self) -> Vec<Poll> {
        let table = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        table.values().cloned().collect()
    }
}

/// Where every connected Envoy is with respect to `generation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Propagation {
    pub generation: u64,
    /// ADS-connected Envoys.
    pub envoys: Vec<EnvoyPropagation>,
    /// Pull-mode Envoys (not waited for).
    pub pulling: Vec<Poll>,
}

impl Propagation {
    /// Envoys that route by the generation.
    pub fn live(&self) -> usize {
        self.envoys
            .iter()
            .filter(|e| e.state == EnvoyState::Live)
            .count()
    }

    /// No connected Envoy is still pending (each is live or NACKed).
    pub fn settled(&self) -> bool {
        !self
            .envoys
            .iter()
            .any(|e| matches!(e.state, EnvoyState::Pending { .. }))
    }

    /// Every connected Envoy is live.
    pub fn complete(&self) -> bool {
        self.live() == self.envoys.len()
    }
}

/// The generation a wire version (`7`, `7+retiring`) belongs to. A staged
/// `7+internal-first` (the internal table of 7 sent alone, `crate::xds`) is
/// not yet 7: the genesis table beside it is still the previous one.
fn generation_of(version: &str) -> Option<u64> {
    let mut parts = version.split('+');
    let generation: u64 = parts.next()?.parse().ok()?;
    if parts.any(|tag| tag == "internal-first") {
        return generation.checked_sub(1);
    }
    Some(generation)
}

/// Where `node` is with respect to `generation`.
pub fn envoy_state(node: &NodeStatus, generation: u64) -> EnvoyState {
    state_of(
        node.types.iter().map(|(kind, t)| {
            (
                kind.short_name().to_string(),
                t.acked_version.clone(),
                t.last_nack
                    .as_ref()
                    .map(|n| (n.version.clone(), n.message.clone())),
            )
        }),
        generation,
    )
}

/// Where an Envoy of another replica is, from what that replica published
/// (`crate::replicas`: the node as `status` shows it).
pub fn remote_envoy_state(node: &NodeView, generation: u64) -> EnvoyState {
    state_of(
        node.types.iter().map(|(kind, t)| {
            let nack = t
                .last_nack
                .as_ref()
                .map(|n| (n.version.clone(), n.message.clone()));
            (kind.clone(), t.acked_version.clone(), nack)
        }),
        generation,
    )
}

/// Per type (short name, ACKed version, last NACK's version and message).
fn state_of(
    types: impl Iterator<Item = (String, Option<String>, Option<(String, String)>)>,
    generation: u64,
) -> EnvoyState {
    let at_least = |v: Option<&str>| v.and_then(generation_of).is_some_and(|g| g >= generation);
    let mut waiting_for = Vec::new();
    let mut any = false;
    for (kind, acked, nack) in types {
        any = true;
        if at_least(acked.as_deref()) {
            continue;
        }
        if let Some((version, message)) = nack.filter(|(v, _)| at_least(Some(v))) {
            return EnvoyState::Nacked {
                kind,
                version,
                message,
            };
        }
        waiting_for.push(kind);
    }
    if waiting_for.is_empty() && any {
        EnvoyState::Live
    } else {
        EnvoyState::Pending { waiting_for }
    }
}

/// The propagation of `generation` over the connected nodes.
pub fn propagation<'a>(
    nodes: impl IntoIterator<Item = &'a NodeStatus>,
    pollers: &Pollers,
    generation: u64,
) -> Propagation {
    Propagation {
        generation,
        envoys: nodes
            .into_iter()
            .filter(|n| n.connected)
            .map(|n| EnvoyPropagation {
                id: n.id.clone(),
                replica: None,
                live_after_ms: None,
                state: envoy_state(n, generation),
            })
            .collect(),
        pulling: pollers.list(),
    }
}

/// [`propagation`] over this replica's nodes and the connected Envoys the other
/// replicas published (an Envoy connected here counts once, as this replica's).
pub fn propagation_all<'a>(
    nodes: impl IntoIterator<Item = &'a NodeStatus>,
    pollers: &Pollers,
    replicas: Option<&ReplicaView>,
    generation: u64,
) -> Propagation {
    let mut r = propagation(nodes, pollers, generation);
    let Some(view) = replicas else {
        return r;
    };
    for e in &mut r.envoys {
        e.replica = Some(view.id.clone());
    }
    for (replica, n) in view.remote_envoys() {
        if r.envoys.iter().any(|e| e.id == n.id) {
            continue;
        }
        r.envoys.push(EnvoyPropagation {
            id: n.id.clone(),
            replica: Some(replica),
            live_after_ms: None,
            state: remote_envoy_state(&n, generation),
        });
    }
    r
}

/// How long a completed wait gives Envoy's worker threads to take up a config
/// its main thread ACKed (a posted update; normally well under a millisecond).
pub const WORKER_GRACE: Duration = Duration::from_millis(20);

/// The least time between two looks at the node table while waiting.
const SETTLE_POLL: Duration = Duration::from_millis(2);

/// Waits until every connected Envoy is live or NACKed for `generation`, or
/// `timeout` passes; returns where they are then, with when each was first
/// seen live.
/// With `replicas` (etcd), the Envoys of every replica are waited for.
pub async fn wait_settled(
    cache: &SnapshotCache,
    pollers: &Pollers,
    replicas: Option<&ReplicaView>,
    generation: u64,
    timeout: Duration,
) -> Propagation {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut changes = cache.watch_nodes();
    let mut remote = replicas.map(ReplicaView::changes);
    let mut first_live: BTreeMap<String, u64> = BTreeMap::new();
    let look = |first_live: &mut BTreeMap<String, u64>| {
        // read in place: with a thousand Envoys this runs on every burst of ACKs
        let mut now = cache
            .with_nodes(|nodes| propagation_all(nodes.values(), pollers, replicas, generation));
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        for e in &mut now.envoys {
            if e.state == EnvoyState::Live {
                e.live_after_ms = Some(*first_live.entry(e.id.clone()).or_insert(ms));
            }
        }
        now
    };
    loop {
        changes.borrow_and_update();
        if let Some(r) = remote.as_mut() {
            r.borrow_and_update();
        }
        let now = look(&mut first_live);
        if now.settled() || Instant::now() >= deadline {
            if now.complete() && !now.envoys.is_empty() {
                tokio::time::sleep(WORKER_GRACE).await;
            }
            return now;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let remote_changed = async {
            match remote.as_mut() {
                Some(r) => {
                    if r.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending::<()>().await,
            }
        };
        let woke = tokio::time::timeout(left, async {
            tokio::select! {
                _ = changes.changed() => {}
                () = remote_changed => {}
            }
        })
        .await;
        if woke.is_err() {
            return look(&mut first_live);
        }
        // let a burst of ACKs land before looking again
        tokio::time::sleep(SETTLE_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xds::{Nack, ResourceType, TypeStatus};

    fn node(types: &[(ResourceType, Option<&str>, Option<&str>)]) -> NodeStatus {
        NodeStatus {
            id: "n1".into(),
            connected: true,
            streams: 1,
            types: types
                .iter()
                .map(|(kind, acked, nacked)| {
                    (
                        *kind,
                        TypeStatus {
                            acked_version: acked.map(str::to_string),
                            last_nack: nacked.map(|v| Nack {
                                version: v.to_string(),
                                nonce: "1".into(),
                                message: "bad".into(),
                                code: 3,
                                at_unix_ms: 0,
                            }),
                            ..Default::default()
                        },
                    )
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_staged_internal_table_is_not_yet_its_generation() {
        assert_eq!(generation_of("7"), Some(7));
        assert_eq!(generation_of("7+retiring"), Some(7));
        assert_eq!(generation_of("7+internal-first"), Some(6));
    }

    #[test]
    fn live_needs_every_type_at_or_after_the_generation() {
        use ResourceType::*;
        let all = |v| node(&[(Cluster, Some(v), None), (Listener, Some(v), None)]);
        assert_eq!(envoy_state(&all("5"), 5), EnvoyState::Live);
        assert_eq!(envoy_state(&all("6+retiring"), 5), EnvoyState::Live);
        assert_eq!(
            envoy_state(
                &node(&[(Cluster, Some("5"), None), (Listener, Some("4"), None)]),
                5
            ),
            EnvoyState::Pending {
                waiting_for: vec!["LDS".into()]
            }
        );
        // an old NACK does not matter; one at or after the generation ends the wait
        assert_eq!(
            envoy_state(&node(&[(Cluster, Some("5"), Some("3"))]), 5),
            EnvoyState::Live
        );
        assert!(matches!(
            envoy_state(&node(&[(Cluster, Some("4"), Some("5+retiring"))]), 5),
            EnvoyState::Nacked { kind, .. } if kind == "CDS"
        ));
        assert_eq!(
            envoy_state(&node(&[]), 1),
            EnvoyState::Pending {
                waiting_for: vec![]
            }
        );
    }

    #[test]
    fn propagation_counts_connected_envoys_only() {
        let mut gone = node(&[(ResourceType::Cluster, Some("1"), None)]);
        gone.id = "gone".into();
        gone.connected = false;
        let here = node(&[(ResourceType::Cluster, Some("2"), None)]);
        let pollers = Pollers::default();
        pollers.record("istio-1", 2);
        let r = propagation(&[gone, here], &pollers, 2);
        assert_eq!((r.live(), r.envoys.len()), (1, 1));
        assert!(r.complete() && r.settled());
        assert_eq!(r.pulling[0].id, "istio-1");
    }
}
