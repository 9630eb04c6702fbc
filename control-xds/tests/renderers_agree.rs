//! The static bootstrap (`render envoy`) and the ADS snapshot (`serve`) are two
//! renderings of one topology (`switchyard::topology`): read back from what each
//! renderer wrote, they must describe the same listeners, filters, routes and
//! clusters — names, addresses, modes, plugin configurations, LB policies, hash
//! keys, balance factors, timeouts, endpoints, removed headers.

use std::path::Path;

use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster};
use envoy_types::pb::envoy::config::common::mutation_rules::v3::header_mutation;
use envoy_types::pb::envoy::config::core::v3::{
    address, async_data_source, data_source, socket_address, Address, TypedExtensionConfig,
};
use envoy_types::pb::envoy::config::endpoint::v3::{lb_endpoint, ClusterLoadAssignment};
use envoy_types::pb::envoy::config::listener::v3::{filter, Listener};
use envoy_types::pb::envoy::config::route::v3::{route, route_action, RouteConfiguration};
use envoy_types::pb::envoy::extensions::filters::http::header_mutation::v3::HeaderMutation;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::http::wasm::v3::Wasm;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager, http_filter, HttpConnectionManager,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::{
    explicit_http_config::ProtocolConfig, ExplicitHttpConfig, UpstreamProtocolOptions,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use envoy_types::pb::envoy::extensions::wasm::v3::{plugin_config, FailurePolicy};
use envoy_types::pb::google::protobuf::StringValue;
use prost::Message;
use serde_json::{json, Value};
use switchyard::render::{render_envoy, RenderOptions};
use switchyard::snapshot_builder::{build_snapshot, BuildOptions};
use switchyard::xds::{ResourceType, Snapshot};
use switchyard_engine::context::ContextKey;
use switchyard_engine::{Index, PluginConfig, Resource, Settings};

/// What a proxy is asked to run, in one neutral form both renderings map to.
#[derive(Debug, PartialEq)]
struct View {
    listeners: Vec<Value>,
    clusters: Vec<Value>,
}

fn key() -> ContextKey {
    ContextKey {
        kid: "k1".into(),
        secret: "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into(),
    }
}

const WASM: &str = "/opt/switchyard_filter.wasm";
const HPO: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

fn seconds(s: &str) -> i64 {
    s.trim_end_matches('s').parse().unwrap()
}

fn static_view(resources: &[Resource], index: &Index) -> View {
    let plugin = PluginConfig {
        settings: Settings {
            context_keys: vec![key()],
            ..Settings::default()
        },
        resources: resources.to_vec(),
    };
    let opts = RenderOptions {
        wasm_path: WASM.into(),
        native_path: None,
        listen: ("0.0.0.0".into(), 10000),
        admin: ("127.0.0.1".into(), 9901),
        internal_listen: Some(("127.0.0.1".into(), 10001)),
        pull_from: None,
        node_id: "n".into(),
    };
    let boot = render_envoy(&plugin, index, &opts);
    let listeners = boot["static_resources"]["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let hcm = &l["filter_chains"][0]["filters"][0]["typed_config"];
            let wasm = &hcm["http_filters"][0];
            let config = &wasm["typed_config"]["config"];
            let router = &hcm["http_filters"][1]["typed_config"];
            let route = &hcm["route_config"]["virtual_hosts"][0]["routes"][0];
            json!({
                "name": l["name"],
                "address": [l["address"]["socket_address"]["address"], l["address"]["socket_address"]["port_value"]],
                "hcm": [hcm["stat_prefix"], hcm["normalize_path"], hcm["merge_slashes"], hcm["path_with_escaped_slashes_action"]],
                "route_config": hcm["route_config"]["name"],
                "domains": hcm["route_config"]["virtual_hosts"][0]["domains"],
                "filter": {
                    "name": wasm["name"],
                    "root_id": config["root_id"],
                    "vm_id": config["vm_config"]["vm_id"],
                    "runtime": config["vm_config"]["runtime"],
                    "code": config["vm_config"]["code"]["local"]["filename"],
                    "failure_policy": config["failure_policy"],
                    "plugin": serde_json::from_str::<Value>(config["configuration"]["value"].as_str().unwrap()).unwrap(),
                },
                "route": {
                    "prefix": route["match"]["prefix"],
                    "remove": route["request_headers_to_remove"],
                    "cluster_header": route["route"]["cluster_header"],
                    "hash_header": route["route"]["hash_policy"][0]["header"]["header_name"],
                    "timeout": seconds(route["route"]["timeout"].as_str().unwrap()),
                },
                "upstream_filters": router["upstream_http_filters"].as_array().unwrap().iter().map(|f| f["name"].clone()).collect::<Vec<_>>(),
                "upstream_remove": router["upstream_http_filters"][0]["typed_config"]["mutations"]["request_mutations"][0]["remove"],
            })
        })
        .collect();
    let clusters = boot["static_resources"]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let endpoints: Vec<Value> = c["load_assignment"]["endpoints"][0]["lb_endpoints"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    let s = &e["endpoint"]["address"]["socket_address"];
                    json!([s["address"], s["port_value"]])
                })
                .collect();
            json!({
                "name": c["name"],
                "dns": c["type"] == "STRICT_DNS",
                "lb": c["lb_policy"],
                "balance": c["common_lb_config"]["consistent_hashing_lb_config"]["hash_balance_factor"],
                "connect_timeout": seconds(c["connect_timeout"].as_str().unwrap()),
                "endpoints": endpoints,
                "http2": c["typed_extension_protocol_options"][HPO]["explicit_http_config"]["http2_protocol_options"].is_object(),
            })
        })
        .collect();
    View {
        listeners,
        clusters,
    }
}

