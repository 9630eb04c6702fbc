//! The control plane's store: the resources `switchyard serve` routes by, the
//! release history ([`crate::history`]) and the context-signing keys
//! ([`crate::context_keys`]), and the operations on them.
//!
//! Every change is computed on a copy ([`Store`] is a value): an operation returns
//! the new store or an error, and the caller decides whether to keep it (after
//! building and checking a snapshot, and after writing it to disk). So a refused
//! change, a snapshot that cannot be built or a failed write leave nothing
//! changed. A batch is validated as a whole by the engine: if any resource is
//! invalid, nothing of the batch is applied, and every problem is reported with
//! its file and line.
//!
//! Persistence (`--state DIR`, [`crate::persist`]): one JSON file,
//! `DIR/state.json`, replaced atomically. The file:
//!
//! ```json
//! {"format": 1, "generation": 7,
//!  "contextKeys": [{"kid": "k-1a2b3c4d", "secret": "<base64 of 32 bytes>"}],
//!  "resources": [{"kind": "Environment", ...}, ...],
//!  "history": [{"id": "team-a-r2", "virtualEnv": "team-a", "app": "hello-world",
//!               "deployment": "hello-world-v2", "previous": "hello-world-main",
//!               "action": "release", "who": "alice",
//!               "at": "2026-11-22T03:10:20Z", "atUnixMs": 1795316620000}]}
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use switchyard_engine::context::ContextKey;
use switchyard_engine::resources::{Release, ReleasePolicyType};
use switchyard_engine::{Index, Resource, Settings};

use crate::clock::now_unix_ms;
use crate::kind::Kind;
use crate::load::{self, LoadError, LoadErrors, Located};

// Moved to their own modules (one job each); re-exported for existing callers.
pub use crate::clock::rfc3339;
pub use crate::context_keys::{generate_context_key, new_kid};
pub use crate::history::ReleaseRecord;

mod compiled;
pub mod rollout_ops;

/// Version of the state file's format.
pub const STATE_FORMAT: u32 = 1;

/// Why a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The resources (or the result of the change) do not validate.
    #[error("invalid resources:\n{0}")]
    Invalid(LoadErrors),
    /// A named resource does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The change contradicts the store (immutable deployment, policy, nothing to roll back).
    #[error("{0}")]
    Conflict(String),
    /// The request itself is malformed.
    #[error("{0}")]
    BadRequest(String),
}

/// What a change did, for the API's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeSummary {
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

/// The store, as a value: every operation returns a new one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Store {
    /// Format of the persisted file.
    pub format: u32,
    /// Incremented by every change; the snapshot version is derived from it.
    pub generation: u64,
    /// Keys that sign the routing context. Secret: never logged, never in `status`.
    pub context_keys: Vec<ContextKey>,
    /// Resources keyed by `(kind, name)`.
    #[serde(with = "resource_list")]
    pub resources: BTreeMap<(String, String), Resource>,
    /// Release history, oldest first, all VEs.
    pub history: Vec<ReleaseRecord>,
    /// Progressive rollouts of Canaries, by Canary name (`crate::progressive`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rollouts: BTreeMap<String, crate::progressive::machine::Rollout>,
    /// The index the change that made this store compiled (never saved).
    #[serde(skip)]
    compiled: compiled::CompiledIndex,
}

/// Resources are persisted as a plain list (JSON object keys must be strings).
mod resource_list {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        map: &BTreeMap<(String, String), Resource>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.values())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<(String, String), Resource>, D::Error> {
        let list = Vec::<Resource>::deserialize(d)?;
        Ok(list.into_iter().map(|r| (key(&r), r)).collect())
    }
}

fn key(r: &Resource) -> (String, String) {
    (r.kind().to_string(), r.name().to_string())
}

impl Store {
    /// An empty store with the current format.
    pub fn new() -> Self {
        Self {
            format: STATE_FORMAT,
            ..Default::default()
        }
    }

    /// Every resource, in a stable order (kind, then name).
    pub fn resource_list(&self) -> Vec<Resource> {
        self.resources.values().cloned().collect()
    }

