//! Several `serve` replicas on etcd see each other: each one publishes its
//! address, whether it leads, the generation it serves and its connected
//! Envoys under `PREFIX/replicas/ID` (attached to its lease, renewed every
//! second and again right after an Envoy's status changed; gone within the
//! lease TTL after the replica dies — [`crate::etcd::Etcd::run_session`]).
//! Every replica follows that directory, so `status` on any replica lists
//! every replica's Envoys with the replica that holds them, and `live` waits
//! for them too ([`crate::propagation`]). The load reports of each replica's Envoys
//! reach the leader's canary driver the same way
//! ([`crate::progressive::driver::run`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::progressive::analyzer::Counts;
use crate::views::NodeView;

/// What a replica publishes about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    pub id: String,
    pub xds_addr: String,
    pub api_addr: String,
    pub leader: bool,
    /// The store generation it serves.
    pub generation: u64,
    pub at_unix_ms: u64,
    /// Its connected Envoys, as `status` shows them.
    pub envoys: Vec<NodeView>,
    /// The leader: the clusters its canary driver wants load reports of.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lrs_wanted: Vec<String>,
    /// Not the leader: the load its Envoys reported (LRS), summed since start,
    /// by cluster (`crate::progressive::driver::run`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lrs_counts: BTreeMap<String, Counts>,
}

/// This replica's view of every replica (itself included once it published).
#[derive(Debug, Clone)]
pub struct ReplicaView {
    /// This replica's id.
    pub id: String,
    dir: watch::Receiver<BTreeMap<String, Vec<u8>>>,
}

impl ReplicaView {
    pub fn new(id: String, dir: watch::Receiver<BTreeMap<String, Vec<u8>>>) -> Self {
        Self { id, dir }
    }

    /// Every replica that is registered now.
    pub fn all(&self) -> Vec<ReplicaStatus> {
        self.dir
            .borrow()
            .values()
            .filter_map(|v| serde_json::from_slice(v).ok())
            .collect()
    }

    /// The other replicas.
    pub fn others(&self) -> Vec<ReplicaStatus> {
        self.all().into_iter().filter(|r| r.id != self.id).collect()
    }

    /// The connected Envoys the other replicas published, each with the
    /// replica that holds it. An Envoy listed by two replicas (it moved, and
    /// the replica it left is dead but its entry has not expired yet) counts
    /// where it was seen last.
    pub fn remote_envoys(&self) -> Vec<(String, NodeView)> {
        let mut by_id: BTreeMap<String, (String, NodeView)> = BTreeMap::new();
        for r in self.others() {
            for n in r.envoys.into_iter().filter(|n| n.connected) {
                match by_id.get(&n.id) {
                    Some((_, old)) if old.last_seen_unix_ms >= n.last_seen_unix_ms => {}
                    _ => {
                        by_id.insert(n.id.clone(), (r.id.clone(), n));
                    }
                }
            }
        }
        by_id.into_values().collect()
    }

    /// Ticks when any replica published.
    pub fn changes(&self) -> watch::Receiver<BTreeMap<String, Vec<u8>>> {
        self.dir.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(id: &str, envoys: Vec<NodeView>) -> (String, Vec<u8>) {
        let s = ReplicaStatus {
            id: id.into(),
            xds_addr: String::new(),
            api_addr: String::new(),
            leader: false,
            generation: 1,
            at_unix_ms: 0,
            envoys,
            lrs_wanted: Vec::new(),
            lrs_counts: BTreeMap::new(),
        };
        (id.into(), serde_json::to_vec(&s).unwrap())
    }

    #[test]
    fn an_envoy_listed_twice_counts_where_it_was_seen_last() {
        let envoy = |id: &str, seen: u64, connected: bool| NodeView {
            id: id.into(),
            cluster: "c".into(),
            connected,
            streams: 1,
            last_seen_unix_ms: seen,
            types: Default::default(),
            replica: None,
        };
        let dir: BTreeMap<String, Vec<u8>> = [
            // r0 died; its entry (envoy-1 seen at 100) has not expired yet
            published("r0", vec![envoy("envoy-1", 100, true)]),
            published(
                "r1",
                vec![envoy("envoy-1", 200, true), envoy("gone", 50, false)],
            ),
            published("me", vec![envoy("envoy-2", 300, true)]),
        ]
        .into_iter()
        .collect();
        let (_tx, rx) = watch::channel(dir);
        let view = ReplicaView::new("me".into(), rx);
        assert_eq!(view.all().len(), 3);
        assert_eq!(view.others().len(), 2);
        let remote: Vec<(String, String)> = view
            .remote_envoys()
            .into_iter()
            .map(|(r, n)| (r, n.id))
            .collect();
        assert_eq!(remote, vec![("r1".to_string(), "envoy-1".to_string())]);
    }
}
