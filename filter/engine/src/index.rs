//! The compiled routing table: resources are validated and indexed once (at
//! configure time), so that routing a request is lookups and borrows.
//!
//! Compilation collects every problem it finds instead of stopping at the first,
//! and produces an [`Index`] only when there is none.

use std::collections::BTreeMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use crate::canary::{CompiledCanary, EnvironmentTrust};
use crate::config::{Mode, PluginConfig, Settings};
use crate::context::ContextKeys;
use crate::error::{ConfigError, ValidationError};
use crate::resources::{
    AppDeployment, Environment, ReleasePolicyType, Resource, VirtualEnvironment,
};
use crate::route_options::{check, LbPolicy, Options};
use crate::validate;

/// The index's maps are keyed by names from the configuration and looked up per
/// request: [`NameHasher`] instead of SipHash (which was ~12% of a release
/// decision). Requests only look up; they cannot add keys, so a keyed hash buys
/// nothing here.
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<NameHasher>>;

/// FxHash's multiply-rotate over 8-byte words (rustc's own map hasher).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct NameHasher(u64);

impl NameHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
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
    pub protocol: crate::resources::Protocol,
}

/// The Envoy cluster name of a distilled upstream.
pub fn cluster_name(app: &str, component: &str, version: &str, policy: &LbPolicy) -> String {
    format!("{app}/{component}/{version}/{}", policy.tag())
}

/// A component version's deployment, endpoints and protocol as first defined:
/// every deployment sharing the version must agree (one upstream).
type FirstDefinition = (String, Vec<String>, crate::resources::Protocol);

#[derive(Debug)]
pub(crate) struct EnvironmentEntry {
    pub name: String,
    pub strip_sub_path: bool,
    pub default_ve: Option<usize>,
    pub policy: ReleasePolicyType,
    pub vars: BTreeMap<String, String>,
}

#[derive(Debug)]
pub(crate) struct VirtualEnvironmentEntry {
    pub name: String,
    pub environment: usize,
    /// Environment vars overridden key by key by the VE's.
    pub vars: HashMap<String, String>,
    /// app → released deployment.
    pub release: BTreeMap<String, usize>,
    /// The release id, carried in the routing context.
    pub release_id: String,
    /// The routes of every released deployment, as (deployment, route).
    pub release_routes: ReleaseRoutes,
    /// app → (canary, canary deployment).
    pub canaries: HashMap<String, (usize, usize)>,
}

