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
//!
//! A write whose call failed may still take effect (it may have reached
//! etcd's leader before the answer was lost). [`StateBackend::settle`] then
//! decides it: it rewrites the document it was computed from, guarded by the
//! same revision. If that succeeds, the failed write can never succeed any
//! more (its guard no longer holds); if it fails, the document moved on, and
//! the store's change log ([`crate::change_log`]) says whether the change is
//! in it. Only when `settle` cannot reach the store either is the outcome
//! unknown.
//!
//! Nothing of the backend (no etcd type, no etcd error) shows above this
//! module: callers get [`BackendError`].

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
    /// The store could not be reached (for a write: whether it was made is
    /// not known until [`StateBackend::settle`] says so).
    #[error("the store is unavailable ({store}): {message}")]
    Unavailable { store: String, message: String },
    /// The document is larger than the store accepts (nothing was written).
    #[error("{0}")]
    TooLarge(String),
    /// `--store` is not a usable store address.
    #[error("{0}")]
    Address(String),
    #[error("the state in etcd ({key}) is not a valid state document: {message}")]
    Corrupt { key: String, message: String },
}

impl From<EtcdError> for BackendError {
    fn from(e: EtcdError) -> Self {
        match e {
            EtcdError::Unavailable { endpoints, message } => Self::Unavailable {
                store: format!("etcd {endpoints}"),
                message,
            },
            e @ EtcdError::TooLarge { .. } => Self::TooLarge(e.to_string()),
            e @ (EtcdError::Url { .. } | EtcdError::File { .. }) => Self::Address(e.to_string()),
        }
    }
}

/// What [`StateBackend::settle`] found.
#[derive(Debug)]
pub enum Settled {
    /// The failed write will never take effect; the document it was computed
    /// from is still current, now at this revision.
    Unchanged(i64),
    /// The document moved on (maybe by the failed write itself): the current
    /// store and its revision.
    Changed(Store, i64),
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
    /// After a [`Self::commit`] of a change computed from `base` (read at
    /// `read`) failed with [`BackendError::Unavailable`]: makes sure that
    /// write can no longer take effect, or finds the store that holds it.
    fn settle(&self, base: &Store, read: i64) -> Result<Settled, BackendError>;
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

    /// A failed write of the state file left the old file (it is replaced by
    /// a rename): nothing to settle.
    fn settle(&self, _base: &Store, read: i64) -> Result<Settled, BackendError> {
        Ok(Settled::Unchanged(read))
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

    /// Rewrites `base` guarded by `read`: etcd applies writes one after the
    /// other, so once this succeeds the failed write (guarded by `read` too)
    /// fails whenever it arrives; if this fails, the current document says
    /// whether the failed write was made.
    fn settle(&self, base: &Store, read: i64) -> Result<Settled, BackendError> {
        match self.commit(base, read)? {
            Commit::Done(revision) => Ok(Settled::Unchanged(revision)),
            Commit::Conflict(Some((store, revision))) => Ok(Settled::Changed(store, revision)),
            Commit::Conflict(None) => Err(BackendError::Corrupt {
                key: self.etcd.key(STATE_KEY),
                message: "the state document disappeared".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests;
