//! Resources → one xDS [`Snapshot`]: what `switchyard serve` pushes to Envoys.
//!
//! The resources are compiled by the filter's own engine first (genesis mode,
//! and internal mode when an internal listener is wanted), so a set the filter
//! would reject is an error here and is never served. From the compiled
//! [`Index`] the builder makes, all stamped with one version:
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

use std::collections::BTreeSet;

use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster};
use envoy_types::pb::envoy::config::common::mutation_rules::v3::{
    header_mutation, HeaderMutation as HeaderAction,
};
use envoy_types::pb::envoy::config::core::v3::{
    address, async_data_source, config_source, data_source, socket_address, Address,
    AggregatedConfigSource, ApiVersion, AsyncDataSource, ConfigSource, DataSource,
    ExtensionConfigSource, SocketAddress, TypedExtensionConfig,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::envoy::config::listener::v3::{filter, Filter, FilterChain, Listener};
use envoy_types::pb::envoy::config::route::v3::{
    route, route_action, route_match, Route, RouteAction, RouteConfiguration, RouteMatch,
    VirtualHost,
};
use envoy_types::pb::envoy::extensions::filters::http::header_mutation::v3::{
    HeaderMutation, Mutations,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::http::upstream_codec::v3::UpstreamCodec;
use envoy_types::pb::envoy::extensions::filters::http::wasm::v3::Wasm;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager, http_filter, HttpConnectionManager, HttpFilter, Rds,
};
use envoy_types::pb::envoy::extensions::wasm::v3::{
    plugin_config, FailurePolicy, PluginConfig as WasmPluginConfig, VmConfig,
};
use envoy_types::pb::google::protobuf::{
    Any, BoolValue, Duration as PbDuration, StringValue, UInt32Value,
};
use switchyard_engine::context::ContextKey;
use switchyard_engine::{ConfigError, Index, Mode, PluginConfig, Resource, Settings};

use crate::xds::{to_any, References, ResourceType, Snapshot};

use crate::topology::{ClusterModel, Discovery, Lb, Listen, ListenerModel, RouteModel, Topology};
pub use crate::topology::{
    GENESIS_FILTER, GENESIS_LISTENER, INTERNAL_FILTER, INTERNAL_LISTENER, VM_ID,
};
use crate::topology::{HTTP_PROTOCOL_OPTIONS, WASM_RUNTIME};
use envoy_types::pb::envoy::config::core::v3::Http2ProtocolOptions;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::{
    explicit_http_config::ProtocolConfig, ExplicitHttpConfig, UpstreamProtocolOptions,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
const ROUTER: &str = "envoy.filters.http.router";
const HEADER_MUTATION: &str = "envoy.filters.http.header_mutation";
const UPSTREAM_CODEC: &str = "envoy.filters.http.upstream_codec";
const HCM: &str = "envoy.filters.network.http_connection_manager";

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
    let genesis = plugin_config(resources, opts, Mode::Genesis);
    let index = Index::compile(&genesis).map_err(BuildError::Invalid)?;
    let mut filters = vec![(GENESIS_FILTER, serde_json::to_string(&genesis)?)];
    if opts.internal_listen.is_some() {
        let internal = plugin_config(resources, opts, Mode::Internal);
        Index::compile(&internal).map_err(BuildError::InvalidInternal)?;
        filters.push((INTERNAL_FILTER, serde_json::to_string(&internal)?));
    }
    let topology = Topology::of(
        &index,
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
                None => wasm_extension(name, opts, json),
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
        .with(ResourceType::Route, version, route_resources);
    Ok((snapshot, refs, index))
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

fn ads() -> ConfigSource {
    ConfigSource {
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        resource_api_version: ApiVersion::V3 as i32,
        ..Default::default()
    }
}

fn socket(host: &str, port: u16) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: host.to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(port))),
            ..Default::default()
        })),
    }
}

fn seconds(seconds: i64) -> PbDuration {
    PbDuration { seconds, nanos: 0 }
}

