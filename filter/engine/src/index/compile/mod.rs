//! The compiler: resources → [`Index`], a function per resource kind, in the
//! order references need (Environments, AppDeployments, VirtualEnvironments,
//! default VEs, Canaries). Every rule comes from [`super::rules`] (and the
//! parsers it names); every problem is collected with its resource and field.

mod canary;
mod clusters;
mod deployment;
mod environment;
mod virtual_environment;

use std::collections::HashSet;
use std::sync::Arc;

use super::ids::{CanaryId, ClusterId, DeploymentId, Entries, EnvironmentId, VirtualEnvironmentId};
use super::rules::{self, FirstDefinition};
use super::table::{
    ClusterSpec, DeploymentEntry, EnvironmentEntry, Index, VirtualEnvironmentEntry,
};
use crate::canary::{CompiledCanary, EnvironmentTrust};
use crate::config::{Mode, PluginConfig, Settings};
use crate::context::ContextKeys;
use crate::error::{ConfigError, ValidationError};
use crate::headers::{DEFAULT_CLUSTER_HEADER, ISTIO_SELECTION_HEADER};
use crate::name_map::NameMap;
use crate::resources::Resource;
use crate::route_options::LbPolicy;
use crate::validate;

/// Compiles resources into an index, or lists every problem found.
pub(super) fn compile(config: &PluginConfig) -> Result<Index, ConfigError> {
    let mut b = Builder::default();
    b.resources(&config.resources);
    let context_keys = b.context_keys(&config.settings);
    if b.errors.is_empty() {
        Ok(b.index(config.settings.clone(), context_keys))
    } else {
        Err(ConfigError::Invalid(b.errors))
    }
}

/// Checks the settings alone (what [`compile`] checks besides the resources).
pub(super) fn check_settings(settings: &Settings) -> Result<(), ConfigError> {
    let mut b = Builder::default();
    b.context_keys(settings);
    match b.errors.is_empty() {
        true => Ok(()),
        false => Err(ConfigError::Invalid(b.errors)),
    }
}

/// Where a problem is: a field name, or a closure that formats one (so that a
/// rule that holds costs no allocation).
trait FieldName {
    fn name(self) -> String;
}

impl FieldName for &str {
    fn name(self) -> String {
        self.to_string()
    }
}

impl<F: FnOnce() -> String> FieldName for F {
    fn name(self) -> String {
        self()
    }
}

/// The table under construction, with the name lookups compiling needs.
#[derive(Default)]
struct Builder {
    errors: Vec<ValidationError>,
    environments: Entries<EnvironmentId, EnvironmentEntry>,
    env_by_name: NameMap<String, EnvironmentId>,
    env_by_sub_path: NameMap<String, EnvironmentId>,
    /// Per environment: what the canaries of its VEs verify with.
    trust: Entries<EnvironmentId, Arc<EnvironmentTrust>>,
    ves: Entries<VirtualEnvironmentId, VirtualEnvironmentEntry>,
    ve_by_name: NameMap<String, VirtualEnvironmentId>,
    deployments: Entries<DeploymentId, DeploymentEntry>,
    dep_by_name: NameMap<String, DeploymentId>,
    clusters: Entries<ClusterId, ClusterSpec>,
    cluster_by_key: NameMap<(String, String, String, LbPolicy), ClusterId>,
    /// (app, component, version) → its first definition.
    upstreams: NameMap<(String, String, String), FirstDefinition>,
    canaries: Entries<CanaryId, CompiledCanary>,
}

impl Builder {
    fn err(&mut self, resource: &str, field: impl Into<String>, reason: impl Into<String>) {
        self.errors
            .push(ValidationError::new(resource, field, reason));
    }

    /// Records the reason of a broken rule at `field` (a name, or a closure that
    /// formats one only when the rule is broken).
    fn check(&mut self, resource: &str, field: impl FieldName, rule: Result<(), String>) {
        if let Err(reason) = rule {
            self.err(resource, field.name(), reason);
        }
    }

    /// Every resource, kind by kind in the order their references need.
    fn resources(&mut self, resources: &[Resource]) {
        let mut seen: NameMap<(&str, &str), ()> = NameMap::default();
        for r in resources {
            let again = seen.insert((r.kind(), r.name()), ()).is_some();
            for rule in [validate::check_name(r.name()), rules::unique_name(again)] {
                if let Err(reason) = rule {
                    self.err(&r.id(), "metadata.name", reason);
                }
            }
        }
        for r in resources {
            if let Resource::Environment(env) = r {
                self.add_environment(env);
            }
        }
        for r in resources {
            if let Resource::AppDeployment(d) = r {
                self.add_deployment(d);
            }
        }
        for r in resources {
            if let Resource::VirtualEnvironment(ve) = r {
                self.add_virtual_environment(ve);
            }
        }
        // Default VEs can only be resolved once every VE is known.
        for r in resources {
            if let Resource::Environment(env) = r {
                self.resolve_default_ve(env);
            }
        }
        for r in resources {
            if let Resource::Canary(c) = r {
                self.add_canary(c);
            }
        }
    }

    /// The settings' context keys, if any.
    fn context_keys(&mut self, s: &Settings) -> Option<ContextKeys> {
        if s.context_keys.is_empty() {
            // In pull mode the keys arrive with the pulled table (until then
            // internal calls are refused: no context keys configured).
            let rule = rules::internal_mode_keys(s.mode == Mode::Internal, s.pull.is_some());
            self.check("settings", "contextKeys", rule);
            return None;
        }
        match ContextKeys::compile(
            &s.context_keys,
            s.signing_kid.as_deref(),
            s.context_ttl_seconds,
        ) {
            Ok(keys) => Some(keys),
            Err(errors) => {
                self.errors.extend(errors);
                None
            }
        }
    }

    fn index(self, mut settings: Settings, context_keys: Option<ContextKeys>) -> Index {
        let mut mesh_components = HashSet::new();
        if settings.istio {
            if settings.cluster_header == DEFAULT_CLUSTER_HEADER {
                settings.cluster_header = ISTIO_SELECTION_HEADER.to_string();
            }
            for dep in self.deployments.iter() {
                mesh_components.extend(dep.components.iter().map(|c| c.name.clone()));
            }
        }
        Index {
            mesh_components,
            context_keys,
            context_memo: std::sync::Mutex::default(),
            settings,
            environments: self.environments,
            env_by_sub_path: self.env_by_sub_path,
            ves: self.ves,
            ve_by_name: self.ve_by_name,
            deployments: self.deployments,
            dep_by_name: self.dep_by_name,
            clusters: self.clusters,
            canaries: self.canaries,
        }
    }
}