    /// One resource by kind and name.
    pub fn get(&self, kind: Kind, name: &str) -> Option<&Resource> {
        self.resources
            .get(&(kind.as_str().to_string(), name.to_string()))
    }

    /// The filter's settings: defaults plus the context keys (the first signs).
    pub fn settings(&self) -> Settings {
        Settings {
            context_keys: self.context_keys.clone(),
            ..Settings::default()
        }
    }

    /// Compiles the store with the engine (a store is always valid; this gives the index).
    pub fn index(&self) -> Result<Index, LoadErrors> {
        load::compile(&self.located(&[]), self.settings())
    }

    /// `next` (`self` as changed so far) with `batch` in it, validated in store
    /// order (the snapshot's, so serve compiles nothing again) and keeping its
    /// index; refused, the problems are reported as ever (the batch last).
    fn with_batch(&self, mut next: Store, batch: &[Located]) -> Result<Store, StoreError> {
        for d in batch {
            next.resources.insert(key(&d.resource), d.resource.clone());
        }
        let located: Vec<Located> = next
            .resources
            .iter()
            .map(
                |(k, r)| match batch.iter().find(|d| key(&d.resource) == *k) {
                    Some(d) => d.clone(),
                    None => stored_doc(r),
                },
            )
            .collect();
        match load::compile(&located, next.settings()) {
            Ok(index) => next.compiled = compiled::CompiledIndex::of(&next, index),
            Err(errors) => {
                let as_ever = load::compile(&self.located(batch), self.settings()).err();
                return Err(StoreError::Invalid(as_ever.unwrap_or(errors)));
            }
        }
        Ok(next)
    }

    /// Validates the store the way it will be served (its resources in store
    /// order, its settings) and keeps the index for [`Self::compiled_index`].
    fn validated(mut self) -> Result<Self, StoreError> {
        let index = self.index().map_err(StoreError::Invalid)?;
        self.compiled = compiled::CompiledIndex::of(&self, index);
        Ok(self)
    }

    /// The index the change that made this store compiled, in store order with
    /// its settings (what the snapshot builder compiles), while the store still
    /// holds what it was compiled from; `None` otherwise (compile it then).
    pub fn compiled_index(&self) -> Option<std::sync::Arc<Index>> {
        self.compiled.get(self)
    }

    /// Stored resources as located documents, for the engine's validation: those
    /// named by the batch come from the batch (with their real file and line).
    fn located(&self, batch: &[Located]) -> Vec<Located> {
        let mut out: Vec<Located> = self
            .resources
            .iter()
            .filter(|(k, _)| !batch.iter().any(|d| key(&d.resource) == **k))
            .map(|(_, r)| stored_doc(r))
            .collect();
        out.extend(batch.iter().cloned());
        out
    }