fn decode<M: Message + Default>(snapshot: &Snapshot, kind: ResourceType, name: &str) -> M {
    M::decode(snapshot.resources(kind).items[name].value.as_slice()).unwrap()
}

fn addr(a: &Option<Address>) -> Value {
    match a {
        Some(Address {
            address: Some(address::Address::SocketAddress(s)),
        }) => match s.port_specifier {
            Some(socket_address::PortSpecifier::PortValue(p)) => json!([s.address, p]),
            _ => Value::Null,
        },
        _ => Value::Null,
    }
}

fn endpoints(cla: &ClusterLoadAssignment) -> Vec<Value> {
    cla.endpoints[0]
        .lb_endpoints
        .iter()
        .map(|e| match &e.host_identifier {
            Some(lb_endpoint::HostIdentifier::Endpoint(ep)) => addr(&ep.address),
            _ => Value::Null,
        })
        .collect()
}

fn ads_view(resources: &[Resource]) -> View {
    let opts = BuildOptions {
        wasm_path: WASM.into(),
        native_path: None,
        genesis_listen: ("0.0.0.0".into(), 10000),
        internal_listen: Some(("127.0.0.1".into(), 10001)),
        context_keys: vec![key()],
    };
    let (snapshot, _, _) = build_snapshot(resources, &opts, "1").unwrap();
    let mut listeners = Vec::new();
    // The snapshot keys resources by name; the bootstrap lists them in order.
    for name in ["switchyard_genesis", "switchyard_internal"] {
        let l: Listener = decode(&snapshot, ResourceType::Listener, name);
        let Some(filter::ConfigType::TypedConfig(any)) =
            l.filter_chains[0].filters[0].config_type.clone()
        else {
            panic!("no HCM")
        };
        let hcm = HttpConnectionManager::decode(any.value.as_slice()).unwrap();
        let Some(http_connection_manager::RouteSpecifier::Rds(rds)) = &hcm.route_specifier else {
            panic!("no RDS")
        };
        let rc: RouteConfiguration = decode(&snapshot, ResourceType::Route, &rds.route_config_name);
        let route = &rc.virtual_hosts[0].routes[0];
        let Some(route::Action::Route(action)) = &route.action else {
            panic!("no route action")
        };
        let Some(route_action::ClusterSpecifier::ClusterHeader(cluster_header)) =
            &action.cluster_specifier
        else {
            panic!("no cluster header")
        };
        let Some(route_action::hash_policy::PolicySpecifier::Header(hash)) =
            &action.hash_policy[0].policy_specifier
        else {
            panic!("no hash header")
        };
        let filter_name = hcm.http_filters[0].name.clone();
        let ext: TypedExtensionConfig =
            decode(&snapshot, ResourceType::ExtensionConfig, &filter_name);
        let config = Wasm::decode(ext.typed_config.unwrap().value.as_slice())
            .unwrap()
            .config
            .unwrap();
        let Some(plugin_config::Vm::VmConfig(vm)) = &config.vm else {
            panic!("no vm")
        };
        let Some(async_data_source::Specifier::Local(local)) =
            vm.code.as_ref().and_then(|c| c.specifier.clone())
        else {
            panic!("no local code")
        };
        let Some(data_source::Specifier::Filename(code)) = local.specifier else {
            panic!("no filename")
        };
        let plugin_json = StringValue::decode(config.configuration.unwrap().value.as_slice())
            .unwrap()
            .value;
        let Some(http_filter::ConfigType::TypedConfig(router_any)) =
            hcm.http_filters[1].config_type.clone()
        else {
            panic!("router config")
        };
        let router = Router::decode(router_any.value.as_slice()).unwrap();
        let Some(http_filter::ConfigType::TypedConfig(m)) =
            router.upstream_http_filters[0].config_type.clone()
        else {
            panic!("mutation config")
        };
        let removed = HeaderMutation::decode(m.value.as_slice())
            .unwrap()
            .mutations
            .unwrap()
            .request_mutations;
        let Some(header_mutation::Action::Remove(upstream_remove)) = &removed[0].action else {
            panic!("no removal")
        };
        let path_action = match hcm.path_with_escaped_slashes_action() {
            http_connection_manager::PathWithEscapedSlashesAction::KeepUnchanged => {
                "KEEP_UNCHANGED"
            }
            _ => "other",
        };
        listeners.push(json!({
            "name": l.name,
            "address": addr(&l.address),
            "hcm": [hcm.stat_prefix, hcm.normalize_path.map(|b| b.value), hcm.merge_slashes, path_action],
            "route_config": rc.name,
            "domains": rc.virtual_hosts[0].domains,
            "filter": {
                "name": filter_name,
                "root_id": config.root_id,
                "vm_id": vm.vm_id,
                "runtime": vm.runtime,
                "code": code,
                "failure_policy": if config.failure_policy == FailurePolicy::FailReload as i32 { "FAIL_RELOAD" } else { "other" },
                "plugin": serde_json::from_str::<Value>(&plugin_json).unwrap(),
            },
            "route": {
                "prefix": match &route.r#match.as_ref().unwrap().path_specifier {
                    Some(envoy_types::pb::envoy::config::route::v3::route_match::PathSpecifier::Prefix(p)) => json!(p),
                    _ => Value::Null,
                },
                "remove": route.request_headers_to_remove,
                "cluster_header": cluster_header,
                "hash_header": hash.header_name,
                "timeout": action.timeout.as_ref().unwrap().seconds,
            },
            "upstream_filters": router.upstream_http_filters.iter().map(|f| f.name.clone()).collect::<Vec<_>>(),
            "upstream_remove": upstream_remove,
        }));
    }
    let clusters = snapshot
        .resources(ResourceType::Cluster)
        .items
        .keys()
        .map(|name| {
            let c: Cluster = decode(&snapshot, ResourceType::Cluster, name);
            let eds = c.cluster_discovery_type
                == Some(cluster::ClusterDiscoveryType::Type(
                    cluster::DiscoveryType::Eds as i32,
                ));
            let cla = if eds {
                decode(&snapshot, ResourceType::Endpoint, name)
            } else {
                c.load_assignment.clone().unwrap()
            };
            let lb = match c.lb_policy() {
                cluster::LbPolicy::RoundRobin => "ROUND_ROBIN",
                cluster::LbPolicy::LeastRequest => "LEAST_REQUEST",
                cluster::LbPolicy::Maglev => "MAGLEV",
                _ => "other",
            };
            json!({
                "name": c.name,
                "dns": !eds,
                "lb": lb,
                "balance": c.common_lb_config.and_then(|l| l.consistent_hashing_lb_config).and_then(|h| h.hash_balance_factor).map(|f| f.value),
                "connect_timeout": c.connect_timeout.unwrap().seconds,
                "endpoints": endpoints(&cla),
                "http2": c.typed_extension_protocol_options.get(HPO).is_some_and(|any| {
                    matches!(
                        HttpProtocolOptions::decode(any.value.as_slice()).unwrap().upstream_protocol_options,
                        Some(UpstreamProtocolOptions::ExplicitHttpConfig(ExplicitHttpConfig {
                            protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(_)),
                        }))
                    )
                }),
            })
        })
        .collect();
    View {
        listeners,
        clusters,
    }
}

