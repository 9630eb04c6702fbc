//! The filter's plugin configuration: the resources plus a few settings. One format
//! everywhere (static Envoy config, ECDS from the control plane, Istio WasmPlugin).

use serde::{Deserialize, Serialize};

use crate::context::ContextKey;
use crate::headers::{
    DEFAULT_CLUSTER_HEADER, DEFAULT_HASH_KEY_HEADER, LEAN_METADATA_HEADERS, METADATA_HEADERS,
};
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

/// The metadata headers set on routed requests. Each costs a host call (~2 µs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetadataHeaders {
    /// Every header of DESIGN.md step 7.
    #[default]
    Full,
    /// `kf-deployment`, `kf-context` (which names environment, VE, app,
    /// deployment and component) and the declared `kf-var-*`.
    Lean,
}

impl MetadataHeaders {
    /// The `kf-*` metadata headers (besides `kf-context` and vars) this setting sets.
    pub fn names(self) -> &'static [&'static str] {
        match self {
            MetadataHeaders::Full => &METADATA_HEADERS,
            MetadataHeaders::Lean => &LEAN_METADATA_HEADERS,
        }
    }
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
    /// Which metadata headers the upstream gets (`full`, the default, or `lean`).
    #[serde(default)]
    pub metadata_headers: MetadataHeaders,
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
    /// Pull mode (for Istio, where istiod owns xDS): poll the control plane's
    /// `GET /v1/config` and route by what it returns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull: Option<PullSettings>,
    /// Istio mode (`switchyard render istio`): the selection header (default
    /// `x-switchyard-version`) names the version for the rendered
    /// VirtualServices, Istio's DestinationRules hash on the route's own hash
    /// header (no hash-key copy), internal mode takes the target component from
    /// the first label of the Service host and leaves hosts that are no
    /// component alone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub istio: bool,
}

/// Where and how often the filter polls the control plane in pull mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PullSettings {
    /// The Envoy cluster of the control plane's HTTP API.
    pub cluster: String,
    /// `:authority` of the poll request (default: the cluster name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    #[serde(default = "default_pull_path")]
    pub path: String,
    #[serde(default = "default_pull_interval")]
    pub interval_ms: u64,
    /// A `pull`-role API token, sent with every poll as `Authorization:
    /// Bearer`. Without it the filter uses the VM's environment variable
    /// [`PULL_TOKEN_ENV`] (Istio: `WasmPlugin.spec.vmConfig.env`), if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// The VM environment variable with the pull token when the settings have none.
pub const PULL_TOKEN_ENV: &str = "SWITCHYARD_PULL_TOKEN";

fn default_pull_path() -> String {
    "/v1/config".to_string()
}

fn default_pull_interval() -> u64 {
    1000
}

impl PluginConfig {
    /// The configuration to route by once a pulled configuration arrived: this
    /// filter's own settings (mode, headers, pull) with the control plane's
    /// resources and context keys.
    pub fn with_pulled(&self, pulled: PluginConfig) -> PluginConfig {
        let mut settings = self.settings.clone();
        settings.context_keys = pulled.settings.context_keys;
        settings.signing_kid = pulled.settings.signing_kid;
        PluginConfig {
            settings,
            resources: pulled.resources,
        }
    }
}

fn default_context_ttl() -> u64 {
    30
}

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
            metadata_headers: MetadataHeaders::Full,
            context_keys: Vec::new(),
            signing_kid: None,
            context_ttl_seconds: default_context_ttl(),
            pull: None,
            istio: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pulled_resources_and_keys_replace_local_ones_settings_stay() {
        let local: PluginConfig = serde_json::from_value(json!({
            "settings": {"mode": "internal", "clusterHeader": "x-c",
                         "pull": {"cluster": "switchyard_api"}},
            "resources": [{"kind": "Environment", "metadata": {"name": "old"}, "spec": {"subPath": "old"}}]
        }))
        .unwrap();
        let pulled: PluginConfig = serde_json::from_value(json!({
            "settings": {"contextKeys": [{"kid": "k1", "secret": "c2VjcmV0"}]},
            "resources": [{"kind": "Environment", "metadata": {"name": "dev"}, "spec": {"subPath": "dev"}}]
        }))
        .unwrap();
        let merged = local.with_pulled(pulled);
        assert_eq!(merged.settings.mode, Mode::Internal);
        assert_eq!(merged.settings.cluster_header, "x-c");
        assert_eq!(
            merged.settings.pull.as_ref().map(|p| p.interval_ms),
            Some(1000)
        );
        assert_eq!(merged.settings.context_keys[0].kid, "k1");
        assert_eq!(merged.resources.len(), 1);
        assert_eq!(merged.resources[0].name(), "dev");
    }
}
