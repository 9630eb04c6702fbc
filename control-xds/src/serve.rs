//! `switchyard serve`: the running control plane. It owns the [`Store`], turns
//! every accepted change into a snapshot for the [`SnapshotCache`] the ADS server
//! streams from, and saves the store where it is kept ([`StateBackend`]: the
//! state file, or etcd). The HTTP API ([`crate::api`]) is built on it, and
//! [`crate::daemon`] wires both, and the canary driver, to listeners.
//!
//! A change goes store → snapshot → saved → cache, each step able to refuse it:
//! the store validates it with the engine, compiling it once the way the filter
//! will (the snapshot builder builds from that index,
//! [`Store::compiled_index`]; a store from elsewhere is compiled here) and the
//! snapshot is checked for consistency, then the
//! store is saved (the state file; or an etcd transaction guarded by the revision
//! the change was computed from — when another replica saved first, the change is
//! computed again from its store); only then is the snapshot served and the new
//! store kept. So an invalid snapshot is never served (the last good one stays)
//! and what Envoys have always matches what a restart would load. With etcd,
//! the stores other replicas save arrive through a watch ([`ControlPlane::adopt`])
//! and are served the same way; the snapshot version is the store's generation,
//! the same on every replica.
//!
//! What it starts from (the saved state, or `--config`) is [`crate::start`].

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use switchyard_engine::{Index, PluginConfig, Resource, Settings};

use crate::leadership::Leadership;
use crate::persist::PersistError;
use crate::propagation::Pollers;
use crate::snapshot_builder::{build_snapshot, build_snapshot_from, BuildError, BuildOptions};
use crate::state::{ChangeSummary, Store, StoreError};
use crate::state_store::{BackendError, Commit, FileBackend, Settled, StateBackend};
use crate::tls::Refusals;
use crate::xds::{References, ScopeBuilder, Snapshot, SnapshotCache};

/// Why a change was not made.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The snapshot could not be built or is inconsistent: nothing was served.
    #[error("no snapshot could be built from the result: {0}")]
    Snapshot(String),
    /// The state file could not be written: nothing changed.
    #[error("the state could not be saved: {0}")]
    Persist(#[from] PersistError),
    /// The store (etcd) cannot be reached: nothing changed; Envoys keep the
    /// last snapshot.
    #[error("the store is unavailable, nothing changed: {0}")]
    Unavailable(BackendError),
    /// The write failed after it may have reached the store, and the store
    /// could not be asked since: the change may or may not take effect. A
    /// retry with the same change id never makes it twice.
    #[error(
        "the store did not confirm change {change}; it may or may not take effect \
         (retry with Idempotency-Key: {change} to learn its outcome): {reason}"
    )]
    OutcomeUnknown { change: String, reason: String },
    /// The resulting state document is larger than the store accepts.
    #[error("nothing changed: {0}")]
    TooLarge(BackendError),
    /// Other replicas kept writing first.
    #[error("nothing changed: other replicas wrote first {0} times in a row; try again")]
    Contended(usize),
    /// The store holds something that is not a state document.
    #[error("the state could not be saved: {0}")]
    Corrupt(String),
}

impl From<BackendError> for ChangeError {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::Persist(e) => ChangeError::Persist(e),
            e @ BackendError::TooLarge(_) => ChangeError::TooLarge(e),
            e @ (BackendError::Unavailable { .. } | BackendError::Address(_)) => {
                ChangeError::Unavailable(e)
            }
            e @ BackendError::Corrupt { .. } => ChangeError::Corrupt(e.to_string()),
        }
    }
}

/// How many times a change is computed again after other replicas wrote first.
pub const MAX_TRIES: usize = 20;

struct Current {
    store: Store,
    index: Arc<Index>,
    /// The backend's revision of `store` (etcd's `mod_revision`; `0` for the file).
    revision: i64,
}

