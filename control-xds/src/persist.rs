//! The state file of `serve --state DIR`: `DIR/state.json`, replaced
//! atomically ([`crate::atomic_file`]: temp file in the same directory, fsync,
//! rename, fsync of the directory). A crash mid-write leaves either the old or
//! the new file; leftover temp files are removed at load.

use std::fs;
use std::path::{Path, PathBuf};

use crate::state::{Store, STATE_FORMAT};

/// Name of the state file inside `--state DIR`.
pub const STATE_FILE: &str = "state.json";

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid state file: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path} has format {found}; this switchyard reads format {STATE_FORMAT}")]
    Format { path: PathBuf, found: u32 },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> PersistError {
    let path = path.to_path_buf();
    move |source| PersistError::Io {
        action,
        path,
        source,
    }
}

/// Loads `dir/state.json`; `None` when there is none yet. Leftover temp files of
/// an interrupted write are removed: they were never renamed into place, so they
/// never were the state.
pub fn load_state(dir: &Path) -> Result<Option<Store>, PersistError> {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name();
            if name.to_string_lossy().starts_with(".state.json.tmp") {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    let path = dir.join(STATE_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("read", &path)(e)),
    };
    let store: Store = serde_json::from_str(&text).map_err(|source| PersistError::Corrupt {
        path: path.clone(),
        source,
    })?;
    if store.format != STATE_FORMAT {
        return Err(PersistError::Format {
            path,
            found: store.format,
        });
    }
    Ok(Some(store))
}

/// Writes `store` to `dir/state.json` atomically.
pub fn save_state(dir: &Path, store: &Store) -> Result<(), PersistError> {
    fs::create_dir_all(dir).map_err(io("create", dir))?;
    let path = dir.join(STATE_FILE);
    let mut text = serde_json::to_vec_pretty(store).map_err(|source| PersistError::Corrupt {
        path: path.clone(),
        source,
    })?;
    text.push(b'\n');
    crate::atomic_file::write(&path, &text, None).map_err(io("write", &path))
}