    /// The store with `docs` created or replaced, validated as one batch.
    ///
    /// A versioned AppDeployment is immutable: a different spec under its name is
    /// refused. A VE whose release changes is recorded in the history
    /// (`action: apply`) and gets a new release id unless the file gives one.
    pub fn apply(&self, docs: &[Located], who: &str) -> Result<(Store, ChangeSummary), StoreError> {
        let mut problems = Vec::new();
        let mut seen = BTreeMap::new();
        for d in docs {
            if let Some(first) = seen.insert(key(&d.resource), d) {
                problems.push(located_problem(
                    d,
                    format!(
                        "{} is defined twice (first at {}:{})",
                        d.resource.id(),
                        first.file.display(),
                        first.line
                    ),
                ));
            }
            if let (Resource::AppDeployment(new), Some(Resource::AppDeployment(old))) = (
                &d.resource,
                self.get(Kind::AppDeployment, d.resource.name()),
            ) {
                if old.spec.version.is_some() && old.spec != new.spec {
                    problems.push(located_problem(
                        d,
                        format!(
                            "AppDeployment/{} has version {} and is immutable; publish a new deployment instead",
                            old.metadata.name,
                            old.spec.version.as_deref().unwrap_or_default()
                        ),
                    ));
                }
            }
        }
        if !problems.is_empty() {
            return Err(StoreError::Invalid(LoadErrors(problems)));
        }

        let mut next = self.clone();
        let mut summary = ChangeSummary::default();
        let mut batch: Vec<Located> = docs.to_vec();
        for d in &mut batch {
            let k = key(&d.resource);
            // A file that gives no release id keeps the id of an unchanged release.
            if let (Resource::VirtualEnvironment(ve), Some(Resource::VirtualEnvironment(old))) =
                (&mut d.resource, self.resources.get(&k))
            {
                if let (Some(new), Some(old)) = (&mut ve.spec.release, &old.spec.release) {
                    if new.id.is_none() && new.apps == old.apps {
                        new.id.clone_from(&old.id);
                    }
                }
            }
            match self.resources.get(&k) {
                None => summary.created.push(d.resource.id()),
                Some(old) if *old == d.resource => {
                    summary.unchanged.push(d.resource.id());
                    continue;
                }
                Some(_) => summary.updated.push(d.resource.id()),
            }
            if let Resource::VirtualEnvironment(ve) = &mut d.resource {
                let old = match self.resources.get(&k) {
                    Some(Resource::VirtualEnvironment(o)) => o.spec.release.clone(),
                    _ => None,
                };
                let old_apps = old.map(|r| r.apps).unwrap_or_default();
                let new_apps = ve
                    .spec
                    .release
                    .as_ref()
                    .map(|r| r.apps.clone())
                    .unwrap_or_default();
                if old_apps != new_apps {
                    let id = match ve.spec.release.as_ref().and_then(|r| r.id.clone()) {
                        Some(id) => id,
                        None => next.next_release_id(&ve.metadata.name),
                    };
                    if let Some(r) = ve.spec.release.as_mut() {
                        r.id = Some(id.clone());
                    }
                    let apps: std::collections::BTreeSet<&String> =
                        old_apps.keys().chain(new_apps.keys()).collect();
                    for app in apps {
                        if old_apps.get(app) != new_apps.get(app) {
                            let record = next.record(
                                &id,
                                &ve.metadata.name,
                                app,
                                new_apps.get(app).cloned(),
                                old_apps.get(app).cloned(),
                                "apply",
                                who,
                            );
                            summary.releases.push(record);
                        }
                    }
                }
            }
        }
        let mut next = self.with_batch(next, &batch)?;
        if summary.changed() {
            next.generation += 1;
        }
        Ok((next, summary))
    }

    /// [`Store::apply`] restricted to AppDeployments (`switchyard publish`).
    pub fn publish(
        &self,
        docs: &[Located],
        who: &str,
    ) -> Result<(Store, ChangeSummary), StoreError> {
        let others: Vec<LoadError> = docs
            .iter()
            .filter(|d| !matches!(d.resource, Resource::AppDeployment(_)))
            .map(|d| {
                located_problem(
                    d,
                    format!(
                        "publish takes AppDeployments only; use apply for {}",
                        d.resource.id()
                    ),
                )
            })
            .collect();
        if !others.is_empty() {
            return Err(StoreError::Invalid(LoadErrors(others)));
        }
        if docs.is_empty() {
            return Err(StoreError::BadRequest("no AppDeployment to publish".into()));
        }
        self.apply(docs, who)
    }

    /// The store without `kind`/`name`; refused if what remains does not validate
    /// (e.g. a released deployment).
    pub fn delete(&self, kind: &str, name: &str) -> Result<(Store, ChangeSummary), StoreError> {
        let kind = Kind::parse(kind).ok_or_else(|| {
            StoreError::BadRequest(format!(
                "unknown kind '{kind}'; use Environment, VirtualEnvironment, AppDeployment or Canary"
            ))
        })?;
        let mut next = self.clone();
        let removed = next
            .resources
            .remove(&(kind.as_str().to_string(), name.to_string()))
            .ok_or_else(|| StoreError::NotFound(format!("{kind}/{name}")))?;
        let mut next = next.validated()?;
        next.generation += 1;
        Ok((
            next,
            ChangeSummary {
                deleted: vec![removed.id()],
                ..Default::default()
            },
        ))
    }

