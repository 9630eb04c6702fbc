//! The snapshot builder driving a real Envoy with the real Wasm filter: Envoy
//! starts from the ADS bootstrap only; the clusters, endpoints, the filter (by
//! ECDS), listeners and routes come from `build_snapshot` over a small
//! hello-world resource set whose endpoints are responders started here.
//!
//! Checks what a user notices: `/dev/...` reaches the released frontend; the LB
//! policies are in Envoy's config_dump; `tenant-id` pins a backend endpoint,
//! distinct tenants spread, no header round-robins; a release change takes effect
//! without a restart (the time is measured and printed).
//!
//! Skipped (with a message) when there is no Envoy binary (`ENVOY_BIN` or
//! `.venv/bin/envoy`) or no filter build
//! (`target/wasm32-wasip1/release/switchyard_filter.wasm`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchyard::snapshot_builder::{build_snapshot, BuildOptions};
use switchyard::xds::{AdsServer, ResourceType, SnapshotCache};
use switchyard_engine::context::ContextKey;
use switchyard_engine::Resource;

mod common;
use common::{envoy_bin, free_port, Envoy};

const NODE: &str = "switchyard-snapshot-test";

fn wasm_path() -> Option<PathBuf> {
    let path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/wasm32-wasip1/release/switchyard_filter.wasm"
    ));
    path.is_file().then_some(path)
}

/// An upstream answering with its own `id` (see [`common::responder`]).
fn responder(id: &'static str) -> String {
    common::responder(id).to_string()
}

/// A response: status code, lower-cased headers, body.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

/// One HTTP/1.1 GET to 127.0.0.1:`port`, `connection: close`.
fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Option<Response> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut req = format!("GET {path} HTTP/1.1\r\nconnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str("host: test\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    conn.write_all(req.as_bytes()).ok()?;
    let mut raw = String::new();
    conn.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = if headers
        .get("transfer-encoding")
        .is_some_and(|t| t.contains("chunked"))
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some(Response {
        status,
        headers,
        body,
    })
}

/// The body of a 200, if the request was answered with one.
fn body_of(port: u16, path: &str, headers: &[(&str, &str)]) -> Option<String> {
    get(port, path, headers)
        .filter(|r| r.status == 200)
        .map(|r| r.body)
}

fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    for _ in 0..300 {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after 30s waiting for {what}");
}

fn deployment(
    name: &str,
    front: (&str, &str),
    back: &[String],
    work: &[String],
) -> serde_json::Value {
    json!({"kind": "AppDeployment", "metadata": {"name": name},
    "spec": {"app": "hello-world", "version": name, "components": {
        "frontend": {"version": front.0, "endpoints": [front.1],
                     "routes": [{"match": {"pathPrefix": "/hello"},
                                 "options": {"loadbalancing": "round-robin"}}],
                     "dependencies": ["backend"]},
        "backend": {"version": "b1", "endpoints": back,
                    "routes": [{"match": {"pathPrefix": "/hello/backend"}}],
                    "options": {"loadbalancing": "hash", "hash_header": "tenant-id",
                                "hash_balance": "1.25"}},
        "worker": {"version": "w1", "endpoints": work,
                   "routes": [{"match": {"pathPrefix": "/work"}}],
                   "options": {"loadbalancing": "least-connection"}}
    }}})
}

struct World {
    front1: String,
    front2: String,
    back: Vec<String>,
    work: Vec<String>,
}

impl World {
    fn resources(&self, released: &str) -> Vec<Resource> {
        [
            json!({"kind": "Environment", "metadata": {"name": "dev"},
                   "spec": {"subPath": "dev", "defaultVirtualEnvironment": "team-a"}}),
            json!({"kind": "VirtualEnvironment", "metadata": {"name": "team-a"},
                   "spec": {"environment": "dev", "release": {"apps": {"hello-world": released}}}}),
            deployment(
                "hello-world-v1",
                ("f1", &self.front1),
                &self.back,
                &self.work,
            ),
            deployment(
                "hello-world-v2",
                ("f2", &self.front2),
                &self.back,
                &self.work,
            ),
        ]
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap())
        .collect()
    }
}