/// The running control plane, shared by the API handlers.
pub struct ControlPlane {
    current: Mutex<Current>,
    /// Serializes changes (held while a change is saved; readers use `current`).
    writer: Mutex<()>,
    cache: SnapshotCache,
    pollers: Pollers,
    refusals: Refusals,
    build: BuildOptions,
    backend: Arc<dyn StateBackend>,
    /// Whether this replica runs singleton work (the canary driver): always
    /// with the file store; the holder of the etcd lease otherwise.
    leader: Leadership,
    /// The other replicas (etcd only).
    replicas: OnceLock<crate::replicas::ReplicaView>,
    /// Progressive rollouts: LRS reports and what the driver measured.
    progressive: crate::progressive::observed::Observed,
    /// Snapshots built and served since start (`/metrics`).
    served: std::sync::atomic::AtomicU64,
    /// How many release records each VE keeps (`serve --history-limit`).
    history_limit: usize,
}

/// A built snapshot, not yet served.
struct Built {
    snapshot: Snapshot,
    refs: References,
    index: Arc<Index>,
    /// Builds the snapshot of a scope from the same store ([`crate::scope`]).
    scopes: Arc<StoreScopes>,
}

impl Built {
    fn serve(self, cache: &SnapshotCache) -> Result<Arc<Index>, ChangeError> {
        let scopes: Arc<dyn ScopeBuilder> = self.scopes;
        cache
            .set_scoped_snapshot(self.snapshot, &self.refs, Some(scopes))
            .map_err(|e| ChangeError::Snapshot(e.to_string()))?;
        Ok(self.index)
    }
}

/// The resources, build options and version of one store generation, to build
/// scoped snapshots from on demand.
struct StoreScopes {
    resources: Vec<Resource>,
    opts: BuildOptions,
    version: String,
}

impl ScopeBuilder for StoreScopes {
    fn build(&self, scope: &BTreeSet<String>) -> Result<Snapshot, String> {
        let resources = crate::scope::scoped(&self.resources, scope);
        let (snapshot, refs, _) =
            build_snapshot(&resources, &self.opts, &self.version).map_err(|e| e.to_string())?;
        snapshot.check(&refs).map_err(|e| e.to_string())?;
        Ok(snapshot)
    }
}

impl ControlPlane {
    /// Builds the first snapshot from `store` and serves it through `cache`.
    pub fn start(
        store: Store,
        cache: SnapshotCache,
        build: BuildOptions,
        state_dir: Option<PathBuf>,
    ) -> Result<Self, ChangeError> {
        let backend = FileBackend { dir: state_dir };
        backend.commit(&store, 0)?;
        Self::start_on(store, 0, cache, build, Arc::new(backend))
    }

    /// Builds the first snapshot from `store`, already saved in `backend` at
    /// `revision`, and serves it through `cache`.
    pub fn start_on(
        store: Store,
        revision: i64,
        cache: SnapshotCache,
        build: BuildOptions,
        backend: Arc<dyn StateBackend>,
    ) -> Result<Self, ChangeError> {
        let built = build_for(&build, &store)?;
        let index = built.serve(&cache)?;
        Ok(Self {
            current: Mutex::new(Current {
                store,
                index,
                revision,
            }),
            writer: Mutex::new(()),
            cache,
            pollers: Pollers::default(),
            refusals: Refusals::default(),
            build,
            backend,
            leader: Leadership::always(),
            replicas: OnceLock::new(),
            progressive: Default::default(),
            served: std::sync::atomic::AtomicU64::new(1),
            history_limit: crate::history::DEFAULT_HISTORY_LIMIT,
        })
    }

    /// Keeps the last `limit` release records of each VE (from the next change on).
    pub fn with_history_limit(mut self, limit: usize) -> Self {
        self.history_limit = limit.max(1);
        self
    }

    fn lock(&self) -> MutexGuard<'_, Current> {
        // `Current` is replaced whole, never left half-updated by a panic.
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies `change` to the store under a new change id ([`Self::change_as`]).
    pub fn change(
        &self,
        change: impl Fn(&Store) -> Result<(Store, ChangeSummary), StoreError>,
    ) -> Result<(ChangeSummary, u64), ChangeError> {
        self.change_as(&crate::change_log::new_change_id(), change)
    }

