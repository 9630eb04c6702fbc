//! Who may use the HTTP API: bearer tokens and their roles.
//!
//! A token is `syt_` and 43 characters (32 random bytes from the OS,
//! base64url). The server keeps only each token's SHA-256 (`tokens.json` in
//! the state directory, mode 0600, written atomically): a stolen state file
//! gives no credential. A token has 256 bits of entropy, so a plain hash is
//! enough (no salted password hash needed), and a lookup by hash does not leak
//! anything useful through timing.
//!
//! Roles (DESIGN.md): `read` (status, history, explain, resources without
//! secrets, live), `release` (read + release, rollback, canaries), `admin`
//! (release + apply, publish, delete, keys, tokens) and `pull` (only the
//! filter's `GET /v1/config`, which carries the context-signing secrets; no
//! other role gets them).
//!
//! On first start `serve` creates a token named `admin` and keeps it in
//! `admin.token` (mode 0600) beside `tokens.json`, like k3s's server token, so
//! the CLI on the same machine can use it ([`crate::credentials`]).
//!
//! With `serve --store etcd://…/PREFIX` the hashes are the document
//! `PREFIX/tokens` (the same JSON), shared by every replica: a token made
//! through one replica works on all. A change is a transaction guarded by the
//! revision it read (retried from the current document when another replica
//! wrote first); each replica follows the key, and a token not known yet is
//! looked up in etcd once more before it is refused (at most every
//! [`REFRESH_EVERY`]). The replica that creates the document on first start
//! makes the admin token and leaves it for the CLI on its machine; the plain
//! token is never stored in etcd.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};

use crate::clock::now_unix_ms;
use crate::etcd::{Commit, Etcd, EtcdError};
use crate::state_store::BackendError;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A role: what a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Read,
    Release,
    Admin,
    Pull,
}

impl Role {
    /// Whether a token of this role may do what `needed` allows.
    pub fn grants(self, needed: Role) -> bool {
        match needed {
            Role::Pull => self == Role::Pull,
            Role::Read => matches!(self, Role::Read | Role::Release | Role::Admin),
            Role::Release => matches!(self, Role::Release | Role::Admin),
            Role::Admin => self == Role::Admin,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Release => "release",
            Role::Admin => "admin",
            Role::Pull => "pull",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = AuthError;
    fn from_str(s: &str) -> Result<Self, AuthError> {
        match s {
            "read" => Ok(Role::Read),
            "release" => Ok(Role::Release),
            "admin" => Ok(Role::Admin),
            "pull" => Ok(Role::Pull),
            other => Err(AuthError::BadRequest(format!(
                "unknown role '{other}': use read, release, admin or pull"
            ))),
        }
    }
}

/// A stored token: its name, role and hash (never the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRecord {
    pub name: String,
    pub role: Role,
    /// Hex SHA-256 of the token.
    pub sha256: String,
    pub created_unix_ms: u64,
}

/// Who a request is: the token's name and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub role: Role,
}

/// Why a token operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("cannot {action} {path}: {error}")]
    Io {
        action: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path} is not a valid token file: {error}")]
    Corrupt {
        path: PathBuf,
        error: serde_json::Error,
    },
    #[error("no random token could be made: {0}")]
    Random(std::io::Error),
    /// The store (etcd) cannot be reached (or the document would be too large).
    #[error("the tokens could not be read or written in the store")]
    Store(#[from] BackendError),
    #[error("the tokens in etcd ({key}) are not a valid token document: {message}")]
    EtcdCorrupt { key: String, message: String },
}

impl From<EtcdError> for AuthError {
    fn from(e: EtcdError) -> Self {
        Self::Store(e.into())
    }
}

/// The key (under the etcd prefix) of the tokens document.
pub const TOKENS_KEY: &str = "tokens";
/// An unknown token is looked up in etcd at most this often.
pub const REFRESH_EVERY: std::time::Duration = std::time::Duration::from_millis(100);
/// How many times a token change is tried again after other replicas wrote first.
const MAX_TRIES: usize = 20;

/// The tokens in etcd: the followed document and what was parsed of it.
#[derive(Debug)]
struct Shared {
    etcd: Etcd,
    latest: Mutex<tokio::sync::watch::Receiver<Option<crate::etcd::Doc>>>,
    /// The revision `records` were read at.
    revision: AtomicI64,
    /// When an unknown token last caused a lookup (ms since the epoch).
    last_refresh_ms: AtomicU64,
}

/// The file of token hashes in the state directory.
pub const TOKENS_FILE: &str = "tokens.json";
/// The admin credential created on first start, in the state directory.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
const PREFIX: &str = "syt_";

