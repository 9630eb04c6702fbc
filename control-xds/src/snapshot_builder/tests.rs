//! The snapshot builder's tests: each resource type's protobuf, checked
//! field by field against what Envoy 1.40 needs.

use super::encode::{ads, seconds, socket, HEADER_MUTATION, ROUTER, UPSTREAM_CODEC};
use super::*;
use crate::topology::ClusterModel;
use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster};
use envoy_types::pb::envoy::config::common::mutation_rules::v3::header_mutation;
use envoy_types::pb::envoy::config::core::v3::TypedExtensionConfig;
use envoy_types::pb::envoy::config::core::v3::{
    address, async_data_source, data_source, socket_address, Address, DataSource,
};
use envoy_types::pb::envoy::config::endpoint::v3::{lb_endpoint, ClusterLoadAssignment, Endpoint};
use envoy_types::pb::envoy::config::listener::v3::{filter, Listener};
use envoy_types::pb::envoy::config::route::v3::{route, route_action, RouteConfiguration};
use envoy_types::pb::envoy::extensions::filters::http::header_mutation::v3::HeaderMutation;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::http::wasm::v3::Wasm;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager, http_filter, HttpConnectionManager, Rds,
};
use envoy_types::pb::envoy::extensions::wasm::v3::{
    plugin_config, FailurePolicy, PluginConfig as WasmPluginConfig,
};
use envoy_types::pb::google::protobuf::{BoolValue, StringValue};
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
    let (snapshot, refs, index) = build_snapshot(&resources(vec![]), &opts(false), "7").unwrap();
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
            ["type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"]
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
