//! The compiled table: the [`Index`] and what it keeps of each resource, in
//! the shape a request reads it (ids instead of names, routes sorted, clusters
//! distilled), plus the per-request matching of a route and the release's route
//! buckets.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use super::ids::{
    CanaryId, ClusterId, ComponentId, DeploymentId, DeploymentRoute, Entries, EnvironmentId, Id,
    RouteId, VirtualEnvironmentId,
};
use crate::canary::CompiledCanary;
use crate::config::Settings;
use crate::context::ContextKeys;
use crate::name_map::NameMap;
use crate::resources::{Protocol, ReleasePolicyType};
use crate::route_options::LbPolicy;

/// The routing table. Build with [`Index::from_json`] or [`Index::compile`]; the
/// requests' steps (`route.rs`, `internal.rs`, `deliver.rs`) read it.
#[derive(Debug)]
pub struct Index {
    pub(crate) settings: Settings,
    pub(crate) environments: Entries<EnvironmentId, EnvironmentEntry>,
    pub(super) env_by_sub_path: NameMap<String, EnvironmentId>,
    pub(crate) ves: Entries<VirtualEnvironmentId, VirtualEnvironmentEntry>,
    pub(super) ve_by_name: NameMap<String, VirtualEnvironmentId>,
    pub(crate) deployments: Entries<DeploymentId, DeploymentEntry>,
    pub(super) dep_by_name: NameMap<String, DeploymentId>,
    pub(crate) clusters: Entries<ClusterId, ClusterSpec>,
    pub(crate) canaries: Entries<CanaryId, CompiledCanary>,
    pub(crate) context_keys: Option<ContextKeys>,
    /// Signed contexts of the current expiry second (see `issue_context`).
    pub(crate) context_memo: Mutex<ContextMemo>,
    /// Istio mode: every component name of every deployment (internal mode
    /// leaves calls to other hosts alone). Empty otherwise.
    pub(crate) mesh_components: HashSet<String>,
}

/// A distilled upstream: one per distinct (app, component, component version, LB policy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    pub name: String,
    pub app: String,
    pub component: String,
    pub version: String,
    pub endpoints: Vec<String>,
    pub policy: LbPolicy,
    /// What the endpoints speak.
    pub protocol: Protocol,
}

/// The Envoy cluster name of a distilled upstream.
pub fn cluster_name(app: &str, component: &str, version: &str, policy: &LbPolicy) -> String {
    format!("{app}/{component}/{version}/{}", policy.tag())
}

/// For `hash` clusters: the header hashed on, and the round-robin twin used
/// when a request lacks it.
#[derive(Debug, Clone)]
pub(crate) struct HashedOn {
    pub header: String,
    pub twin: ClusterId,
}

#[derive(Debug)]
pub(crate) struct EnvironmentEntry {
    pub name: String,
    pub strip_sub_path: bool,
    pub default_ve: Option<VirtualEnvironmentId>,
    pub policy: ReleasePolicyType,
    pub vars: BTreeMap<String, String>,
}

/// A VE's canary of one app.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CanaryOfApp {
    pub canary: CanaryId,
    /// The canary side's deployment.
    pub deployment: DeploymentId,
}

#[derive(Debug)]
pub(crate) struct VirtualEnvironmentEntry {
    pub name: String,
    pub environment: EnvironmentId,
    /// Environment vars overridden key by key by the VE's.
    pub vars: NameMap<String, String>,
    /// app → released deployment.
    pub release: BTreeMap<String, DeploymentId>,
    /// The release id, carried in the routing context.
    pub release_id: String,
    /// The routes of every released deployment.
    pub release_routes: ReleaseRoutes,
    /// app → its canary.
    pub canaries: NameMap<String, CanaryOfApp>,
}

/// A VE's release routes bucketed by the first path segment of their prefix, so
/// a request scans only the routes that can match it (plus catch-all `/` routes):
/// the cost does not grow with the number of apps released. Each list is
/// longest prefix first, like the routes of one deployment.
#[derive(Debug, Default)]
pub(crate) struct ReleaseRoutes {
    by_segment: NameMap<String, Vec<DeploymentRoute>>,
    catch_all: Vec<DeploymentRoute>,
}

