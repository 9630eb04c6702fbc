//! The outcome of routing one request: where it goes and what the upstream is told.

use std::fmt;

use crate::name_map::NameMap;

/// Why the deployment was chosen; sent to the upstream as `kf-decision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecisionKind {
    /// The VE's released deployment.
    Release,
    /// `kf-dep` named the deployment.
    Explicit,
    /// Canary match entry N (0-based, in the order written) matched.
    CanaryMatch(usize),
    /// The canary's weighted split chose the canary.
    CanaryWeight,
    /// A canary exists but chose the stable (released) deployment.
    CanaryStable,
    /// Internal (component-to-component) hop, checked against the context.
    Internal,
}

impl DecisionKind {
    /// The `kf-decision` value; allocates only for `canary-match:N`.
    pub fn name(&self) -> std::borrow::Cow<'static, str> {
        use std::borrow::Cow::Borrowed;
        match self {
            DecisionKind::Release => Borrowed("release"),
            DecisionKind::Explicit => Borrowed("explicit"),
            DecisionKind::CanaryWeight => Borrowed("canary-weight"),
            DecisionKind::CanaryStable => Borrowed("canary-stable"),
            DecisionKind::Internal => Borrowed("internal"),
            DecisionKind::CanaryMatch(_) => std::borrow::Cow::Owned(self.to_string()),
        }
    }
}

impl fmt::Display for DecisionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecisionKind::Release => f.write_str("release"),
            DecisionKind::Explicit => f.write_str("explicit"),
            DecisionKind::CanaryMatch(n) => write!(f, "canary-match:{n}"),
            DecisionKind::CanaryWeight => f.write_str("canary-weight"),
            DecisionKind::CanaryStable => f.write_str("canary-stable"),
            DecisionKind::Internal => f.write_str("internal"),
        }
    }
}

/// The vars a decision delivers: the component's declared names, looked up in
/// the VE's vars (the Environment's, overridden key by key). Borrowed from the
/// index, so a decision does not allocate for them.
#[derive(Debug, Clone, PartialEq)]
pub struct Vars<'i> {
    names: &'i [String],
    values: &'i NameMap<String, String>,
}

impl<'i> Vars<'i> {
    pub(crate) fn new(names: &'i [String], values: &'i NameMap<String, String>) -> Self {
        Self { names, values }
    }

    /// `(name, value)` of each declared var the VE defines, in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = (&'i str, &'i str)> + '_ {
        let values = self.values;
        self.names
            .iter()
            .filter_map(move |n| values.get(n).map(|v| (n.as_str(), v.as_str())))
    }

    /// Whether `name` is one of them.
    pub fn contains(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name) && self.values.contains_key(name)
    }
}

/// Where a routed request goes. `'i` borrows from the index, `'r` from the request.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision<'i, 'r> {
    pub environment: &'i str,
    pub virtual_env: &'i str,
    pub app: &'i str,
    pub deployment: &'i str,
    /// The deployment's position in the index: a cheap key for per-deployment stats.
    pub deployment_id: usize,
    pub component: &'i str,
    pub component_version: &'i str,
    /// The Envoy cluster, written into the cluster-selection header.
    pub cluster: &'i str,
    /// For `hash` clusters: the value of the configured hash header, copied into
    /// the hash-key header the route hashes on.
    pub hash_key: Option<&'r str>,
    pub kind: DecisionKind,
    /// `(name, value)` of the vars the component declares and the VE defines.
    pub vars: Vars<'i>,
    /// The `:path` to forward when it changes (subPath stripped, selectors removed).
    pub rewritten_path: Option<String>,
    /// Inbound headers to remove: forged `kf-*` metadata and selector headers
    /// that the filter does not overwrite anyway.
    pub strip_headers: Vec<&'r str>,
    /// A `set-cookie` value for sticky canaries keyed by a cookie the client lacks.
    pub set_cookie: Option<String>,
    /// The signed routing context for `kf-context`, when context keys are configured.
    pub context: Option<String>,
    /// Why the canary could not use a JWT (for stats), if it tried.
    pub note: Option<&'static str>,
}