fn bootstrap(dir: &Path, xds_port: u16) -> PathBuf {
    let path = dir.join("bootstrap.yaml");
    let yaml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../envoy/bootstrap-ads.yaml"
    ))
    .unwrap()
    .replace("id: switchyard-envoy", &format!("id: {NODE}"))
    .replace("port_value: 18000", &format!("port_value: {xds_port}"))
    // The real port is written to --admin-address-path.
    .replace("port_value: 9901", "port_value: 0");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// Starts the ADS server on its own runtime thread; returns its port.
fn start_ads(cache: SnapshotCache) -> u16 {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap().port()).unwrap();
            // Serves until the test process exits.
            let _ = AdsServer::new(cache)
                .serve_listener(listener, std::future::pending())
                .await;
        });
    });
    rx.recv().unwrap()
}

fn admin_json(admin_port: u16, path: &str) -> Value {
    let r = get(admin_port, path, &[]).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

#[test]
fn envoy_routes_with_the_built_snapshot_and_follows_releases() {
    let Some(envoy_bin) = envoy_bin() else {
        eprintln!("skipped: no Envoy binary (set ENVOY_BIN or run scripts/install-envoy.sh)");
        return;
    };
    let Some(wasm) = wasm_path() else {
        eprintln!(
            "skipped: no filter build (cargo build -p switchyard-filter --target wasm32-wasip1 --release)"
        );
        return;
    };
    let world = World {
        front1: responder("front-1"),
        front2: responder("front-2"),
        back: vec![
            responder("back-1"),
            responder("back-2"),
            responder("back-3"),
        ],
        work: vec![responder("work-1"), responder("work-2")],
    };
    let genesis = free_port();
    let internal = free_port();
    let opts = BuildOptions {
        wasm_path: wasm.display().to_string(),
        native_path: None,
        genesis_listen: ("127.0.0.1".into(), genesis),
        internal_listen: Some(("127.0.0.1".into(), internal)),
        context_keys: vec![ContextKey {
            kid: "test".into(),
            secret: "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into(),
        }],
    };
    let cache = SnapshotCache::new();
    let (snapshot, refs, _) =
        build_snapshot(&world.resources("hello-world-v1"), &opts, "1").unwrap();
    cache.set_snapshot(snapshot, &refs).unwrap();
    let xds_port = start_ads(cache.clone());

    let dir =
        std::env::temp_dir().join(format!("switchyard-snapshot-envoy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let admin_path = dir.join("admin.txt");
    let _ = std::fs::remove_file(&admin_path);
    let log = std::fs::File::create(dir.join("envoy.log")).unwrap();
    let _envoy = Envoy(
        Command::new(envoy_bin)
            .arg("-c")
            .arg(bootstrap(&dir, xds_port))
            .arg("--admin-address-path")
            .arg(&admin_path)
            .args(["--use-dynamic-base-id", "--concurrency", "1", "-l", "info"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    eventually("the genesis listener to route /dev/hello", || {
        body_of(genesis, "/dev/hello", &[]).is_some()
    });
    eprintln!(
        "Envoy routed its first request {:?} after start",
        started.elapsed()
    );

    // The real filter picked the released deployment's frontend.
    let r = get(genesis, "/dev/hello", &[]).unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "front-1"), "{r:?}");
    assert_eq!(
        r.headers.get("kf-deployment").map(String::as_str),
        Some("hello-world-v1")
    );
    assert_eq!(
        body_of(genesis, "/dev/hello/backend", &[("tenant-id", "t")])
            .as_deref()
            .map(|b| b.starts_with("back-")),
        Some(true)
    );
    assert!(body_of(genesis, "/dev/work", &[]).is_some_and(|b| b.starts_with("work-")));
    // Unknown environment: the filter answers, nothing is routed.
    let r = get(genesis, "/nowhere/hello", &[]).unwrap();
    assert_eq!(r.status, 404, "{r:?}");
    assert!(r.body.contains("environment_not_found"), "{r:?}");

    // The internal listener runs the filter in internal mode (its own root id).
    eventually("the internal listener's filter", || {
        get(internal, "/hello/backend", &[("host", "backend")]).is_some_and(|r| r.status == 401)
    });

    // config_dump: the LB policies and distillation, as Envoy has them.
    let admin = std::fs::read_to_string(&admin_path).unwrap();
    let admin_port: u16 = admin.trim().rsplit(':').next().unwrap().parse().unwrap();
    let dump = admin_json(admin_port, "/config_dump?resource=dynamic_active_clusters");
    let clusters: BTreeMap<String, Value> = dump["configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["cluster"]["name"].as_str().unwrap().to_string(),
                c["cluster"].clone(),
            )
        })
        .collect();
    let hash = &clusters["hello-world/backend/b1/hash-tenant-id-125"];
    assert_eq!(hash["lb_policy"], "MAGLEV", "{hash}");
    assert_eq!(
        hash["common_lb_config"]["consistent_hashing_lb_config"]["hash_balance_factor"], 125,
        "{hash}"
    );
    let worker = &clusters["hello-world/worker/w1/least-connection"];
    assert_eq!(worker["lb_policy"], "LEAST_REQUEST", "{worker}");
    // ROUND_ROBIN is the default: config_dump leaves it out or names it.
    for name in [
        "hello-world/frontend/f1/round-robin",
        "hello-world/backend/b1/round-robin",
    ] {
        let c = &clusters[name];
        assert!(
            c.get("lb_policy").is_none() || c["lb_policy"] == "ROUND_ROBIN",
            "{c}"
        );
    }
    // Two deployments share the backend and worker versions: one cluster each
    // (plus the hash cluster's round-robin twin); two frontends.
    let backends = clusters
        .keys()
        .filter(|n| n.starts_with("hello-world/backend/"))
        .count();
    assert_eq!(backends, 2, "{:?}", clusters.keys());
    assert_eq!(clusters.len(), 5, "{:?}", clusters.keys());

    // Hash: a tenant always lands on the same endpoint; tenants spread.
    let mut spread = BTreeSet::new();
    for tenant in 0..20 {
        let tenant = format!("tenant-{tenant}");
        let first = body_of(genesis, "/dev/hello/backend", &[("tenant-id", &tenant)]).unwrap();
        for _ in 0..3 {
            let again = body_of(genesis, "/dev/hello/backend", &[("tenant-id", &tenant)]).unwrap();
            assert_eq!(again, first, "{tenant} moved");
        }
        spread.insert(first);
    }
    eprintln!("20 tenants landed on {spread:?}");
    // Neither selection header reaches the upstream.
    for headers in [&[("tenant-id", "t")][..], &[]] {
        let r = get(genesis, "/dev/hello/backend", headers).unwrap();
        assert_eq!(
            r.headers.get("x-leaked").map(String::as_str),
            Some("false"),
            "{r:?}"
        );
    }
    assert!(spread.len() >= 2, "{spread:?}");
    // Without the header: the round-robin twin visits every endpoint.
    let without: BTreeSet<String> = (0..9)
        .map(|_| body_of(genesis, "/dev/hello/backend", &[]).unwrap())
        .collect();
    assert_eq!(without.len(), 3, "{without:?}");

    // A release change reaches Envoy without a restart.
    let (snapshot, refs, _) =
        build_snapshot(&world.resources("hello-world-v2"), &opts, "2").unwrap();
    let released = Instant::now();
    cache.set_snapshot(snapshot, &refs).unwrap();
    let mut took = None;
    for _ in 0..3000 {
        let body = body_of(genesis, "/dev/hello", &[]).unwrap_or_default();
        assert!(body == "front-1" || body == "front-2", "served by {body:?}");
        if body == "front-2" {
            took = Some(released.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let took = took.expect("the new release never served /dev/hello");
    eprintln!("release hello-world-v2: set_snapshot → first response by it: {took:?}");
    for kind in ResourceType::PUSH_ORDER {
        eventually(&format!("{kind} ACK of version 2"), || {
            cache
                .node(NODE)
                .and_then(|n| n.types.get(&kind).cloned())
                .and_then(|t| t.acked_version)
                .as_deref()
                == Some("2")
        });
    }
    assert_eq!(
        body_of(genesis, "/dev/hello", &[]).as_deref(),
        Some("front-2")
    );
    let _ = std::fs::remove_dir_all(&dir);
}