    /// Releases `deployment` in `ve`: `ve.spec.release.apps[app] = deployment`
    /// with a new release id. An Environment with a Stable release policy only
    /// accepts versioned deployments.
    pub fn release(
        &self,
        deployment: &str,
        ve: &str,
        who: &str,
    ) -> Result<(Store, ChangeSummary), StoreError> {
        let Some(Resource::AppDeployment(dep)) = self.get(Kind::AppDeployment, deployment) else {
            return Err(StoreError::NotFound(format!("AppDeployment/{deployment}")));
        };
        let Some(Resource::VirtualEnvironment(v)) = self.get(Kind::VirtualEnvironment, ve) else {
            return Err(StoreError::NotFound(format!("VirtualEnvironment/{ve}")));
        };
        let stable = matches!(
            self.get(Kind::Environment, &v.spec.environment),
            Some(Resource::Environment(e))
                if e.spec.release_policy.as_ref().map(|p| p.policy_type) == Some(ReleasePolicyType::Stable)
        );
        if stable && dep.spec.version.is_none() {
            return Err(StoreError::Conflict(format!(
                "Environment/{} has a Stable release policy: AppDeployment/{deployment} needs a version",
                v.spec.environment
            )));
        }
        let app = dep.spec.app.clone();
        let previous = v
            .spec
            .release
            .as_ref()
            .and_then(|r| r.apps.get(&app).cloned());
        if previous.as_deref() == Some(deployment) {
            return Ok((
                self.clone(),
                ChangeSummary {
                    unchanged: vec![format!("VirtualEnvironment/{ve}")],
                    ..Default::default()
                },
            ));
        }
        self.set_release(ve, &app, Some(deployment.to_string()), "release", None, who)
    }

    /// Restores the release before the latest one (of `app`, or of the app last
    /// released) in `ve`. Repeated rollbacks walk further back.
    pub fn rollback(
        &self,
        ve: &str,
        app: Option<&str>,
        who: &str,
    ) -> Result<(Store, ChangeSummary), StoreError> {
        if self.get(Kind::VirtualEnvironment, ve).is_none() {
            return Err(StoreError::NotFound(format!("VirtualEnvironment/{ve}")));
        }
        let undone: std::collections::BTreeSet<&str> = self
            .history
            .iter()
            .filter_map(|r| r.undoes.as_deref())
            .collect();
        let target = self.history.iter().rev().find(|r| {
            r.virtual_env == ve
                && r.action != "rollback"
                && app.is_none_or(|a| r.app == a)
                && !undone.contains(r.id.as_str())
        });
        let Some(target) = target.cloned() else {
            return Err(StoreError::Conflict(match app {
                Some(a) => format!("nothing to roll back: no earlier release of app '{a}' in VirtualEnvironment/{ve}"),
                None => format!("nothing to roll back: no earlier release in VirtualEnvironment/{ve}"),
            }));
        };
        match &target.previous {
            None => {
                return Err(StoreError::Conflict(format!(
                    "nothing to roll back: {} was the first release of app '{}' in VirtualEnvironment/{ve}",
                    target.id, target.app
                )))
            }
            Some(prev) if self.get(Kind::AppDeployment, prev).is_none() => {
                return Err(StoreError::Conflict(format!(
                    "cannot roll back to AppDeployment/{prev}: it was deleted"
                )))
            }
            Some(_) => {}
        }
        self.set_release(
            ve,
            &target.app,
            target.previous.clone(),
            "rollback",
            Some(target.id.clone()),
            who,
        )
    }

    /// A VE's history, oldest first.
    pub fn history_of(&self, ve: Option<&str>) -> Vec<ReleaseRecord> {
        crate::history::of(&self.history, ve)
    }