fn sorted(mut v: Vec<Value>) -> Vec<Value> {
    v.sort_by_key(|c| c["name"].as_str().unwrap_or_default().to_string());
    v
}

fn check(resources: Vec<Resource>) {
    let plugin = PluginConfig {
        settings: Settings::default(),
        resources: resources.clone(),
    };
    let index = Index::compile(&plugin).unwrap();
    let mut s = static_view(&resources, &index);
    let mut a = ads_view(&resources);
    s.clusters = sorted(s.clusters);
    a.clusters = sorted(a.clusters);
    assert!(!s.clusters.is_empty());
    assert_eq!(s.listeners.len(), 2);
    assert_eq!(s.listeners.len(), a.listeners.len());
    assert_eq!(s.clusters.len(), a.clusters.len());
    for (static_one, ads_one) in s.listeners.iter().zip(&a.listeners) {
        assert_eq!(static_one, ads_one, "listener {}", static_one["name"]);
    }
    for (static_one, ads_one) in s.clusters.iter().zip(&a.clusters) {
        assert_eq!(static_one, ads_one, "cluster {}", static_one["name"]);
    }
}

fn example(path: &str) -> Vec<Resource> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    switchyard::load::load_path(&root.join(path))
        .unwrap()
        .into_iter()
        .map(|d| d.resource)
        .collect()
}

