//! Engine benchmarks: time and allocations per routing decision.
//!
//! A small custom harness rather than criterion: criterion (and its plotting /
//! rayon / clap tree) would be the engine's first dev-dependency and takes minutes
//! to build on the shared 2-core machine, while this file needs nothing beyond the
//! engine's own dependencies, also counts allocations (a counting global
//! allocator, which has to live in the benchmark binary anyway), prints one
//! machine-readable line per case for `scripts/bench.sh`, and has a fixed-count
//! mode for callgrind (instructions per decision, repeatable on a noisy machine).
//!
//! Usage (`cargo bench -p switchyard-engine --bench engine -- [ARGS]`):
//!   (no args)              every case, ~0.3 s each; `--smoke` ~0.05 s each
//!   --filter SUBSTR        only cases whose name contains SUBSTR
//!   --count CASE N         run CASE exactly N times inside `bench_loop` (callgrind:
//!                          --collect-atstart=no --toggle-collect='*bench_loop*')
//!   --emit small|large ENDPOINT   print {plugin_config, clusters, path}: the table
//!                          (with context keys) with every endpoint set to ENDPOINT,
//!                          its cluster names and a path it routes (for Envoy runs)
//!
//! Output per case: `case=NAME table=T ns_median=.. ns_min=.. ns_max=.. allocs=.. bytes=.. kind=..`

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use jwt_simple::prelude::*;
use serde_json::{json, Value};
use switchyard_engine::{Index, PluginConfig, Request};

