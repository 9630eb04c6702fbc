//! The snapshot cache: the snapshot being served and what each Envoy has.
//!
//! One snapshot is served to every node; a node with a scope (a set of names,
//! read by the server's [`NodeScope`](super::NodeScope)) gets the snapshot of
//! its scope instead, built on demand by
//! the [`ScopeBuilder`] set with the snapshot and memoized per scope. Setting a
//! snapshot checks it first: an inconsistent snapshot is refused and the last
//! good one keeps being served. Streams watch the cache through a
//! `tokio::sync::watch` channel.
//!
//! The cache also keeps a status table per node — connected or not, and per
//! resource type the last response sent, the version ACKed and the last NACK —
//! which streams update and `switchyard status` reads.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

use super::snapshot::{References, ResourceType, Snapshot, SnapshotError};
use crate::clock::now_unix_ms;

/// Builds the snapshot of one scope (a set of environment names) from what the
/// snapshot being served was built from.
pub trait ScopeBuilder: Send + Sync {
    /// The scope's snapshot, checked for consistency, or why there is none.
    fn build(&self, scope: &BTreeSet<String>) -> Result<Snapshot, String>;
}

/// What the cache serves: the whole snapshot, and scoped ones built on demand.
pub struct Served {
    snapshot: Arc<Snapshot>,
    scopes: Option<Arc<dyn ScopeBuilder>>,
    built: Mutex<BTreeMap<BTreeSet<String>, Arc<Snapshot>>>,
}

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Served")
            .field("snapshot", &self.snapshot)
            .field("scoped", &self.scopes.is_some())
            .finish()
    }
}

impl Served {
    /// The snapshot for a node serving `scope` (`None`: everything). A scope
    /// that cannot be built gets the whole snapshot (more, never less).
    pub fn for_scope(&self, scope: Option<&BTreeSet<String>>) -> Arc<Snapshot> {
        let (Some(scope), Some(builder)) = (scope, &self.scopes) else {
            return self.snapshot.clone();
        };
        let mut built = self.built.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = built.get(scope) {
            return s.clone();
        }
        match builder.build(scope) {
            Ok(s) => {
                let s = Arc::new(s);
                built.insert(scope.clone(), s.clone());
                s
            }
            Err(e) => {
                tracing::warn!(?scope, error = %e, "scoped snapshot not built; serving the whole one");
                self.snapshot.clone()
            }
        }
    }
}

/// A NACK: Envoy rejected a response.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Nack {
    /// The version Envoy rejected (the one sent with the NACKed nonce).
    pub version: String,
    /// The nonce of the rejected response.
    pub nonce: String,
    /// Envoy's `error_detail.message`.
    pub message: String,
    /// Envoy's `error_detail.code` (a gRPC status code).
    pub code: i32,
    /// When the NACK arrived, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
}

/// What one node has of one resource type.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TypeStatus {
    /// Version of the last response sent.
    pub sent_version: Option<String>,
    /// Nonce of the last response sent.
    pub sent_nonce: Option<String>,
    /// Last version Envoy ACKed.
    pub acked_version: Option<String>,
    /// The last NACK, kept after later ACKs so it can be reported.
    pub last_nack: Option<Nack>,
}

/// What the control plane knows about one Envoy (by node id).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct NodeStatus {
    /// `node.id` from the bootstrap.
    pub id: String,
    /// `node.cluster` from the bootstrap.
    pub cluster: String,
    /// Open ADS streams for this node (normally 0 or 1; 2 during a hot restart).
    pub streams: usize,
    /// Whether at least one stream is open.
    pub connected: bool,
    /// Last time a request arrived or a stream opened/closed, ms since epoch.
    pub last_seen_unix_ms: u64,
    /// Per resource type, in push order.
    pub types: BTreeMap<ResourceType, TypeStatus>,
}

/// The cache shared by the server, its streams and whoever sets snapshots.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct SnapshotCache {
    snapshot: Arc<watch::Sender<Option<Arc<Served>>>>,
    nodes: Arc<Mutex<BTreeMap<String, NodeStatus>>>,
    /// Counts node status changes, so waiters wake on every ACK, NACK and
    /// stream change.
    node_changes: Arc<watch::Sender<u64>>,
}

impl Default for SnapshotCache {
    fn default() -> Self {
        Self::new()
    }
}

impl SnapshotCache {
    /// An empty cache: streams wait until a first snapshot is set.
    pub fn new() -> Self {
        let (tx, _) = watch::channel(None);
        let (changes, _) = watch::channel(0);
        Self {
            snapshot: Arc::new(tx),
            nodes: Arc::default(),
            node_changes: Arc::new(changes),
        }
    }

    /// Checks `snapshot` against `refs` and, if consistent, serves it to every
    /// node. On error nothing changes: the last good snapshot stays.
    pub fn set_snapshot(&self, snapshot: Snapshot, refs: &References) -> Result<(), SnapshotError> {
        self.set_scoped_snapshot(snapshot, refs, None)
    }

    /// Like [`SnapshotCache::set_snapshot`]; nodes that declare a scope get
    /// the snapshot `scopes` builds for it.
    pub fn set_scoped_snapshot(
        &self,
        snapshot: Snapshot,
        refs: &References,
        scopes: Option<Arc<dyn ScopeBuilder>>,
    ) -> Result<(), SnapshotError> {
        snapshot.check(refs)?;
        self.snapshot.send_replace(Some(Arc::new(Served {
            snapshot: Arc::new(snapshot),
            scopes,
            built: Mutex::default(),
        })));
        Ok(())
    }

