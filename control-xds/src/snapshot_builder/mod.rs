//! Resources → one xDS [`Snapshot`]: what `switchyard serve` pushes to Envoys.
//!
//! The resources are compiled by the filter's own engine first (genesis mode;
//! the store's change hands over the index it compiled, [`build_snapshot_from`]),
//! and the internal listener's settings are checked by the engine's settings
//! rules (the only ones that differ by mode), so a set the filter would reject
//! is an error here and is never served. From the compiled [`Index`] the
//! builder makes, all stamped with one version:
//! - CDS: one cluster per distilled [`ClusterSpec`] (EDS when every endpoint is
//!   an IP, otherwise STRICT_DNS with the endpoints inline), with the LB policy
//!   of DESIGN.md "Configuration delivery";
//! - EDS: a `ClusterLoadAssignment` per EDS cluster;
//! - ECDS: the Wasm filter (`switchyard`, and `switchyard-internal`) with the
//!   plugin configuration (settings + resources) as its configuration;
//! - LDS: `switchyard_genesis` (and `switchyard_internal`), an HCM that loads
//!   the filter by ECDS and its routes by RDS;
//! - RDS: one catch-all route taking the cluster from the filter's selection
//!   header and hashing on its hash-key header (both headers are removed before
//!   the request goes upstream).
//!
//! Only this module and `xds` know protobuf; nothing here does I/O.
//!
//! `encode` turns each part of the [`Topology`] model into its protobuf.

mod encode;

use std::collections::BTreeSet;

use envoy_types::pb::google::protobuf::Any;
use switchyard_engine::context::ContextKey;
use switchyard_engine::{ConfigError, Index, Mode, PluginConfig, Resource, Settings};

use crate::topology::{Discovery, Listen, Topology};
pub use crate::topology::{
    GENESIS_FILTER, GENESIS_LISTENER, INTERNAL_FILTER, INTERNAL_LISTENER, VM_ID,
};
use crate::xds::{to_any, References, ResourceType, Snapshot};
pub use encode::{cluster, listener, load_assignment, route_config, router, wasm_extension};

/// What the snapshot needs besides the resources.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Path of `switchyard_filter.wasm` on the Envoy host.
    pub wasm_path: String,
    /// Path of the native filter (`libswitchyard_native.so`) on the Envoy host:
    /// when set, ECDS carries the native filter instead of the wasm one.
    pub native_path: Option<String>,
    /// Address of the genesis listener.
    pub genesis_listen: (String, u16),
    /// Address of the internal listener, if component-to-component calls go
    /// through Envoy (needs `context_keys`).
    pub internal_listen: Option<(String, u16)>,
    /// Keys signing and verifying `kf-context`.
    pub context_keys: Vec<ContextKey>,
}

/// Why no snapshot was built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The filter's engine rejects the resources (genesis mode).
    #[error("the resources are invalid: {0}")]
    Invalid(#[source] ConfigError),
    /// The filter's engine rejects the internal-mode configuration.
    #[error("the internal listener's configuration is invalid: {0}")]
    InvalidInternal(#[source] ConfigError),
    /// The plugin configuration could not be written as JSON.
    #[error("cannot encode the plugin configuration: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Compiles `resources` with the engine and builds the snapshot every Envoy
/// gets, with `version` on every resource type. Also returns the references
/// the cache checks and the compiled index (for status and `explain`).
pub fn build_snapshot(
    resources: &[Resource],
    opts: &BuildOptions,
    version: &str,
) -> Result<(Snapshot, References, Index), BuildError> {
    let index = compile(resources, opts)?;
    let (snapshot, refs) = build_snapshot_from(resources, &index, opts, version)?;
    Ok((snapshot, refs, index))
}

/// The genesis-mode index of `resources`: what [`build_snapshot`] builds from.
pub fn compile(resources: &[Resource], opts: &BuildOptions) -> Result<Index, BuildError> {
    Index::compile(&plugin_config(resources, opts, Mode::Genesis)).map_err(BuildError::Invalid)
}

/// [`build_snapshot`] from `index`, already compiled from `resources` in this
/// order with `opts`' settings ([`compile`]'s): nothing is compiled again.
pub fn build_snapshot_from(
    resources: &[Resource],
    index: &Index,
    opts: &BuildOptions,
    version: &str,
) -> Result<(Snapshot, References), BuildError> {
    let genesis = plugin_config(resources, opts, Mode::Genesis);
    let mut filters = vec![(GENESIS_FILTER, serde_json::to_string(&genesis)?)];
    if opts.internal_listen.is_some() {
        let internal = plugin_config(resources, opts, Mode::Internal);
        // The resources compiled in genesis mode: only the settings can differ.
        Index::check_settings(&internal.settings).map_err(BuildError::InvalidInternal)?;
        filters.push((INTERNAL_FILTER, serde_json::to_string(&internal)?));
    }
    let topology = Topology::of(
        index,
        &Listen {
            genesis: opts.genesis_listen.clone(),
            internal: opts.internal_listen.clone(),
        },
    );

    let mut refs = References::default();
    let mut clusters = Vec::new();
    let mut assignments = Vec::new();
    for model in &topology.clusters {
        refs.clusters.insert(model.name.clone());
        if model.discovery == Discovery::Ips {
            refs.eds_clusters.insert(model.name.clone());
            assignments.push((model.name.clone(), to_any(&load_assignment(model))));
        }
        clusters.push((model.name.clone(), to_any(&cluster(model))));
    }
    let extension_configs: Vec<(String, Any)> = filters
        .iter()
        .map(|(name, json)| {
            let extension = match &opts.native_path {
                Some(path) => crate::native_filter::native_extension(name, path, json),
                None => wasm_extension(name, &opts.wasm_path, json),
            };
            (name.to_string(), to_any(&extension))
        })
        .collect();
    refs.extension_configs = filters.iter().map(|(n, _)| n.to_string()).collect();
    let listener_resources: Vec<(String, Any)> = topology
        .listeners
        .iter()
        .map(|l| (l.name.clone(), to_any(&listener(l))))
        .collect();
    let route_resources: Vec<(String, Any)> = topology
        .listeners
        .iter()
        .map(|l| (l.name.clone(), to_any(&route_config(&l.name, &l.route))))
        .collect();
    refs.routes = topology
        .listeners
        .iter()
        .map(|l| l.name.clone())
        .collect::<BTreeSet<_>>();

    let snapshot = Snapshot::new()
        .with(ResourceType::Cluster, version, clusters)
        .with(ResourceType::Endpoint, version, assignments)
        .with(ResourceType::ExtensionConfig, version, extension_configs)
        .with(ResourceType::Listener, version, listener_resources)
        .with(ResourceType::Route, version, route_resources)
        // A publish and its release in one push: the internal table first
        // (README "ADS"), so a request routed by the new genesis table never
        // meets an internal table from before the publish.
        .with_extension_order(INTERNAL_FILTER, GENESIS_FILTER);
    Ok((snapshot, refs))
}

/// The filter's plugin configuration for `mode`: what [`build_snapshot`]
/// compiles and then serves as JSON through ECDS.
pub fn plugin_config(resources: &[Resource], opts: &BuildOptions, mode: Mode) -> PluginConfig {
    PluginConfig {
        settings: Settings {
            mode,
            context_keys: opts.context_keys.clone(),
            ..Settings::default()
        },
        resources: resources.to_vec(),
    }
}

#[cfg(test)]
mod tests;
