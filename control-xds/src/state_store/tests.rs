//! The control plane over a backend that fails the way etcd does: the answers
//! it gives are true, a change is never made twice, and history is bounded.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::*;
use crate::serve::{ChangeError, ControlPlane};
use crate::state::ChangeSummary;
use crate::test_fixtures::{build_options, web_v1_and_v2};

/// A store in memory whose next writes fail: `lose` writes are made but their
/// answer is lost; `drop` writes never arrive; while `down`, every call fails
/// (also `settle`).
#[derive(Default)]
struct Flaky {
    saved: Mutex<Option<(Store, i64)>>,
    lose: AtomicUsize,
    drop: AtomicUsize,
    down: std::sync::atomic::AtomicBool,
    /// The store goes down right after it made a write whose answer is lost.
    down_after_lost: std::sync::atomic::AtomicBool,
}

fn unavailable() -> BackendError {
    BackendError::Unavailable {
        store: "flaky".into(),
        message: "no answer".into(),
    }
}

fn take(n: &AtomicUsize) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
        .is_ok()
}

impl Flaky {
    fn write(&self, next: &Store, read: i64) -> Commit {
        let mut saved = self.saved.lock().unwrap();
        let rev = saved.as_ref().map_or(0, |s| s.1);
        if rev != read {
            return Commit::Conflict(saved.clone());
        }
        *saved = Some((next.clone(), rev + 1));
        Commit::Done(rev + 1)
    }
}

impl StateBackend for Flaky {
    fn describe(&self) -> String {
        "flaky".into()
    }
    fn load(&self) -> Result<Option<(Store, i64)>, BackendError> {
        Ok(self.saved.lock().unwrap().clone())
    }
    fn commit(&self, next: &Store, read: i64) -> Result<Commit, BackendError> {
        if self.down.load(Ordering::SeqCst) || take(&self.drop) {
            return Err(unavailable());
        }
        let done = self.write(next, read);
        if take(&self.lose) {
            if self.down_after_lost.load(Ordering::SeqCst) {
                self.down.store(true, Ordering::SeqCst);
            }
            return Err(unavailable());
        }
        Ok(done)
    }
    fn settle(&self, base: &Store, read: i64) -> Result<Settled, BackendError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(unavailable());
        }
        Ok(match self.write(base, read) {
            Commit::Done(rev) => Settled::Unchanged(rev),
            Commit::Conflict(Some((s, rev))) => Settled::Changed(s, rev),
            Commit::Conflict(None) => unreachable!(),
        })
    }
}

fn plane(limit: usize) -> (ControlPlane, Arc<Flaky>) {
    let docs = crate::load::parse_text(std::path::Path::new("r.yaml"), &web_v1_and_v2()).unwrap();
    let (store, _) = Store::new().apply(&docs, "t").unwrap();
    let backend = Arc::new(Flaky::default());
    *backend.saved.lock().unwrap() = Some((store.clone(), 1));
    let plane = ControlPlane::start_on(
        store,
        1,
        crate::xds::SnapshotCache::new(),
        build_options(),
        backend.clone(),
    )
    .unwrap()
    .with_history_limit(limit);
    (plane, backend)
}

fn release(plane: &ControlPlane, id: &str, dep: &str) -> Result<(ChangeSummary, u64), ChangeError> {
    let dep = dep.to_string();
    plane.change_as(id, move |s| s.release(&dep, "team-a", "t"))
}

fn records_of(backend: &Flaky, id: &str) -> usize {
    let saved = backend.saved.lock().unwrap();
    let store = &saved.as_ref().unwrap().0;
    store
        .history
        .iter()
        .filter(|r| r.change.as_deref() == Some(id))
        .count()
}

#[test]
fn a_change_id_is_made_once_and_answers_its_first_outcome() {
    let (plane, backend) = plane(100);
    let (first, generation) = release(&plane, "c-1", "web-v2").unwrap();
    assert_eq!(first.change.as_deref(), Some("c-1"));
    assert_eq!(first.releases[0].change.as_deref(), Some("c-1"));
    // the same id again, even for another release: the original answer, nothing made
    let (again, g2) = release(&plane, "c-1", "web-v1").unwrap();
    assert_eq!(
        (again.releases.clone(), g2),
        (first.releases.clone(), generation)
    );
    assert_eq!(records_of(&backend, "c-1"), 1);
    assert_eq!(plane.store().generation, generation);
}

#[test]
fn a_write_whose_answer_was_lost_is_found_and_answered_as_made() {
    let (plane, backend) = plane(100);
    backend.lose.store(1, Ordering::SeqCst);
    let (summary, _) = release(&plane, "c-lost", "web-v2").unwrap();
    assert_eq!(summary.releases.len(), 1, "{summary:?}");
    assert_eq!(records_of(&backend, "c-lost"), 1);
}

