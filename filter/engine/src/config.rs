//! The filter's plugin configuration: the resources plus a few settings. One format
//! everywhere (static Envoy config, ECDS from the control plane, Istio WasmPlugin).

use serde::{Deserialize, Serialize};

use crate::context::ContextKey;
use crate::resources::Resource;

/// The whole plugin configuration, as JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    #[serde(default)]
    pub settings: Settings,
    #[serde(default)]
    pub resources: Vec<Resource>,
}

/// Which traffic the filter routes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Requests entering the mesh (genesis events).
    #[default]
    Genesis,
    /// Component-to-component calls on the internal listener.
    Internal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Settings {
    #[serde(default)]
    pub mode: Mode,
    /// The header Envoy's route reads the cluster name from.
    #[serde(default = "default_cluster_header")]
    pub cluster_header: String,
    /// The header the route's hash policy hashes on for `hash` clusters.
    #[serde(default = "default_hash_key_header")]
    pub hash_key_header: String,
    /// Add `kf-deployment`, `kf-virtual-env`, `kf-component-version` to responses.
    #[serde(default = "yes")]
    pub response_headers: bool,
    /// Keys for the signed routing context `kf-context`; without keys no context is
    /// issued at genesis, and internal mode refuses to start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub context_keys: Vec<ContextKey>,
    /// The key that signs (default: the first). Others only verify (rotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_kid: Option<String>,
    /// Lifetime of a context issued at genesis; hops never extend it.
    #[serde(default = "default_context_ttl")]
    pub context_ttl_seconds: u64,
}

fn default_context_ttl() -> u64 {
    30
}

pub const DEFAULT_CLUSTER_HEADER: &str = "x-switchyard-cluster";
pub const DEFAULT_HASH_KEY_HEADER: &str = "x-switchyard-hash-key";

fn default_cluster_header() -> String {
    DEFAULT_CLUSTER_HEADER.to_string()
}

fn default_hash_key_header() -> String {
    DEFAULT_HASH_KEY_HEADER.to_string()
}

fn yes() -> bool {
    true
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            mode: Mode::Genesis,
            cluster_header: default_cluster_header(),
            hash_key_header: default_hash_key_header(),
            response_headers: true,
            context_keys: Vec::new(),
            signing_kid: None,
            context_ttl_seconds: default_context_ttl(),
        }
    }
}