    /// Applies `change` (named `id`) to the store; if it changes anything,
    /// builds, saves and serves the result. If the store already made change
    /// `id`, its original outcome is answered and nothing is made again.
    /// Changes are serialized within this process; when another replica saved
    /// first, the newer store is served and `change` is computed again from it
    /// (at most [`MAX_TRIES`] times). A failed write is settled
    /// ([`StateBackend::settle`]); if that fails too, the answer is
    /// [`ChangeError::OutcomeUnknown`], never "nothing changed". Readers are
    /// not held up meanwhile: the served store is locked only to read or
    /// replace it.
    pub fn change_as(
        &self,
        id: &str,
        change: impl Fn(&Store) -> Result<(Store, ChangeSummary), StoreError>,
    ) -> Result<(ChangeSummary, u64), ChangeError> {
        let _one_at_a_time = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut base, mut read) = {
            let current = self.lock();
            (current.store.clone(), current.revision)
        };
        let mut failed_writes = 0;
        for attempt in 0..MAX_TRIES {
            if let Some(done) = base.outcome_of(id) {
                return Ok(done);
            }
            let (mut next, mut summary) = change(&base)?;
            if !summary.changed() {
                return Ok((summary, base.generation));
            }
            next.finish_change(id, &mut summary, self.history_limit);
            let built = build_for(&self.build, &next)?;
            let latest = match self.backend.commit(&next, read) {
                Ok(Commit::Done(revision)) => {
                    let generation = next.generation;
                    self.serve_committed(next, built, revision, &summary);
                    return Ok((summary, generation));
                }
                Ok(Commit::Conflict(Some(latest))) => latest,
                Ok(Commit::Conflict(None)) => self.backend.load()?.ok_or_else(|| {
                    ChangeError::Corrupt("the state document disappeared from the store".into())
                })?,
                Err(e @ BackendError::Unavailable { .. }) => {
                    failed_writes += 1;
                    match self.backend.settle(&base, read) {
                        // proven not made; try once more, then say so
                        Ok(Settled::Unchanged(revision)) if failed_writes < 2 => {
                            read = revision;
                            continue;
                        }
                        Ok(Settled::Unchanged(_)) => return Err(ChangeError::Unavailable(e)),
                        Ok(Settled::Changed(store, revision)) => (store, revision),
                        Err(settling) => {
                            tracing::warn!(change = id, error = %e, settling = %settling, "the outcome of a change is unknown");
                            return Err(ChangeError::OutcomeUnknown {
                                change: id.to_string(),
                                reason: e.to_string(),
                            });
                        }
                    }
                }
                Err(e) => return Err(e.into()),
            };
            tracing::debug!(
                attempt,
                "another replica saved first; computing the change again"
            );
            (base, read) = (latest.0.clone(), latest.1);
            self.adopt(latest.0, latest.1)?;
            // A short, varying pause so that two replicas do not meet again.
            let nanos = crate::clock::subsec_nanos();
            std::thread::sleep(std::time::Duration::from_micros(
                u64::from(nanos % 2000) + 500 * attempt as u64,
            ));
        }
        Err(ChangeError::Contended(MAX_TRIES))
    }

    /// Serves `next`, just saved at `revision` (unless a newer store, saved by
    /// another replica right after this one, was served already: it stays).
    fn serve_committed(&self, next: Store, built: Built, revision: i64, summary: &ChangeSummary) {
        let generation = next.generation;
        let mut current = self.lock();
        if generation > current.store.generation {
            match built.serve(&self.cache) {
                Ok(index) => {
                    self.served
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    *current = Current {
                        store: next,
                        index,
                        revision,
                    };
                }
                // (checked when built; the saved store is served from the watch)
                Err(e) => tracing::error!(error = %e, "a saved change was not served"),
            }
        }
        drop(current);
        tracing::info!(
            generation,
            created = summary.created.len(),
            updated = summary.updated.len(),
            deleted = summary.deleted.len(),
            releases = summary.releases.len(),
            "new snapshot served"
        );
    }

    /// [`Self::change`] on a blocking thread, for async callers (the API): a
    /// change builds snapshots and, on etcd, waits for it.
    pub async fn change_blocking(
        self: &Arc<Self>,
        change: impl Fn(&Store) -> Result<(Store, ChangeSummary), StoreError> + Send + 'static,
    ) -> Result<(ChangeSummary, u64), ChangeError> {
        let plane = self.clone();
        let id =
            crate::change_log::current_change_id().unwrap_or_else(crate::change_log::new_change_id);
        tokio::task::spawn_blocking(move || plane.change_as(&id, change))
            .await
            .unwrap_or_else(|e| Err(ChangeError::Snapshot(format!("the change failed: {e}"))))
    }

    /// Serves `store`, saved in the backend at `revision` by this or another
    /// replica, if it is newer than the one served. Returns whether it was.
    pub fn adopt(&self, store: Store, revision: i64) -> Result<bool, ChangeError> {
        {
            let mut current = self.lock();
            if store.generation <= current.store.generation {
                if store.generation == current.store.generation {
                    current.revision = current.revision.max(revision);
                }
                return Ok(false);
            }
        }
        let built = build_for(&self.build, &store)?;
        let mut current = self.lock();
        if store.generation <= current.store.generation {
            return Ok(false);
        }
        let index = built.serve(&self.cache)?;
        self.served
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(
            generation = store.generation,
            "new snapshot served (from the store)"
        );
        *current = Current {
            store,
            index,
            revision,
        };
        Ok(true)
    }

    /// Whether this replica runs singleton work (the canary driver).
    pub fn is_leader(&self) -> bool {
        self.leader.holds()
    }

    /// Makes this replica wait for the etcd election before it leads; the
    /// [`Leadership`] the session ([`crate::etcd::Etcd::run_session`]) keeps.
    pub fn elect(&mut self) -> Leadership {
        self.leader = Leadership::none();
        self.leader.clone()
    }

    /// The other replicas, when running on etcd.
    pub fn replicas(&self) -> Option<&crate::replicas::ReplicaView> {
        self.replicas.get()
    }

    /// Sets the view of the other replicas (once, at start).
    pub fn set_replicas(&self, view: crate::replicas::ReplicaView) {
        let _ = self.replicas.set(view);
    }

    /// Where the store is kept (for logs).
    pub fn backend(&self) -> String {
        self.backend.describe()
    }

    /// A copy of the store.
    pub fn store(&self) -> Store {
        self.lock().store.clone()
    }

    /// The compiled index of the served resources (for `explain`).
    pub fn index(&self) -> Arc<Index> {
        self.lock().index.clone()
    }

    /// The cache the ADS server streams from (and that records node status).
    pub fn cache(&self) -> &SnapshotCache {
        &self.cache
    }

    /// Snapshots built and served since start.
    pub fn snapshots_served(&self) -> u64 {
        self.served.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Progressive rollouts (LRS reports, measurements).
    pub fn progressive(&self) -> &crate::progressive::observed::Observed {
        &self.progressive
    }

    /// The pull-mode Envoys seen polling `/v1/config`.
    pub fn pollers(&self) -> &Pollers {
        &self.pollers
    }

    /// The TLS handshakes refused on the API and xDS listeners.
    pub fn refusals(&self) -> &Refusals {
        &self.refusals
    }

    /// The plugin configuration the genesis filter gets (for pull mode).
    pub fn plugin_config(&self) -> PluginConfig {
        let store = self.store();
        PluginConfig {
            settings: Settings {
                context_keys: store.context_keys.clone(),
                ..Settings::default()
            },
            resources: store.resource_list(),
        }
    }
}