/// The endpoints of a distilled cluster.
pub fn load_assignment(model: &ClusterModel) -> ClusterLoadAssignment {
    let lb_endpoints = model
        .endpoints
        .iter()
        .map(|(host, port)| LbEndpoint {
            host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                address: Some(socket(host, *port)),
                ..Default::default()
            })),
            ..Default::default()
        })
        .collect();
    ClusterLoadAssignment {
        cluster_name: model.name.clone(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The Envoy cluster of a distilled upstream: its LB policy, and EDS via ADS
/// (or STRICT_DNS with inline endpoints when an endpoint is a DNS name).
pub fn cluster(model: &ClusterModel) -> Cluster {
    let lb_policy = match model.lb {
        Lb::RoundRobin => cluster::LbPolicy::RoundRobin,
        Lb::LeastRequest => cluster::LbPolicy::LeastRequest,
        Lb::Maglev { .. } => cluster::LbPolicy::Maglev,
    };
    let common_lb_config = match model.lb {
        Lb::Maglev {
            balance_factor: Some(balance_factor),
            ..
        } => Some(cluster::CommonLbConfig {
            consistent_hashing_lb_config: Some(
                cluster::common_lb_config::ConsistentHashingLbConfig {
                    hash_balance_factor: Some(UInt32Value {
                        value: balance_factor,
                    }),
                    ..Default::default()
                },
            ),
            ..Default::default()
        }),
        _ => None,
    };
    let mut c = Cluster {
        name: model.name.clone(),
        connect_timeout: Some(seconds(model.connect_timeout_seconds)),
        lb_policy: lb_policy as i32,
        common_lb_config,
        ..Default::default()
    };
    if model.http2 {
        let options = HttpProtocolOptions {
            upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
                ExplicitHttpConfig {
                    protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(
                        Http2ProtocolOptions::default(),
                    )),
                },
            )),
            ..Default::default()
        };
        c.typed_extension_protocol_options
            .insert(HTTP_PROTOCOL_OPTIONS.to_string(), to_any(&options));
    }
    if model.discovery == Discovery::Ips {
        c.cluster_discovery_type = Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        ));
        c.eds_cluster_config = Some(cluster::EdsClusterConfig {
            eds_config: Some(ads()),
            service_name: String::new(),
        });
    } else {
        c.cluster_discovery_type = Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::StrictDns as i32,
        ));
        c.load_assignment = Some(load_assignment(model));
    }
    c
}

