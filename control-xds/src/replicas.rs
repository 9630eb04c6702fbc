//! Several `serve` replicas on etcd see each other: each one publishes its
//! address, whether it leads, the generation it serves and its connected
//! Envoys under `PREFIX/replicas/ID` (attached to its lease, renewed every
//! second and again right after an Envoy's status changed; gone within the
//! lease TTL after the replica dies — [`crate::etcd::Etcd::run_session`]).
//! Every replica follows that directory, so `status` on any replica lists
//! every replica's Envoys with the replica that holds them, and `live` waits
//! for them too ([`crate::rollout`]). The load reports of each replica's Envoys
//! reach the leader's canary driver the same way
//! ([`crate::progressive::driver::run`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;

use crate::progressive::analyzer::Counts;

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
    /// Its connected Envoys, as `status` shows them (`crate::api`).
    pub envoys: Vec<Value>,
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
    pub fn remote_envoys(&self) -> Vec<(String, Value)> {
        let mut by_id: BTreeMap<String, (String, Value)> = BTreeMap::new();
        for r in self.others() {
            for n in r.envoys {
                let Some(id) = n["id"].as_str().map(str::to_string) else {
                    continue;
                };
                if n["connected"] != Value::Bool(true) {
                    continue;
                }
                let seen = |v: &Value| v["lastSeenUnixMs"].as_u64().unwrap_or(0);
                match by_id.get(&id) {
                    Some((_, old)) if seen(old) >= seen(&n) => {}
                    _ => {
                        by_id.insert(id, (r.id.clone(), n));
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
