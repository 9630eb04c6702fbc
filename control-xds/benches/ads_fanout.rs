//! Control-plane benchmark (BENCHMARKS.md, "ADS fan-out"): one real
//! `switchyard serve` and N ADS client streams that play Envoy's part of the
//! protocol the way Envoy 1.40 does (CDS wildcard; EDS for the EDS clusters CDS
//! names; LDS; ECDS and RDS for what the listeners load; every response ACKed at
//! once). `--delta` makes the streams speak delta xDS (`DELTA_GRPC`) the way
//! Envoy 1.40 does (CDS/LDS wildcard, EDS names subscribed and unsubscribed as
//! EDS clusters come and go, ACK by nonce). Releases are made through the HTTP
//! API; per release it reports how long until the server says every stream
//! ACKed it for every type (`GET /v1/live`, what the CLI's wait uses:
//! `live_ms`), when 50% / 99% / all streams received their last response of the
//! release (up to that point), the bytes sent to all streams (including cluster
//! removals up to 1.5 s later), and the server's CPU time; and the server's
//! memory per stream.
//!
//! ```text
//! cargo bench -p switchyard --bench ads_fanout -- [--clients 1000] [--changes 5]
//!     [--config FILE] [--release DEP_A,DEP_B] [--virtual-env VE] [--scope ENV,ENV]
//!     [--delta]
//! ```
//!
//! `--scope` sends node metadata `switchyard.environments` (README "Sizing"):
//! the server then streams only those environments' resources. The defaults use
//! `examples/hello-world/resources.yaml`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::protobuf::{value, ListValue, Struct, Value};
use prost::Message;
use serde_json::json;
use switchyard::cli::client::Client;
use switchyard::scope::SCOPE_METADATA_KEY;
use switchyard::snapshot_builder::{GENESIS_FILTER, GENESIS_LISTENER};
use switchyard::xds::ResourceType;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const TIMEOUT: Duration = Duration::from_secs(120);

/// Set when the run is over: streams then end because the server stops.
static STOPPING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// What a client saw: one response of `kind` at `generation`, `bytes` long.
struct Seen {
    client: usize,
    kind: ResourceType,
    generation: u64,
    bytes: usize,
    at: Instant,
}