/// The first segment of a path: `/hello/x` → `hello`, `/` → ``.
pub(crate) fn first_segment(path: &str) -> &str {
    let rest = path.strip_prefix('/').unwrap_or(path);
    match rest.bytes().position(|b| b == b'/') {
        Some(i) => &rest[..i],
        None => rest,
    }
}

impl ReleaseRoutes {
    /// `sorted` is (route, prefix), longest prefix first.
    pub fn new<'a>(sorted: impl IntoIterator<Item = (DeploymentRoute, &'a str)>) -> Self {
        let mut table = ReleaseRoutes::default();
        for (route, prefix) in sorted {
            match first_segment(prefix) {
                "" => table.catch_all.push(route),
                segment => table
                    .by_segment
                    .entry(segment.to_string())
                    .or_default()
                    .push(route),
            }
        }
        table
    }

    /// The routes that may match `rel_path`, longest prefix first: those of its
    /// first segment's bucket, then the catch-all ones.
    pub fn candidates(&self, rel_path: &str) -> [&[DeploymentRoute]; 2] {
        let bucket = self
            .by_segment
            .get(first_segment(rel_path))
            .map_or(&[][..], Vec::as_slice);
        [bucket, &self.catch_all]
    }
}

#[derive(Debug)]
pub(crate) struct DeploymentEntry {
    pub name: String,
    pub app: String,
    pub version: Option<String>,
    pub components: Vec<ComponentEntry>,
    /// Longest prefix first; ties by component name, then order written.
    pub routes: Vec<RouteEntry>,
}

impl DeploymentEntry {
    #[inline]
    pub fn component(&self, id: ComponentId) -> &ComponentEntry {
        &self.components[id.position()]
    }

    #[inline]
    pub fn route(&self, id: RouteId) -> &RouteEntry {
        &self.routes[id.position()]
    }

    /// The component named `name`, with its id.
    pub fn component_named(&self, name: &str) -> Option<(ComponentId, &ComponentEntry)> {
        let i = self.components.iter().position(|c| c.name == name)?;
        Some((ComponentId::from_position(i), &self.components[i]))
    }
}

#[derive(Debug)]
pub(crate) struct ComponentEntry {
    pub name: String,
    pub version: String,
    pub vars: Vec<String>,
    pub dependencies: Vec<String>,
    /// The component's own cluster (component-level options), for internal hops.
    pub cluster: ClusterId,
    pub hash: Option<HashedOn>,
}

#[derive(Debug)]
pub(crate) struct RouteEntry {
    pub prefix: String,
    pub methods: Vec<String>,
    pub component: ComponentId,
    pub cluster: ClusterId,
    pub hash: Option<HashedOn>,
}

impl RouteEntry {
    /// Prefix match on path-segment boundaries; `rel_path` has no query.
    #[inline]
    pub fn matches(&self, method: &str, rel_path: &str) -> bool {
        // Cheap rejects before comparing the whole prefix: sibling routes such as
        // `/app/c0` and `/app/c4` differ in their last byte.
        let (prefix, path) = (self.prefix.as_bytes(), rel_path.as_bytes());
        if path.len() < prefix.len() || path.get(prefix.len().wrapping_sub(1)) != prefix.last() {
            return false;
        }
        let prefix_ok = match rel_path.strip_prefix(self.prefix.as_str()) {
            Some(rest) => self.prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
            None => false,
        };
        prefix_ok
            && (self.methods.is_empty()
                || self.methods.iter().any(|m| m.eq_ignore_ascii_case(method)))
    }
}

/// What a routing context is signed for: (VE, deployment, component, released).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ContextFor {
    pub ve: VirtualEnvironmentId,
    pub deployment: DeploymentId,
    pub component: ComponentId,
    pub released: bool,
}

/// Routing contexts signed for one expiry second.
#[derive(Debug, Default)]
pub(crate) struct ContextMemo {
    pub expires_at: u64,
    pub tokens: NameMap<ContextFor, String>,
}
