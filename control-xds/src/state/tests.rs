use super::*;
use crate::persist::{load_state, save_state, PersistError, STATE_FILE};
use std::fs;
use std::path::Path;

const BASE: &str = "\
kind: Environment
metadata: {name: dev}
spec:
  subPath: dev
  defaultVirtualEnvironment: team-a
---
kind: VirtualEnvironment
metadata: {name: team-a}
spec:
  environment: dev
  release:
    apps: {web: web-v1}
---
kind: AppDeployment
metadata: {name: web-v1}
spec:
  app: web
  version: v1
  components:
    frontend:
      version: f1
      endpoints: [\"127.0.0.1:9101\"]
      routes:
        - match: {pathPrefix: /hello}
";

fn dep(name: &str, version: Option<&str>, port: u16) -> String {
    let v = version.map_or(String::new(), |v| format!("  version: {v}\n"));
    format!(
            "kind: AppDeployment\nmetadata: {{name: {name}}}\nspec:\n  app: web\n{v}  components:\n    frontend:\n      version: f{port}\n      endpoints: [\"127.0.0.1:{port}\"]\n      routes:\n        - match: {{pathPrefix: /hello}}\n"
        )
}

fn docs(file: &str, text: &str) -> Vec<Located> {
    load::parse_text(Path::new(file), text).unwrap()
}

fn base() -> Store {
    Store::new().apply(&docs("base.yaml", BASE), "t").unwrap().0
}

fn released(s: &Store, ve: &str, app: &str) -> Option<String> {
    match s.get(Kind::VirtualEnvironment, ve) {
        Some(Resource::VirtualEnvironment(v)) => v.spec.release.as_ref()?.apps.get(app).cloned(),
        _ => None,
    }
}

#[test]
fn apply_creates_and_reports_unchanged() {
    let s = base();
    assert_eq!(s.resources.len(), 3);
    assert_eq!(s.generation, 1);
    let (s2, sum) = s.apply(&docs("base.yaml", BASE), "t").unwrap();
    assert_eq!(sum.unchanged.len(), 3);
    assert!(!sum.changed());
    assert_eq!(s2.generation, 1);
}

#[test]
fn invalid_batch_changes_nothing_and_lists_every_problem() {
    let s = base();
    let before = s.clone();
    let bad = dep("web-v3", Some("v3"), 9103).replace("app: web", "app: web\n  colour: red");
    let err = load::parse_text(Path::new("bad.yaml"), &bad).unwrap_err();
    assert!(
        err.0[0].file == "bad.yaml" && err.0[0].reason.contains("colour"),
        "{err}"
    );
    // the parser stops at the first bad document; the engine lists them all:
    let two_bad = format!(
        "{}---\n{}",
        dep("web-v2", Some("v2"), 9102).replace("/hello", "hello"),
        dep("web-v3", Some("v3"), 9103).replace("/hello", "hello"),
    );
    match s.apply(&docs("two.yaml", &two_bad), "t") {
        Err(StoreError::Invalid(e)) => {
            assert_eq!(e.0.len(), 2, "{e}");
            assert!(e.0[0].line > 1 && e.0[1].line > e.0[0].line, "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s, before);
}

#[test]
fn versioned_deployment_is_immutable() {
    let s = base();
    let changed = dep("web-v1", Some("v1"), 9999);
    match s.apply(&docs("c.yaml", &changed), "t") {
        Err(StoreError::Invalid(e)) => {
            assert!(e.0[0].reason.contains("immutable"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    // unversioned deployments may change
    let (s, _) = s
        .publish(&docs("d.yaml", &dep("web-dev", None, 9200)), "t")
        .unwrap();
    let (_, sum) = s
        .publish(&docs("d.yaml", &dep("web-dev", None, 9201)), "t")
        .unwrap();
    assert_eq!(sum.updated, vec!["AppDeployment/web-dev"]);
}

#[test]
fn publish_takes_deployments_only() {
    let s = base();
    assert!(matches!(
        s.publish(&docs("base.yaml", BASE), "t"),
        Err(StoreError::Invalid(_))
    ));
}

#[test]
fn release_history_and_rollback() {
    let s = base();
    let (s, _) = s
        .publish(
            &docs(
                "p.yaml",
                &format!(
                    "{}---\n{}",
                    dep("web-v2", Some("v2"), 9102),
                    dep("web-v3", Some("v3"), 9103)
                ),
            ),
            "t",
        )
        .unwrap();
    let (s, sum) = s.release("web-v2", "team-a", "alice").unwrap();
    let r = &sum.releases[0];
    assert_eq!(
        (
            r.deployment.as_deref(),
            r.previous.as_deref(),
            r.who.as_str()
        ),
        (Some("web-v2"), Some("web-v1"), "alice")
    );
    let (s, _) = s.release("web-v3", "team-a", "bob").unwrap();
    assert_eq!(released(&s, "team-a", "web").as_deref(), Some("web-v3"));
    let ids: Vec<_> = s
        .history_of(Some("team-a"))
        .into_iter()
        .map(|r| r.id)
        .collect();
    // the first entry is team-a's creation by apply
    assert_eq!(ids, ["team-a-r1", "team-a-r2", "team-a-r3"]);

    let (s, sum) = s.rollback("team-a", None, "carol").unwrap();
    assert_eq!(released(&s, "team-a", "web").as_deref(), Some("web-v2"));
    assert_eq!(sum.releases[0].undoes.as_deref(), Some("team-a-r3"));
    let (s, _) = s.rollback("team-a", Some("web"), "carol").unwrap();
    assert_eq!(released(&s, "team-a", "web").as_deref(), Some("web-v1"));
    assert!(matches!(
        s.rollback("team-a", None, "carol"),
        Err(StoreError::Conflict(_))
    ));
    // the VE's release id follows
    match s.get(Kind::VirtualEnvironment, "team-a") {
        Some(Resource::VirtualEnvironment(v)) => assert_eq!(
            v.spec.release.as_ref().unwrap().id.as_deref(),
            Some("team-a-r5")
        ),
        _ => unreachable!(),
    }
}

#[test]
fn release_errors() {
    let s = base();
    assert!(matches!(
        s.release("nope", "team-a", "t"),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.release("web-v1", "nope", "t"),
        Err(StoreError::NotFound(_))
    ));
    let (s2, sum) = s.release("web-v1", "team-a", "t").unwrap();
    assert!(!sum.changed());
    assert_eq!(s2.generation, s.generation);

    let stable = BASE.replace(
        "defaultVirtualEnvironment: team-a",
        "defaultVirtualEnvironment: team-a\n  releasePolicy: {type: Stable}",
    );
    let s = Store::new().apply(&docs("b.yaml", &stable), "t").unwrap().0;
    let (s, _) = s
        .publish(&docs("d.yaml", &dep("web-dev", None, 9200)), "t")
        .unwrap();
    match s.release("web-dev", "team-a", "t") {
        Err(StoreError::Conflict(m)) => assert!(m.contains("Stable"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn delete_refuses_what_is_still_used() {
    let s = base();
    assert!(matches!(
        s.delete("deployment", "web-v1"),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.delete("deployment", "nope"),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.delete("pod", "x"),
        Err(StoreError::BadRequest(_))
    ));
    let (s, _) = s
        .publish(&docs("d.yaml", &dep("web-v2", Some("v2"), 9102)), "t")
        .unwrap();
    let (s, sum) = s.delete("AppDeployment", "web-v2").unwrap();
    assert_eq!(sum.deleted, vec!["AppDeployment/web-v2"]);
    assert!(s.get(Kind::AppDeployment, "web-v2").is_none());
}

#[test]
fn apply_of_a_changed_release_is_recorded() {
    let s = base();
    let (s, _) = s
        .publish(&docs("d.yaml", &dep("web-v2", Some("v2"), 9102)), "t")
        .unwrap();
    let (s, sum) = s
        .apply(
            &docs("b.yaml", &BASE.replace("{web: web-v1}", "{web: web-v2}")),
            "dan",
        )
        .unwrap();
    assert_eq!(sum.releases.len(), 1);
    assert_eq!(sum.releases[0].action, "apply");
    let (s, _) = s.rollback("team-a", None, "t").unwrap();
    assert_eq!(released(&s, "team-a", "web").as_deref(), Some("web-v1"));
}

#[test]
fn state_round_trips_and_ignores_interrupted_writes() {
    let dir = std::env::temp_dir().join(format!(
        "switchyard-state-test-{}-{}",
        std::process::id(),
        now_unix_ms()
    ));
    assert!(load_state(&dir).unwrap().is_none());
    let mut s = base();
    s.context_keys = vec![generate_context_key("k1").unwrap()];
    save_state(&dir, &s).unwrap();
    // a crash mid-write: a truncated temp file next to the real one
    fs::write(dir.join(".state.json.tmp-999"), b"{\"format\": 1, \"gener").unwrap();
    let loaded = load_state(&dir).unwrap().unwrap();
    assert_eq!(loaded, s);
    assert!(!dir.join(".state.json.tmp-999").exists());
    // a second save replaces the file whole
    let (s2, _) = s.release("web-v1", "team-a", "t").unwrap();
    save_state(&dir, &s2).unwrap();
    assert_eq!(load_state(&dir).unwrap().unwrap(), s2);
    // a corrupt state file is an error, never an empty state
    fs::write(dir.join(STATE_FILE), b"{").unwrap();
    assert!(matches!(
        load_state(&dir),
        Err(PersistError::Corrupt { .. })
    ));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn key_rotation_adds_a_signing_key_and_retires_old_ones() {
    let mut s = store_with_key();
    let old = s.signing_kid().unwrap().to_string();
    assert!(
        matches!(s.retire_key(&old), Err(StoreError::Conflict(_))),
        "the signing key stays"
    );
    let (rotated, summary) = s
        .rotate_key(generate_context_key("k-new").unwrap())
        .unwrap();
    assert!(summary.changed());
    assert_eq!(rotated.signing_kid(), Some("k-new"));
    assert_eq!(rotated.context_keys.len(), 2, "the old key keeps verifying");
    assert!(matches!(
        rotated.rotate_key(generate_context_key("k-new").unwrap()),
        Err(StoreError::Conflict(_))
    ));
    let (retired, _) = rotated.retire_key(&old).unwrap();
    assert_eq!(
        retired
            .context_keys
            .iter()
            .map(|k| k.kid.as_str())
            .collect::<Vec<_>>(),
        ["k-new"]
    );
    assert!(matches!(
        retired.retire_key("nope"),
        Err(StoreError::NotFound(_))
    ));
    s = retired;
    assert!(s.generation > 0);
}

fn store_with_key() -> Store {
    Store {
        context_keys: vec![generate_context_key("k-old").unwrap()],
        ..Default::default()
    }
}

#[test]
fn context_keys_are_random_and_long_enough() {
    use base64::Engine as _;
    let a = generate_context_key("k1").unwrap();
    let b = generate_context_key("k1").unwrap();
    assert_ne!(a.secret, b.secret);
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&a.secret)
        .unwrap();
    assert_eq!(raw.len(), 32);
    assert!(!format!("{a:?}").contains(&a.secret));
}