    fn set_release(
        &self,
        ve: &str,
        app: &str,
        deployment: Option<String>,
        action: &str,
        undoes: Option<String>,
        who: &str,
    ) -> Result<(Store, ChangeSummary), StoreError> {
        let mut next = self.clone();
        let id = next.next_release_id(ve);
        let k = (
            Kind::VirtualEnvironment.as_str().to_string(),
            ve.to_string(),
        );
        let Some(Resource::VirtualEnvironment(v)) = next.resources.get_mut(&k) else {
            return Err(StoreError::NotFound(format!("VirtualEnvironment/{ve}")));
        };
        let release = v.spec.release.get_or_insert_with(Release::default);
        let previous = match &deployment {
            Some(d) => release.apps.insert(app.to_string(), d.clone()),
            None => release.apps.remove(app),
        };
        release.id = Some(id.clone());
        next = next.validated()?;
        let mut record = next.record(&id, ve, app, deployment, previous, action, who);
        if let Some(u) = undoes {
            record.undoes = Some(u.clone());
            if let Some(last) = next.history.last_mut() {
                last.undoes = Some(u);
            }
        }
        next.generation += 1;
        Ok((
            next,
            ChangeSummary {
                updated: vec![format!("VirtualEnvironment/{ve}")],
                releases: vec![record],
                ..Default::default()
            },
        ))
    }

    fn next_release_id(&self, ve: &str) -> String {
        crate::history::next_release_id(&self.history, ve)
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        id: &str,
        ve: &str,
        app: &str,
        deployment: Option<String>,
        previous: Option<String>,
        action: &str,
        who: &str,
    ) -> ReleaseRecord {
        let r = ReleaseRecord::new(
            id,
            ve,
            app,
            deployment,
            previous,
            action,
            who,
            now_unix_ms(),
        );
        self.history.push(r.clone());
        r
    }
}

/// A stored resource as a document, so validation errors about it can still name
/// a place (`<stored>`, line of the field in its YAML form).
fn stored_doc(r: &Resource) -> Located {
    Located {
        resource: r.clone(),
        file: PathBuf::from(format!("<stored {}>", r.id())),
        line: 1,
        text: serde_saphyr::to_string(r).unwrap_or_default(),
    }
}

fn located_problem(d: &Located, reason: String) -> LoadError {
    LoadError {
        file: d.file.display().to_string(),
        line: d.line,
        column: 1,
        resource: Some(d.resource.id()),
        field: None,
        reason,
    }
}

impl Store {
    /// The key that signs contexts: the first one. The others only verify.
    pub fn signing_kid(&self) -> Option<&str> {
        self.context_keys.first().map(|k| k.kid.as_str())
    }

    /// Key rotation, step 1: `key` signs from now on; the current keys keep
    /// verifying the contexts they signed until they are retired.
    pub fn rotate_key(&self, key: ContextKey) -> Result<(Store, ChangeSummary), StoreError> {
        if self.context_keys.iter().any(|k| k.kid == key.kid) {
            return Err(StoreError::Conflict(format!(
                "a context key with kid '{}' exists",
                key.kid
            )));
        }
        let mut next = self.clone();
        let summary = ChangeSummary {
            keys: vec![format!("added {} (signing)", key.kid)],
            ..Default::default()
        };
        next.context_keys.insert(0, key);
        next.generation += 1;
        Ok((next, summary))
    }

    /// Key rotation, step 2: contexts signed with `kid` stop verifying. The
    /// signing key cannot be retired (rotate first).
    pub fn retire_key(&self, kid: &str) -> Result<(Store, ChangeSummary), StoreError> {
        if !self.context_keys.iter().any(|k| k.kid == kid) {
            return Err(StoreError::NotFound(format!("context key '{kid}'")));
        }
        if self.signing_kid() == Some(kid) {
            return Err(StoreError::Conflict(format!(
                "context key '{kid}' signs contexts: rotate to a new key before retiring it"
            )));
        }
        let mut next = self.clone();
        next.context_keys.retain(|k| k.kid != kid);
        next.generation += 1;
        let summary = ChangeSummary {
            keys: vec![format!("retired {kid}")],
            ..Default::default()
        };
        Ok((next, summary))
    }
}

#[cfg(test)]
mod tests {
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
            Some(Resource::VirtualEnvironment(v)) => {
                v.spec.release.as_ref()?.apps.get(app).cloned()
            }
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
}
