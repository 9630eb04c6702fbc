//! The release history: one record per change of a VE's release (release,
//! rollback, or a VE applied with another release), oldest first, kept in the
//! store ([`crate::state::Store::history`]); release ids `VE-rN`.

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

/// `VE-rN`, N one more than the VE's history entries (and not taken).
pub fn next_release_id(history: &[ReleaseRecord], ve: &str) -> String {
    let n = history.iter().filter(|r| r.virtual_env == ve).count() + 1;
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
}