#[derive(Debug, Default, Serialize, Deserialize)]
struct TokensFile {
    tokens: Vec<TokenRecord>,
}

/// The server's tokens (hashes), persisted in `dir` when there is one.
#[derive(Debug)]
pub struct Tokens {
    records: RwLock<Vec<TokenRecord>>,
    dir: Option<PathBuf>,
    shared: Option<Shared>,
}

/// A new random token.
pub fn generate_token() -> Result<String, AuthError> {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| AuthError::Random(std::io::Error::other(e)))?;
    Ok(format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// Hex SHA-256 of a token.
pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

impl Tokens {
    /// The tokens of `dir` (created there on first start with one admin token),
    /// or a fresh in-memory set without a directory. Returns the admin token
    /// when it is known in plain text (just created, or kept in `admin.token`).
    pub fn open(dir: Option<&Path>) -> Result<(Self, Option<String>), AuthError> {
        let Some(dir) = dir else {
            let tokens = Self {
                records: RwLock::new(Vec::new()),
                dir: None,
                shared: None,
            };
            let admin = tokens.create("admin", Role::Admin)?;
            return Ok((tokens, Some(admin)));
        };
        let path = dir.join(TOKENS_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => {
                return Err(AuthError::Io {
                    action: "read",
                    path,
                    error,
                })
            }
        };
        let tokens = Self {
            records: RwLock::new(Vec::new()),
            dir: Some(dir.to_path_buf()),
            shared: None,
        };
        let admin_path = dir.join(ADMIN_TOKEN_FILE);
        match text {
            None => {
                let admin = tokens.create("admin", Role::Admin)?;
                crate::atomic_file::write(
                    &admin_path,
                    format!("{admin}\n").as_bytes(),
                    Some(0o600),
                )
                .map_err(|error| AuthError::Io {
                    action: "write",
                    path: admin_path,
                    error,
                })?;
                Ok((tokens, Some(admin)))
            }
            Some(text) => {
                let file: TokensFile =
                    serde_json::from_str(&text).map_err(|error| AuthError::Corrupt {
                        path: path.clone(),
                        error,
                    })?;
                *tokens.write() = file.tokens;
                // The kept admin credential, if it still is one.
                let admin = std::fs::read_to_string(&admin_path)
                    .ok()
                    .map(|t| t.trim().to_string())
                    .filter(|t| tokens.verify(t).is_some_and(|i| i.role == Role::Admin));
                Ok((tokens, admin))
            }
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<TokenRecord>> {
        self.records.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<TokenRecord>> {
        self.records.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn save(&self, records: &[TokenRecord]) -> Result<(), AuthError> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let path = dir.join(TOKENS_FILE);
        let file = TokensFile {
            tokens: records.to_vec(),
        };
        let mut text = serde_json::to_vec_pretty(&file).map_err(|error| AuthError::Corrupt {
            path: path.clone(),
            error,
        })?;
        text.push(b'\n');
        crate::atomic_file::write(&path, &text, Some(0o600)).map_err(|error| AuthError::Io {
            action: "write",
            path,
            error,
        })
    }

    /// Who `token` is, if it is a known token.
    pub fn verify(&self, token: &str) -> Option<Identity> {
        if !token.starts_with(PREFIX) {
            return None;
        }
        if let Some(shared) = &self.shared {
            self.catch_up(shared);
        }
        let hash = hash_token(token);
        self.read()
            .iter()
            .find(|r| r.sha256 == hash)
            .map(|r| Identity {
                name: r.name.clone(),
                role: r.role,
            })
    }

    /// A new token named `name` with `role`; returns it (the only time it is
    /// seen in plain text). Nothing changes if it cannot be saved.
    pub fn create(&self, name: &str, role: Role) -> Result<String, AuthError> {
        if !valid_name(name) {
            return Err(AuthError::BadRequest(format!(
                "token name '{name}' must be 1-63 letters, digits, '-', '_' or '.'"
            )));
        }
        let token = generate_token()?;
        let record = TokenRecord {
            name: name.to_string(),
            role,
            sha256: hash_token(&token),
            created_unix_ms: now_unix_ms(),
        };
        self.mutate(|records| {
            if records.iter().any(|r| r.name == name) {
                return Err(AuthError::Conflict(format!(
                    "a token named '{name}' exists; revoke it first or choose another name"
                )));
            }
            let mut next = records.to_vec();
            next.push(record.clone());
            Ok((next, ()))
        })?;
        Ok(token)
    }

    /// Revokes the token named `name`; the last admin token cannot be revoked.
    pub fn revoke(&self, name: &str) -> Result<TokenRecord, AuthError> {
        self.mutate(|records| {
            let Some(at) = records.iter().position(|r| r.name == name) else {
                return Err(AuthError::NotFound(format!("token '{name}' not found")));
            };
            if records[at].role == Role::Admin
                && records.iter().filter(|r| r.role == Role::Admin).count() == 1
            {
                return Err(AuthError::Conflict(
                    "the last admin token cannot be revoked (create another admin token first)"
                        .into(),
                ));
            }
            let mut next = records.to_vec();
            let removed = next.remove(at);
            Ok((next, removed))
        })
    }

    /// Computes the next records from the current ones and saves them (the
    /// state directory, or etcd guarded by the revision read, tried again
    /// from the current document when another replica wrote first). Nothing
    /// changes if they cannot be saved.
    fn mutate<R>(
        &self,
        f: impl Fn(&[TokenRecord]) -> Result<(Vec<TokenRecord>, R), AuthError>,
    ) -> Result<R, AuthError> {
        let Some(shared) = &self.shared else {
            let mut records = self.write();
            let (next, r) = f(&records)?;
            self.save(&next)?;
            *records = next;
            return Ok(r);
        };
        self.catch_up(shared);
        let mut base = self.read().clone();
        let mut revision = shared.revision.load(Ordering::SeqCst);
        for _ in 0..MAX_TRIES {
            let (next, r) = f(&base)?;
            let bytes = serde_json::to_vec(&TokensFile {
                tokens: next.clone(),
            })
            .map_err(|e| self.corrupt(shared, e.to_string()))?;
            match shared.etcd.commit(TOKENS_KEY, bytes, revision)? {
                Commit::Done(new) => {
                    self.replace(shared, next, new);
                    return Ok(r);
                }
                Commit::Conflict(latest) => {
                    (base, revision) = match latest {
                        Some((bytes, rev)) => (self.parse(shared, &bytes)?, rev),
                        None => (Vec::new(), 0),
                    };
                    self.replace(shared, base.clone(), revision);
                }
            }
        }
        Err(AuthError::Conflict(
            "other replicas kept changing the tokens first; try again".into(),
        ))
    }

    /// The tokens of `PREFIX/tokens` in etcd, created there (with an admin
    /// token, returned) if the document does not exist yet.
    pub fn open_etcd(etcd: &Etcd) -> Result<(Self, Option<String>), AuthError> {
        let tokens = Self {
            records: RwLock::new(Vec::new()),
            dir: None,
            shared: Some(Shared {
                etcd: etcd.clone(),
                latest: Mutex::new(etcd.watch(TOKENS_KEY)),
                revision: AtomicI64::new(0),
                last_refresh_ms: AtomicU64::new(0),
            }),
        };
        let shared = tokens.shared.as_ref().expect("just set");
        if let Some((bytes, rev)) = etcd.get(TOKENS_KEY)? {
            let records = tokens.parse(shared, &bytes)?;
            tokens.replace(shared, records, rev);
            return Ok((tokens, None));
        }
        let admin = generate_token()?;
        let record = TokenRecord {
            name: "admin".into(),
            role: Role::Admin,
            sha256: hash_token(&admin),
            created_unix_ms: now_unix_ms(),
        };
        let bytes = serde_json::to_vec(&TokensFile {
            tokens: vec![record.clone()],
        })
        .map_err(|e| tokens.corrupt(shared, e.to_string()))?;
        match etcd.commit(TOKENS_KEY, bytes, 0)? {
            Commit::Done(rev) => {
                tokens.replace(shared, vec![record], rev);
                Ok((tokens, Some(admin)))
            }
            Commit::Conflict(latest) => {
                if let Some((bytes, rev)) = latest {
                    let records = tokens.parse(shared, &bytes)?;
                    tokens.replace(shared, records, rev);
                }
                Ok((tokens, None))
            }
        }
    }

    fn corrupt(&self, shared: &Shared, message: String) -> AuthError {
        AuthError::EtcdCorrupt {
            key: shared.etcd.key(TOKENS_KEY),
            message,
        }
    }

    fn parse(&self, shared: &Shared, bytes: &[u8]) -> Result<Vec<TokenRecord>, AuthError> {
        serde_json::from_slice::<TokensFile>(bytes)
            .map(|f| f.tokens)
            .map_err(|e| self.corrupt(shared, e.to_string()))
    }

    /// Keeps `records` read at `revision` unless newer ones are kept.
    fn replace(&self, shared: &Shared, records: Vec<TokenRecord>, revision: i64) {
        let mut current = self.write();
        if revision >= shared.revision.load(Ordering::SeqCst) {
            *current = records;
            shared.revision.store(revision, Ordering::SeqCst);
        }
    }

    /// Takes the newest document the watch delivered.
    fn catch_up(&self, shared: &Shared) {
        let doc = {
            let mut rx = shared.latest.lock().unwrap_or_else(PoisonError::into_inner);
            if !rx.has_changed().unwrap_or(false) {
                return;
            }
            let doc = rx.borrow_and_update().clone();
            doc
        };
        if let Some((bytes, rev)) = doc {
            match self.parse(shared, &bytes) {
                Ok(records) => self.replace(shared, records, rev),
                Err(e) => tracing::warn!(error = %e, "ignoring a token document"),
            }
        }
    }

    /// [`Self::verify`]; with etcd, a token not known here is looked up in
    /// etcd once more (a token just made through another replica).
    pub async fn verify_fresh(&self, token: &str) -> Option<Identity> {
        if let Some(identity) = self.verify(token) {
            return Some(identity);
        }
        let shared = self.shared.as_ref()?;
        if !token.starts_with(PREFIX) {
            return None;
        }
        let now = now_unix_ms();
        let last = shared.last_refresh_ms.load(Ordering::SeqCst);
        if now.saturating_sub(last) < REFRESH_EVERY.as_millis() as u64
            || shared
                .last_refresh_ms
                .compare_exchange(last, now, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
        {
            return None;
        }
        if let Ok(Some((bytes, rev))) = shared.etcd.get_async(TOKENS_KEY).await {
            if let Ok(records) = self.parse(shared, &bytes) {
                self.replace(shared, records, rev);
            }
        }
        self.verify(token)
    }

    /// Every token's name, role and creation time (no hashes).
    pub fn list(&self) -> Vec<serde_json::Value> {
        if let Some(shared) = &self.shared {
            self.catch_up(shared);
        }
        self.read()
            .iter()
            .map(|r| {
                serde_json::json!({
                    "name": r.name,
                    "role": r.role,
                    "created": crate::clock::rfc3339(r.created_unix_ms),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "switchyard-auth-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn roles_grant_what_the_issue_says() {
        use Role::*;
        let table = [
            (Read, [true, false, false, false]),
            (Release, [true, true, false, false]),
            (Admin, [true, true, true, false]),
            (Pull, [false, false, false, true]),
        ];
        for (role, wants) in table {
            let got = [Read, Release, Admin, Pull].map(|n| role.grants(n));
            assert_eq!(got, wants, "{role}");
        }
    }

    #[test]
    fn first_start_creates_an_admin_token_kept_hashed_and_0600() {
        let dir = temp_dir("first");
        let (tokens, admin) = Tokens::open(Some(&dir)).unwrap();
        let admin = admin.unwrap();
        assert!(admin.starts_with("syt_") && admin.len() == 47, "{admin}");
        assert_eq!(tokens.verify(&admin).unwrap().role, Role::Admin);
        let stored = std::fs::read_to_string(dir.join(TOKENS_FILE)).unwrap();
        assert!(!stored.contains(&admin[4..]), "plain token at rest");
        assert!(stored.contains(&hash_token(&admin)));
        #[cfg(unix)]
        for f in [TOKENS_FILE, ADMIN_TOKEN_FILE] {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        // a restart finds the same admin token, and tokens created since
        let read = tokens.create("ci", Role::Read).unwrap();
        let (again, admin_again) = Tokens::open(Some(&dir)).unwrap();
        assert_eq!(admin_again.as_deref(), Some(admin.as_str()));
        assert_eq!(again.verify(&read).unwrap().role, Role::Read);
        assert!(again.verify("syt_nope").is_none());
        assert!(again.verify(&hash_token(&read)).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn create_and_revoke_refuse_bad_requests_and_change_nothing() {
        let (tokens, _) = Tokens::open(None).unwrap();
        assert!(matches!(
            tokens.create("admin", Role::Read),
            Err(AuthError::Conflict(_))
        ));
        assert!(matches!(
            tokens.create("no spaces", Role::Read),
            Err(AuthError::BadRequest(_))
        ));
        assert!(matches!(
            tokens.revoke("admin"),
            Err(AuthError::Conflict(_))
        ));
        assert!(matches!(tokens.revoke("x"), Err(AuthError::NotFound(_))));
        let t = tokens.create("ro", Role::Read).unwrap();
        assert_eq!(tokens.revoke("ro").unwrap().role, Role::Read);
        assert!(tokens.verify(&t).is_none());
        assert_eq!(tokens.list().len(), 1);
    }
}
