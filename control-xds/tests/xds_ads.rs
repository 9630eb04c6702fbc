//! The ADS server over a real gRPC connection, driven by tonic clients that
//! play Envoy's part of the state-of-the-world and the delta protocol.

use std::net::SocketAddr;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster};
use envoy_types::pb::envoy::config::core::v3::{Locality, Node};
use envoy_types::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, LocalityLbEndpoints};
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use prost::Message;
use switchyard::xds::{to_any, AdsServer, References, ResourceType, Snapshot, SnapshotCache};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

const WAIT: Duration = Duration::from_secs(5);

struct Server {
    addr: SocketAddr,
    cache: SnapshotCache,
    _stop: oneshot::Sender<()>,
}

async fn start() -> Server {
    let cache = SnapshotCache::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = AdsServer::new(cache.clone());
    tokio::spawn(server.serve_listener(listener, async {
        let _ = stopped.await;
    }));
    Server {
        addr,
        cache,
        _stop: stop,
    }
}

/// Plays Envoy: sends discovery requests and reads responses on one stream.
struct FakeEnvoy {
    node: String,
    tx: mpsc::Sender<DiscoveryRequest>,
    rx: Streaming<DiscoveryResponse>,
    sent_node: bool,
}

impl FakeEnvoy {
    async fn connect(addr: SocketAddr, node: &str) -> Self {
        let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        let (tx, requests) = mpsc::channel(16);
        let rx = client
            .stream_aggregated_resources(ReceiverStream::new(requests))
            .await
            .unwrap()
            .into_inner();
        Self {
            node: node.into(),
            tx,
            rx,
            sent_node: false,
        }
    }

    async fn request(
        &mut self,
        kind: ResourceType,
        version: &str,
        nonce: &str,
        names: &[&str],
        error: Option<&str>,
    ) {
        // Like Envoy, only the first request of the stream carries the node.
        let node = (!self.sent_node).then(|| Node {
            id: self.node.clone(),
            cluster: "test".into(),
            ..Default::default()
        });
        self.sent_node = true;
        let request = DiscoveryRequest {
            version_info: version.into(),
            node,
            resource_names: names.iter().map(|s| s.to_string()).collect(),
            type_url: kind.type_url().into(),
            response_nonce: nonce.into(),
            error_detail: error.map(|message| RpcStatus {
                code: 3,
                message: message.into(),
                details: vec![],
            }),
            ..Default::default()
        };
        self.tx.send(request).await.unwrap();
    }

    /// Subscribes with an empty nonce.
    async fn subscribe(&mut self, kind: ResourceType, names: &[&str]) {
        self.request(kind, "", "", names, None).await;
    }

    async fn ack(&mut self, response: &DiscoveryResponse, names: &[&str]) {
        let kind = ResourceType::from_type_url(&response.type_url).unwrap();
        self.request(kind, &response.version_info, &response.nonce, names, None)
            .await;
    }

    async fn next(&mut self) -> DiscoveryResponse {
        tokio::time::timeout(WAIT, self.rx.message())
            .await
            .expect("a response within 5s")
            .unwrap()
            .expect("stream open")
    }

    async fn nothing_for(&mut self, wait: Duration) {
        if let Ok(message) = tokio::time::timeout(wait, self.rx.message()).await {
            panic!("unexpected message: {message:?}");
        }
    }
}

fn names(response: &DiscoveryResponse) -> Vec<String> {
    response
        .resources
        .iter()
        .map(|any| match ResourceType::from_type_url(&any.type_url) {
            Some(ResourceType::Cluster) => Cluster::decode(&*any.value).unwrap().name,
            Some(ResourceType::Endpoint) => {
                ClusterLoadAssignment::decode(&*any.value)
                    .unwrap()
                    .cluster_name
            }
            Some(ResourceType::Listener) => Listener::decode(&*any.value).unwrap().name,
            Some(ResourceType::Route) => RouteConfiguration::decode(&*any.value).unwrap().name,
            _ => panic!("unexpected resource {}", any.type_url),
        })
        .collect()
}

