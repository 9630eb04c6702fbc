//! The user-facing resources of DESIGN.md ("Resources"), as serde types.
//!
//! These types only describe shape: unknown fields are rejected here, while every
//! rule about values and references (names, endpoints, references between
//! resources, route options, canary rules) is checked when the resources are
//! compiled into an index ([`crate::index::rules`] lists them).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One resource of any kind, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum Resource {
    Environment(Environment),
    VirtualEnvironment(VirtualEnvironment),
    AppDeployment(AppDeployment),
    Canary(Canary),
}

impl Resource {
    /// `Kind/name`, the way errors and the CLI name a resource.
    pub fn id(&self) -> String {
        format!("{}/{}", self.kind(), self.name())
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Resource::Environment(_) => "Environment",
            Resource::VirtualEnvironment(_) => "VirtualEnvironment",
            Resource::AppDeployment(_) => "AppDeployment",
            Resource::Canary(_) => "Canary",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Resource::Environment(r) => &r.metadata.name,
            Resource::VirtualEnvironment(r) => &r.metadata.name,
            Resource::AppDeployment(r) => &r.metadata.name,
            Resource::Canary(r) => &r.metadata.name,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub name: String,
}

/// A variable value: YAML scalars are accepted and delivered as text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum VarValue {
    Text(String),
    Number(serde_json::Number),
    Bool(bool),
}

impl VarValue {
    pub fn to_text(&self) -> String {
        match self {
            VarValue::Text(s) => s.clone(),
            VarValue::Number(n) => n.to_string(),
            VarValue::Bool(b) => b.to_string(),
        }
    }
}

pub type Vars = BTreeMap<String, VarValue>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    pub metadata: Metadata,
    pub spec: EnvironmentSpec,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: Vars,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EnvironmentSpec {
    /// Requests whose first path segment equals this belong to the environment.
    pub sub_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_virtual_environment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_policy: Option<ReleasePolicy>,
    /// Remove the subPath segment before forwarding (default: forward the path whole).
    #[serde(default, skip_serializing_if = "is_false")]
    pub strip_sub_path: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_proxies: Option<TrustedProxies>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geo: Option<GeoSettings>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleasePolicy {
    #[serde(rename = "type")]
    pub policy_type: ReleasePolicyType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReleasePolicyType {
    Stable,
    Testing,
}

/// How JWTs are found and verified for canary claim rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JwtSettings {
    /// Header carrying the token (`authorization` takes `Bearer <token>`).
    #[serde(default = "default_jwt_header")]
    pub header: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub issuers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    #[serde(default)]
    pub keys: Vec<JwtKey>,
    /// Trust the claims of this header (set by Envoy's `jwt_authn` filter,
    /// `forward_payload_header`) instead of verifying the token again. Off by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_payload_header: Option<String>,
    /// Allowed clock skew in seconds for `exp` / `nbf` (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_skew_seconds: Option<u64>,
}

fn default_jwt_header() -> String {
    "authorization".to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtKey {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    pub alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pem: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// Which X-Forwarded-For hop is the client: a hop count, or the CIDRs of trusted proxies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TrustedProxies {
    Hops(u32),
    Cidrs(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoSettings {
    /// A header set by a trusted edge (e.g. `cf-ipcountry`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// CIDR → ISO country code.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cidrs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualEnvironment {
    pub metadata: Metadata,
    pub spec: VirtualEnvironmentSpec,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: Vars,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualEnvironmentSpec {
    pub environment: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<Release>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// app name → released AppDeployment name
    #[serde(default)]
    pub apps: BTreeMap<String, String>,
    /// Set by `switchyard release`: identifies this release in the history and in
    /// the routing context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppDeployment {
    pub metadata: Metadata,
    pub spec: AppDeploymentSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppDeploymentSpec {
    pub app: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub components: BTreeMap<String, Component>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    /// Component version (content hash): equal versions share one upstream.
    pub version: String,
    pub endpoints: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteSpec>,
    /// Cloud Foundry style route options for the component's upstream.
    #[serde(
        default,
        deserialize_with = "written",
        skip_serializing_if = "Option::is_none"
    )]
    pub options: Option<RawOptions>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vars: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<String>,
    /// What the component's endpoints speak: the proxy talks HTTP/2 to
    /// `http2` and `grpc` components.
    #[serde(default, skip_serializing_if = "Protocol::is_default")]
    pub protocol: Protocol,
}

/// A component's protocol (`http1`, the default, `http2` or `grpc`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Http1,
    Http2,
    Grpc,
}

impl Protocol {
    fn is_default(&self) -> bool {
        *self == Protocol::Http1
    }

    /// Whether the proxy speaks HTTP/2 to the component.
    pub fn is_http2(self) -> bool {
        self != Protocol::Http1
    }
}

/// Route options as written: any value, so that `options: null` or `options: 5`
/// reach [`crate::route_options`], which refuses them with Cloud Foundry's wording
/// (an absent `options` is `None`, a written `null` is `Some(Value::Null)`).
pub type RawOptions = serde_json::Value;

/// Keeps a written value, `null` included, as `Some` (serde's `Option` would make
/// `null` indistinguishable from an absent field).
fn written<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(deserializer).map(Some)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    #[serde(rename = "match")]
    pub route_match: RouteMatch,
    /// Merged over the component's `options` (see [`crate::route_options`]).
    #[serde(
        default,
        deserialize_with = "written",
        skip_serializing_if = "Option::is_none"
    )]
    pub options: Option<RawOptions>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouteMatch {
    /// Path prefix relative to the environment's subPath, on segment boundaries.
    pub path_prefix: String,
    /// Allowed methods; empty means any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Canary {
    pub metadata: Metadata,
    pub spec: CanarySpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CanarySpec {
    pub virtual_environment: String,
    pub app: String,
    /// The canary deployment; the VE's released deployment is the stable one.
    pub deployment: String,
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub match_rules: Vec<MatchRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<MatchRule>,
    /// Share of undecided requests sent to the canary, e.g. `"5%"`, `"0.1%"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stickiness: Option<Stickiness>,
    /// Progressive delivery: the weights the control plane moves the canary
    /// through (`["1%", "10%", "100%"]`). The filter routes by `weight` only;
    /// the control plane sets `weight` as the rollout advances.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<String>,
    /// Progressive delivery: how each step is judged. Checked and used by the
    /// control plane only (`control-xds/src/progressive/spec.rs`), so the filter
    /// carries no code for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<serde_json::Value>,
}

/// One match entry: every key given must match (AND); entries are OR'ed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MatchRule {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, OneOrMany>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, OneOrMany>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, ClaimValue>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_cidrs: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub countries: Vec<String>,
}

/// A header or query value: one exact value or a list of accepted values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// A claim to match: a scalar, or a list meaning "any of these".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ClaimValue {
    AnyOf(Vec<serde_json::Value>),
    Scalar(serde_json::Value),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stickiness {
    /// `claim:NAME`, `header:NAME`, `cookie:NAME` or `source-ip`.
    pub key: String,
}