/// The ECDS resource of one filter: the Wasm filter with its plugin
/// configuration (JSON) as a `StringValue`.
pub fn wasm_extension(
    name: &str,
    opts: &BuildOptions,
    plugin_config: &str,
) -> TypedExtensionConfig {
    let wasm = Wasm {
        config: Some(WasmPluginConfig {
            name: name.to_string(),
            root_id: name.to_string(),
            configuration: Some(to_any(&StringValue {
                value: plugin_config.to_string(),
            })),
            failure_policy: FailurePolicy::FailReload as i32,
            vm: Some(plugin_config::Vm::VmConfig(VmConfig {
                vm_id: VM_ID.to_string(),
                runtime: WASM_RUNTIME.to_string(),
                code: Some(AsyncDataSource {
                    specifier: Some(async_data_source::Specifier::Local(DataSource {
                        specifier: Some(data_source::Specifier::Filename(opts.wasm_path.clone())),
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            })),
            ..Default::default()
        }),
    };
    TypedExtensionConfig {
        name: name.to_string(),
        typed_config: Some(to_any(&wasm)),
    }
}

/// A listener whose HCM loads `filter` by ECDS and route config `name` by RDS.
pub fn listener(model: &ListenerModel) -> Listener {
    let name = &model.name;
    let hcm = HttpConnectionManager {
        stat_prefix: name.to_string(),
        route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: name.to_string(),
        })),
        http_filters: vec![
            HttpFilter {
                name: model.filter.clone(),
                config_type: Some(http_filter::ConfigType::ConfigDiscovery(
                    ExtensionConfigSource {
                        config_source: Some(ads()),
                        // Either build of the filter (`serve --filter`): a
                        // switch between them is one ECDS update.
                        type_urls: vec![
                            <Wasm as prost::Name>::type_url(),
                            crate::native_filter::FILTER_TYPE.to_string(),
                        ],
                        ..Default::default()
                    },
                )),
                ..Default::default()
            },
            HttpFilter {
                name: ROUTER.to_string(),
                config_type: Some(http_filter::ConfigType::TypedConfig(to_any(&router(
                    &model.route.hash_key_header,
                )))),
                ..Default::default()
            },
        ],
        // Envoy normalizes the path before any filter or route sees it (the
        // filter normalizes again, for HCMs Switchyard does not own). Encoded
        // slashes are rejected, not unescaped and redirected: the filter refuses
        // them anyway, and unescaping `%2F` would create new segment boundaries,
        // so the redirected path could name a different environment.
        normalize_path: Some(BoolValue { value: true }),
        merge_slashes: true,
        path_with_escaped_slashes_action:
            http_connection_manager::PathWithEscapedSlashesAction::RejectRequest as i32,
        ..Default::default()
    };
    Listener {
        name: name.to_string(),
        address: Some(socket(&model.address.0, model.address.1)),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: HCM.to_string(),
                config_type: Some(filter::ConfigType::TypedConfig(to_any(&hcm))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The router, with an upstream filter chain that removes the hash-key header
/// once the load balancer has hashed on it: neither selection header reaches
/// the upstream.
pub fn router(hash_key_header: &str) -> Router {
    let remove_hash_key = HeaderMutation {
        mutations: Some(Mutations {
            request_mutations: vec![HeaderAction {
                action: Some(header_mutation::Action::Remove(hash_key_header.to_string())),
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    Router {
        upstream_http_filters: vec![
            HttpFilter {
                name: HEADER_MUTATION.to_string(),
                config_type: Some(http_filter::ConfigType::TypedConfig(to_any(
                    &remove_hash_key,
                ))),
                ..Default::default()
            },
            HttpFilter {
                name: UPSTREAM_CODEC.to_string(),
                config_type: Some(http_filter::ConfigType::TypedConfig(to_any(
                    &UpstreamCodec::default(),
                ))),
                ..Default::default()
            },
        ],
        ..Default::default()
    }
}

/// One catch-all route: the cluster comes from the filter's selection header,
/// the hash from its hash-key header. The route removes the selection header;
/// the hash-key header must survive until the host is chosen (Envoy applies a
/// route's `request_headers_to_remove` before hashing), so the router's upstream
/// filters remove it ([`router`]).
pub fn route_config(name: &str, route: &RouteModel) -> RouteConfiguration {
    let action = RouteAction {
        cluster_specifier: Some(route_action::ClusterSpecifier::ClusterHeader(
            route.cluster_header.clone(),
        )),
        hash_policy: vec![route_action::HashPolicy {
            policy_specifier: Some(route_action::hash_policy::PolicySpecifier::Header(
                route_action::hash_policy::Header {
                    header_name: route.hash_key_header.clone(),
                    ..Default::default()
                },
            )),
            ..Default::default()
        }],
        timeout: Some(seconds(route.timeout_seconds)),
        ..Default::default()
    };
    RouteConfiguration {
        name: name.to_string(),
        virtual_hosts: vec![VirtualHost {
            name: "switchyard".to_string(),
            domains: vec!["*".to_string()],
            routes: vec![Route {
                r#match: Some(RouteMatch {
                    path_specifier: Some(route_match::PathSpecifier::Prefix("/".to_string())),
                    ..Default::default()
                }),
                request_headers_to_remove: vec![route.cluster_header.clone()],
                action: Some(route::Action::Route(action)),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::core::v3::TypedExtensionConfig;
    use prost::Message;
    use serde_json::{json, Value};
    use switchyard_engine::{ClusterSpec, LbPolicy};

    fn deployment(name: &str, front: &str, backend_endpoints: Value) -> Value {
        json!({"kind": "AppDeployment", "metadata": {"name": name},
        "spec": {"app": "hello-world", "version": name, "components": {
            "frontend": {"version": front, "endpoints": ["127.0.0.1:9101"],
                         "routes": [{"match": {"pathPrefix": "/hello"}}],
                         "dependencies": ["backend", "worker"]},
            "backend": {"version": "b1", "endpoints": backend_endpoints,
                        "routes": [{"match": {"pathPrefix": "/hello/backend"}}],
                        "options": {"loadbalancing": "hash", "hash_header": "tenant-id",
                                    "hash_balance": 1.25}},
            "worker": {"version": "w1", "endpoints": ["worker.internal:8080"],
                       "routes": [{"match": {"pathPrefix": "/work"}}],
                       "options": {"loadbalancing": "least-connection"}}
        }}})
    }

    fn resources(extra: Vec<Value>) -> Vec<Resource> {
        let mut all = vec![
            json!({"kind": "Environment", "metadata": {"name": "dev"},
                   "spec": {"subPath": "dev", "defaultVirtualEnvironment": "team-a"}}),
            json!({"kind": "VirtualEnvironment", "metadata": {"name": "team-a"},
                   "spec": {"environment": "dev",
                            "release": {"apps": {"hello-world": "hello-world-v1"}}}}),
            deployment(
                "hello-world-v1",
                "f1",
                json!(["127.0.0.1:9201", "127.0.0.1:9202"]),
            ),
            deployment(
                "hello-world-v2",
                "f1",
                json!(["127.0.0.1:9201", "127.0.0.1:9202"]),
            ),
        ];
        all.extend(extra);
        all.into_iter()
            .map(|v| serde_json::from_value(v).unwrap())
            .collect()
    }

    fn key() -> ContextKey {
        ContextKey {
            kid: "k1".into(),
            // base64 of 32 bytes
            secret: "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into(),
        }
    }

    fn opts(internal: bool) -> BuildOptions {
        BuildOptions {
            wasm_path: "/opt/switchyard_filter.wasm".into(),
            native_path: None,
            genesis_listen: ("0.0.0.0".into(), 10000),
            internal_listen: internal.then(|| ("127.0.0.1".into(), 10001)),
            context_keys: if internal { vec![key()] } else { vec![] },
        }
    }

    fn decode<M: Message + Default>(snapshot: &Snapshot, kind: ResourceType, name: &str) -> M {
        let any = &snapshot.resources(kind).items[name];
        assert_eq!(any.type_url, kind.type_url());
        M::decode(any.value.as_slice()).unwrap()
    }

    fn names(snapshot: &Snapshot, kind: ResourceType) -> Vec<String> {
        snapshot.resources(kind).items.keys().cloned().collect()
    }

    const FRONT: &str = "hello-world/frontend/f1/round-robin";
    const HASH: &str = "hello-world/backend/b1/hash-tenant-id-125";
    const TWIN: &str = "hello-world/backend/b1/round-robin";
    const WORKER: &str = "hello-world/worker/w1/least-connection";

    #[test]
    fn deployments_sharing_versions_share_clusters() {
        let (snapshot, refs, index) =
            build_snapshot(&resources(vec![]), &opts(false), "7").unwrap();
        // Two deployments, identical component versions: one cluster each.
        assert_eq!(
            names(&snapshot, ResourceType::Cluster),
            [HASH, TWIN, FRONT, WORKER]
        );
        assert_eq!(index.clusters().len(), 4);
        // The worker has a DNS endpoint: STRICT_DNS, no EDS.
        assert_eq!(
            names(&snapshot, ResourceType::Endpoint),
            [HASH, TWIN, FRONT]
        );
        assert_eq!(
            refs.eds_clusters,
            [HASH, TWIN, FRONT].map(String::from).into()
        );
        assert_eq!(refs.clusters.len(), 4);
        assert_eq!(snapshot.check(&refs), Ok(()));
        for kind in ResourceType::PUSH_ORDER {
            assert_eq!(snapshot.version(kind), "7");
        }

        let with_new_front = resources(vec![deployment(
            "hello-world-v3",
            "f3",
            json!(["127.0.0.1:9201", "127.0.0.1:9202"]),
        )]);
        let (snapshot, _, _) = build_snapshot(&with_new_front, &opts(false), "8").unwrap();
        assert_eq!(snapshot.resources(ResourceType::Cluster).items.len(), 5);
        assert!(snapshot
            .resources(ResourceType::Cluster)
            .items
            .contains_key("hello-world/frontend/f3/round-robin"));
    }

    #[test]
    fn lb_policies_map_to_envoy_with_balance_factor() {
        let (snapshot, _, _) = build_snapshot(&resources(vec![]), &opts(false), "1").unwrap();
        let hash: Cluster = decode(&snapshot, ResourceType::Cluster, HASH);
        assert_eq!(hash.lb_policy, cluster::LbPolicy::Maglev as i32);
        let factor = hash
            .common_lb_config
            .and_then(|c| c.consistent_hashing_lb_config)
            .and_then(|c| c.hash_balance_factor)
            .map(|f| f.value);
        assert_eq!(factor, Some(125));
        assert_eq!(hash.connect_timeout, Some(seconds(1)));
        assert_eq!(
            hash.cluster_discovery_type,
            Some(cluster::ClusterDiscoveryType::Type(
                cluster::DiscoveryType::Eds as i32
            ))
        );
        assert_eq!(
            hash.eds_cluster_config.and_then(|e| e.eds_config),
            Some(ads())
        );

        // The twin for requests without the hash header is plain round-robin.
        let twin: Cluster = decode(&snapshot, ResourceType::Cluster, TWIN);
        assert_eq!(twin.lb_policy, cluster::LbPolicy::RoundRobin as i32);
        assert_eq!(twin.common_lb_config, None);
        let front: Cluster = decode(&snapshot, ResourceType::Cluster, FRONT);
        assert_eq!(front.lb_policy, cluster::LbPolicy::RoundRobin as i32);

        let worker: Cluster = decode(&snapshot, ResourceType::Cluster, WORKER);
        assert_eq!(worker.lb_policy, cluster::LbPolicy::LeastRequest as i32);
        assert_eq!(
            worker.cluster_discovery_type,
            Some(cluster::ClusterDiscoveryType::Type(
                cluster::DiscoveryType::StrictDns as i32
            ))
        );
        assert_eq!(worker.eds_cluster_config, None);
        let inline = worker.load_assignment.unwrap();
        assert_eq!(inline.cluster_name, WORKER);
        assert_eq!(inline.endpoints[0].lb_endpoints.len(), 1);

        let cla: ClusterLoadAssignment = decode(&snapshot, ResourceType::Endpoint, HASH);
        assert_eq!(cla.cluster_name, HASH);
        let ports: Vec<u32> = cla.endpoints[0]
            .lb_endpoints
            .iter()
            .filter_map(|e| match &e.host_identifier {
                Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                    address:
                        Some(Address {
                            address: Some(address::Address::SocketAddress(s)),
                        }),
                    ..
                })) => match s.port_specifier {
                    Some(socket_address::PortSpecifier::PortValue(p)) => Some(p),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        assert_eq!(ports, [9201, 9202]);
    }

    #[test]
    fn balance_factor_zero_means_no_consistent_hashing_config() {
        let spec = ClusterSpec {
            name: "a/b/v/hash-h-0".into(),
            app: "a".into(),
            component: "b".into(),
            version: "v".into(),
            endpoints: vec!["10.0.0.1:80".into()],
            policy: LbPolicy::Hash {
                header: "h".into(),
                balance_factor: 0,
            },
            protocol: Default::default(),
        };
        let c = cluster(&ClusterModel::of(&spec));
        assert_eq!(c.lb_policy, cluster::LbPolicy::Maglev as i32);
        assert_eq!(c.common_lb_config, None);
    }

    #[test]
    fn invalid_resources_are_an_error() {
        let bad = resources(vec![json!({"kind": "VirtualEnvironment",
            "metadata": {"name": "lost"}, "spec": {"environment": "nowhere"}})]);
        let err = build_snapshot(&bad, &opts(false), "1").unwrap_err();
        assert!(matches!(err, BuildError::Invalid(_)), "{err}");
        assert!(err.to_string().contains("nowhere"), "{err}");

        // An internal listener needs context keys to verify kf-context.
        let mut no_keys = opts(true);
        no_keys.context_keys.clear();
        let err = build_snapshot(&resources(vec![]), &no_keys, "1").unwrap_err();
        assert!(matches!(err, BuildError::InvalidInternal(_)), "{err}");
        assert!(err.to_string().contains("contextKeys"), "{err}");
    }

    fn wasm_of(snapshot: &Snapshot, name: &str) -> (WasmPluginConfig, PluginConfig) {
        let ext: TypedExtensionConfig = decode(snapshot, ResourceType::ExtensionConfig, name);
        assert_eq!(ext.name, name);
        let any = ext.typed_config.unwrap();
        assert_eq!(
            any.type_url,
            "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
        );
        let config = Wasm::decode(any.value.as_slice()).unwrap().config.unwrap();
        let value = config.configuration.clone().unwrap();
        assert_eq!(
            value.type_url,
            "type.googleapis.com/google.protobuf.StringValue"
        );
        let json = StringValue::decode(value.value.as_slice()).unwrap().value;
        (config, serde_json::from_str(&json).unwrap())
    }

    #[test]
    fn ecds_delivers_the_wasm_filter_per_listener() {
        let (snapshot, refs, _) = build_snapshot(&resources(vec![]), &opts(false), "1").unwrap();
        assert_eq!(
            names(&snapshot, ResourceType::ExtensionConfig),
            [GENESIS_FILTER]
        );
        assert_eq!(names(&snapshot, ResourceType::Listener), [GENESIS_LISTENER]);
        assert_eq!(refs.extension_configs, [GENESIS_FILTER.to_string()].into());

        let (snapshot, refs, _) = build_snapshot(&resources(vec![]), &opts(true), "1").unwrap();
        assert_eq!(
            names(&snapshot, ResourceType::ExtensionConfig),
            [GENESIS_FILTER, INTERNAL_FILTER]
        );
        assert_eq!(
            names(&snapshot, ResourceType::Listener),
            [GENESIS_LISTENER, INTERNAL_LISTENER]
        );
        assert_eq!(
            names(&snapshot, ResourceType::Route),
            [GENESIS_LISTENER, INTERNAL_LISTENER]
        );
        assert_eq!(refs.routes.len(), 2);
        assert_eq!(snapshot.check(&refs), Ok(()));

        for (name, mode) in [
            (GENESIS_FILTER, Mode::Genesis),
            (INTERNAL_FILTER, Mode::Internal),
        ] {
            let (config, plugin) = wasm_of(&snapshot, name);
            assert_eq!(config.root_id, name);
            assert_eq!(config.failure_policy, FailurePolicy::FailReload as i32);
            let Some(plugin_config::Vm::VmConfig(vm)) = config.vm else {
                panic!("no vm_config")
            };
            assert_eq!(vm.vm_id, VM_ID);
            assert_eq!(vm.runtime, "envoy.wasm.runtime.v8");
            let code = vm.code.and_then(|c| c.specifier);
            assert_eq!(
                code,
                Some(async_data_source::Specifier::Local(DataSource {
                    specifier: Some(data_source::Specifier::Filename(
                        "/opt/switchyard_filter.wasm".into()
                    )),
                    ..Default::default()
                }))
            );
            assert_eq!(plugin.settings.mode, mode);
            assert_eq!(plugin.settings.context_keys, vec![key()]);
            assert_eq!(plugin.resources, resources(vec![]));
            // What is served compiles in the filter.
            assert!(Index::compile(&plugin).is_ok());
        }
    }

    #[test]
    fn listeners_load_filter_by_ecds_and_routes_by_rds() {
        let (snapshot, _, _) = build_snapshot(&resources(vec![]), &opts(true), "1").unwrap();
        for (name, filter_name, port) in [
            (GENESIS_LISTENER, GENESIS_FILTER, 10000),
            (INTERNAL_LISTENER, INTERNAL_FILTER, 10001),
        ] {
            let l: Listener = decode(&snapshot, ResourceType::Listener, name);
            assert_eq!(
                l.address,
                Some(socket(
                    if port == 10000 {
                        "0.0.0.0"
                    } else {
                        "127.0.0.1"
                    },
                    port
                ))
            );
            let Some(filter::ConfigType::TypedConfig(any)) =
                l.filter_chains[0].filters[0].config_type.clone()
            else {
                panic!("no HCM")
            };
            let hcm = HttpConnectionManager::decode(any.value.as_slice()).unwrap();
            assert_eq!(hcm.stat_prefix, name);
            // Path normalization in Envoy, encoded slashes rejected.
            assert_eq!(hcm.normalize_path, Some(BoolValue { value: true }));
            assert!(hcm.merge_slashes);
            assert_eq!(
                hcm.path_with_escaped_slashes_action(),
                http_connection_manager::PathWithEscapedSlashesAction::RejectRequest
            );
            assert_eq!(
                hcm.route_specifier,
                Some(http_connection_manager::RouteSpecifier::Rds(Rds {
                    config_source: Some(ads()),
                    route_config_name: name.into(),
                }))
            );
            let filters: Vec<&str> = hcm.http_filters.iter().map(|f| f.name.as_str()).collect();
            assert_eq!(filters, [filter_name, ROUTER]);
            // The hash-key header is removed after hashing, by the router's
            // upstream filters.
            let Some(http_filter::ConfigType::TypedConfig(router_any)) =
                hcm.http_filters[1].config_type.clone()
            else {
                panic!("router has no config")
            };
            let router = Router::decode(router_any.value.as_slice()).unwrap();
            let upstream: Vec<&str> = router
                .upstream_http_filters
                .iter()
                .map(|f| f.name.as_str())
                .collect();
            assert_eq!(upstream, [HEADER_MUTATION, UPSTREAM_CODEC]);
            let Some(http_filter::ConfigType::TypedConfig(m)) =
                router.upstream_http_filters[0].config_type.clone()
            else {
                panic!("header mutation has no config")
            };
            let removed = HeaderMutation::decode(m.value.as_slice())
                .unwrap()
                .mutations
                .unwrap()
                .request_mutations;
            assert_eq!(
                removed[0].action,
                Some(header_mutation::Action::Remove(
                    "x-switchyard-hash-key".into()
                ))
            );
            let Some(http_filter::ConfigType::ConfigDiscovery(ecds)) =
                hcm.http_filters[0].config_type.clone()
            else {
                panic!("filter not by ECDS")
            };
            assert_eq!(ecds.config_source, Some(ads()));
            assert_eq!(
                ecds.type_urls,
                [
                    "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                    "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter"
                ]
            );

            let rc: RouteConfiguration = decode(&snapshot, ResourceType::Route, name);
            let route = &rc.virtual_hosts[0].routes[0];
            assert_eq!(rc.virtual_hosts[0].domains, ["*"]);
            assert_eq!(route.request_headers_to_remove, ["x-switchyard-cluster"]);
            let Some(route::Action::Route(action)) = &route.action else {
                panic!("not a route action")
            };
            assert_eq!(
                action.cluster_specifier,
                Some(route_action::ClusterSpecifier::ClusterHeader(
                    "x-switchyard-cluster".into()
                ))
            );
            assert_eq!(action.timeout, Some(seconds(30)));
            assert_eq!(
                action.hash_policy[0].policy_specifier,
                Some(route_action::hash_policy::PolicySpecifier::Header(
                    route_action::hash_policy::Header {
                        header_name: "x-switchyard-hash-key".into(),
                        regex_rewrite: None,
                    }
                ))
            );
        }
    }
}