    /// The (whole) snapshot being served, if any.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.snapshot.borrow().as_ref().map(|s| s.snapshot.clone())
    }

    /// A receiver that sees every new snapshot.
    pub fn watch(&self) -> watch::Receiver<Option<Arc<Served>>> {
        self.snapshot.subscribe()
    }

    /// Status of every node ever seen, by node id.
    pub fn nodes(&self) -> Vec<NodeStatus> {
        self.table().values().cloned().collect()
    }

    /// A receiver that wakes whenever a node's status changes.
    pub fn watch_nodes(&self) -> watch::Receiver<u64> {
        self.node_changes.subscribe()
    }

    /// Runs `f` over the status table (by node id) without copying it.
    pub fn with_nodes<R>(&self, f: impl FnOnce(&BTreeMap<String, NodeStatus>) -> R) -> R {
        f(&self.table())
    }

    /// Status of one node.
    pub fn node(&self, id: &str) -> Option<NodeStatus> {
        self.table().get(id).cloned()
    }

    fn table(&self) -> MutexGuard<'_, BTreeMap<String, NodeStatus>> {
        // The table is plain data updated in single steps: a panic elsewhere
        // cannot leave it half-written, so a poisoned lock is still usable.
        self.nodes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, node: &str, f: impl FnOnce(&mut NodeStatus)) {
        let mut table = self.table();
        let status = table.entry(node.to_string()).or_insert_with(|| NodeStatus {
            id: node.to_string(),
            ..Default::default()
        });
        f(status);
        status.connected = status.streams > 0;
        status.last_seen_unix_ms = now_unix_ms();
        drop(table);
        self.node_changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub(crate) fn stream_opened(&self, node: &str, cluster: &str) {
        self.update(node, |s| {
            s.streams += 1;
            s.cluster = cluster.to_string();
        });
    }

    pub(crate) fn stream_closed(&self, node: &str) {
        self.update(node, |s| s.streams = s.streams.saturating_sub(1));
    }

    pub(crate) fn record_sent(&self, node: &str, kind: ResourceType, version: &str, nonce: &str) {
        self.update(node, |s| {
            let t = s.types.entry(kind).or_default();
            t.sent_version = Some(version.to_string());
            t.sent_nonce = Some(nonce.to_string());
        });
    }

    pub(crate) fn record_ack(&self, node: &str, kind: ResourceType, version: &str) {
        self.update(node, |s| {
            s.types.entry(kind).or_default().acked_version = Some(version.to_string());
        });
    }

    pub(crate) fn record_nack(&self, node: &str, kind: ResourceType, nack: Nack) {
        self.update(node, |s| {
            s.types.entry(kind).or_default().last_nack = Some(nack)
        });
    }

    pub(crate) fn touch(&self, node: &str) {
        self.update(node, |_| {});
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xds::snapshot::to_any;
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;

    fn good() -> Snapshot {
        let c = Cluster {
            name: "a".into(),
            ..Default::default()
        };
        Snapshot::new().with(ResourceType::Cluster, "v1", [("a".to_string(), to_any(&c))])
    }

    #[test]
    fn inconsistent_snapshot_is_refused_and_last_good_stays() {
        let cache = SnapshotCache::new();
        assert!(cache.snapshot().is_none());
        let mut rx = cache.watch();
        cache.set_snapshot(good(), &References::default()).unwrap();
        assert!(rx.has_changed().unwrap());
        assert_eq!(
            rx.borrow_and_update()
                .as_ref()
                .unwrap()
                .for_scope(None)
                .version(ResourceType::Cluster),
            "v1"
        );

        let bad = Snapshot::new().with(ResourceType::Cluster, "v2", []);
        let refs = References {
            clusters: ["a".to_string()].into(),
            ..Default::default()
        };
        assert!(cache.set_snapshot(bad, &refs).is_err());
        assert!(!rx.has_changed().unwrap());
        assert_eq!(
            cache.snapshot().unwrap().version(ResourceType::Cluster),
            "v1"
        );
    }

    #[test]
    fn node_status_tracks_streams_sends_acks_and_nacks() {
        let cache = SnapshotCache::new();
        cache.stream_opened("n1", "edge");
        cache.record_sent("n1", ResourceType::Cluster, "v1", "1");
        cache.record_ack("n1", ResourceType::Cluster, "v1");
        cache.record_sent("n1", ResourceType::Cluster, "v2", "2");
        cache.record_nack(
            "n1",
            ResourceType::Cluster,
            Nack {
                version: "v2".into(),
                nonce: "2".into(),
                message: "bad cluster".into(),
                code: 3,
                at_unix_ms: 1,
            },
        );
        let n = cache.node("n1").unwrap();
        assert!(n.connected);
        assert_eq!(n.cluster, "edge");
        let t = &n.types[&ResourceType::Cluster];
        assert_eq!(t.sent_version.as_deref(), Some("v2"));
        assert_eq!(t.sent_nonce.as_deref(), Some("2"));
        assert_eq!(t.acked_version.as_deref(), Some("v1"));
        assert_eq!(t.last_nack.as_ref().unwrap().message, "bad cluster");

        cache.stream_closed("n1");
        assert!(!cache.node("n1").unwrap().connected);
        assert_eq!(cache.nodes().len(), 1);
        assert!(cache.node("n2").is_none());
    }
}
