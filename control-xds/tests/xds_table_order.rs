//! The two filter tables in order (issue 22): when one push changes both the
//! internal and the genesis table, the ADS server sends the internal table
//! alone first and the genesis table only once that response is ACKed — with
//! state-of-the-world and delta xDS. Driven over a real gRPC connection by a
//! client playing Envoy's part.

use std::net::SocketAddr;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::{Node, TypedExtensionConfig};
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
const GENESIS: &str = "switchyard";
const INTERNAL: &str = "switchyard-internal";
const ECDS: ResourceType = ResourceType::ExtensionConfig;

async fn start() -> (SocketAddr, SnapshotCache, oneshot::Sender<()>) {
    let cache = SnapshotCache::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(
        AdsServer::new(cache.clone()).serve_listener(listener, async {
            let _ = stopped.await;
        }),
    );
    (addr, cache, stop)
}

/// A table whose bytes name `content`.
fn table(name: &str, content: &str) -> (String, Any) {
    let config = TypedExtensionConfig {
        name: name.into(),
        typed_config: Some(Any {
            type_url: "type.googleapis.com/google.protobuf.StringValue".into(),
            value: content.as_bytes().to_vec(),
        }),
    };
    (name.into(), to_any(&config))
}

/// Snapshot `version` with the genesis table at `genesis` and the internal at `internal`.
fn tables(cache: &SnapshotCache, version: &str, genesis: &str, internal: &str) {
    // Every snapshot has a CDS version (this client does not subscribe to CDS).
    let snap = Snapshot::new()
        .with(ResourceType::Cluster, version, std::iter::empty())
        .with(
            ECDS,
            version,
            [table(GENESIS, genesis), table(INTERNAL, internal)],
        )
        // As `build_snapshot` orders Switchyard's two filter tables.
        .with_extension_order(INTERNAL, GENESIS);
    cache.set_snapshot(snap, &References::default()).unwrap();
}

fn contents(resources: &[Any]) -> Vec<String> {
    resources
        .iter()
        .map(|any| {
            let t = TypedExtensionConfig::decode(&*any.value).unwrap();
            let value = t.typed_config.unwrap().value;
            format!("{}={}", t.name, String::from_utf8(value).unwrap())
        })
        .collect()
}

fn node() -> Option<Node> {
    Some(Node {
        id: "tables".into(),
        cluster: "test".into(),
        ..Default::default()
    })
}

struct Sotw {
    tx: mpsc::Sender<DiscoveryRequest>,
    rx: Streaming<DiscoveryResponse>,
}

impl Sotw {
    async fn connect(addr: SocketAddr) -> Self {
        let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        let (tx, requests) = mpsc::channel(16);
        let rx = client
            .stream_aggregated_resources(ReceiverStream::new(requests))
            .await
            .unwrap()
            .into_inner();
        let s = Sotw { tx, rx };
        s.send("", "", None, node()).await;
        s
    }

    async fn send(&self, version: &str, nonce: &str, error: Option<&str>, node: Option<Node>) {
        let request = DiscoveryRequest {
            version_info: version.into(),
            node,
            resource_names: vec![GENESIS.into(), INTERNAL.into()],
            type_url: ECDS.type_url().into(),
            response_nonce: nonce.into(),
            error_detail: error.map(|m| RpcStatus {
                code: 3,
                message: m.into(),
                details: vec![],
            }),
            ..Default::default()
        };
        self.tx.send(request).await.unwrap();
    }

    async fn next(&mut self) -> (String, Vec<String>, String) {
        let r = tokio::time::timeout(WAIT, self.rx.message())
            .await
            .expect("a response within 5s")
            .unwrap()
            .expect("stream open");
        (r.version_info, contents(&r.resources), r.nonce)
    }

    async fn ack(&mut self, version: &str, nonce: &str) {
        self.send(version, nonce, None, None).await;
    }

    async fn nothing_for(&mut self, wait: Duration) {
        if let Ok(m) = tokio::time::timeout(wait, self.rx.message()).await {
            panic!("unexpected message: {m:?}");
        }
    }
}