/// The snapshot version for a store generation.
pub fn snapshot_version(generation: u64) -> String {
    generation.to_string()
}

fn build_for(build: &BuildOptions, store: &Store) -> Result<Built, ChangeError> {
    let opts = BuildOptions {
        context_keys: store.context_keys.clone(),
        ..build.clone()
    };
    let resources: Vec<Resource> = store.resource_list();
    let version = snapshot_version(store.generation);
    let index = match store.compiled_index() {
        Some(index) => index,
        None => Arc::new(crate::snapshot_builder::compile(&resources, &opts).map_err(build_error)?),
    };
    let (snapshot, refs) =
        build_snapshot_from(&resources, &index, &opts, &version).map_err(build_error)?;
    snapshot
        .check(&refs)
        .map_err(|e| ChangeError::Snapshot(e.to_string()))?;
    Ok(Built {
        snapshot,
        refs,
        index,
        scopes: Arc::new(StoreScopes {
            resources,
            opts,
            version,
        }),
    })
}

fn build_error(e: BuildError) -> ChangeError {
    ChangeError::Snapshot(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context_keys::generate_context_key;
    use crate::load;
    use crate::xds::ResourceType;
    use std::path::Path;

    use crate::test_fixtures::{build_options as opts, web_v1_and_v2 as resources};

    fn store() -> Store {
        let docs = load::parse_text(Path::new("r.yaml"), &resources()).unwrap();
        let (mut s, _) = Store::new().apply(&docs, "t").unwrap();
        s.context_keys = vec![generate_context_key("k1").unwrap()];
        s
    }

    fn served_version(cache: &SnapshotCache) -> String {
        cache
            .snapshot()
            .unwrap()
            .version(ResourceType::Listener)
            .to_string()
    }

    #[test]
    fn every_change_is_served_and_refusals_serve_nothing() {
        let cache = SnapshotCache::new();
        let plane = ControlPlane::start(store(), cache.clone(), opts(), None).unwrap();
        assert_eq!(served_version(&cache), "1");

        let (summary, generation) = plane
            .change(|s| s.release("web-v2", "team-a", "t"))
            .unwrap();
        assert_eq!((summary.releases.len(), generation), (1, 2));
        assert_eq!(served_version(&cache), "2");

        let refused = plane.change(|s| s.delete("AppDeployment", "web-v2"));
        assert!(matches!(
            refused,
            Err(ChangeError::Store(StoreError::Invalid(_)))
        ));
        let unchanged = plane
            .change(|s| s.release("web-v2", "team-a", "t"))
            .unwrap();
        assert_eq!(unchanged.1, 2);
        assert_eq!(served_version(&cache), "2");
        assert_eq!(plane.store().generation, 2);
    }

    /// Serves `change` and checks it was compiled once: the index served is
    /// the one the store's change compiled, and the snapshot is the one a full
    /// build of the resulting store gives (byte for byte).
    fn served_as_compiled(
        plane: &ControlPlane,
        cache: &SnapshotCache,
        change: impl Fn(&Store) -> Result<(Store, ChangeSummary), StoreError>,
    ) {
        let compiled = Mutex::new(None);
        plane
            .change(|s| {
                let (next, summary) = change(s)?;
                *compiled.lock().unwrap() = next.compiled_index();
                Ok((next, summary))
            })
            .unwrap();
        let compiled = compiled
            .into_inner()
            .unwrap()
            .expect("the change kept its index");
        assert!(Arc::ptr_eq(&compiled, &plane.index()));
        let store = plane.store();
        let opts = BuildOptions {
            context_keys: store.context_keys.clone(),
            ..opts()
        };
        let version = snapshot_version(store.generation);
        let (full, _, _) = build_snapshot(&store.resource_list(), &opts, &version).unwrap();
        assert_eq!(*cache.snapshot().unwrap(), full);
    }

    #[test]
    fn a_change_is_compiled_once_in_the_order_it_is_served() {
        let cache = SnapshotCache::new();
        let plane = ControlPlane::start(store(), cache.clone(), opts(), None).unwrap();
        served_as_compiled(&plane, &cache, |s| s.release("web-v2", "team-a", "t"));
        // A new deployment sorts first in the store, last in the batch order
        // the store reports problems in: its cluster comes first when served.
        let text = crate::test_fixtures::WEB_V2
            .replace("web-v2", "a-web-v3")
            .replace("v2", "v3")
            .replace("f2", "f3")
            .replace("9102", "9103");
        let docs = load::parse_text(Path::new("new.yaml"), &text).unwrap();
        served_as_compiled(&plane, &cache, |s| s.apply(&docs, "t"));
        assert_eq!(plane.index().clusters()[0].version, "f3");
        served_as_compiled(&plane, &cache, |s| s.delete("AppDeployment", "a-web-v3"));
    }

    #[test]
    fn a_state_that_cannot_be_saved_changes_nothing() {
        let dir = std::env::temp_dir().join(format!(
            "switchyard-serve-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let cache = SnapshotCache::new();
        let plane =
            ControlPlane::start(store(), cache.clone(), opts(), Some(dir.join("state"))).unwrap();
        // replace the state directory by a file: the next save fails
        std::fs::remove_dir_all(dir.join("state")).unwrap();
        std::fs::write(dir.join("state"), b"not a directory").unwrap();
        let r = plane.change(|s| s.release("web-v2", "team-a", "t"));
        assert!(matches!(r, Err(ChangeError::Persist(_))), "{r:?}");
        assert_eq!(served_version(&cache), "1");
        assert_eq!(plane.store().generation, 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