fn kind(response: &DiscoveryResponse) -> ResourceType {
    ResourceType::from_type_url(&response.type_url).unwrap()
}

fn eds_cluster(name: &str) -> (String, Any) {
    let c = Cluster {
        name: name.into(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        )),
        ..Default::default()
    };
    (name.into(), to_any(&c))
}

fn cla(name: &str) -> (String, Any) {
    let c = ClusterLoadAssignment {
        cluster_name: name.into(),
        ..Default::default()
    };
    (name.into(), to_any(&c))
}

fn listener(name: &str, stat_prefix: &str) -> (String, Any) {
    let l = Listener {
        name: name.into(),
        stat_prefix: stat_prefix.into(),
        ..Default::default()
    };
    (name.into(), to_any(&l))
}

fn route(name: &str) -> (String, Any) {
    let r = RouteConfiguration {
        name: name.into(),
        ..Default::default()
    };
    (name.into(), to_any(&r))
}

/// A snapshot whose every type has `version`, with EDS clusters `clusters`;
/// every resource's content names the version, so every type changes with it.
fn snapshot(version: &str, clusters: &[&str]) -> (Snapshot, References) {
    build_snapshot(version, clusters, version)
}

/// Like [`snapshot`], but only the listener's content changes with the
/// version (its stat prefix): clusters, assignments and the route stay the
/// same bytes.
fn stable_snapshot(version: &str, clusters: &[&str]) -> (Snapshot, References) {
    build_snapshot(version, clusters, "")
}