#[tokio::test]
async fn sotw_sends_the_internal_table_first_and_genesis_after_its_ack() {
    let (addr, cache, _stop) = start().await;
    tables(&cache, "1", "g1", "i1");
    let mut envoy = Sotw::connect(addr).await;
    // The first subscription gets both at once: Envoy has no table yet.
    let (v, got, nonce) = envoy.next().await;
    assert_eq!(
        (v.as_str(), got),
        (
            "1",
            vec!["switchyard=g1".into(), "switchyard-internal=i1".into()]
        )
    );
    envoy.ack(&v, &nonce).await;

    tables(&cache, "2", "g2", "i2");
    let (v, got, nonce) = envoy.next().await;
    assert_eq!(
        (v.as_str(), got),
        ("2+internal-first", vec!["switchyard-internal=i2".into()])
    );
    envoy.nothing_for(Duration::from_millis(300)).await;
    envoy.ack(&v, &nonce).await;
    let (v, got, nonce) = envoy.next().await;
    assert_eq!(v, "2");
    assert!(got.contains(&"switchyard=g2".to_string()), "{got:?}");
    envoy.ack(&v, &nonce).await;

    // One table changing goes at once.
    tables(&cache, "3", "g3", "i2");
    let (v, got, nonce) = envoy.next().await;
    assert_eq!(v, "3");
    assert!(got.contains(&"switchyard=g3".to_string()), "{got:?}");
    envoy.ack(&v, &nonce).await;

    // A newer push while the internal table is on its way: still internal first.
    tables(&cache, "4", "g4", "i4");
    let (v, got, _) = envoy.next().await;
    assert_eq!(
        (v.as_str(), got),
        ("4+internal-first", vec!["switchyard-internal=i4".into()])
    );
    tables(&cache, "5", "g5", "i5");
    let (v, got, nonce) = envoy.next().await;
    assert_eq!(
        (v.as_str(), got),
        ("5+internal-first", vec!["switchyard-internal=i5".into()])
    );
    envoy.ack(&v, &nonce).await;
    let (v, got, _) = envoy.next().await;
    assert_eq!(v, "5");
    assert!(got.contains(&"switchyard=g5".to_string()), "{got:?}");
}

#[tokio::test]
async fn sotw_a_nacked_internal_table_is_not_followed_by_genesis_alone() {
    let (addr, cache, _stop) = start().await;
    tables(&cache, "1", "g1", "i1");
    let mut envoy = Sotw::connect(addr).await;
    let (v, _, nonce) = envoy.next().await;
    envoy.ack(&v, &nonce).await;
    tables(&cache, "2", "g2", "i2");
    let (v, _, nonce) = envoy.next().await;
    assert_eq!(v, "2+internal-first");
    envoy.send("1", &nonce, Some("bad table"), None).await;
    // After a NACK the whole version goes (as any NACKed version: once).
    let (v, got, nonce) = envoy.next().await;
    assert_eq!(v, "2");
    assert_eq!(got.len(), 2, "{got:?}");
    envoy.send("1", &nonce, Some("bad table"), None).await;
    envoy.nothing_for(Duration::from_millis(300)).await;
}

struct Delta {
    tx: mpsc::Sender<DeltaDiscoveryRequest>,
    rx: Streaming<DeltaDiscoveryResponse>,
}

impl Delta {
    async fn connect(addr: SocketAddr) -> Self {
        let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        let (tx, requests) = mpsc::channel(16);
        let rx = client
            .delta_aggregated_resources(ReceiverStream::new(requests))
            .await
            .unwrap()
            .into_inner();
        let request = DeltaDiscoveryRequest {
            node: node(),
            type_url: ECDS.type_url().into(),
            resource_names_subscribe: vec![GENESIS.into(), INTERNAL.into()],
            ..Default::default()
        };
        tx.send(request).await.unwrap();
        Delta { tx, rx }
    }

    async fn next(&mut self) -> (String, Vec<String>, String) {
        let r = tokio::time::timeout(WAIT, self.rx.message())
            .await
            .expect("a response within 5s")
            .unwrap()
            .expect("stream open");
        let resources: Vec<Any> = r.resources.into_iter().filter_map(|x| x.resource).collect();
        (r.system_version_info, contents(&resources), r.nonce)
    }

    async fn ack(&mut self, nonce: &str) {
        let request = DeltaDiscoveryRequest {
            type_url: ECDS.type_url().into(),
            response_nonce: nonce.into(),
            ..Default::default()
        };
        self.tx.send(request).await.unwrap();
    }

    async fn nothing_for(&mut self, wait: Duration) {
        if let Ok(m) = tokio::time::timeout(wait, self.rx.message()).await {
            panic!("unexpected message: {m:?}");
        }
    }
}

#[tokio::test]
async fn delta_sends_the_internal_table_first_and_genesis_after_its_ack() {
    let (addr, cache, _stop) = start().await;
    tables(&cache, "1", "g1", "i1");
    let mut envoy = Delta::connect(addr).await;
    let (v, got, nonce) = envoy.next().await;
    assert_eq!((v.as_str(), got.len()), ("1", 2));
    envoy.ack(&nonce).await;

    tables(&cache, "2", "g2", "i2");
    let (v, got, nonce) = envoy.next().await;
    assert_eq!(
        (v.as_str(), got),
        ("2+internal-first", vec!["switchyard-internal=i2".into()])
    );
    envoy.nothing_for(Duration::from_millis(300)).await;
    envoy.ack(&nonce).await;
    let (v, got, nonce) = envoy.next().await;
    assert_eq!((v.as_str(), got), ("2", vec!["switchyard=g2".into()]));
    envoy.ack(&nonce).await;

    tables(&cache, "3", "g3", "i2");
    let (v, got, _) = envoy.next().await;
    assert_eq!((v.as_str(), got), ("3", vec!["switchyard=g3".into()]));
}
