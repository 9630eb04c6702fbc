//! The compiled routing table: resources are validated and indexed once (at
//! configure time), so that routing a request is lookups and borrows.
//!
//! - [`compile`](Index::compile) ([`compile`] folder: a function per resource
//!   kind) applies every rule of [`rules`] and collects every problem it finds
//!   instead of stopping at the first; it produces an [`Index`] only when there
//!   is none.
//! - [`table`] holds the [`Index`] and the entries a request reads, addressed by
//!   the ids of [`ids`].
//! - This module is the index's face: building it, and its lookups by name.

mod compile;
mod ids;
pub mod rules;
mod table;

use crate::config::{PluginConfig, Settings};
use crate::error::ConfigError;

pub(crate) use self::ids::{
    ClusterId, ComponentId, DeploymentId, DeploymentRoute, EnvironmentId, Id, VirtualEnvironmentId,
};
pub use self::table::{cluster_name, ClusterSpec, Index};
pub(crate) use self::table::{ContextFor, HashedOn, RouteEntry};

impl Index {
    /// Parses and compiles a plugin configuration (JSON).
    pub fn from_json(text: &str) -> Result<Index, ConfigError> {
        let config: PluginConfig = serde_json::from_str(text)?;
        Index::compile(&config)
    }

    /// Compiles resources into an index, or lists every problem found.
    pub fn compile(config: &PluginConfig) -> Result<Index, ConfigError> {
        compile::compile(config)
    }

    /// Checks the settings alone (context keys and the rules of their mode),
    /// without the resources: the only rules that differ between modes, so a
    /// configuration whose resources compiled in one mode compiles in another
    /// exactly when its settings pass.
    pub fn check_settings(settings: &Settings) -> Result<(), ConfigError> {
        compile::check_settings(settings)
    }

    /// Whether routing may look at the client address (canaries): the host
    /// fetches it only then, to save a host call per request.
    pub fn needs_source_address(&self) -> bool {
        !self.canaries.is_empty()
    }

    /// Whether routing needs the clock (JWT expiry in canaries, the routing
    /// context's expiry).
    pub fn needs_clock(&self) -> bool {
        !self.canaries.is_empty() || self.context_keys.is_some()
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Every distilled cluster, in the order resources first define them.
    pub fn clusters(&self) -> &[ClusterSpec] {
        self.clusters.as_slice()
    }

    /// The environment whose subPath is `sub_path`.
    #[inline]
    pub(crate) fn environment_at(&self, sub_path: &str) -> Option<EnvironmentId> {
        self.env_by_sub_path.get(sub_path).copied()
    }

    #[inline]
    pub(crate) fn virtual_environment_named(&self, name: &str) -> Option<VirtualEnvironmentId> {
        self.ve_by_name.get(name).copied()
    }

    #[inline]
    pub(crate) fn deployment_named(&self, name: &str) -> Option<DeploymentId> {
        self.dep_by_name.get(name).copied()
    }

    /// One route of one deployment.
    #[inline]
    pub(crate) fn route_entry(&self, at: DeploymentRoute) -> &RouteEntry {
        self.deployments[at.deployment].route(at.route)
    }
}

#[cfg(test)]
mod tests;