fn build_snapshot(version: &str, clusters: &[&str], tag: &str) -> (Snapshot, References) {
    let tagged = |(name, any): (String, Any), kind: ResourceType| -> (String, Any) {
        if tag.is_empty() {
            return (name, any);
        }
        let any = match kind {
            ResourceType::Cluster => {
                let mut c = Cluster::decode(&*any.value).unwrap();
                c.alt_stat_name = tag.into();
                to_any(&c)
            }
            ResourceType::Endpoint => {
                let mut c = ClusterLoadAssignment::decode(&*any.value).unwrap();
                c.endpoints = vec![LocalityLbEndpoints {
                    locality: Some(Locality {
                        zone: tag.into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }];
                to_any(&c)
            }
            ResourceType::Route => {
                let mut r = RouteConfiguration::decode(&*any.value).unwrap();
                r.internal_only_headers = vec![tag.into()];
                to_any(&r)
            }
            _ => any,
        };
        (name, any)
    };
    let snap = Snapshot::new()
        .with(
            ResourceType::Cluster,
            version,
            clusters
                .iter()
                .map(|c| tagged(eds_cluster(c), ResourceType::Cluster)),
        )
        .with(
            ResourceType::Endpoint,
            version,
            clusters
                .iter()
                .map(|c| tagged(cla(c), ResourceType::Endpoint)),
        )
        .with(ResourceType::Listener, version, [listener("main", version)])
        .with(
            ResourceType::Route,
            version,
            [tagged(route("main"), ResourceType::Route)],
        );
    let refs = References {
        clusters: clusters.iter().map(|c| c.to_string()).collect(),
        eds_clusters: clusters.iter().map(|c| c.to_string()).collect(),
        routes: ["main".to_string()].into(),
        extension_configs: Default::default(),
    };
    (snap, refs)
}

async fn wait_until(cache: &SnapshotCache, what: &str, ok: impl Fn(&SnapshotCache) -> bool) {
    for _ in 0..100 {
        if ok(cache) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}: {:#?}", cache.nodes());
}

fn acked(cache: &SnapshotCache, node: &str, kind: ResourceType) -> Option<String> {
    cache.node(node)?.types.get(&kind)?.acked_version.clone()
}

#[tokio::test]
async fn sotw_protocol_ack_nack_push_order_and_names() {
    let server = start().await;
    let (snap, refs) = snapshot("v1", &["a", "b", "c"]);
    server.cache.set_snapshot(snap, &refs).unwrap();
    let mut envoy = FakeEnvoy::connect(server.addr, "node-1").await;

    // First response: wildcard CDS gets every cluster.
    envoy.subscribe(ResourceType::Cluster, &[]).await;
    let cds = envoy.next().await;
    assert_eq!(kind(&cds), ResourceType::Cluster);
    assert_eq!(cds.version_info, "v1");
    assert_eq!(names(&cds), ["a", "b", "c"]);
    assert!(!cds.nonce.is_empty());
    let status = server.cache.node("node-1").unwrap();
    assert!(status.connected);
    assert_eq!(
        status.types[&ResourceType::Cluster].sent_nonce.as_deref(),
        Some(cds.nonce.as_str())
    );

    // ACK is recorded.
    envoy.ack(&cds, &[]).await;
    wait_until(&server.cache, "CDS ACK", |c| {
        acked(c, "node-1", ResourceType::Cluster).as_deref() == Some("v1")
    })
    .await;

    // EDS is named: only requested assignments are sent.
    envoy.subscribe(ResourceType::Endpoint, &["b"]).await;
    let eds = envoy.next().await;
    assert_eq!(
        (kind(&eds), names(&eds)),
        (ResourceType::Endpoint, vec!["b".into()])
    );
    envoy.ack(&eds, &["b"]).await;
    // Listeners route to clusters: none is sent while clusters a and c have no
    // endpoints at this Envoy yet.
    envoy.subscribe(ResourceType::Listener, &[]).await;
    envoy.nothing_for(Duration::from_millis(200)).await;
    // Changing the requested EDS names gets a response with the new names; once
    // it is ACKed every cluster is usable and the listener follows.
    envoy
        .request(
            ResourceType::Endpoint,
            "v1",
            &eds.nonce,
            &["a", "b", "c"],
            None,
        )
        .await;
    let eds = envoy.next().await;
    assert_eq!(names(&eds), ["a", "b", "c"]);
    envoy.nothing_for(Duration::from_millis(100)).await;
    envoy.ack(&eds, &["a", "b", "c"]).await;
    let lds = envoy.next().await;
    assert_eq!(
        (kind(&lds), names(&lds)),
        (ResourceType::Listener, vec!["main".into()])
    );
    envoy.ack(&lds, &[]).await;
    envoy.subscribe(ResourceType::Route, &["main"]).await;
    let rds = envoy.next().await;
    assert_eq!(names(&rds), ["main"]);
    envoy.ack(&rds, &["main"]).await;
    // An ACK with unchanged names and version gets no response.
    envoy.nothing_for(Duration::from_millis(200)).await;

    // A new snapshot: CDS and EDS first; listeners and routes once both are ACKed.
    let (snap, refs) = snapshot("v2", &["a", "b", "c"]);
    server.cache.set_snapshot(snap, &refs).unwrap();
    let cds = envoy.next().await;
    let eds2 = envoy.next().await;
    assert_eq!(
        (kind(&cds), kind(&eds2)),
        (ResourceType::Cluster, ResourceType::Endpoint)
    );
    assert_eq!(names(&eds2), ["a", "b", "c"]);
    envoy.nothing_for(Duration::from_millis(200)).await;

    // A stale nonce is ignored, even with new names.
    envoy
        .request(ResourceType::Endpoint, "v1", &eds.nonce, &["a"], None)
        .await;
    envoy.nothing_for(Duration::from_millis(200)).await;

    envoy.ack(&cds, &[]).await;
    envoy.nothing_for(Duration::from_millis(100)).await;
    envoy.ack(&eds2, &["a", "b", "c"]).await;
    let lds = envoy.next().await;
    let rds = envoy.next().await;
    assert_eq!(
        (kind(&lds), kind(&rds)),
        (ResourceType::Listener, ResourceType::Route)
    );
    assert!([&cds, &eds2, &lds, &rds]
        .iter()
        .all(|r| r.version_info == "v2"));

    // NACK of LDS v2: recorded with Envoy's message; the ACKed version stays.
    envoy
        .request(
            ResourceType::Listener,
            "v1",
            &lds.nonce,
            &[],
            Some("Error adding/updating listener(s) main: bad"),
        )
        .await;
    envoy.ack(&rds, &["main"]).await;
    wait_until(&server.cache, "LDS NACK", |c| {
        c.node("node-1")
            .and_then(|n| n.types.get(&ResourceType::Listener)?.last_nack.clone())
            .is_some()
    })
    .await;
    let status = server.cache.node("node-1").unwrap();
    let lds_status = &status.types[&ResourceType::Listener];
    let nack = lds_status.last_nack.as_ref().unwrap();
    assert_eq!(nack.version, "v2");
    assert_eq!(nack.nonce, lds.nonce);
    assert_eq!(nack.message, "Error adding/updating listener(s) main: bad");
    assert_eq!(nack.code, 3);
    assert_eq!(lds_status.acked_version.as_deref(), Some("v1"));
    wait_until(&server.cache, "RDS ACK v2", |c| {
        acked(c, "node-1", ResourceType::Route).as_deref() == Some("v2")
    })
    .await;
    // The NACKed version is not re-sent.
    envoy.nothing_for(Duration::from_millis(200)).await;

    // Dropping cluster "a": CDS keeps it until the rest of the push is
    // answered, then a final CDS removes it.
    let (snap, refs) = snapshot("v3", &["b", "c"]);
    server.cache.set_snapshot(snap, &refs).unwrap();
    let cds = envoy.next().await;
    assert_eq!(kind(&cds), ResourceType::Cluster);
    assert_eq!(cds.version_info, "v3+retiring");
    assert_eq!(names(&cds), ["a", "b", "c"]);
    let eds = envoy.next().await;
    assert_eq!(kind(&eds), ResourceType::Endpoint);
    envoy.ack(&cds, &[]).await;
    envoy.ack(&eds, &["a", "b", "c"]).await;
    let lds = envoy.next().await;
    let rds = envoy.next().await;
    envoy.ack(&lds, &[]).await;
    envoy.nothing_for(Duration::from_millis(200)).await;
    envoy.ack(&rds, &["main"]).await;
    let last = envoy.next().await;
    assert_eq!(kind(&last), ResourceType::Cluster);
    assert_eq!(last.version_info, "v3");
    assert_eq!(names(&last), ["b", "c"]);
    envoy.ack(&last, &[]).await;
    wait_until(&server.cache, "final CDS ACK", |c| {
        acked(c, "node-1", ResourceType::Cluster).as_deref() == Some("v3")
    })
    .await;

    // Closing the stream marks the node disconnected.
    drop(envoy);
    wait_until(&server.cache, "disconnect", |c| {
        c.node("node-1").is_some_and(|n| !n.connected)
    })
    .await;
}

/// Connects an Envoy that has everything of a snapshot with clusters `a`, `b`
/// and ACKed it; returns it with its last EDS response.
async fn settled_envoy(server: &Server, node: &str) -> (FakeEnvoy, DiscoveryResponse) {
    let mut envoy = FakeEnvoy::connect(server.addr, node).await;
    envoy.subscribe(ResourceType::Cluster, &[]).await;
    envoy.subscribe(ResourceType::Endpoint, &["a", "b"]).await;
    envoy.subscribe(ResourceType::Listener, &[]).await;
    let cds = envoy.next().await;
    let eds = envoy.next().await;
    envoy.ack(&cds, &[]).await;
    envoy.ack(&eds, &["a", "b"]).await;
    let lds = envoy.next().await;
    assert_eq!(kind(&lds), ResourceType::Listener);
    envoy.ack(&lds, &[]).await;
    (envoy, eds)
}

#[tokio::test]
async fn config_routing_to_a_new_cluster_waits_for_its_endpoints_at_this_envoy() {
    let server = start().await;
    let (snap, refs) = snapshot("v1", &["a", "b"]);
    server.cache.set_snapshot(snap, &refs).unwrap();
    let (mut envoy, _) = settled_envoy(&server, "node-1").await;
    let (mut other, _) = settled_envoy(&server, "node-2").await;

    // v2 adds cluster d. Both Envoys get CDS and EDS (d not yet subscribed).
    let (snap, refs) = snapshot("v2", &["a", "b", "d"]);
    server.cache.set_snapshot(snap, &refs).unwrap();
    let cds = envoy.next().await;
    let eds = envoy.next().await;
    assert_eq!(names(&cds), ["a", "b", "d"]);
    assert_eq!(names(&eds), ["a", "b"]);
    // CDS ACKed, and Envoy asks for d's endpoints in the EDS ACK.
    envoy.ack(&cds, &[]).await;
    envoy.ack(&eds, &["a", "b", "d"]).await;
    let eds = envoy.next().await;
    assert_eq!(
        (kind(&eds), names(&eds)),
        (
            ResourceType::Endpoint,
            vec!["a".into(), "b".into(), "d".into()]
        )
    );
    // Not ACKed yet: d may still be warming, so no listener.
    envoy.nothing_for(Duration::from_millis(200)).await;
    envoy.ack(&eds, &["a", "b", "d"]).await;
    let lds = envoy.next().await;
    assert_eq!(
        (kind(&lds), lds.version_info.as_str()),
        (ResourceType::Listener, "v2")
    );

    // The other Envoy, which has not answered, still has v1's listener.
    let other_status = server.cache.node("node-2").unwrap();
    assert_eq!(
        other_status.types[&ResourceType::Listener]
            .sent_version
            .as_deref(),
        Some("v1")
    );
    let cds2 = other.next().await;
    let eds2 = other.next().await;
    // A NACKed CDS holds the listener back.
    other
        .request(
            ResourceType::Cluster,
            "v1",
            &cds2.nonce,
            &[],
            Some("bad cluster d"),
        )
        .await;
    other.ack(&eds2, &["a", "b"]).await;
    other.nothing_for(Duration::from_millis(300)).await;
    assert_eq!(
        server.cache.node("node-2").unwrap().types[&ResourceType::Listener]
            .sent_version
            .as_deref(),
        Some("v1")
    );
}

#[tokio::test]
async fn a_new_dns_cluster_gets_its_warm_up_before_config_routes_to_it() {
    let server = start().await;
    let (snap, refs) = snapshot("v1", &["a"]);
    server.cache.set_snapshot(snap, &refs).unwrap();
    let mut envoy = FakeEnvoy::connect(server.addr, "node-1").await;
    envoy.subscribe(ResourceType::Cluster, &[]).await;
    envoy.subscribe(ResourceType::Endpoint, &["a"]).await;
    envoy.subscribe(ResourceType::Listener, &[]).await;
    let (cds, eds) = (envoy.next().await, envoy.next().await);
    envoy.ack(&cds, &[]).await;
    envoy.ack(&eds, &["a"]).await;
    let lds = envoy.next().await;
    envoy.ack(&lds, &[]).await;

    // v2 adds "dns", a STRICT_DNS cluster (no EDS): Envoy resolves it after the
    // CDS ACK, which xDS does not report, so the listener waits DNS_WARMUP.
    let (mut snap, refs) = snapshot("v2", &["a"]);
    let dns = Cluster {
        name: "dns".into(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::StrictDns as i32,
        )),
        ..Default::default()
    };
    snap.set(
        ResourceType::Cluster,
        "v2",
        [eds_cluster("a"), ("dns".to_string(), to_any(&dns))],
    );
    server.cache.set_snapshot(snap, &refs).unwrap();
    let (cds, eds) = (envoy.next().await, envoy.next().await);
    assert_eq!(names(&cds), ["a", "dns"]);
    envoy.ack(&eds, &["a"]).await;
    let acked_at = std::time::Instant::now();
    envoy.ack(&cds, &[]).await;
    let lds = envoy.next().await;
    assert_eq!(
        (kind(&lds), lds.version_info.as_str()),
        (ResourceType::Listener, "v2")
    );
    let waited = acked_at.elapsed();
    assert!(
        waited >= switchyard::xds::server::DNS_WARMUP,
        "listener after {waited:?}"
    );
}

#[tokio::test]
async fn subscriptions_before_the_first_snapshot_are_answered_when_it_arrives() {
    let server = start().await;
    let mut envoys = Vec::new();
    for i in 0..5 {
        let mut envoy = FakeEnvoy::connect(server.addr, &format!("node-{i}")).await;
        envoy.subscribe(ResourceType::Cluster, &[]).await;
        envoy.subscribe(ResourceType::Endpoint, &["a"]).await;
        envoy.subscribe(ResourceType::Listener, &[]).await;
        envoys.push(envoy);
    }
    wait_until(&server.cache, "5 nodes", |c| {
        c.nodes().iter().filter(|n| n.connected).count() == 5
    })
    .await;
    for envoy in &mut envoys {
        envoy.nothing_for(Duration::from_millis(50)).await;
    }
    let (snap, refs) = snapshot("v1", &["a"]);
    server.cache.set_snapshot(snap, &refs).unwrap();
    for envoy in &mut envoys {
        let cds = envoy.next().await;
        let eds = envoy.next().await;
        assert_eq!(
            (kind(&cds), kind(&eds)),
            (ResourceType::Cluster, ResourceType::Endpoint)
        );
        assert_eq!(cds.version_info, "v1");
        envoy.ack(&cds, &[]).await;
        envoy.ack(&eds, &["a"]).await;
        let lds = envoy.next().await;
        assert_eq!(kind(&lds), ResourceType::Listener);
    }
    for i in 0..5 {
        let node = format!("node-{i}");
        wait_until(&server.cache, "ACK from every node", |c| {
            acked(c, &node, ResourceType::Cluster).as_deref() == Some("v1")
        })
        .await;
    }
}

#[tokio::test]
async fn first_request_without_node_and_delta_are_refused() {
    let server = start().await;
    let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{}", server.addr))
        .await
        .unwrap();
    let request = DiscoveryRequest {
        type_url: ResourceType::Cluster.type_url().into(),
        ..Default::default()
    };
    let mut rx = client
        .stream_aggregated_resources(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let err = tokio::time::timeout(WAIT, rx.message())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    let mut rx = client
        .delta_aggregated_resources(tokio_stream::iter([DeltaDiscoveryRequest {
            type_url: ResourceType::Cluster.type_url().into(),
            ..Default::default()
        }]))
        .await
        .unwrap()
        .into_inner();
    let err = tokio::time::timeout(WAIT, rx.message())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}

/// State of the world: a snapshot that changes only the listener sends only
/// the listener, and the node status has every type at the new version.
#[tokio::test]
async fn sotw_does_not_resend_unchanged_types() {
    let server = start().await;
    let (snap, refs) = stable_snapshot("v1", &["a"]);
    server.cache.set_snapshot(snap, &refs).unwrap();
    let mut envoy = FakeEnvoy::connect(server.addr, "node-1").await;
    envoy.subscribe(ResourceType::Cluster, &[]).await;
    envoy.subscribe(ResourceType::Endpoint, &["a"]).await;
    envoy.subscribe(ResourceType::Listener, &[]).await;
    let (cds, eds) = (envoy.next().await, envoy.next().await);
    envoy.ack(&cds, &[]).await;
    envoy.ack(&eds, &["a"]).await;
    let lds = envoy.next().await;
    envoy.ack(&lds, &[]).await;
    envoy.subscribe(ResourceType::Route, &["main"]).await;
    let rds = envoy.next().await;
    envoy.ack(&rds, &["main"]).await;

    let (snap, refs) = stable_snapshot("v2", &["a"]);
    server.cache.set_snapshot(snap, &refs).unwrap();
    let lds = envoy.next().await;
    assert_eq!(
        (kind(&lds), lds.version_info.as_str()),
        (ResourceType::Listener, "v2")
    );
    envoy.ack(&lds, &[]).await;
    envoy.nothing_for(Duration::from_millis(200)).await;
    wait_until(&server.cache, "every type at v2", |c| {
        [
            ResourceType::Cluster,
            ResourceType::Endpoint,
            ResourceType::Listener,
            ResourceType::Route,
        ]
        .iter()
        .all(|k| acked(c, "node-1", *k).as_deref() == Some("v2"))
    })
    .await;
    // a request that changes names is answered even when nothing changed
    envoy.ack(&rds, &["main", "other"]).await;
    let again = envoy.next().await;
    assert_eq!(
        (kind(&again), again.version_info.as_str()),
        (ResourceType::Route, "v2")
    );
}

/// Plays Envoy on a delta xDS stream.
struct DeltaEnvoy {
    node: String,
    tx: mpsc::Sender<DeltaDiscoveryRequest>,
    rx: Streaming<DeltaDiscoveryResponse>,
    sent_node: bool,
}

impl DeltaEnvoy {
    async fn connect(addr: SocketAddr, node: &str) -> Self {
        let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        let (tx, requests) = mpsc::channel(16);
        let rx = client
            .delta_aggregated_resources(ReceiverStream::new(requests))
            .await
            .unwrap()
            .into_inner();
        Self {
            node: node.into(),
            tx,
            rx,
            sent_node: false,
        }
    }

    async fn send(&mut self, mut request: DeltaDiscoveryRequest) {
        if !self.sent_node {
            request.node = Some(Node {
                id: self.node.clone(),
                cluster: "test".into(),
                ..Default::default()
            });
            self.sent_node = true;
        }
        self.tx.send(request).await.unwrap();
    }

    async fn subscribe(&mut self, kind: ResourceType, names: &[&str]) {
        self.send(DeltaDiscoveryRequest {
            type_url: kind.type_url().into(),
            resource_names_subscribe: names.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .await;
    }

    async fn answer(&mut self, response: &DeltaDiscoveryResponse, error: Option<&str>) {
        self.send(DeltaDiscoveryRequest {
            type_url: response.type_url.clone(),
            response_nonce: response.nonce.clone(),
            error_detail: error.map(|message| RpcStatus {
                code: 3,
                message: message.into(),
                details: vec![],
            }),
            ..Default::default()
        })
        .await;
    }

    async fn next(&mut self) -> DeltaDiscoveryResponse {
        tokio::time::timeout(WAIT, self.rx.message())
            .await
            .expect("a response within 5s")
            .unwrap()
            .expect("stream open")
    }

    async fn nothing_for(&mut self, wait: Duration) {
        if let Ok(message) = tokio::time::timeout(wait, self.rx.message()).await {
            panic!("unexpected message: {message:?}");
        }
    }
}

fn delta_kind(r: &DeltaDiscoveryResponse) -> ResourceType {
    ResourceType::from_type_url(&r.type_url).unwrap()
}

fn delta_names(r: &DeltaDiscoveryResponse) -> Vec<&str> {
    r.resources.iter().map(|x| x.name.as_str()).collect()
}

/// Delta: only what changed is sent, removals wait until nothing routes to the
/// removed cluster, types without changes are still at the new version in the
/// node status, and a reconnect with `initial_resource_versions` gets only the
/// difference.
#[tokio::test]
async fn delta_protocol_sends_changes_only_and_keeps_the_push_order() {
    let server = start().await;
    let (s1, r1) = stable_snapshot("1", &["a", "b"]);
    server.cache.set_snapshot(s1, &r1).unwrap();
    let node = "delta-1";
    let mut envoy = DeltaEnvoy::connect(server.addr, node).await;
    envoy.subscribe(ResourceType::Cluster, &[]).await;
    let cds = envoy.next().await;
    assert_eq!(
        (delta_kind(&cds), cds.system_version_info.as_str()),
        (ResourceType::Cluster, "1")
    );
    assert_eq!(delta_names(&cds), ["a", "b"]);
    assert!(cds.resources.iter().all(|r| !r.version.is_empty()));
    // like Envoy: the EDS subscription for the new clusters, then the CDS ACK
    envoy.subscribe(ResourceType::Endpoint, &["a", "b"]).await;
    envoy.answer(&cds, None).await;
    let eds = envoy.next().await;
    assert_eq!(delta_kind(&eds), ResourceType::Endpoint);
    assert_eq!(delta_names(&eds), ["a", "b"]);
    envoy.answer(&eds, None).await;
    envoy.subscribe(ResourceType::Listener, &[]).await;
    let lds = envoy.next().await;
    assert_eq!(delta_names(&lds), ["main"]);
    envoy.answer(&lds, None).await;
    envoy.subscribe(ResourceType::Route, &["main"]).await;
    let rds = envoy.next().await;
    assert_eq!(delta_names(&rds), ["main"]);
    envoy.answer(&rds, None).await;
    wait_until(&server.cache, "every type ACKed at 1", |c| {
        [
            ResourceType::Cluster,
            ResourceType::Endpoint,
            ResourceType::Listener,
            ResourceType::Route,
        ]
        .iter()
        .all(|k| acked(c, node, *k).as_deref() == Some("1"))
    })
    .await;

    // b goes, c comes; the listener changes (its stat prefix is the version),
    // the route does not.
    let (s2, r2) = stable_snapshot("2", &["a", "c"]);
    server.cache.set_snapshot(s2, &r2).unwrap();
    let cds = envoy.next().await;
    assert_eq!(delta_kind(&cds), ResourceType::Cluster);
    assert_eq!(cds.system_version_info, "2+retiring");
    assert_eq!(delta_names(&cds), ["c"], "only the new cluster");
    assert!(cds.removed_resources.is_empty(), "b is removed later");
    // EDS: a's assignment did not change and c is not subscribed yet: nothing
    envoy.subscribe(ResourceType::Endpoint, &["c"]).await;
    envoy.answer(&cds, None).await;
    let eds = envoy.next().await;
    assert_eq!(delta_kind(&eds), ResourceType::Endpoint);
    assert_eq!(delta_names(&eds), ["c"]);
    envoy.answer(&eds, None).await;
    // routable: the changed listener; the unchanged route is not re-sent
    let lds = envoy.next().await;
    assert_eq!(delta_kind(&lds), ResourceType::Listener);
    assert_eq!(lds.system_version_info, "2");
    envoy.answer(&lds, None).await;
    // now nothing routes to b: its removal
    let cds = envoy.next().await;
    assert_eq!(
        (delta_kind(&cds), cds.system_version_info.as_str()),
        (ResourceType::Cluster, "2")
    );
    assert!(cds.resources.is_empty());
    assert_eq!(cds.removed_resources, ["b"]);
    envoy.answer(&cds, None).await;
    envoy.nothing_for(Duration::from_millis(200)).await;
    wait_until(
        &server.cache,
        "every type at 2, RDS without a response",
        |c| {
            [
                ResourceType::Cluster,
                ResourceType::Endpoint,
                ResourceType::Listener,
                ResourceType::Route,
            ]
            .iter()
            .all(|k| acked(c, node, *k).as_deref() == Some("2"))
        },
    )
    .await;

    // a NACK is recorded with the version it rejected
    let (s3, r3) = stable_snapshot("3", &["a", "c", "d"]);
    server.cache.set_snapshot(s3, &r3).unwrap();
    let cds = envoy.next().await;
    assert_eq!(delta_names(&cds), ["d"]);
    envoy.answer(&cds, Some("bad cluster d")).await;
    wait_until(&server.cache, "the NACK", |c| {
        c.node(node)
            .and_then(|n| n.types.get(&ResourceType::Cluster)?.last_nack.clone())
            .is_some_and(|n| n.version == "3" && n.message == "bad cluster d")
    })
    .await;
    // a NACKed CDS holds the rest of the push back
    envoy.nothing_for(Duration::from_millis(200)).await;

    // a reconnecting Envoy says what it has: only the difference comes
    drop(envoy);
    let mut again = DeltaEnvoy::connect(server.addr, "delta-2").await;
    let have: std::collections::HashMap<String, String> = {
        let snap = server.cache.snapshot().unwrap();
        let versions = &snap.resources(ResourceType::Cluster).versions;
        [
            ("a".to_string(), versions["a"].clone()),
            ("c".to_string(), "stale".to_string()),
            ("b".to_string(), "old".to_string()),
        ]
        .into()
    };
    again
        .send(DeltaDiscoveryRequest {
            type_url: ResourceType::Cluster.type_url().into(),
            initial_resource_versions: have,
            ..Default::default()
        })
        .await;
    let cds = again.next().await;
    assert_eq!(cds.system_version_info, "3");
    assert_eq!(delta_names(&cds), ["c", "d"], "a is current; c is stale");
    assert_eq!(cds.removed_resources, ["b"]);
}
