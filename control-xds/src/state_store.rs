//! Where the [`Store`] is kept: one interface ([`StateBackend`]), two backends.
//!
//! - [`FileBackend`] (`serve --state DIR`, or nothing: in memory): today's
//!   state file ([`crate::persist`]). One process owns it, so a write never
//!   conflicts.
//! - [`EtcdBackend`] (`serve --store etcd://…/PREFIX`): the same document,
//!   compact JSON, under the one key `PREFIX/state` ([`crate::etcd`]). Every
//!   write is guarded by the revision of the document it was computed from;
//!   when another replica wrote first, the write is refused with the current
//!   document, and the control plane computes the change again from it
//!   ([`crate::serve::ControlPlane::change`]). Every replica follows the key
//!   and serves each new document; the snapshot version is the document's
//!   generation, which each committed write increments by one, so every
//!   replica serves the same version for the same store revision.

use std::path::PathBuf;

use crate::etcd::{Commit as EtcdCommit, Etcd, EtcdError};
use crate::persist::{self, PersistError};
use crate::state::{Store, STATE_FORMAT};

/// The key (under the prefix) of the state document.
pub const STATE_KEY: &str = "state";

/// Why the backend could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Persist(#[from] PersistError),
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    #[error("the state in etcd ({key}) is not a valid state document: {message}")]
    Corrupt { key: String, message: String },
}

/// What a write did.
#[derive(Debug)]
pub enum Commit {
    /// Written at this revision (`0` for the file backend).
    Done(i64),
    /// Another writer was first: the current store and its revision, if any.
    Conflict(Option<(Store, i64)>),
}

/// Where the store is kept.
pub trait StateBackend: Send + Sync {
    /// What it is, for logs (`state file DIR`, `etcd h:p/PREFIX`).
    fn describe(&self) -> String;
    /// The saved store and its revision; `None` before the first write.
    fn load(&self) -> Result<Option<(Store, i64)>, BackendError>;
    /// Writes `next`, computed from the store read at revision `read`.
    fn commit(&self, next: &Store, read: i64) -> Result<Commit, BackendError>;
}

/// The state file of `--state DIR`, or nothing (in memory).
#[derive(Debug, Clone, Default)]
pub struct FileBackend {
    pub dir: Option<PathBuf>,
}

impl StateBackend for FileBackend {
    fn describe(&self) -> String {
        match &self.dir {
            Some(d) => format!("state file in {}", d.display()),
            None => "memory".into(),
        }
    }

    fn load(&self) -> Result<Option<(Store, i64)>, BackendError> {
        Ok(match &self.dir {
            Some(dir) => persist::load_state(dir)?.map(|s| (s, 0)),
            None => None,
        })
    }

    fn commit(&self, next: &Store, _read: i64) -> Result<Commit, BackendError> {
        if let Some(dir) = &self.dir {
            persist::save_state(dir, next)?;
        }
        Ok(Commit::Done(0))
    }
}

/// The state document in etcd (`PREFIX/state`).
#[derive(Debug, Clone)]
pub struct EtcdBackend {
    pub etcd: Etcd,
}

/// Parses a state document read from etcd.
pub fn parse_document(etcd: &Etcd, bytes: &[u8]) -> Result<Store, BackendError> {
    let corrupt = |message: String| BackendError::Corrupt {
        key: etcd.key(STATE_KEY),
        message,
    };
    let store: Store = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    if store.format != STATE_FORMAT {
        return Err(corrupt(format!(
            "format {}; this switchyard reads format {STATE_FORMAT}",
            store.format
        )));
    }
    Ok(store)
}

impl StateBackend for EtcdBackend {
    fn describe(&self) -> String {
        format!(
            "etcd {} {}",
            self.etcd.endpoints(),
            self.etcd.key(STATE_KEY)
        )
    }

    fn load(&self) -> Result<Option<(Store, i64)>, BackendError> {
        match self.etcd.get(STATE_KEY)? {
            Some((bytes, rev)) => Ok(Some((parse_document(&self.etcd, &bytes)?, rev))),
            None => Ok(None),
        }
    }

    fn commit(&self, next: &Store, read: i64) -> Result<Commit, BackendError> {
        let bytes = serde_json::to_vec(next).map_err(|e| BackendError::Corrupt {
            key: self.etcd.key(STATE_KEY),
            message: e.to_string(),
        })?;
        match self.etcd.commit(STATE_KEY, bytes, read)? {
            EtcdCommit::Done(rev) => Ok(Commit::Done(rev)),
            EtcdCommit::Conflict(None) => Ok(Commit::Conflict(None)),
            EtcdCommit::Conflict(Some((bytes, rev))) => Ok(Commit::Conflict(Some((
                parse_document(&self.etcd, &bytes)?,
                rev,
            )))),
        }
    }
}
