//! The release history: one record per change of a VE's release (release,
//! rollback, or a VE applied with another release), oldest first, kept in the
//! store ([`crate::state::Store::history`]); release ids `VE-rN`.
//!
//! Bounded: each VE keeps its last [`DEFAULT_HISTORY_LIMIT`] records (`serve
//! --history-limit N`, like KubeFox's `historyLimits`); older ones are dropped
//! ([`trim`]). So `rollback`, which walks a VE's records backwards, can go back
//! at most N releases of that VE.

use serde::{Deserialize, Serialize};

use crate::clock::rfc3339;

/// One entry of a VE's release history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseRecord {
    /// The release id this change produced (the VE's `spec.release.id`).
    pub id: String,
    pub virtual_env: String,
    pub app: String,
    /// What the change released; `None` when it removed the app's release.
    pub deployment: Option<String>,
    /// What was released before.
    pub previous: Option<String>,
    /// `release`, `rollback` or `apply` (a VE applied with a different release).
    pub action: String,
    /// For a rollback: the id of the release it undid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undoes: Option<String>,
    pub who: String,
    /// The id of the change that made this record (the request's
    /// `Idempotency-Key`, or one the server made up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
    /// RFC 3339, UTC.
    pub at: String,
    pub at_unix_ms: u64,
}

impl ReleaseRecord {
    /// A record made at `at_unix_ms` (not undoing anything).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: &str,
        ve: &str,
        app: &str,
        deployment: Option<String>,
        previous: Option<String>,
        action: &str,
        who: &str,
        at_unix_ms: u64,
    ) -> Self {
        Self {
            id: id.to_string(),
            virtual_env: ve.to_string(),
            app: app.to_string(),
            deployment,
            previous,
            action: action.to_string(),
            undoes: None,
            who: who.to_string(),
            change: None,
            at: rfc3339(at_unix_ms),
            at_unix_ms,
        }
    }
}

/// `ve`'s records (every VE's without one), oldest first.
pub fn of(history: &[ReleaseRecord], ve: Option<&str>) -> Vec<ReleaseRecord> {
    history
        .iter()
        .filter(|r| ve.is_none_or(|v| r.virtual_env == v))
        .cloned()
        .collect()
}

/// How many release records each VE keeps by default.
pub const DEFAULT_HISTORY_LIMIT: usize = 100;

/// Drops the oldest records of every VE that has more than `limit` (at least
/// one is always kept); returns how many were dropped.
pub fn trim(history: &mut Vec<ReleaseRecord>, limit: usize) -> usize {
    let limit = limit.max(1);
    let mut per_ve: std::collections::HashMap<&str, usize> = Default::default();
    for r in history.iter() {
        *per_ve.entry(r.virtual_env.as_str()).or_default() += 1;
    }
    let mut drop: std::collections::HashMap<String, usize> = per_ve
        .into_iter()
        .filter(|(_, n)| *n > limit)
        .map(|(ve, n)| (ve.to_string(), n - limit))
        .collect();
    if drop.is_empty() {
        return 0;
    }
    let before = history.len();
    history.retain(|r| match drop.get_mut(&r.virtual_env) {
        Some(n) if *n > 0 => {
            *n -= 1;
            false
        }
        _ => true,
    });
    before - history.len()
}

/// `VE-rN`, N one more than the VE's history entries or than the highest N
/// among them (records may have been trimmed), and not taken.
pub fn next_release_id(history: &[ReleaseRecord], ve: &str) -> String {
    let mine = || history.iter().filter(|r| r.virtual_env == ve);
    let prefix = format!("{ve}-r");
    let highest = mine()
        .filter_map(|r| r.id.strip_prefix(&prefix)?.parse::<usize>().ok())
        .max()
        .unwrap_or(0);
    let n = mine().count().max(highest) + 1;
    let mut id = format!("{ve}-r{n}");
    let mut extra = n;
    while history.iter().any(|r| r.id == id) {
        extra += 1;
        id = format!("{ve}-r{extra}");
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_count_per_ve_and_never_repeat() {
        let r =
            |id: &str, ve: &str| ReleaseRecord::new(id, ve, "app", None, None, "release", "t", 0);
        let h = vec![r("a-r1", "a"), r("b-r1", "b"), r("a-r3", "a")];
        assert_eq!(next_release_id(&h, "a"), "a-r4");
        assert_eq!(next_release_id(&h, "b"), "b-r2");
        assert_eq!(next_release_id(&h, "c"), "c-r1");
        assert_eq!(of(&h, Some("a")).len(), 2);
        assert_eq!(of(&h, None).len(), 3);
        assert_eq!(r("x", "a").at, "1970-01-01T00:00:00Z");
    }

    #[test]
    fn trim_keeps_the_last_records_of_each_ve_and_ids_go_on() {
        let r = |id: String, ve: &str| {
            ReleaseRecord::new(&id, ve, "app", None, None, "release", "t", 0)
        };
        let mut h = Vec::new();
        for i in 1..=7 {
            h.push(r(format!("a-r{i}"), "a"));
            if i <= 2 {
                h.push(r(format!("b-r{i}"), "b"));
            }
        }
        assert_eq!(trim(&mut h, 3), 4);
        let ids: Vec<&str> = h.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["b-r1", "b-r2", "a-r5", "a-r6", "a-r7"]);
        // ids never repeat a trimmed one
        assert_eq!(next_release_id(&h, "a"), "a-r8");
        assert_eq!(trim(&mut h, 3), 0);
        assert_eq!(trim(&mut h, 0), 3, "at least one record per VE stays");
    }
}
