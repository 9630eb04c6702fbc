//! What a change did ([`ChangeSummary`]), change ids and the store's log of
//! recent changes, which makes every change
//! idempotent: a request may name its change (`Idempotency-Key` header, else
//! the server makes an id up); the store keeps the id and outcome of its last
//! [`CHANGE_LOG_LIMIT`] changes, written in the same commit as the change
//! itself. A change whose id is in the log is not made again: its original
//! outcome is answered ([`crate::serve::ControlPlane::change_as`]). So a retry
//! after a lost answer, or after `503 outcome_unknown`, never applies a change
//! twice, on any replica.
//!
//! The id of the request being served travels with it as a task-local value
//! ([`with_change_id`], set by the API's middleware; read by
//! [`crate::serve::ControlPlane::change_blocking`]).

use serde::{Deserialize, Serialize};

use crate::history::ReleaseRecord;

/// How many changes the store remembers by id (the oldest are forgotten).
pub const CHANGE_LOG_LIMIT: usize = 128;

/// The longest change id accepted.
pub const MAX_CHANGE_ID_LEN: usize = 128;

/// A change the store made, by id, and what it answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppliedChange {
    pub id: String,
    /// The store generation the change produced.
    pub generation: u64,
    pub at_unix_ms: u64,
    /// What the change did, without its `unchanged` list and its release
    /// records (those are in the history, under the same id), to stay small.
    pub summary: ChangeSummary,
}

/// What a change did, for the API's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ChangeSummary {
    /// The change's id ([`crate::change_log`]), once it was made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: Vec<String>,
    pub deleted: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub releases: Vec<ReleaseRecord>,
    /// Context-key changes, e.g. `added k-1a2b3c4d (signing)`, `retired k-…`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    /// Progressive rollout changes, e.g. `web-v2-canary: progressing 10%`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub canary: Vec<String>,
}

impl ChangeSummary {
    /// Whether the store changed at all.
    pub fn changed(&self) -> bool {
        !(self.created.is_empty()
            && self.updated.is_empty()
            && self.deleted.is_empty()
            && self.releases.is_empty()
            && self.keys.is_empty()
            && self.canary.is_empty())
    }
}

/// Why a change id was refused.
#[derive(Debug, thiserror::Error)]
#[error("bad Idempotency-Key: 1 to {MAX_CHANGE_ID_LEN} characters of A-Z a-z 0-9 - _ . : expected")]
pub struct BadChangeId;

/// Checks a client's change id (`Idempotency-Key`).
pub fn parse_change_id(id: &str) -> Result<String, BadChangeId> {
    let ok = !id.is_empty()
        && id.len() <= MAX_CHANGE_ID_LEN
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if ok {
        Ok(id.to_string())
    } else {
        Err(BadChangeId)
    }
}

/// A new random change id: `c-` and 24 hex digits.
pub fn new_change_id() -> String {
    let mut bytes = [0u8; 12];
    if getrandom::fill(&mut bytes).is_err() {
        // not secret, only unique: the clock and a counter will do
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = crate::clock::now_unix_ms();
        bytes[..8].copy_from_slice(&t.to_be_bytes());
        bytes[8..].copy_from_slice(&(n as u32).to_be_bytes());
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("c-{hex}")
}

/// Appends `change` and forgets the oldest beyond [`CHANGE_LOG_LIMIT`].
pub fn remember(log: &mut Vec<AppliedChange>, change: AppliedChange) {
    log.push(change);
    if log.len() > CHANGE_LOG_LIMIT {
        let extra = log.len() - CHANGE_LOG_LIMIT;
        log.drain(..extra);
    }
}

tokio::task_local! {
    static CHANGE_ID: String;
}

/// Runs `f` with `id` as the id of the change it makes.
pub async fn with_change_id<F: std::future::Future>(id: String, f: F) -> F::Output {
    CHANGE_ID.scope(id, f).await
}

/// The change id of the request being served, if any.
pub fn current_change_id() -> Option<String> {
    CHANGE_ID.try_with(Clone::clone).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_unique_and_the_log_is_bounded() {
        assert!(parse_change_id("cli-1f2e:3.a_b").is_ok());
        for bad in ["", "a b", "ä", &"x".repeat(MAX_CHANGE_ID_LEN + 1)] {
            assert!(parse_change_id(bad).is_err(), "{bad}");
        }
        let (a, b) = (new_change_id(), new_change_id());
        assert_ne!(a, b);
        assert!(parse_change_id(&a).is_ok());
        let mut log = Vec::new();
        for g in 0..(CHANGE_LOG_LIMIT as u64 + 5) {
            remember(
                &mut log,
                AppliedChange {
                    id: format!("c{g}"),
                    generation: g,
                    at_unix_ms: 0,
                    summary: ChangeSummary::default(),
                },
            );
        }
        assert_eq!(log.len(), CHANGE_LOG_LIMIT);
        assert_eq!(log[0].id, "c5");
    }
}