#[test]
fn hello_world_and_canary_render_the_same_topology() {
    check(example("examples/hello-world/resources.yaml"));
    check(example("examples/canary/resources.yaml"));
}

#[test]
fn every_lb_policy_and_dns_endpoints_render_the_same() {
    let docs = json!([
        {"kind": "Environment", "metadata": {"name": "dev"},
         "spec": {"subPath": "dev", "defaultVirtualEnvironment": "a"}},
        {"kind": "VirtualEnvironment", "metadata": {"name": "a"},
         "spec": {"environment": "dev", "release": {"apps": {"shop": "shop-v1"}}}},
        {"kind": "AppDeployment", "metadata": {"name": "shop-v1"},
         "spec": {"app": "shop", "version": "v1", "components": {
            "web": {"version": "w1", "endpoints": ["127.0.0.1:9101", "127.0.0.2:9102"],
                    "routes": [{"match": {"pathPrefix": "/"}}], "dependencies": ["cart", "pay"]},
            "cart": {"version": "c1", "endpoints": ["cart.shop.svc.cluster.local:8080"],
                     "routes": [{"match": {"pathPrefix": "/cart"},
                                 "options": {"loadbalancing": "least-connection"}}],
                     "options": {"loadbalancing": "hash", "hash_header": "tenant-id", "hash_balance": 1.25}},
            "pay": {"version": "p1", "endpoints": ["127.0.0.1:9301"], "protocol": "grpc",
                    "routes": [{"match": {"pathPrefix": "/pay"}}],
                    "options": {"loadbalancing": "hash", "hash_header": "user"}}
         }}}
    ]);
    let resources: Vec<Resource> = serde_json::from_value(docs).unwrap();
    check(resources.clone());
    // The view is not vacuous: it sees the policies and balance factors.
    let plugin = PluginConfig {
        settings: Settings::default(),
        resources: resources.clone(),
    };
    let index = Index::compile(&plugin).unwrap();
    let view = static_view(&resources, &index);
    let lbs: Vec<(&str, &Value)> = view
        .clusters
        .iter()
        .map(|c| (c["lb"].as_str().unwrap(), &c["balance"]))
        .collect();
    assert!(lbs.contains(&("MAGLEV", &json!(125))));
    assert!(lbs.contains(&("MAGLEV", &Value::Null)));
    assert!(lbs.iter().any(|(lb, _)| *lb == "LEAST_REQUEST"));
    assert!(view.clusters.iter().any(|c| c["dns"] == true));
    // The gRPC component's upstreams (hash and twin) speak HTTP/2, the others not.
    let http2: Vec<&str> = view
        .clusters
        .iter()
        .filter(|c| c["http2"] == true)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        http2,
        ["shop/pay/p1/hash-user-0", "shop/pay/p1/round-robin"]
    );
}
