//! The routing table in force: the compiled index and the clusters it names
//! that this Envoy does not have.

use switchyard_engine::{ConfigError, Index, KnownClusters, PluginConfig, UnreadyClusters};

/// The routing table in force: the compiled index and, computed when it was
/// installed, its clusters this Envoy does not have (pull mode).
pub struct Table {
    pub index: Index,
    pub unready: UnreadyClusters,
}

impl Table {
    /// Compiles `config`. A pulled table may name clusters the bootstrap lacks
    /// (`known` are the clusters of the plugin configuration's own table): they
    /// are found here, once. In Istio mode the rendered VirtualServices answer a
    /// version they lack with 503 `cluster_not_ready` themselves.
    pub fn compile(
        config: &PluginConfig,
        pulled: bool,
        known: &KnownClusters,
    ) -> Result<Self, ConfigError> {
        let index = Index::compile(config)?;
        let unready = if pulled && !config.settings.istio {
            UnreadyClusters::of(&index, known)
        } else {
            UnreadyClusters::none()
        };
        Ok(Self { index, unready })
    }
}

/// Parses the plugin configuration (JSON) as Envoy hands it over.
pub fn parse_config(bytes: &[u8]) -> Result<PluginConfig, ConfigError> {
    serde_json::from_slice::<PluginConfig>(bytes).map_err(ConfigError::from)
}
