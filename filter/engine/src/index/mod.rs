//! The compiled routing table: resources are validated and indexed once (at
//! configure time), so that routing a request is lookups and borrows.
//!
//! - [`compile`](Index::compile) ([`compile`] folder: a function per resource
//!   kind) applies every rule of [`rules`] and collects every problem it finds
//!   instead of stopping at the first; it produces an [`Index`] only when there
//!   is none.
//! - [`table`] holds the entries a request reads, addressed by the ids of [`ids`].
//! - This module holds the [`Index`] itself and its lookups by name.

mod compile;
mod ids;
pub mod rules;
mod table;

use std::collections::HashSet;
use std::sync::Mutex;

use crate::canary::CompiledCanary;
use crate::config::{PluginConfig, Settings};
use crate::context::ContextKeys;
use crate::error::ConfigError;
use crate::name_map::NameMap;

pub(crate) use self::ids::{
    CanaryId, ClusterId, ComponentId, DeploymentId, DeploymentRoute, Entries, EnvironmentId, Id,
    VirtualEnvironmentId,
};
pub use self::table::{cluster_name, ClusterSpec};
pub(crate) use self::table::{
    ContextFor, ContextMemo, DeploymentEntry, EnvironmentEntry, HashedOn, RouteEntry,
    VirtualEnvironmentEntry,
};

/// The routing table. Build with [`Index::from_json`] or [`Index::compile`].
#[derive(Debug)]
pub struct Index {
    pub(crate) settings: Settings,
    pub(crate) environments: Entries<EnvironmentId, EnvironmentEntry>,
    env_by_sub_path: NameMap<String, EnvironmentId>,
    pub(crate) ves: Entries<VirtualEnvironmentId, VirtualEnvironmentEntry>,
    ve_by_name: NameMap<String, VirtualEnvironmentId>,
    pub(crate) deployments: Entries<DeploymentId, DeploymentEntry>,
    dep_by_name: NameMap<String, DeploymentId>,
    pub(crate) clusters: Entries<ClusterId, ClusterSpec>,
    pub(crate) canaries: Entries<CanaryId, CompiledCanary>,
    pub(crate) context_keys: Option<ContextKeys>,
    /// Signed contexts of the current expiry second (see `issue_context`).
    pub(crate) context_memo: Mutex<ContextMemo>,
    /// Istio mode: every component name of every deployment (internal mode
    /// leaves calls to other hosts alone). Empty otherwise.
    pub(crate) mesh_components: HashSet<String>,
}

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