fn generation_of(version: &str) -> u64 {
    version
        .split('+')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn node(id: usize, scope: &[String]) -> Node {
    let mut metadata = None;
    if !scope.is_empty() {
        let list = ListValue {
            values: scope
                .iter()
                .map(|e| Value {
                    kind: Some(value::Kind::StringValue(e.clone())),
                })
                .collect(),
        };
        metadata = Some(Struct {
            fields: [(
                SCOPE_METADATA_KEY.to_string(),
                Value {
                    kind: Some(value::Kind::ListValue(list)),
                },
            )]
            .into(),
        });
    }
    Node {
        id: format!("bench-{id}"),
        cluster: "bench".into(),
        metadata,
        ..Default::default()
    }
}

fn request(
    kind: ResourceType,
    last: Option<&DiscoveryResponse>,
    names: &[String],
) -> DiscoveryRequest {
    DiscoveryRequest {
        version_info: last.map(|r| r.version_info.clone()).unwrap_or_default(),
        response_nonce: last.map(|r| r.nonce.clone()).unwrap_or_default(),
        resource_names: names.to_vec(),
        type_url: kind.type_url().into(),
        ..Default::default()
    }
}

/// An ADS client, retrying refused connections a few times like Envoy does (a
/// thousand connections at once can overflow the listen backlog).
async fn connect(
    addr: SocketAddr,
) -> Result<AggregatedDiscoveryServiceClient<tonic::transport::Channel>, String> {
    let mut attempt = 0;
    loop {
        match AggregatedDiscoveryServiceClient::connect(format!("http://{addr}")).await {
            Ok(c) => return Ok(c.max_decoding_message_size(256 << 20)),
            Err(e) if attempt >= 10 => return Err(e.to_string()),
            Err(_) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
        }
    }
}

/// One fake Envoy, until the stream ends.
async fn client(
    addr: SocketAddr,
    id: usize,
    scope: Vec<String>,
    seen: mpsc::UnboundedSender<Seen>,
) -> Result<(), String> {
    let mut ads = connect(addr).await?;
    let (tx, requests) = mpsc::channel(16);
    let mut first = request(ResourceType::Cluster, None, &[]);
    first.node = Some(node(id, &scope));
    tx.send(first).await.map_err(|e| e.to_string())?;
    let mut rx = ads
        .stream_aggregated_resources(ReceiverStream::new(requests))
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    let mut eds_names: Vec<String> = Vec::new();
    let mut last: BTreeMap<ResourceType, DiscoveryResponse> = BTreeMap::new();
    let mut listeners_subscribed = false;
    let mut filters_subscribed = false;
    let ecds_names = vec![GENESIS_FILTER.to_string()];
    let rds_names = vec![GENESIS_LISTENER.to_string()];
    while let Some(response) = rx.message().await.map_err(|e| e.to_string())? {
        let Some(kind) = ResourceType::from_type_url(&response.type_url) else {
            continue;
        };
        let _ = seen.send(Seen {
            client: id,
            kind,
            generation: generation_of(&response.version_info),
            bytes: response.encoded_len(),
            at: Instant::now(),
        });
        let mut out = Vec::new();
        match kind {
            ResourceType::Cluster => {
                let names: Vec<String> = response
                    .resources
                    .iter()
                    .filter_map(|any| Cluster::decode(any.value.as_slice()).ok())
                    .filter(|c| c.eds_cluster_config.is_some())
                    .map(|c| c.name)
                    .collect();
                // Like Envoy: the EDS request for new clusters, then the CDS ACK.
                if names != eds_names {
                    eds_names = names;
                    out.push(request(
                        ResourceType::Endpoint,
                        last.get(&ResourceType::Endpoint),
                        &eds_names,
                    ));
                }
                out.push(request(kind, Some(&response), &[]));
                if !listeners_subscribed {
                    listeners_subscribed = true;
                    out.push(request(ResourceType::Listener, None, &[]));
                }
            }
            ResourceType::Endpoint => out.push(request(kind, Some(&response), &eds_names)),
            ResourceType::Listener => {
                out.push(request(kind, Some(&response), &[]));
                if !filters_subscribed {
                    filters_subscribed = true;
                    out.push(request(ResourceType::ExtensionConfig, None, &ecds_names));
                    out.push(request(ResourceType::Route, None, &rds_names));
                }
            }
            ResourceType::ExtensionConfig => out.push(request(kind, Some(&response), &ecds_names)),
            ResourceType::Route => out.push(request(kind, Some(&response), &rds_names)),
        }
        last.insert(kind, response);
        for r in out {
            if tx.send(r).await.is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

fn delta_request(
    kind: ResourceType,
    nonce: Option<&str>,
    subscribe: Vec<String>,
    unsubscribe: Vec<String>,
) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: kind.type_url().into(),
        response_nonce: nonce.unwrap_or_default().to_string(),
        resource_names_subscribe: subscribe,
        resource_names_unsubscribe: unsubscribe,
        ..Default::default()
    }
}

/// One fake Envoy speaking delta xDS (`DELTA_GRPC`), until the stream ends:
/// CDS and LDS wildcard; EDS subscribed and unsubscribed as EDS clusters come
/// and go (the EDS request before the CDS ACK, like Envoy); ECDS and RDS for
/// what the listener loads; every response ACKed by its nonce at once.
async fn delta_client(
    addr: SocketAddr,
    id: usize,
    scope: Vec<String>,
    seen: mpsc::UnboundedSender<Seen>,
) -> Result<(), String> {
    let mut ads = connect(addr).await?;
    let (tx, requests) = mpsc::channel(16);
    let mut first = delta_request(ResourceType::Cluster, None, vec![], vec![]);
    first.node = Some(node(id, &scope));
    tx.send(first).await.map_err(|e| e.to_string())?;
    let mut rx = ads
        .delta_aggregated_resources(ReceiverStream::new(requests))
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    // cluster name -> whether it is an EDS cluster
    let mut clusters: BTreeMap<String, bool> = BTreeMap::new();
    let mut eds_names: BTreeSet<String> = BTreeSet::new();
    let mut listeners_subscribed = false;
    let mut filters_subscribed = false;
    while let Some(response) = rx.message().await.map_err(|e| e.to_string())? {
        let response: DeltaDiscoveryResponse = response;
        let Some(kind) = ResourceType::from_type_url(&response.type_url) else {
            continue;
        };
        let _ = seen.send(Seen {
            client: id,
            kind,
            generation: generation_of(&response.system_version_info),
            bytes: response.encoded_len(),
            at: Instant::now(),
        });
        let nonce = Some(response.nonce.as_str());
        let mut out = Vec::new();
        if kind == ResourceType::Cluster {
            for r in &response.resources {
                let eds = r
                    .resource
                    .as_ref()
                    .and_then(|any| Cluster::decode(any.value.as_slice()).ok())
                    .is_some_and(|c| c.eds_cluster_config.is_some());
                clusters.insert(r.name.clone(), eds);
            }
            for name in &response.removed_resources {
                clusters.remove(name);
            }
            let now: BTreeSet<String> = clusters
                .iter()
                .filter(|(_, eds)| **eds)
                .map(|(n, _)| n.clone())
                .collect();
            if now != eds_names {
                let subscribe = now.difference(&eds_names).cloned().collect();
                let unsubscribe = eds_names.difference(&now).cloned().collect();
                out.push(delta_request(
                    ResourceType::Endpoint,
                    None,
                    subscribe,
                    unsubscribe,
                ));
                eds_names = now;
            }
        }
        out.push(delta_request(kind, nonce, vec![], vec![]));
        if kind == ResourceType::Cluster && !listeners_subscribed {
            listeners_subscribed = true;
            out.push(delta_request(ResourceType::Listener, None, vec![], vec![]));
        }
        if kind == ResourceType::Listener && !filters_subscribed {
            filters_subscribed = true;
            out.push(delta_request(
                ResourceType::ExtensionConfig,
                None,
                vec![GENESIS_FILTER.to_string()],
                vec![],
            ));
            out.push(delta_request(
                ResourceType::Route,
                None,
                vec![GENESIS_LISTENER.to_string()],
                vec![],
            ));
        }
        for r in out {
            if tx.send(r).await.is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Per client, the newest generation seen per type.
struct Progress {
    by_client: Vec<BTreeMap<ResourceType, u64>>,
    bytes: usize,
}

impl Progress {
    fn done(&self, client: usize, generation: u64) -> bool {
        let types = &self.by_client[client];
        types.len() == ResourceType::PUSH_ORDER.len() && types.values().all(|g| *g >= generation)
    }
}

/// Reads what clients saw until every client has every type at `generation`;
/// returns when each client got there (sorted) and the bytes received.
async fn until_all(
    rx: &mut mpsc::UnboundedReceiver<Seen>,
    progress: &mut Progress,
    generation: u64,
    since: Instant,
) -> (Vec<Duration>, usize) {
    let clients = progress.by_client.len();
    let bytes_before = progress.bytes;
    let mut done: Vec<Option<Duration>> = (0..clients)
        .map(|c| progress.done(c, generation).then_some(Duration::ZERO))
        .collect();
    let deadline = Instant::now() + TIMEOUT;
    while done.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(seen)) = tokio::time::timeout(left, rx.recv()).await else {
            let waiting = done.iter().filter(|d| d.is_none()).count();
            panic!("{waiting} of {clients} clients did not reach generation {generation} in {TIMEOUT:?}");
        };
        progress.bytes += seen.bytes;
        let g = progress.by_client[seen.client]
            .entry(seen.kind)
            .or_insert(0);
        *g = (*g).max(seen.generation);
        if done[seen.client].is_none() && progress.done(seen.client, generation) {
            done[seen.client] = Some(seen.at.saturating_duration_since(since));
        }
    }
    let mut times: Vec<Duration> = done.into_iter().flatten().collect();
    times.sort();
    (times, progress.bytes - bytes_before)
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

#[path = "../tests/common/ports.rs"]
mod ports;
use ports::free_port;

/// utime + stime of `pid` in clock ticks (1/100 s), and VmRSS in KiB.
fn cpu_and_rss(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (ticks(11) + ticks(12), rss)
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn pct(sorted: &[Duration], p: usize) -> f64 {
    let i = (sorted.len() * p).div_ceil(100).saturating_sub(1);
    sorted.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

#[tokio::main]
async fn main() {
    let clients: usize = arg("--clients")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let changes: u64 = arg("--changes").and_then(|v| v.parse().ok()).unwrap_or(5);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let config = arg("--config")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("examples/hello-world/resources.yaml"));
    let deployments: Vec<String> = arg("--release")
        .unwrap_or_else(|| "hello-world-v2,hello-world-v3".into())
        .split(',')
        .map(str::to_string)
        .collect();
    let ve = arg("--virtual-env").unwrap_or_else(|| "team-a".into());
    let delta = std::env::args().any(|a| a == "--delta");
    let protocol = if delta { "delta" } else { "sotw" };
    let scope: Vec<String> = arg("--scope")
        .map(|s| s.split(',').map(str::to_string).collect())
        .unwrap_or_default();

    let (xds, api) = (free_port(), free_port());
    let server = Server(
        Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["serve", "--config"])
            .arg(&config)
            .args(["--xds-addr", &format!("127.0.0.1:{xds}")])
            .args(["--api-addr", &format!("127.0.0.1:{api}")])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("switchyard serve starts"),
    );
    let pid = server.0.id();
    let api_url = format!("http://127.0.0.1:{api}");
    // with the admin credential `serve` leaves for this user (credentials.rs),
    // once it is there
    let up = || {
        Client::connect(&api_url, None, &Default::default())
            .and_then(|c| c.get::<switchyard::views::StatusView>("/v1/status", &[]))
            .is_ok()
    };
    let t0 = Instant::now();
    while !up() {
        assert!(t0.elapsed() < TIMEOUT, "switchyard serve did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, rss_idle) = cpu_and_rss(pid);

    let addr: SocketAddr = format!("127.0.0.1:{xds}").parse().expect("addr");
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let (scope, seen) = (scope.clone(), seen_tx.clone());
            // A broken stream is opened again, as Envoy does (a thousand
            // connections at once can overflow the listen backlog).
            tokio::spawn(async move {
                for attempt in 1..=5u64 {
                    let result = if delta {
                        delta_client(addr, i, scope.clone(), seen.clone()).await
                    } else {
                        client(addr, i, scope.clone(), seen.clone()).await
                    };
                    if STOPPING.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                    if let Err(e) = result {
                        eprintln!("client {i} (attempt {attempt}): {e}");
                    }
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
            })
        })
        .collect();
    let mut progress = Progress {
        by_client: vec![BTreeMap::new(); clients],
        bytes: 0,
    };
    let (_, first_bytes) = until_all(&mut seen, &mut progress, 1, t0).await;
    let (_, rss_connected) = cpu_and_rss(pid);
    println!(
        "protocol={protocol} clients={clients} scope={} connected_and_configured_ms={:.0} bytes_first_config={first_bytes} server_rss_idle_mib={:.1} server_rss_connected_mib={:.1} per_stream_kib={:.1}",
        if scope.is_empty() { "all".to_string() } else { scope.join(",") },
        t0.elapsed().as_secs_f64() * 1e3,
        rss_idle as f64 / 1024.0,
        rss_connected as f64 / 1024.0,
        rss_connected.saturating_sub(rss_idle) as f64 / clients as f64,
    );

    let mut p99s = Vec::new();
    let mut alls = Vec::new();
    let mut lives = Vec::new();
    for change in 0..changes {
        let dep = &deployments[change as usize % deployments.len()];
        let (cpu0, _) = cpu_and_rss(pid);
        let bytes_before = progress.bytes;
        let since = Instant::now();
        let body = json!({"deployment": dep, "virtualEnv": ve, "who": "bench"});
        let url = api_url.clone();
        // The release, then the server's own wait until every stream has ACKed
        // it for every type (`GET /v1/live`, what the CLI's wait uses).
        let live = tokio::task::spawn_blocking(move || {
            let client =
                Client::connect(&url, None, &Default::default()).map_err(|e| e.to_string())?;
            let answer: switchyard::views::ChangeView = client
                .post("/v1/release", &body)
                .map_err(|e| e.to_string())?;
            let generation = answer.generation;
            let live: switchyard::views::LiveView = client
                .get_with_timeout(
                    "/v1/live",
                    &[
                        ("generation", &generation.to_string()),
                        ("timeoutMs", "120000"),
                    ],
                    TIMEOUT,
                )
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((generation, live, Instant::now()))
        });
        tokio::pin!(live);
        // Per client, when its last response of this release arrived before
        // the server reported the release live.
        let mut last: Vec<Option<Instant>> = vec![None; clients];
        let mut pending: Vec<Seen> = Vec::new();
        let (generation, answer, live_at) = loop {
            tokio::select! {
                done = &mut live => break done.expect("release task").expect("release and live"),
                Some(s) = seen.recv() => pending.push(s),
            }
        };
        while let Ok(s) = seen.try_recv() {
            pending.push(s);
        }
        for s in pending {
            progress.bytes += s.bytes;
            if s.generation >= generation && s.at <= live_at {
                let t = &mut last[s.client];
                *t = Some(t.map_or(s.at, |t| t.max(s.at)));
            }
        }
        assert!(
            answer.complete,
            "release {generation} not live on every stream: {} live",
            answer.live
        );
        // what follows the release (cluster removals) counts to its bytes
        let settle = Instant::now() + Duration::from_millis(1500);
        while let Ok(Some(s)) = tokio::time::timeout(
            settle.saturating_duration_since(Instant::now()),
            seen.recv(),
        )
        .await
        {
            progress.bytes += s.bytes;
        }
        let (cpu1, rss) = cpu_and_rss(pid);
        let mut times: Vec<Duration> = last
            .iter()
            .map(|t| t.map_or(Duration::ZERO, |t| t.saturating_duration_since(since)))
            .collect();
        times.sort();
        let bytes = progress.bytes - bytes_before;
        let (p50, p99, all) = (pct(&times, 50), pct(&times, 99), pct(&times, 100));
        let live_ms = live_at.saturating_duration_since(since).as_secs_f64() * 1e3;
        p99s.push(p99);
        alls.push(all);
        lives.push(live_ms);
        println!(
            "release {dep} (generation {generation}): p50_ms={p50:.0} p99_ms={p99:.0} all_ms={all:.0} live_ms={live_ms:.0} bytes={bytes} bytes_per_stream={} server_cpu_ms={} server_rss_mib={:.1}",
            bytes / clients,
            (cpu1 - cpu0) * 10,
            rss as f64 / 1024.0
        );
    }
    p99s.sort_by(f64::total_cmp);
    alls.sort_by(f64::total_cmp);
    lives.sort_by(f64::total_cmp);
    println!(
        "ADS fan-out {clients} streams p99: {:.0} ms (median over {changes} releases; all streams: median {:.0} ms, max {:.0} ms; live on all (GET /v1/live): median {:.0} ms, max {:.0} ms; {protocol})",
        p99s[p99s.len() / 2],
        alls[alls.len() / 2],
        alls[alls.len() - 1],
        lives[lives.len() / 2],
        lives[lives.len() - 1],
    );
    STOPPING.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        t.abort();
    }
    drop(server);
}
