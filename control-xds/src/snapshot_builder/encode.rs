//! The topology model's parts as Envoy protobuf: a cluster and its load
//! assignment, the filter's ECDS extension, a listener with its HCM, the
//! router and the route configuration.

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
    BoolValue, Duration as PbDuration, StringValue, UInt32Value,
};

use crate::xds::to_any;

use crate::topology::VM_ID;
use crate::topology::{ClusterModel, Discovery, Lb, ListenerModel, RouteModel};
use crate::topology::{HTTP_PROTOCOL_OPTIONS, WASM_RUNTIME};
use envoy_types::pb::envoy::config::core::v3::Http2ProtocolOptions;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::{
    explicit_http_config::ProtocolConfig, ExplicitHttpConfig, UpstreamProtocolOptions,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
pub(super) const ROUTER: &str = "envoy.filters.http.router";
pub(super) const HEADER_MUTATION: &str = "envoy.filters.http.header_mutation";
pub(super) const UPSTREAM_CODEC: &str = "envoy.filters.http.upstream_codec";
const HCM: &str = "envoy.filters.network.http_connection_manager";

pub(super) fn ads() -> ConfigSource {
    ConfigSource {
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        resource_api_version: ApiVersion::V3 as i32,
        ..Default::default()
    }
}

pub(super) fn socket(host: &str, port: u16) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: host.to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(port))),
            ..Default::default()
        })),
    }
}

pub(super) fn seconds(seconds: i64) -> PbDuration {
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
pub fn wasm_extension(name: &str, wasm_path: &str, plugin_config: &str) -> TypedExtensionConfig {
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
                        specifier: Some(data_source::Specifier::Filename(wasm_path.to_string())),
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
                        type_urls: vec![<Wasm as prost::Name>::type_url()],
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