#[test]
fn a_write_that_never_arrived_is_proven_not_made_and_tried_again() {
    let (plane, backend) = plane(100);
    backend.drop.store(1, Ordering::SeqCst);
    release(&plane, "c-drop", "web-v2").unwrap();
    assert_eq!(records_of(&backend, "c-drop"), 1);
    // twice in a row: a true "nothing changed"
    backend.drop.store(2, Ordering::SeqCst);
    let r = release(&plane, "c-drop2", "web-v1");
    assert!(matches!(r, Err(ChangeError::Unavailable(_))), "{r:?}");
    assert_eq!(records_of(&backend, "c-drop2"), 0);
}

#[test]
fn an_unknown_outcome_says_so_and_a_retry_makes_it_exactly_once() {
    for made in [true, false] {
        let (plane, backend) = plane(100);
        if made {
            // made, its answer lost, and the store gone before it can be asked
            backend.lose.store(1, Ordering::SeqCst);
            backend.down_after_lost.store(true, Ordering::SeqCst);
        } else {
            backend.down.store(true, Ordering::SeqCst);
        }
        match release(&plane, "c-u", "web-v2") {
            Err(ChangeError::OutcomeUnknown { change, .. }) => assert_eq!(change, "c-u"),
            other => panic!("{other:?}"),
        }
        assert_eq!(records_of(&backend, "c-u"), usize::from(made));
        backend.down.store(false, Ordering::SeqCst);
        let (summary, _) = release(&plane, "c-u", "web-v2").unwrap();
        assert_eq!(summary.releases.len(), 1, "made={made}");
        assert_eq!(records_of(&backend, "c-u"), 1, "made={made}");
        let (again, _) = release(&plane, "c-u", "web-v2").unwrap();
        assert_eq!(again.releases, summary.releases);
        assert_eq!(records_of(&backend, "c-u"), 1);
    }
}

#[test]
fn history_keeps_the_last_records_of_each_ve_and_rollback_walks_them() {
    let (plane, backend) = plane(3);
    for i in 0..6 {
        let dep = if i % 2 == 0 { "web-v2" } else { "web-v1" };
        release(&plane, &format!("c-{i}"), dep).unwrap();
    }
    let store = plane.store();
    let history = store.history_of(Some("team-a"));
    assert_eq!(history.len(), 3, "{history:?}");
    assert_eq!(history[2].id, "team-a-r7");
    assert_eq!(backend.load().unwrap().unwrap().0.history.len(), 3);
    // rollback goes back within what is kept
    plane
        .change_as("rb-1", |s| s.rollback("team-a", None, "t"))
        .unwrap();
    let ids: Vec<String> = plane
        .store()
        .history_of(Some("team-a"))
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, ["team-a-r6", "team-a-r7", "team-a-r8"]);
}

#[test]
fn the_state_file_keeps_the_bounded_history_and_the_change_log() {
    let dir = std::env::temp_dir().join(format!(
        "switchyard-store-history-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let docs = crate::load::parse_text(std::path::Path::new("r.yaml"), &web_v1_and_v2()).unwrap();
    let (store, _) = Store::new().apply(&docs, "t").unwrap();
    let plane = ControlPlane::start(
        store,
        crate::xds::SnapshotCache::new(),
        build_options(),
        Some(dir.clone()),
    )
    .unwrap()
    .with_history_limit(2);
    for i in 0..5 {
        let dep = if i % 2 == 0 { "web-v2" } else { "web-v1" };
        release(&plane, &format!("f-{i}"), dep).unwrap();
    }
    let saved = crate::persist::load_state(&dir).unwrap().unwrap();
    let ids: Vec<&str> = saved.history.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["team-a-r5", "team-a-r6"]);
    assert_eq!(saved.history[1].change.as_deref(), Some("f-4"));
    assert!(
        saved.applied("f-0").is_some(),
        "the change log outlives the history"
    );
    // a plane started again from the file answers a repeated change as made
    let again = ControlPlane::start(
        saved,
        crate::xds::SnapshotCache::new(),
        build_options(),
        Some(dir.clone()),
    )
    .unwrap();
    let (summary, _) = release(&again, "f-4", "web-v2").unwrap();
    assert_eq!(summary.releases[0].id, "team-a-r6");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_release_the_change_log_forgot_is_still_known_by_its_history_record() {
    let (plane, backend) = plane(1000);
    release(&plane, "old", "web-v2").unwrap();
    for i in 0..crate::change_log::CHANGE_LOG_LIMIT + 2 {
        let dep = if i % 2 == 0 { "web-v1" } else { "web-v2" };
        release(&plane, &format!("c-{i}"), dep).unwrap();
    }
    assert!(
        plane.store().applied("old").is_none(),
        "forgotten by the log"
    );
    let (summary, _) = release(&plane, "old", "web-v2").unwrap();
    assert_eq!(summary.change.as_deref(), Some("old"));
    assert_eq!(summary.releases.len(), 1);
    assert_eq!(records_of(&backend, "old"), 1, "not made twice");
}
