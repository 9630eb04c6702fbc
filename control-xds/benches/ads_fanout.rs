//! Control-plane benchmark (BENCHMARKS.md, part 4): N ADS client streams (tonic
//! clients that play Envoy: subscribe to CDS, ACK what they get) receive one
//! change; how long until every one of them has ACKed it, as the server's own
//! node status shows.
//!
//! `cargo bench -p switchyard --bench ads_fanout -- [--clients 200] [--changes 5]`

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use switchyard::xds::{to_any, AdsServer, References, ResourceType, Snapshot, SnapshotCache};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const TIMEOUT: Duration = Duration::from_secs(60);

fn snapshot(version: &str, clusters: usize) -> (Snapshot, References) {
    let names: Vec<String> = (0..clusters)
        .map(|i| format!("app/c{i}/{version}/round-robin"))
        .collect();
    let snap = Snapshot::new().with(
        ResourceType::Cluster,
        version,
        names.iter().map(|n| {
            let c = Cluster {
                name: n.clone(),
                cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
                    cluster::DiscoveryType::Static as i32,
                )),
                ..Default::default()
            };
            (n.clone(), to_any(&c))
        }),
    );
    let refs = References {
        clusters: names.into_iter().collect(),
        ..Default::default()
    };
    (snap, refs)
}

/// One fake Envoy: subscribes to CDS and ACKs every response, until the stream ends.
async fn client(addr: SocketAddr, id: usize) -> Result<(), String> {
    let mut ads = AggregatedDiscoveryServiceClient::connect(format!("http://{addr}"))
        .await
        .map_err(|e| e.to_string())?;
    let (tx, requests) = mpsc::channel(4);
    let subscribe = DiscoveryRequest {
        node: Some(Node {
            id: format!("bench-{id}"),
            cluster: "bench".into(),
            ..Default::default()
        }),
        type_url: ResourceType::Cluster.type_url().into(),
        ..Default::default()
    };
    tx.send(subscribe).await.map_err(|e| e.to_string())?;
    let mut rx = ads
        .stream_aggregated_resources(ReceiverStream::new(requests))
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    while let Some(response) = rx.message().await.map_err(|e| e.to_string())? {
        let ack = DiscoveryRequest {
            version_info: response.version_info.clone(),
            type_url: response.type_url.clone(),
            response_nonce: response.nonce.clone(),
            ..Default::default()
        };
        if tx.send(ack).await.is_err() {
            break;
        }
    }
    Ok(())
}

fn all_acked(cache: &SnapshotCache, clients: usize, version: &str) -> bool {
    let nodes = cache.nodes();
    nodes.len() >= clients
        && nodes.iter().all(|n| {
            n.types
                .get(&ResourceType::Cluster)
                .and_then(|t| t.acked_version.as_deref())
                == Some(version)
        })
}

async fn wait_all_acked(cache: &SnapshotCache, clients: usize, version: &str) -> Duration {
    let t0 = Instant::now();
    while !all_acked(cache, clients, version) {
        assert!(
            t0.elapsed() < TIMEOUT,
            "not every client ACKed {version} within {TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    t0.elapsed()
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let clients = arg("--clients", 200);
    let changes = arg("--changes", 5);
    let cache = SnapshotCache::new();
    let (snap, refs) = snapshot("v0", 20);
    cache
        .set_snapshot(snap, &refs)
        .expect("a consistent snapshot");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        AdsServer::new(cache.clone()).serve_listener(listener, async {
            let _ = stopped.await;
        }),
    );
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|i| tokio::spawn(client(addr, i)))
        .collect();
    wait_all_acked(&cache, clients, "v0").await;
    println!(
        "clients={clients} connected_and_acked_first_snapshot_ms={:.1}",
        t0.elapsed().as_secs_f64() * 1e3
    );
    let mut times = Vec::new();
    for change in 1..=changes {
        let version = format!("v{change}");
        let (snap, refs) = snapshot(&version, 20);
        let t = Instant::now();
        cache
            .set_snapshot(snap, &refs)
            .expect("a consistent snapshot");
        let took = wait_all_acked(&cache, clients, &version)
            .await
            .max(t.elapsed());
        times.push(took.as_secs_f64() * 1e3);
        println!(
            "change={version} all_{clients}_acked_ms={:.1}",
            took.as_secs_f64() * 1e3
        );
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "summary clients={clients} changes={changes} all_acked_ms_median={median:.1} min={:.1} max={:.1}",
        times[0],
        times[times.len() - 1]
    );
    let _ = stop.send(());
    for t in tasks {
        t.abort();
    }
}