/// A VE's release routes bucketed by the first path segment of their prefix, so
/// a request scans only the routes that can match it (plus catch-all `/` routes):
/// the cost does not grow with the number of apps released. Each list is
/// longest prefix first, like the routes of one deployment.
#[derive(Debug, Default)]
pub(crate) struct ReleaseRoutes {
    by_segment: HashMap<String, Vec<(usize, usize)>>,
    catch_all: Vec<(usize, usize)>,
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
    /// `sorted` is (deployment, route, prefix), longest prefix first.
    fn new<'a>(sorted: impl IntoIterator<Item = (usize, usize, &'a str)>) -> Self {
        let mut table = ReleaseRoutes::default();
        for (dep, route, prefix) in sorted {
            match first_segment(prefix) {
                "" => table.catch_all.push((dep, route)),
                segment => table
                    .by_segment
                    .entry(segment.to_string())
                    .or_default()
                    .push((dep, route)),
            }
        }
        table
    }

    /// The routes that may match `rel_path`, longest prefix first: those of its
    /// first segment's bucket, then the catch-all ones.
    pub fn candidates(&self, rel_path: &str) -> [&[(usize, usize)]; 2] {
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

#[derive(Debug)]
pub(crate) struct ComponentEntry {
    pub name: String,
    pub version: String,
    pub vars: Vec<String>,
    pub dependencies: Vec<String>,
    /// The component's own cluster (component-level options), for internal hops.
    pub cluster: usize,
    pub hash: Option<(String, usize)>,
}

#[derive(Debug)]
pub(crate) struct RouteEntry {
    pub prefix: String,
    pub methods: Vec<String>,
    pub component: usize,
    pub cluster: usize,
    /// For `hash` clusters: the header hashed on, and the round-robin twin used
    /// when a request lacks it.
    pub hash: Option<(String, usize)>,
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

/// The routing table. Build with [`Index::from_json`] or [`Index::compile`].
#[derive(Debug)]
pub struct Index {
    pub(crate) settings: Settings,
    pub(crate) environments: Vec<EnvironmentEntry>,
    pub(crate) env_by_sub_path: HashMap<String, usize>,
    pub(crate) ves: Vec<VirtualEnvironmentEntry>,
    pub(crate) ve_by_name: HashMap<String, usize>,
    pub(crate) deployments: Vec<DeploymentEntry>,
    pub(crate) dep_by_name: HashMap<String, usize>,
    pub(crate) clusters: Vec<ClusterSpec>,
    pub(crate) canaries: Vec<CompiledCanary>,
    pub(crate) context_keys: Option<ContextKeys>,
    /// Signed contexts of the current expiry second (see `issue_context`).
    pub(crate) context_memo: std::sync::Mutex<ContextMemo>,
    /// Istio mode: every component name of every deployment (internal mode
    /// leaves calls to other hosts alone). Empty otherwise.
    pub(crate) mesh_components: std::collections::HashSet<String>,
}

/// Routing contexts signed for one expiry second, by (VE, deployment,
/// component, released).
#[derive(Debug, Default)]
pub(crate) struct ContextMemo {
    pub expires_at: u64,
    pub tokens: HashMap<(usize, usize, usize, bool), String>,
}

impl Index {
    /// Parses and compiles a plugin configuration (JSON).
    pub fn from_json(text: &str) -> Result<Index, ConfigError> {
        let config: PluginConfig = serde_json::from_str(text)?;
        Index::compile(&config)
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
        &self.clusters
    }

    /// Compiles resources into an index, or lists every problem found.
    pub fn compile(config: &PluginConfig) -> Result<Index, ConfigError> {
        let mut b = Builder::default();
        b.compile(config);
        let s = &config.settings;
        let context_keys = if s.context_keys.is_empty() {
            // In pull mode the keys arrive with the pulled table (until then
            // internal calls are refused: no context keys configured).
            if s.mode == Mode::Internal && s.pull.is_none() {
                b.err(
                    "settings",
                    "contextKeys",
                    "internal mode needs context keys to verify kf-context",
                );
            }
            None
        } else {
            match ContextKeys::compile(
                &s.context_keys,
                s.signing_kid.as_deref(),
                s.context_ttl_seconds,
            ) {
                Ok(keys) => Some(keys),
                Err(errors) => {
                    b.errors.extend(errors);
                    None
                }
            }
        };
        if b.errors.is_empty() {
            Ok(b.index(config.settings.clone(), context_keys))
        } else {
            Err(ConfigError::Invalid(b.errors))
        }
    }
}

#[derive(Default)]
struct Builder {
    errors: Vec<ValidationError>,
    environments: Vec<EnvironmentEntry>,
    env_by_name: HashMap<String, usize>,
    env_by_sub_path: HashMap<String, usize>,
    trust: Vec<Arc<EnvironmentTrust>>,
    ves: Vec<VirtualEnvironmentEntry>,
    ve_by_name: HashMap<String, usize>,
    deployments: Vec<DeploymentEntry>,
    dep_by_name: HashMap<String, usize>,
    clusters: Vec<ClusterSpec>,
    cluster_by_key: HashMap<(String, String, String, LbPolicy), usize>,
    /// (app, component, version) → the deployment that first defined it.
    upstreams: HashMap<(String, String, String), FirstDefinition>,
    canaries: Vec<CompiledCanary>,
}

impl Builder {
    fn err(&mut self, resource: &str, field: impl Into<String>, reason: impl Into<String>) {
        self.errors
            .push(ValidationError::new(resource, field, reason));
    }

    fn compile(&mut self, config: &PluginConfig) {
        let mut seen: HashMap<(&str, &str), ()> = HashMap::default();
        for r in &config.resources {
            if let Err(reason) = validate::check_name(r.name()) {
                self.err(&r.id(), "metadata.name", reason);
            }
            if seen.insert((r.kind(), r.name()), ()).is_some() {
                self.err(&r.id(), "metadata.name", "defined more than once");
            }
        }
        let environments = config.resources.iter().filter_map(|r| match r {
            Resource::Environment(e) => Some(e),
            _ => None,
        });
        for env in environments {
            self.add_environment(env);
        }
        for r in &config.resources {
            if let Resource::AppDeployment(d) = r {
                self.add_deployment(d);
            }
        }
        for r in &config.resources {
            if let Resource::VirtualEnvironment(ve) = r {
                self.add_virtual_environment(ve);
            }
        }
        // Default VEs can only be resolved once every VE is known.
        for r in &config.resources {
            if let Resource::Environment(env) = r {
                self.resolve_default_ve(env);
            }
        }
        for r in &config.resources {
            if let Resource::Canary(c) = r {
                self.add_canary(c);
            }
        }
    }

    fn add_environment(&mut self, env: &Environment) {
        let id = format!("Environment/{}", env.metadata.name);
        let sub_path = env.spec.sub_path.clone();
        if let Err(reason) = validate::check_sub_path(&sub_path) {
            self.err(&id, "spec.subPath", reason);
        }
        if let Some(other) = self.env_by_sub_path.get(&sub_path) {
            let other = self.environments[*other].name.clone();
            self.err(
                &id,
                "spec.subPath",
                format!("'{sub_path}' is already the subPath of Environment/{other}"),
            );
        }
        let trust = match EnvironmentTrust::compile(env) {
            Ok(t) => t,
            Err(errors) => {
                self.errors.extend(errors);
                EnvironmentTrust::default()
            }
        };
        let idx = self.environments.len();
        self.environments.push(EnvironmentEntry {
            name: env.metadata.name.clone(),
            strip_sub_path: env.spec.strip_sub_path,
            default_ve: None,
            policy: env
                .spec
                .release_policy
                .as_ref()
                .map(|p| p.policy_type)
                .unwrap_or(ReleasePolicyType::Testing),
            vars: env
                .vars
                .iter()
                .map(|(k, v)| (k.clone(), v.to_text()))
                .collect(),
        });
        self.trust.push(Arc::new(trust));
        self.env_by_name.insert(env.metadata.name.clone(), idx);
        self.env_by_sub_path.entry(sub_path).or_insert(idx);
    }

    fn resolve_default_ve(&mut self, env: &Environment) {
        let Some(name) = &env.spec.default_virtual_environment else {
            return;
        };
        let id = format!("Environment/{}", env.metadata.name);
        let Some(&env_idx) = self.env_by_name.get(&env.metadata.name) else {
            return;
        };
        match self.ve_by_name.get(name) {
            Some(&ve) if self.ves[ve].environment == env_idx => {
                self.environments[env_idx].default_ve = Some(ve);
            }
            Some(_) => self.err(
                &id,
                "spec.defaultVirtualEnvironment",
                format!("VirtualEnvironment/{name} belongs to another environment"),
            ),
            None => self.err(
                &id,
                "spec.defaultVirtualEnvironment",
                format!("VirtualEnvironment/{name} does not exist"),
            ),
        }
    }

    fn cluster(
        &mut self,
        app: &str,
        component: &str,
        version: &str,
        endpoints: &[String],
        policy: LbPolicy,
        protocol: crate::resources::Protocol,
    ) -> usize {
        let key = (
            app.to_string(),
            component.to_string(),
            version.to_string(),
            policy,
        );
        if let Some(&idx) = self.cluster_by_key.get(&key) {
            return idx;
        }
        let idx = self.clusters.len();
        self.clusters.push(ClusterSpec {
            name: cluster_name(app, component, version, &key.3),
            app: app.to_string(),
            component: component.to_string(),
            version: version.to_string(),
            endpoints: endpoints.to_vec(),
            policy: key.3.clone(),
            protocol,
        });
        self.cluster_by_key.insert(key, idx);
        idx
    }

    /// Checks one `options` value ([`check`]), recording its problems at `field`;
    /// `None` when absent or refused.
    fn checked_options(
        &mut self,
        id: &str,
        field: &str,
        options: Option<&crate::resources::RawOptions>,
    ) -> Option<Options> {
        match check(options?) {
            Ok(o) => Some(o),
            Err(messages) => {
                for m in messages {
                    self.err(id, field, m);
                }
                None
            }
        }
    }

    /// The policy of checked options, recording a model error at `field`;
    /// round-robin when there are none or they are refused.
    fn policy(&mut self, id: &str, field: &str, options: Option<&Options>) -> LbPolicy {
        match options.map(Options::policy) {
            None => LbPolicy::RoundRobin,
            Some(Ok(p)) => p,
            Some(Err(message)) => {
                self.err(id, field, message);
                LbPolicy::RoundRobin
            }
        }
    }

    fn add_deployment(&mut self, dep: &AppDeployment) {
        let id = format!("AppDeployment/{}", dep.metadata.name);
        let spec = &dep.spec;
        if let Err(reason) = validate::check_name(&spec.app) {
            self.err(&id, "spec.app", reason);
        }
        if spec.version.as_deref() == Some("") {
            self.err(&id, "spec.version", "must not be empty when given");
        }
        if spec.components.is_empty() {
            self.err(
                &id,
                "spec.components",
                "a deployment needs at least one component",
            );
        }
        let mut components = Vec::new();
        let mut routes = Vec::new();
        for (ci, (cname, comp)) in spec.components.iter().enumerate() {
            let field = format!("spec.components.{cname}");
            if let Err(reason) = validate::check_name(cname) {
                self.err(&id, &field, reason);
            }
            if comp.version.is_empty()
                || comp
                    .version
                    .chars()
                    .any(|c| c.is_whitespace() || c == '/' || c.is_control())
            {
                self.err(
                    &id,
                    format!("{field}.version"),
                    "must be a non-empty token without spaces or '/'",
                );
            }
            if comp.endpoints.is_empty() {
                self.err(
                    &id,
                    format!("{field}.endpoints"),
                    "at least one host:port is needed",
                );
            }
            for (i, e) in comp.endpoints.iter().enumerate() {
                if let Err(reason) = validate::check_endpoint(e) {
                    self.err(&id, format!("{field}.endpoints[{i}]"), reason);
                }
            }
            let upstream = (spec.app.clone(), cname.clone(), comp.version.clone());
            match self.upstreams.get(&upstream) {
                Some((other, _, protocol)) if *protocol != comp.protocol => {
                    let other = other.clone();
                    self.err(
                        &id,
                        format!("{field}.protocol"),
                        format!(
                            "component version {} is also defined by AppDeployment/{other} with another protocol; equal versions share one upstream",
                            comp.version
                        ),
                    );
                }
                Some((other, endpoints, _)) if *endpoints != comp.endpoints => {
                    let other = other.clone();
                    self.err(
                        &id,
                        format!("{field}.endpoints"),
                        format!(
                            "component version {} is also defined by AppDeployment/{other} with other endpoints; equal versions share one upstream",
                            comp.version
                        ),
                    );
                }
                Some(_) => {}
                None => {
                    self.upstreams.insert(
                        upstream,
                        (
                            dep.metadata.name.clone(),
                            comp.endpoints.clone(),
                            comp.protocol,
                        ),
                    );
                }
            }
            for (i, v) in comp.vars.iter().enumerate() {
                if v.is_empty()
                    || !v
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    self.err(
                        &id,
                        format!("{field}.vars[{i}]"),
                        format!("'{v}' is not a valid var name"),
                    );
                }
            }
            for (i, d) in comp.dependencies.iter().enumerate() {
                if !spec.components.contains_key(d) {
                    self.err(
                        &id,
                        format!("{field}.dependencies[{i}]"),
                        format!("component '{d}' is not part of this deployment"),
                    );
                } else if d == cname {
                    self.err(
                        &id,
                        format!("{field}.dependencies[{i}]"),
                        "a component cannot depend on itself",
                    );
                }
            }
            let ofield = format!("{field}.options");
            let comp_options = self.checked_options(&id, &ofield, comp.options.as_ref());
            let policy = self.policy(&id, &ofield, comp_options.as_ref());
            let comp_cluster = self.route_cluster(&spec.app, cname, comp, policy.clone());
            for (ri, route) in comp.routes.iter().enumerate() {
                let rfield = format!("{field}.routes[{ri}]");
                if let Err(reason) = validate::check_path_prefix(&route.route_match.path_prefix) {
                    self.err(&id, format!("{rfield}.match.pathPrefix"), reason);
                }
                for (mi, m) in route.route_match.methods.iter().enumerate() {
                    if let Err(reason) = validate::check_method(m) {
                        self.err(&id, format!("{rfield}.match.methods[{mi}]"), reason);
                    }
                }
                // A route's options are patched over its component's (see
                // `route_options`); refused ones leave the route on the component's.
                let rofield = format!("{rfield}.options");
                let route_options = self.checked_options(&id, &rofield, route.options.as_ref());
                let (cluster, hash) = match route_options {
                    Some(opts) => {
                        let merged = comp_options.clone().unwrap_or_default().patched(&opts);
                        let p = self.policy(&id, &rofield, Some(&merged));
                        self.route_cluster(&spec.app, cname, comp, p)
                    }
                    None => comp_cluster.clone(),
                };
                routes.push(RouteEntry {
                    prefix: route.route_match.path_prefix.clone(),
                    methods: route.route_match.methods.clone(),
                    component: ci,
                    cluster,
                    hash,
                });
            }
            components.push(ComponentEntry {
                name: cname.clone(),
                version: comp.version.clone(),
                vars: comp.vars.clone(),
                dependencies: comp.dependencies.clone(),
                cluster: comp_cluster.0,
                hash: comp_cluster.1,
            });
        }
        // Longest prefix first; the sort is stable, so ties keep component-name order
        // (BTreeMap) and then the order routes were written.
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        let idx = self.deployments.len();
        self.deployments.push(DeploymentEntry {
            name: dep.metadata.name.clone(),
            app: spec.app.clone(),
            version: spec.version.clone(),
            components,
            routes,
        });
        self.dep_by_name.insert(dep.metadata.name.clone(), idx);
    }

    /// The cluster for a policy, plus the round-robin twin for `hash`.
    fn route_cluster(
        &mut self,
        app: &str,
        component: &str,
        comp: &crate::resources::Component,
        policy: LbPolicy,
    ) -> (usize, Option<(String, usize)>) {
        let hash_header = match &policy {
            LbPolicy::Hash { header, .. } => Some(header.clone()),
            _ => None,
        };
        let cluster = self.cluster(
            app,
            component,
            &comp.version,
            &comp.endpoints,
            policy,
            comp.protocol,
        );
        let hash = hash_header.map(|h| {
            let twin = self.cluster(
                app,
                component,
                &comp.version,
                &comp.endpoints,
                LbPolicy::RoundRobin,
                comp.protocol,
            );
            (h, twin)
        });
        (cluster, hash)
    }

    fn add_virtual_environment(&mut self, ve: &VirtualEnvironment) {
        let id = format!("VirtualEnvironment/{}", ve.metadata.name);
        let Some(&env_idx) = self.env_by_name.get(&ve.spec.environment) else {
            self.err(
                &id,
                "spec.environment",
                format!("Environment/{} does not exist", ve.spec.environment),
            );
            return;
        };
        let mut release = BTreeMap::new();
        if let Some(r) = &ve.spec.release {
            for (app, dep_name) in &r.apps {
                let field = format!("spec.release.apps.{app}");
                let Some(&dep) = self.dep_by_name.get(dep_name) else {
                    self.err(
                        &id,
                        &field,
                        format!("AppDeployment/{dep_name} does not exist"),
                    );
                    continue;
                };
                let d = &self.deployments[dep];
                if d.app != *app {
                    let other = d.app.clone();
                    self.err(
                        &id,
                        &field,
                        format!("AppDeployment/{dep_name} belongs to app '{other}'"),
                    );
                    continue;
                }
                if self.environments[env_idx].policy == ReleasePolicyType::Stable
                    && d.version.is_none()
                {
                    self.err(
                        &id,
                        &field,
                        format!("Environment/{} has a Stable release policy: AppDeployment/{dep_name} needs a version", self.environments[env_idx].name),
                    );
                    continue;
                }
                release.insert(app.clone(), dep);
            }
        }
        let mut release_routes: Vec<(usize, usize)> = release
            .values()
            .flat_map(|&dep| (0..self.deployments[dep].routes.len()).map(move |r| (dep, r)))
            .collect();
        release_routes.sort_by_key(|&(dep, r)| {
            std::cmp::Reverse(self.deployments[dep].routes[r].prefix.len())
        });
        let release_routes = ReleaseRoutes::new(
            release_routes
                .into_iter()
                .map(|(dep, r)| (dep, r, self.deployments[dep].routes[r].prefix.as_str())),
        );
        // The Environment's vars, overridden key by key by the VE's.
        let mut vars: HashMap<String, String> = self.environments[env_idx]
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        vars.extend(ve.vars.iter().map(|(k, v)| (k.clone(), v.to_text())));
        let idx = self.ves.len();
        self.ves.push(VirtualEnvironmentEntry {
            name: ve.metadata.name.clone(),
            environment: env_idx,
            vars,
            release,
            release_id: ve
                .spec
                .release
                .as_ref()
                .and_then(|r| r.id.clone())
                .unwrap_or_default(),
            release_routes,
            canaries: HashMap::default(),
        });
        self.ve_by_name.insert(ve.metadata.name.clone(), idx);
    }

    fn add_canary(&mut self, canary: &crate::resources::Canary) {
        let id = format!("Canary/{}", canary.metadata.name);
        let spec = &canary.spec;
        let Some(&ve) = self.ve_by_name.get(&spec.virtual_environment) else {
            self.err(
                &id,
                "spec.virtualEnvironment",
                format!(
                    "VirtualEnvironment/{} does not exist",
                    spec.virtual_environment
                ),
            );
            return;
        };
        let canary_dep = match self.dep_by_name.get(&spec.deployment) {
            None => {
                self.err(
                    &id,
                    "spec.deployment",
                    format!("AppDeployment/{} does not exist", spec.deployment),
                );
                return;
            }
            Some(&d) if self.deployments[d].app != spec.app => {
                let other = self.deployments[d].app.clone();
                self.err(
                    &id,
                    "spec.deployment",
                    format!(
                        "AppDeployment/{} belongs to app '{other}', not '{}'",
                        spec.deployment, spec.app
                    ),
                );
                return;
            }
            Some(&d) => d,
        };
        if !self.ves[ve].release.contains_key(&spec.app) {
            self.err(
                &id,
                "spec.app",
                format!("VirtualEnvironment/{} has no release of app '{}'; the release is the canary's stable side", spec.virtual_environment, spec.app),
            );
            return;
        }
        if self.ves[ve].canaries.contains_key(&spec.app) {
            self.err(
                &id,
                "spec.app",
                format!(
                    "VirtualEnvironment/{} already has a canary for app '{}'",
                    spec.virtual_environment, spec.app
                ),
            );
            return;
        }
        let trust = self.trust[self.ves[ve].environment].clone();
        match CompiledCanary::compile(canary, trust) {
            Ok(c) => {
                let idx = self.canaries.len();
                self.canaries.push(c);
                self.ves[ve]
                    .canaries
                    .insert(spec.app.clone(), (idx, canary_dep));
            }
            Err(errors) => self.errors.extend(errors),
        }
    }

    fn index(self, mut settings: Settings, context_keys: Option<ContextKeys>) -> Index {
        let mut mesh_components = std::collections::HashSet::new();
        if settings.istio {
            if settings.cluster_header == crate::headers::DEFAULT_CLUSTER_HEADER {
                settings.cluster_header = crate::headers::ISTIO_SELECTION_HEADER.to_string();
            }
            for dep in &self.deployments {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures::hello_world;
    use serde_json::json;

    fn problems(config: serde_json::Value) -> Vec<ValidationError> {
        match Index::from_json(&config.to_string()) {
            Err(ConfigError::Invalid(errors)) => errors,
            other => unreachable!("expected validation errors, got {other:?}"),
        }
    }

    #[test]
    fn every_problem_is_reported_with_resource_and_field() {
        let mut config = hello_world();
        let resources = config["resources"].as_array_mut().unwrap();
        resources.push(
            json!({"kind": "VirtualEnvironment", "metadata": {"name": "Bad"},
            "spec": {"environment": "nowhere"}}),
        );
        resources.push(
            json!({"kind": "AppDeployment", "metadata": {"name": "broken"},
            "spec": {"app": "hello-world", "components": {"frontend": {
                "version": "zz", "endpoints": ["nohost"],
                "routes": [{"match": {"pathPrefix": "hello"}}],
                "options": {"loadbalancing": "hash"},
                "dependencies": ["ghost"]}}}}),
        );
        resources.push(
            json!({"kind": "VirtualEnvironment", "metadata": {"name": "live2"},
            "spec": {"environment": "prod", "release": {"apps": {"hello-world": "broken"}}}}),
        );
        let errors = problems(config);
        let got: Vec<(String, String)> = errors
            .iter()
            .map(|e| (e.resource.clone(), e.field.clone()))
            .collect();
        for expected in [
            ("VirtualEnvironment/Bad", "metadata.name"),
            ("VirtualEnvironment/Bad", "spec.environment"),
            (
                "AppDeployment/broken",
                "spec.components.frontend.endpoints[0]",
            ),
            (
                "AppDeployment/broken",
                "spec.components.frontend.routes[0].match.pathPrefix",
            ),
            ("AppDeployment/broken", "spec.components.frontend.options"),
            (
                "AppDeployment/broken",
                "spec.components.frontend.dependencies[0]",
            ),
            ("VirtualEnvironment/live2", "spec.release.apps.hello-world"),
        ] {
            assert!(
                got.contains(&(expected.0.into(), expected.1.into())),
                "missing {expected:?} in {got:?}"
            );
        }
        let hash = errors
            .iter()
            .find(|e| e.field == "spec.components.frontend.options")
            .unwrap();
        assert_eq!(
            hash.reason,
            "Hash header must be present when loadbalancing is set to hash."
        );
    }

    #[test]
    fn unknown_fields_and_syntax_errors_have_positions() {
        let err = Index::from_json(r#"{"resources": [{"kind": "Environment", "metadata": {"name": "dev"}, "spec": {"subPath": "dev", "colour": 1}}]}"#).unwrap_err();
        match err {
            ConfigError::Syntax {
                line,
                column,
                message,
            } => {
                assert_eq!(line, 1);
                assert!(column > 0);
                assert!(message.contains("colour"), "{message}");
            }
            other => unreachable!("{other:?}"),
        }
    }

    #[test]
    fn shared_component_version_must_have_one_protocol() {
        let mut config = hello_world();
        let resources = config["resources"].as_array_mut().unwrap();
        let mut d = crate::test_fixtures::deployment("hello-world-v4", "v4", "f1", "b4", 9204);
        d["spec"]["components"]["frontend"]["protocol"] = json!("grpc");
        resources.push(d);
        let errors = problems(config);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].field.ends_with("frontend.protocol"), "{errors:?}");
        assert!(errors[0].reason.contains("another protocol"));
        let index = crate::test_fixtures::index(&hello_world());
        assert!(index.clusters().iter().all(|c| !c.protocol.is_http2()));
    }

    #[test]
    fn shared_component_version_must_have_one_set_of_endpoints() {
        let mut config = hello_world();
        let resources = config["resources"].as_array_mut().unwrap();
        let mut d = crate::test_fixtures::deployment("hello-world-v4", "v4", "f1", "b4", 9204);
        d["spec"]["components"]["frontend"]["endpoints"] = json!(["127.0.0.1:1"]);
        resources.push(d);
        let errors = problems(config);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].reason.contains("share one upstream"));
    }

    #[test]
    fn duplicate_sub_paths_and_names() {
        let mut config = hello_world();
        let resources = config["resources"].as_array_mut().unwrap();
        resources.push(json!({"kind": "Environment", "metadata": {"name": "dev2"}, "spec": {"subPath": "dev"}}));
        resources.push(json!({"kind": "Environment", "metadata": {"name": "dev"}, "spec": {"subPath": "dev3"}}));
        let errors = problems(config);
        assert!(errors
            .iter()
            .any(|e| e.resource == "Environment/dev2" && e.reason.contains("already the subPath")));
        assert!(errors
            .iter()
            .any(|e| e.resource == "Environment/dev" && e.reason == "defined more than once"));
    }

    /// A deployment of one component `web` (version w1) with these component
    /// options and routes.
    fn web(options: serde_json::Value, routes: serde_json::Value) -> serde_json::Value {
        let mut component =
            json!({"version": "w1", "endpoints": ["127.0.0.1:9301"], "routes": routes});
        if !options.is_null() {
            component["options"] = options;
        }
        json!({"resources": [{"kind": "AppDeployment", "metadata": {"name": "web-v1"},
            "spec": {"app": "web", "components": {"web": component}}}]})
    }

    /// Route prefix → cluster name of the compiled deployment.
    fn route_clusters(index: &Index) -> Vec<(String, String)> {
        index.deployments[0]
            .routes
            .iter()
            .map(|r| (r.prefix.clone(), index.clusters[r.cluster].name.clone()))
            .collect()
    }

    #[test]
    fn route_options_are_patched_over_the_component_options() {
        let config = web(
            json!({"loadbalancing": "hash", "hash_header": "tenant-id", "hash_balance": 1.25}),
            json!([
                {"match": {"pathPrefix": "/plain"}},
                {"match": {"pathPrefix": "/empty"}, "options": {}},
                {"match": {"pathPrefix": "/user"}, "options": {"hash_header": "User-ID"}},
                {"match": {"pathPrefix": "/off"}, "options": {"hash_balance": null}},
                {"match": {"pathPrefix": "/unset"}, "options": {"loadbalancing": null}},
                {"match": {"pathPrefix": "/lc"}, "options": {"loadbalancing": "least-connection"}},
            ]),
        );
        let index = crate::test_fixtures::index(&config);
        let mut got = route_clusters(&index);
        got.sort();
        let c = |p: &str| format!("web/web/w1/{p}");
        assert_eq!(
            got,
            [
                ("/empty".to_string(), c("hash-tenant-id-125")),
                ("/lc".to_string(), c("least-connection")),
                ("/off".to_string(), c("hash-tenant-id-0")),
                ("/plain".to_string(), c("hash-tenant-id-125")),
                ("/unset".to_string(), c("round-robin")),
                ("/user".to_string(), c("hash-user-id-125")),
            ]
        );
    }

    #[test]
    fn hash_options_without_hash_keep_the_default_algorithm() {
        // Cloud Controller accepts hash_header / hash_balance with loadbalancing
        // omitted and keeps its default algorithm.
        let config = web(
            json!({"hash_header": "tenant-id"}),
            json!([{"match": {"pathPrefix": "/a"}, "options": {"hash_balance": "2"}}]),
        );
        let index = crate::test_fixtures::index(&config);
        assert_eq!(
            route_clusters(&index),
            [("/a".to_string(), "web/web/w1/round-robin".to_string())]
        );
        // With the component's `loadbalancing: hash` but no header anywhere, the
        // component and the route are both refused, each at its own options.
        let config = web(
            json!({"loadbalancing": "hash"}),
            json!([{"match": {"pathPrefix": "/a"}, "options": {"hash_balance": "2"}}]),
        );
        let got: Vec<(String, String)> = problems(config)
            .into_iter()
            .map(|e| (e.field, e.reason))
            .collect();
        let missing = "Hash header must be present when loadbalancing is set to hash.".to_string();
        assert_eq!(
            got,
            [
                ("spec.components.web.options".to_string(), missing.clone()),
                ("spec.components.web.routes[0].options".to_string(), missing),
            ]
        );
    }

    #[test]
    fn null_options_are_refused() {
        // route_create_message_spec.rb:395-410 "'options' is not a valid object"
        let text = r#"{"resources": [{"kind": "AppDeployment", "metadata": {"name": "web-v1"},
            "spec": {"app": "web", "components": {"web": {"version": "w1",
            "endpoints": ["127.0.0.1:9301"], "options": null,
            "routes": [{"match": {"pathPrefix": "/a"}, "options": null}]}}}}]}"#;
        let got: Vec<(String, String)> = match Index::from_json(text) {
            Err(ConfigError::Invalid(errors)) => {
                errors.into_iter().map(|e| (e.field, e.reason)).collect()
            }
            other => unreachable!("{other:?}"),
        };
        let refused = "'options' is not a valid object".to_string();
        assert_eq!(
            got,
            [
                ("spec.components.web.options".to_string(), refused.clone()),
                ("spec.components.web.routes[0].options".to_string(), refused),
            ]
        );
    }

    #[test]
    fn each_route_reports_its_own_options() {
        // manifest_routes_update_message_spec.rb:815-842: one valid route, two invalid
        let config = web(
            serde_json::Value::Null,
            json!([
                {"match": {"pathPrefix": "/valid"}, "options": {"loadbalancing": "hash", "hash_header": "X-User-ID"}},
                {"match": {"pathPrefix": "/invalid"}, "options": {"loadbalancing": "round-robin", "hash_header": "X-User-ID"}},
                {"match": {"pathPrefix": "/long"}, "options": {"loadbalancing": "hash", "hash_header": "X".repeat(129), "hash_balance": "2.111111111111111"}},
            ]),
        );
        let got: Vec<(String, String)> = problems(config)
            .into_iter()
            .map(|e| (e.field, e.reason))
            .collect();
        let at = |i: usize, m: &str| {
            (
                format!("spec.components.web.routes[{i}].options"),
                m.to_string(),
            )
        };
        assert_eq!(
            got,
            [
                at(1, "Hash header can only be set when loadbalancing is hash"),
                at(2, "Hash header must be at most 128 characters"),
                at(2, "Hash balance must be at most 16 characters"),
            ]
        );
    }
}