// ---------------------------------------------------------------- allocator

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(l.size() as u64, Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(n as u64, Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

// ---------------------------------------------------------------- tables

const HS_SECRET: &str = "bench-secret-bench-secret-bench-secret!!";
const CONTEXT_SECRET_B64: &str = "c3dpdGNoeWFyZC1iZW5jaC1jb250ZXh0LWtleS0zMi1ieXRlcyEh";
const NOW: u64 = 1_800_000_000;

struct Shape {
    envs: usize,
    ves_per_env: usize,
    apps: usize,
    deps_per_app: usize,
    comps: usize,
}

const SMALL: Shape = Shape {
    envs: 1,
    ves_per_env: 3,
    apps: 1,
    deps_per_app: 3,
    comps: 2,
};
/// 50 environments, 500 VEs, 2,000 deployments, 10,000 component versions.
const LARGE: Shape = Shape {
    envs: 50,
    ves_per_env: 10,
    apps: 20,
    deps_per_app: 100,
    comps: 5,
};

fn dep_name(app: usize, d: usize) -> String {
    format!("app{app}-d{d}")
}

/// The whole plugin configuration. Every deployment has its own component
/// versions (no distillation), so the large table has 10,000 clusters. Every VE
/// releases every app; the last VE of environment 0 carries a canary with 20
/// match entries (the last one matches `x-tenant: t-20`) and one with a claim
/// rule (for JWT cases) lives in the second-to-last VE.
fn table(s: &Shape, endpoint: &str, es_pem: &str, context_keys: bool) -> Value {
    let mut resources = Vec::new();
    for e in 0..s.envs {
        resources.push(json!({"kind": "Environment", "metadata": {"name": format!("env{e}")},
            "spec": {"subPath": format!("env{e}"), "defaultVirtualEnvironment": format!("env{e}-ve0"),
                     "releasePolicy": {"type": "Testing"},
                     "jwt": {"keys": [
                        {"kid": "hs", "alg": "HS256", "secret": HS_SECRET},
                        {"kid": "es", "alg": "ES256", "pem": es_pem}]}},
            "vars": {"who": "Universe", "color": "blue"}}));
        for v in 0..s.ves_per_env {
            let apps: serde_json::Map<String, Value> = (0..s.apps)
                .map(|a| {
                    (
                        format!("app{a}"),
                        json!(dep_name(a, (e + v) % s.deps_per_app)),
                    )
                })
                .collect();
            resources.push(
                json!({"kind": "VirtualEnvironment", "metadata": {"name": format!("env{e}-ve{v}")},
                "spec": {"environment": format!("env{e}"), "release": {"apps": apps}},
                "vars": {"who": format!("ve{v}")}}),
            );
        }
    }
    for a in 0..s.apps {
        for d in 0..s.deps_per_app {
            let comps: serde_json::Map<String, Value> = (0..s.comps)
                .map(|c| {
                    let mut spec = json!({"version": format!("v{a}-{d}-{c}"), "endpoints": [endpoint],
                        "routes": [{"match": {"pathPrefix": format!("/app{a}/c{c}")}}],
                        "vars": ["who"]});
                    if c + 1 < s.comps {
                        spec["dependencies"] = json!([format!("c{}", c + 1)]);
                    }
                    (format!("c{c}"), spec)
                })
                .collect();
            resources.push(json!({"kind": "AppDeployment", "metadata": {"name": dep_name(a, d)},
                "spec": {"app": format!("app{a}"), "version": format!("v{d}"), "components": comps}}));
        }
    }
    let last = s.ves_per_env - 1;
    let mut rules: Vec<Value> = (0..19)
        .map(|i| {
            if i % 2 == 0 {
                json!({"headers": {format!("x-canary-{i}"): "yes"}})
            } else {
                json!({"query": {format!("canary{i}"): "yes"}})
            }
        })
        .collect();
    rules.push(json!({"headers": {"x-tenant": "t-20"}}));
    let app = s.apps - 1;
    resources.push(json!({"kind": "Canary", "metadata": {"name": "twenty"},
        "spec": {"virtualEnvironment": format!("env0-ve{last}"), "app": format!("app{app}"),
                 "deployment": dep_name(app, s.deps_per_app - 1), "match": rules, "weight": "5%"}}));
    resources.push(json!({"kind": "Canary", "metadata": {"name": "claims"},
        "spec": {"virtualEnvironment": format!("env0-ve{}", last - 1), "app": format!("app{app}"),
                 "deployment": dep_name(app, s.deps_per_app - 1),
                 "match": [{"claims": {"role": "beta-tester"}}]}}));
    let mut settings = json!({});
    if context_keys {
        settings = json!({"contextKeys": [{"kid": "k1", "secret": CONTEXT_SECRET_B64}]});
    }
    json!({"settings": settings, "resources": resources})
}

fn compile(config: &Value) -> Index {
    let config: PluginConfig = match serde_json::from_value(config.clone()) {
        Ok(c) => c,
        Err(e) => fail(&format!("bench table does not parse: {e}")),
    };
    match Index::compile(&config) {
        Ok(i) => i,
        Err(e) => fail(&format!("bench table does not compile: {e}")),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("{msg}");
    std::process::exit(2)
}

// ---------------------------------------------------------------- cases

struct Case {
    name: &'static str,
    method: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    source: Option<&'static str>,
    expect_kind: &'static str,
}

fn h(k: &str, v: &str) -> (String, String) {
    (k.to_string(), v.to_string())
}

/// Headers a browser-ish client sends; routing metadata comes on top.
fn base_headers(path: &str) -> Vec<(String, String)> {
    vec![
        h(":authority", "app.example.com"),
        h(":path", path),
        h(":method", "GET"),
        h(":scheme", "http"),
        h("user-agent", "Mozilla/5.0 (X11; Linux x86_64) bench"),
        h("accept", "*/*"),
        h("accept-encoding", "gzip, deflate, br"),
        h("x-forwarded-proto", "http"),
        h("x-request-id", "6b0c6b52-5b3c-4d8c-9a57-6f7c5a1f2e11"),
    ]
}

fn cases(s: &Shape, hs_token: &str, es_token: &str) -> Vec<Case> {
    let app = s.apps - 1; // the last app: the longest scan of release routes
    let comp = s.comps - 1;
    let last = s.ves_per_env - 1;
    let env = s.envs - 1;
    let path = |e: usize| format!("/env{e}/app{app}/c{comp}/items/42");
    let mk = |name, p: String, extra: Vec<(String, String)>, kind| {
        let mut headers = base_headers(&p);
        headers.extend(extra);
        Case {
            name,
            method: "GET",
            path: p,
            headers,
            source: Some("10.1.2.3:5555"),
            expect_kind: kind,
        }
    };
    vec![
        mk("release", path(env), vec![], "release"),
        mk(
            "release_ve",
            path(env),
            vec![h("kf-ve", &format!("env{env}-ve0"))],
            "release",
        ),
        mk(
            "explicit_kf_dep",
            path(env),
            vec![h("kf-dep", &dep_name(app, s.deps_per_app / 2))],
            "explicit",
        ),
        mk(
            "canary_20_match_last",
            path(0),
            vec![h("kf-ve", &format!("env0-ve{last}")), h("x-tenant", "t-20")],
            "canary-match:19",
        ),
        mk(
            "canary_20_no_match",
            path(0),
            vec![h("kf-ve", &format!("env0-ve{last}")), h("cookie", "a=b")],
            "canary-",
        ),
        mk(
            "jwt_hs256",
            path(0),
            vec![
                h("kf-ve", &format!("env0-ve{}", last - 1)),
                h("authorization", &format!("Bearer {hs_token}")),
            ],
            "canary-match:0",
        ),
        mk(
            "jwt_es256",
            path(0),
            vec![
                h("kf-ve", &format!("env0-ve{}", last - 1)),
                h("authorization", &format!("Bearer {es_token}")),
            ],
            "canary-match:0",
        ),
    ]
}

fn request<'a>(c: &'a Case) -> Request<'a> {
    Request {
        method: c.method,
        path: &c.path,
        headers: &c.headers,
        source_address: c.source,
        now_unix_seconds: NOW,
    }
}

#[inline(never)]
fn bench_loop(index: &Index, req: &Request<'_>, n: u64) -> usize {
    let mut acc = 0usize;
    for _ in 0..n {
        match index.route(black_box(req)) {
            Ok(d) => acc += black_box(d).cluster.len(),
            Err(e) => fail(&format!("decision failed: {e:?}")),
        }
    }
    acc
}

fn measure(index: &Index, c: &Case, sample: Duration, samples: usize) -> (f64, f64, f64, f64, f64) {
    let req = request(c);
    // Calibrate: iterations per sample.
    let mut n = 1u64;
    loop {
        let t = Instant::now();
        black_box(bench_loop(index, &req, n));
        if t.elapsed() >= sample / 4 || n >= 1 << 30 {
            let per = t.elapsed().as_secs_f64() / n as f64;
            n = ((sample.as_secs_f64() / per) as u64).max(1);
            break;
        }
        n *= 2;
    }
    let mut ns: Vec<f64> = (0..samples)
        .map(|_| {
            let t = Instant::now();
            black_box(bench_loop(index, &req, n));
            t.elapsed().as_nanos() as f64 / n as f64
        })
        .collect();
    ns.sort_by(|a, b| a.total_cmp(b));
    let (a0, b0) = (ALLOCS.load(Relaxed), BYTES.load(Relaxed));
    const K: u64 = 1000;
    black_box(bench_loop(index, &req, K));
    let allocs = (ALLOCS.load(Relaxed) - a0) as f64 / K as f64;
    let bytes = (BYTES.load(Relaxed) - b0) as f64 / K as f64;
    (ns[ns.len() / 2], ns[0], ns[ns.len() - 1], allocs, bytes)
}

struct Fixture {
    name: &'static str,
    shape: &'static Shape,
    index: Index,
    context_index: Index,
    cases: Vec<Case>,
}

fn fixtures(only: Option<&str>) -> Vec<Fixture> {
    let es = ES256KeyPair::generate().with_key_id("es");
    let es_pem = es
        .public_key()
        .to_pem()
        .unwrap_or_else(|e| fail(&format!("{e}")));
    let hs = HS256Key::from_bytes(HS_SECRET.as_bytes()).with_key_id("hs");
    let claims = || {
        let mut c = Claims::with_custom_claims(
            json!({"role": "beta-tester"}),
            jwt_simple::prelude::Duration::from_hours(1),
        )
        .with_subject("user-17");
        c.issued_at = Some(UnixTimeStamp::from_secs(NOW - 10));
        c.expires_at = Some(UnixTimeStamp::from_secs(NOW + 3600));
        c.invalid_before = Some(UnixTimeStamp::from_secs(NOW - 10));
        c
    };
    let hs_token = hs
        .authenticate(claims())
        .unwrap_or_else(|e| fail(&format!("{e}")));
    let es_token = es.sign(claims()).unwrap_or_else(|e| fail(&format!("{e}")));
    [("small", &SMALL), ("large", &LARGE)]
        .into_iter()
        .filter(|(n, _)| only.is_none_or(|o| o == *n))
        .map(|(name, shape)| {
            let t = Instant::now();
            let index = compile(&table(shape, "127.0.0.1:10000", &es_pem, false));
            let compile_ms = t.elapsed().as_secs_f64() * 1e3;
            let context_index = compile(&table(shape, "127.0.0.1:10000", &es_pem, true));
            eprintln!(
                "table={name} compile_ms={compile_ms:.1} clusters={}",
                index.clusters().len()
            );
            Fixture {
                name,
                shape,
                index,
                context_index,
                cases: cases(shape, &hs_token, &es_token),
            }
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let arg = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .map(|i| args.get(i + 1).cloned())
    };
    if let Some(which) = arg("--emit") {
        let shape = match which.as_deref() {
            Some("large") => &LARGE,
            _ => &SMALL,
        };
        let endpoint = args.last().cloned().unwrap_or_default();
        let es = ES256KeyPair::generate();
        let pem = es.public_key().to_pem().unwrap_or_default();
        let config = table(shape, &endpoint, &pem, true);
        let clusters: Vec<String> = compile(&config)
            .clusters()
            .iter()
            .map(|c| c.name.clone())
            .collect();
        println!(
            "{}",
            json!({"plugin_config": config.to_string(), "clusters": clusters,
                   "path": format!("/env0/app{}/c{}/items/42", shape.apps - 1, shape.comps - 1)})
        );
        return;
    }
    let smoke = args.iter().any(|a| a == "--smoke");
    let filter = arg("--filter").flatten();
    if let Some(Some(case)) = arg("--count") {
        let pos = args.iter().position(|a| a == "--count").unwrap_or(0);
        let n: u64 = args
            .get(pos + 2)
            .and_then(|s| s.parse().ok())
            .unwrap_or(1000);
        let (table_name, case_name) = case.split_once('/').unwrap_or(("small", case.as_str()));
        let (case_name, ctx) = match case_name.strip_suffix("+ctx") {
            Some(c) => (c, true),
            None => (case_name, false),
        };
        let f = fixtures(Some(table_name));
        let fx = &f[0];
        let c = fx
            .cases
            .iter()
            .find(|c| c.name == case_name)
            .unwrap_or_else(|| fail("no such case"));
        let index = if ctx { &fx.context_index } else { &fx.index };
        let req = request(c);
        black_box(bench_loop(index, &req, 10)); // warm caches, lazy statics
        println!("{}", bench_loop(index, &req, n));
        return;
    }
    let (sample, samples) = if smoke {
        (Duration::from_millis(5), 7)
    } else {
        (Duration::from_millis(25), 15)
    };
    for fx in fixtures(None) {
        let _ = fx.shape;
        for c in &fx.cases {
            for (ctx, index) in [(false, &fx.index), (true, &fx.context_index)] {
                // Context signing only matters once; show it for the plain cases.
                if ctx
                    && !matches!(
                        c.name,
                        "release" | "explicit_kf_dep" | "canary_20_match_last"
                    )
                {
                    continue;
                }
                let name = format!("{}{}", c.name, if ctx { "+ctx" } else { "" });
                if filter
                    .as_ref()
                    .is_some_and(|f| !name.contains(f.as_str()) && !fx.name.contains(f.as_str()))
                {
                    continue;
                }
                let kind = match index.route(&request(c)) {
                    Ok(d) => d.kind.to_string(),
                    Err(e) => fail(&format!("{name}: {e:?}")),
                };
                if !kind.starts_with(c.expect_kind) {
                    fail(&format!(
                        "{name} on {}: expected {} got {kind}",
                        fx.name, c.expect_kind
                    ));
                }
                let (med, min, max, allocs, bytes) = measure(index, c, sample, samples);
                println!(
                    "case={name} table={} ns_median={med:.0} ns_min={min:.0} ns_max={max:.0} allocs={allocs:.1} bytes={bytes:.0} kind={kind}",
                    fx.name
                );
            }
        }
    }
}
