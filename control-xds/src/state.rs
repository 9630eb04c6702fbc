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
//!               "change": "cli-c-5f0e…", "at": "2026-11-22T03:10:20Z",
//!               "atUnixMs": 1795316620000}],
//!  "changes": [{"id": "cli-c-5f0e…", "generation": 7, "atUnixMs": 1795316620000,
//!               "summary": {"change": "cli-c-5f0e…", "updated": [...], ...}}]}
//! ```
//!
//! The history keeps the last N records of each VE ([`crate::history::trim`],
//! `serve --history-limit`); `changes` the last changes by id
//! ([`crate::change_log`]), so that a change sent again is not made twice.

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

use crate::change_log::AppliedChange;
pub use crate::change_log::ChangeSummary;

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
    /// The last changes made, by id ([`crate::change_log`]), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<AppliedChange>,
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
    /// The change `id` made earlier, if the store still remembers it.
    pub fn applied(&self, id: &str) -> Option<&AppliedChange> {
        self.changes.iter().rev().find(|c| c.id == id)
    }

    /// What change `id` answered when it was made, and the generation it
    /// made, if the store remembers it (its release records come from the
    /// history, as far as the history still holds them).
    ///
    /// A change the log forgot whose release records the history still holds
    /// was made too: it answers those records (and the current generation).
    pub fn outcome_of(&self, id: &str) -> Option<(ChangeSummary, u64)> {
        let releases: Vec<ReleaseRecord> = self
            .history
            .iter()
            .filter(|r| r.change.as_deref() == Some(id))
            .cloned()
            .collect();
        let (mut summary, generation) = match self.applied(id) {
            Some(done) => (done.summary.clone(), done.generation),
            None if !releases.is_empty() => {
                let mut ves: Vec<String> = releases
                    .iter()
                    .map(|r| format!("VirtualEnvironment/{}", r.virtual_env))
                    .collect();
                ves.dedup();
                let summary = ChangeSummary {
                    change: Some(id.to_string()),
                    updated: ves,
                    ..Default::default()
                };
                (summary, self.generation)
            }
            None => return None,
        };
        summary.releases = releases;
        Some((summary, generation))
    }

    /// Marks the change just computed (`summary`, whose records are the last
    /// ones of the history) with its `id`, remembers it in the change log, and
    /// trims every VE's history to `history_limit` records.
    pub fn finish_change(&mut self, id: &str, summary: &mut ChangeSummary, history_limit: usize) {
        summary.change = Some(id.to_string());
        for r in &mut summary.releases {
            r.change = Some(id.to_string());
        }
        let made = summary.releases.len();
        for r in self.history.iter_mut().rev().take(made) {
            r.change = Some(id.to_string());
        }
        crate::history::trim(&mut self.history, history_limit);
        // (its release records are in the history, under the same id)
        let kept = ChangeSummary {
            unchanged: Vec::new(),
            releases: Vec::new(),
            ..summary.clone()
        };
        crate::change_log::remember(
            &mut self.changes,
            AppliedChange {
                id: id.to_string(),
                generation: self.generation,
                at_unix_ms: now_unix_ms(),
                summary: kept,
            },
        );
    }

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
mod tests;
