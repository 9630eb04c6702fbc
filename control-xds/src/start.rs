//! What `switchyard serve` starts from: its options ([`ServeOptions`]), why it
//! could not start ([`StartError`]), and the first store — the state file if
//! there is one, else the `--config` resources ([`initial_store`]); or, on
//! etcd, the document there, else the `--config` resources written there
//! unless another replica was first ([`initial_store_in`]). Context-signing
//! keys are generated on first start. Process wiring, with [`crate::daemon`]:
//! the control plane itself is [`crate::serve`].

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::auth::AuthError;
use crate::context_keys::{generate_context_key, new_kid};
use crate::etcd::EtcdUrl;
use crate::load::{self, LoadErrors};
use crate::persist::{self, PersistError};
use crate::serve::ChangeError;
use crate::snapshot_builder::BuildOptions;
use crate::state::{Store, StoreError};
use crate::state_store::{BackendError, Commit, StateBackend};
use crate::tls::{TlsError, TlsFiles};

/// What `serve` needs to know.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub config: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub xds_addr: SocketAddr,
    pub api_addr: SocketAddr,
    /// Listeners and Wasm path; `context_keys` come from the store.
    pub build: BuildOptions,
    /// Whether the API needs tokens (`--insecure-no-auth` turns it off; only
    /// allowed on a loopback `api_addr`).
    pub auth: bool,
    /// TLS for the API (`--api-tls-cert/-key`).
    pub api_tls: Option<TlsFiles>,
    /// TLS for xDS (`--xds-tls-cert/-key`, mTLS with `--xds-client-ca`).
    pub xds_tls: Option<TlsFiles>,
    /// `--store etcd://…`: the state, tokens and replicas in etcd instead of
    /// `state_dir`.
    pub etcd: Option<EtcdUrl>,
    /// `--replica-id` (default: the xDS address).
    pub replica_id: Option<String>,
    /// `--history-limit`: release records kept per VE.
    pub history_limit: usize,
}

/// Why `serve` could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(LoadErrors),
    #[error(transparent)]
    Change(#[from] ChangeError),
    #[error(transparent)]
    Persist(#[from] PersistError),
    #[error("cannot generate a context key: {0}")]
    Random(std::io::Error),
    #[error(
        "refusing to serve the API on {0} without authentication: --insecure-no-auth is \
         only allowed on a loopback address (127.0.0.1 or ::1); drop it (the API then \
         needs tokens) or listen on loopback"
    )]
    NoAuthOnNetwork(SocketAddr),
    #[error("API tokens")]
    Auth(#[from] AuthError),
    #[error("TLS")]
    Tls(#[from] TlsError),
    #[error("the store")]
    Backend(#[from] BackendError),
}

/// The store `serve --store etcd://…` starts from, and its revision: the
/// document in etcd if there is one, else the `--config` resources (with a new
/// context key), written there unless another replica was first.
pub fn initial_store_in(
    opts: &ServeOptions,
    backend: &dyn StateBackend,
) -> Result<(Store, i64), StartError> {
    if let Some(saved) = backend.load()? {
        if let Some(config) = &opts.config {
            tracing::info!(
                store = %backend.describe(),
                config = %config.display(),
                "using the saved state; --config is only read on first start"
            );
        }
        return Ok(saved);
    }
    let store = first_store(opts, None)?;
    match backend.commit(&store, 0)? {
        Commit::Done(revision) => Ok((store, revision)),
        Commit::Conflict(Some(saved)) => Ok(saved),
        Commit::Conflict(None) => Err(StartError::Backend(BackendError::Corrupt {
            key: backend.describe(),
            message: "the state was neither created nor found".into(),
        })),
    }
}

/// The store `serve` starts from: the state file if there is one, else the
/// `--config` resources; context keys generated if there are none.
pub fn initial_store(opts: &ServeOptions) -> Result<Store, StartError> {
    let saved = match &opts.state_dir {
        Some(dir) => persist::load_state(dir)?,
        None => None,
    };
    first_store(opts, saved)
}

fn first_store(opts: &ServeOptions, saved: Option<Store>) -> Result<Store, StartError> {
    let mut store = match saved {
        Some(store) => {
            if let (Some(config), Some(dir)) = (&opts.config, &opts.state_dir) {
                tracing::info!(
                    state = %dir.display(),
                    config = %config.display(),
                    "using the saved state; --config is only read on first start"
                );
            }
            store
        }
        None => {
            let store = Store::new();
            match &opts.config {
                Some(path) => {
                    let docs = load::load_path(path).map_err(StartError::Config)?;
                    let (store, _) =
                        store
                            .apply(&docs, "switchyard serve --config")
                            .map_err(|e| match e {
                                StoreError::Invalid(errors) => StartError::Config(errors),
                                other => StartError::Change(other.into()),
                            })?;
                    store
                }
                None => store,
            }
        }
    };
    if store.context_keys.is_empty() {
        let kid = new_kid().map_err(StartError::Random)?;
        store.context_keys = vec![generate_context_key(&kid).map_err(StartError::Random)?];
        tracing::info!(%kid, "generated a context-signing key");
    }
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::ControlPlane;
    use crate::test_fixtures::{build_options as opts, web_v1_and_v2 as resources};
    use crate::xds::SnapshotCache;

    #[test]
    fn saved_state_wins_over_config_and_keys_are_generated_once() {
        let dir = std::env::temp_dir().join(format!(
            "switchyard-serve-start-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("r.yaml");
        std::fs::write(&config, resources()).unwrap();
        let o = ServeOptions {
            config: Some(config.clone()),
            state_dir: Some(dir.join("state")),
            xds_addr: "127.0.0.1:0".parse().unwrap(),
            api_addr: "127.0.0.1:0".parse().unwrap(),
            build: opts(),
            auth: true,
            api_tls: None,
            xds_tls: None,
            etcd: None,
            replica_id: None,
            history_limit: crate::history::DEFAULT_HISTORY_LIMIT,
        };
        let first = initial_store(&o).unwrap();
        assert_eq!(first.context_keys.len(), 1);
        let plane = ControlPlane::start(
            first.clone(),
            SnapshotCache::new(),
            opts(),
            o.state_dir.clone(),
        )
        .unwrap();
        plane
            .change(|s| s.release("web-v2", "team-a", "t"))
            .unwrap();
        // a changed --config is ignored once there is a state
        std::fs::write(
            &config,
            "kind: Environment\nmetadata: {name: x}\nspec: {subPath: x}\n",
        )
        .unwrap();
        let again = initial_store(&o).unwrap();
        assert_eq!(again, plane.store());
        assert_eq!(again.context_keys, first.context_keys);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
