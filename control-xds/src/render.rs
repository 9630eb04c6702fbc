//! `switchyard render envoy`: a static Envoy bootstrap with the filter and the
//! resources inline (static mode of DESIGN.md "Configuration delivery").
//!
//! The listener has one route that takes its cluster from the filter's
//! cluster-selection header and hashes on its hash-key header; the clusters are the
//! engine's distilled clusters.

use serde_json::{json, Value};
use switchyard_engine::{Index, PluginConfig};

use crate::topology::{
    ClusterModel, Discovery, Lb, Listen, ListenerModel, RouteModel, Topology,
    HTTP_PROTOCOL_OPTIONS, VM_ID, WASM_RUNTIME,
};

/// Where the rendered Envoy listens and finds the filter.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    pub wasm_path: String,
    /// The native filter's path: when set, the listeners load it instead of the wasm.
    pub native_path: Option<String>,
    pub listen: (String, u16),
    pub admin: (String, u16),
    /// The internal listener for component-to-component calls (internal mode);
    /// the plugin configuration must then carry context keys.
    pub internal_listen: Option<(String, u16)>,
    /// Pull mode: the control plane's HTTP API, reached through the cluster
    /// [`PULL_CLUSTER`] (the plugin settings must name it in `pull`).
    pub pull_from: Option<(String, u16)>,
    /// `node.id` of the bootstrap: names this Envoy in pull-mode polls
    /// (`x-switchyard-node`), so `switchyard status` lists it as pulling.
    pub node_id: String,
}

/// The cluster of the control plane's HTTP API in pull mode.
pub const PULL_CLUSTER: &str = "switchyard_api";

fn socket(host: &str, port: u16) -> Value {
    json!({"socket_address": {"address": host, "port_value": port}})
}

/// The HTTP filter entry of the Wasm filter with an inline plugin configuration.
/// `name` is also the plugin's root id, so two filters (genesis and internal) in
/// one VM keep separate configurations.
pub fn wasm_filter(name: &str, wasm_path: &str, plugin_config: &str) -> Value {
    json!({
        "name": name,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": name,
                "root_id": name,
                "failure_policy": "FAIL_RELOAD",
                "vm_config": {
                    "vm_id": VM_ID,
                    "runtime": WASM_RUNTIME,
                    "code": {"local": {"filename": wasm_path}}
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": plugin_config
                }
            }
        }
    })
}

/// The route configuration: the cluster comes from the selection header.
pub fn route_config(name: &str, route: &RouteModel) -> Value {
    json!({
        "name": name,
        "virtual_hosts": [{
            "name": "switchyard",
            "domains": ["*"],
            "routes": [{
                "match": {"prefix": "/"},
                // The selection headers are for Envoy only, never the upstream. The
                // hash key is removed by the router's upstream filters instead (see
                // `router`): Envoy drops a route's removed headers before hashing.
                "request_headers_to_remove": [route.cluster_header],
                "route": {
                    "cluster_header": route.cluster_header,
                    "hash_policy": [{"header": {"header_name": route.hash_key_header}}],
                    "timeout": format!("{}s", route.timeout_seconds)
                }
            }]
        }]
    })
}

/// An Envoy cluster for a distilled upstream.
pub fn cluster(model: &ClusterModel) -> Value {
    let endpoints: Vec<Value> = model
        .endpoints
        .iter()
        .map(|(host, port)| json!({"endpoint": {"address": socket(host, *port)}}))
        .collect();
    let mut c = json!({
        "name": model.name,
        "type": match model.discovery {
            Discovery::Ips => "STATIC",
            Discovery::Dns => "STRICT_DNS",
        },
        "connect_timeout": format!("{}s", model.connect_timeout_seconds),
        "lb_policy": model.lb.envoy_name(),
        "load_assignment": {"cluster_name": model.name, "endpoints": [{"lb_endpoints": endpoints}]}
    });
    if model.http2 {
        c["typed_extension_protocol_options"] = json!({HTTP_PROTOCOL_OPTIONS: {
            "@type": format!("type.googleapis.com/{HTTP_PROTOCOL_OPTIONS}"),
            "explicit_http_config": {"http2_protocol_options": {}}
        }});
    }
    if let Lb::Maglev {
        balance_factor: Some(balance_factor),
        ..
    } = model.lb
    {
        c["common_lb_config"] =
            json!({"consistent_hashing_lb_config": {"hash_balance_factor": balance_factor}});
    }
    c
}

/// The router, with upstream filters that remove the hash-key header once the
/// endpoint has been chosen.
fn router(hash_key_header: &str) -> Value {
    json!({
        "name": "envoy.filters.http.router",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
            "upstream_http_filters": [
                {"name": "envoy.filters.http.header_mutation",
                 "typed_config": {
                     "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
                     "mutations": {"request_mutations": [{"remove": hash_key_header}]}}},
                {"name": "envoy.filters.http.upstream_codec",
                 "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec"}}
            ]
        }
    })
}

/// A listener whose HTTP connection manager runs the filter, then the router.
fn listener(model: &ListenerModel, filter: Value) -> Value {
    let name = &model.name;
    json!({
        "name": name,
        "address": socket(&model.address.0, model.address.1),
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": name,
                // As in the snapshot builder's listener: the filter is the one
                // normalizer, Envoy leaves the path as sent (README "Paths").
                "normalize_path": false,
                "merge_slashes": false,
                "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
                "route_config": route_config(name, &model.route),
                "http_filters": [filter, router(&model.route.hash_key_header)]
            }
        }]}]
    })
}

/// A whole static bootstrap: the genesis listener, optionally the internal one,
/// and every distilled cluster.
pub fn render_envoy(config: &PluginConfig, index: &Index, opts: &RenderOptions) -> Value {
    let topology = Topology::of(
        index,
        &Listen {
            genesis: opts.listen.clone(),
            internal: opts.internal_listen.clone(),
        },
    );
    let listeners: Vec<Value> = topology
        .listeners
        .iter()
        .map(|l| {
            let mut plugin = config.clone();
            plugin.settings.mode = l.mode;
            let json = serde_json::to_string(&plugin).unwrap_or_default();
            let filter = match &opts.native_path {
                Some(path) => crate::native_filter::native_filter(&l.filter, path, &json),
                None => wasm_filter(&l.filter, &opts.wasm_path, &json),
            };
            listener(l, filter)
        })
        .collect();
    let mut clusters: Vec<Value> = topology.clusters.iter().map(cluster).collect();
    if let Some((host, port)) = &opts.pull_from {
        clusters.push(json!({
            "name": PULL_CLUSTER,
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {"cluster_name": PULL_CLUSTER,
                "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket(host, *port)}}]}]}
        }));
    }
    json!({
        "node": {"id": opts.node_id, "cluster": "switchyard"},
        "admin": {"address": socket(&opts.admin.0, opts.admin.1)},
        "static_resources": {
            "listeners": listeners,
            "clusters": clusters
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_engine::{ClusterSpec, LbPolicy};

    #[test]
    fn hash_clusters_get_maglev_and_balance_factor() {
        let spec = ClusterSpec {
            name: "a/b/v/hash-tenant-id-125".into(),
            app: "a".into(),
            component: "b".into(),
            version: "v".into(),
            endpoints: vec!["127.0.0.1:1".into(), "backend.local:2".into()],
            policy: LbPolicy::Hash {
                header: "tenant-id".into(),
                balance_factor: 125,
            },
            protocol: Default::default(),
        };
        let c = cluster(&ClusterModel::of(&spec));
        assert_eq!(c["lb_policy"], "MAGLEV");
        assert_eq!(c["type"], "STRICT_DNS");
        assert_eq!(
            c["common_lb_config"]["consistent_hashing_lb_config"]["hash_balance_factor"],
            125
        );
    }
}
