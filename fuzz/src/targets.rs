//! The fuzz targets, as plain functions: `fuzz_targets/<name>.rs` hands each
//! libFuzzer input to [`TARGETS`]' function of that name, and
//! `control-xds/tests/fuzz_seeds.rs` replays every seed and regression input
//! through the same functions in `cargo test` (this file is included there).
//! Also the tables they route by and the way a fuzz input becomes a request.
//!
//! A request input is text, one item per line: the method, the `:path`, the
//! peer address (`ip:port`, or empty), then `name: value` header lines (names
//! are lower-cased, as Envoy hands them over). Seeds in `corpus/<target>/`.

use std::borrow::Cow;
use std::path::Path;
use std::sync::LazyLock;

use base64::Engine;
use switchyard::api::read_bodies;
use switchyard::explain::explain;
use switchyard::load;
use switchyard::snapshot_builder::{plugin_config as served_config, BuildOptions};
use switchyard::views::ExplainView;
use switchyard_engine::canary::jwt::JwtVerifier;
use switchyard_engine::config::Mode;
use switchyard_engine::context::ContextKey;
use switchyard_engine::path::normalize;
use switchyard_engine::resources::JwtSettings;
use switchyard_engine::{ConfigError, Index, PluginConfig, Request, Resource, Settings};

/// The canary example (JWT with HS256, trusted proxies, geo header, sticky
/// weight) and the hello-world example (where both define a resource, the
/// canary example's wins), as the control plane loads them.
pub fn example_resources() -> Vec<Resource> {
    let mut out = Vec::new();
    for (name, text) in [
        (
            "canary.yaml",
            include_str!("../../examples/canary/resources.yaml"),
        ),
        (
            "hello-world.yaml",
            include_str!("../../examples/hello-world/resources.yaml"),
        ),
    ] {
        match load::parse_text(Path::new(name), text) {
            // The canary example repeats two hello-world deployments: keep the first.
            Ok(docs) => {
                for d in docs {
                    if !out.iter().any(|r: &Resource| r.id() == d.resource.id()) {
                        out.push(d.resource);
                    }
                }
            }
            Err(e) => panic!("example {name} does not load: {e}"),
        }
    }
    out
}

/// A fixed context-signing key, so `kf-context` tokens can be seeded.
pub fn context_keys() -> Vec<ContextKey> {
    vec![ContextKey {
        kid: "fuzz".into(),
        secret: "ZnV6ei1jb250ZXh0LWtleS0wMTIzNDU2Nzg5YWJjZGVmZ2hpams=".into(),
    }]
}

/// The plugin configuration the control plane would push for `resources`.
pub fn example_config(resources: Vec<Resource>, mode: Mode) -> PluginConfig {
    PluginConfig {
        settings: Settings {
            mode,
            context_keys: context_keys(),
            ..Settings::default()
        },
        resources,
    }
}

/// Compiles the examples for `mode` (they are valid: a failure is a bug).
pub fn example_index(mode: Mode) -> Index {
    match Index::compile(&example_config(example_resources(), mode)) {
        Ok(i) => i,
        Err(e) => panic!("examples do not compile: {e}"),
    }
}

/// A request described by fuzz input, owning its strings.
pub struct OwnedRequest {
    pub method: String,
    pub path: String,
    pub source: Option<String>,
    pub headers: Vec<(String, String)>,
    pub now: u64,
}

/// A fixed clock (2026-11-22) so tokens in the corpus stay valid.
pub const NOW: u64 = 1_795_392_000;

impl OwnedRequest {
    pub fn parse(data: &[u8]) -> Option<OwnedRequest> {
        let text = std::str::from_utf8(data).ok()?;
        let mut lines = text.split('\n');
        let method = lines.next()?.to_string();
        let path = lines.next()?.to_string();
        let source = lines.next().filter(|s| !s.is_empty()).map(str::to_string);
        let headers = lines
            .filter_map(|l| {
                // `:authority: x` names a pseudo-header.
                let (pseudo, l) = match l.strip_prefix(':') {
                    Some(rest) => (":", rest),
                    None => ("", l),
                };
                let (k, v) = l.split_once(':')?;
                let name = format!("{pseudo}{}", k.trim().to_ascii_lowercase());
                Some((name, v.trim().to_string()))
            })
            .collect();
        Some(OwnedRequest {
            method,
            path,
            source,
            headers,
            now: NOW,
        })
    }

    pub fn request(&self) -> Request<'_> {
        Request {
            method: &self.method,
            path: &self.path,
            headers: &self.headers,
            source_address: self.source.as_deref(),
            now_unix_seconds: self.now,
        }
    }
}

/// A fuzz target: one input, panics when a property does not hold.
pub type Target = fn(&[u8]);

/// Every target by name: what `scripts/fuzz.sh` runs and the replay test replays.
pub const TARGETS: [(&str, Target); 8] = [
    ("path", path),
    ("request", request),
    ("internal", internal),
    ("jwt", jwt),
    ("explain_vs_filter", explain_vs_filter),
    ("plugin_config", plugin_config),
    ("resources", resources),
    ("api_bodies", api_bodies),
];

/// Path normalization (`filter/engine/src/path.rs`): never panics, a normal path
/// starts with `/` and is a fixed point (normalizing it again changes nothing and
/// borrows), and an accepted path keeps no dot segment and no `//`.
pub fn path(data: &[u8]) {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(normal) = normalize(path) else {
        return;
    };
    assert!(normal.starts_with('/'), "{path:?} → {normal:?}");
    match normalize(&normal) {
        Ok(Cow::Borrowed(again)) => assert_eq!(again, &*normal, "{path:?}"),
        Ok(Cow::Owned(again)) => panic!("{path:?} → {normal:?} → {again:?}: not a fixed point"),
        Err(e) => panic!("{path:?} → {normal:?} refused the second time: {e:?}"),
    }
    assert!(!normal.contains("//"), "{path:?} → {normal:?}");
    for segment in normal.split('/') {
        assert!(segment != "." && segment != "..", "{path:?} → {normal:?}");
    }
}

static REQUEST_INDEX: LazyLock<Index> = LazyLock::new(|| example_index(Mode::Genesis));

/// The request side of the engine in genesis mode: path, query selectors,
/// headers, cookies, X-Forwarded-For, the JWT and the canary rules, against the
/// canary and hello-world examples. Never panics; a decision's cluster is one
/// the index has; an error has a DESIGN.md status.
pub fn request(data: &[u8]) {
    let Some(owned) = OwnedRequest::parse(data) else {
        return;
    };
    let req = owned.request();
    // The request's own accessors, as the canary rules use them.
    let _ = req.query_param("use_canary");
    let _ = req.cookie("session");
    match REQUEST_INDEX.route(&req) {
        Ok(d) => {
            assert!(
                REQUEST_INDEX.clusters().iter().any(|c| c.name == d.cluster),
                "unknown cluster {}",
                d.cluster
            );
            if let Some(p) = &d.rewritten_path {
                assert!(p.starts_with('/'), "forwarded path {p:?}");
            }
        }
        Err(e) => assert!((400..600).contains(&e.code.status())),
    }
}

static INTERNAL_INDEX: LazyLock<Index> = LazyLock::new(|| example_index(Mode::Internal));

/// Internal hops: `kf-context` verification and the delivery checks (internal
/// mode), against the examples with a fixed context key. Never panics; a
/// routed call goes to a cluster the index has.
pub fn internal(data: &[u8]) {
    let Some(owned) = OwnedRequest::parse(data) else {
        return;
    };
    match INTERNAL_INDEX.route_internal(&owned.request()) {
        Ok(d) => assert!(INTERNAL_INDEX
            .clusters()
            .iter()
            .any(|c| c.name == d.cluster)),
        Err(e) => assert!((400..600).contains(&e.code.status())),
    }
}

fn jwt_verifier(payload_header: bool) -> JwtVerifier {
    let mut settings = serde_json::json!({
        "issuers": ["https://auth.example.com"],
        "audiences": ["hello-world"],
        "keys": [
            {"kid": "demo", "alg": "HS256", "secret": "switchyard-demo-secret-change-me-0123456789"},
            {"alg": "HS384", "secret": "x".repeat(48)},
            {"kid": "rs", "alg": "RS256", "pem": include_str!("../keys/rsa2048.pub.pem")},
            {"kid": "ps", "alg": "PS256", "pem": include_str!("../keys/rsa2048.pub.pem")},
            {"kid": "es", "alg": "ES256", "pem": include_str!("../keys/p256.pub.pem")},
            {"kid": "es384", "alg": "ES384", "pem": include_str!("../keys/p384.pub.pem")},
            {"kid": "ed", "alg": "EdDSA", "pem": include_str!("../keys/ed.pub.pem")},
        ]
    });
    if payload_header {
        settings["trustedPayloadHeader"] = "x-jwt-payload".into();
    }
    let settings: JwtSettings = match serde_json::from_value(settings) {
        Ok(s) => s,
        Err(e) => panic!("fuzz JWT settings: {e}"),
    };
    match JwtVerifier::compile("Environment/fuzz", &settings) {
        Ok(v) => v,
        Err(e) => panic!("fuzz JWT keys: {e:?}"),
    }
}

static JWT_KEYS: LazyLock<JwtVerifier> = LazyLock::new(|| jwt_verifier(false));
static JWT_TRUSTING: LazyLock<JwtVerifier> = LazyLock::new(|| jwt_verifier(true));

/// `GET /` with `headers`, at the fuzz targets' fixed time.
fn get_root(headers: &[(String, String)]) -> Request<'_> {
    Request {
        method: "GET",
        path: "/",
        headers,
        source_address: None,
        now_unix_seconds: NOW,
    }
}

fn jwt_b64(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

/// JWT verification (`filter/engine/src/canary/jwt.rs`) with a key of every
/// algorithm family, and the trusted payload header. The first byte picks the
/// form: 0 a raw token; 1 `header JSON \n payload JSON \n signature` encoded
/// here (so the fuzzer explores claims, not base64); 2 a trusted payload header.
/// Properties: never panics; a token that verified once verifies again with the
/// same claims (the cache agrees with the check); forged tokens never verify.
pub fn jwt(data: &[u8]) {
    let Some((&form, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match form % 3 {
        0 | 1 => {
            let token = if form % 3 == 0 {
                text.to_string()
            } else {
                let mut parts = text.splitn(3, '\n');
                let header = jwt_b64(parts.next().unwrap_or(""));
                let payload = jwt_b64(parts.next().unwrap_or(""));
                format!("{header}.{payload}.{}", parts.next().unwrap_or(""))
            };
            let first = JWT_KEYS.verify(&token, NOW);
            if let Ok(claims) = &first {
                // Only the seeded HS256 demo tokens can verify: the fuzzer has no keys.
                assert_eq!(JWT_KEYS.verify(&token, NOW).as_ref(), Ok(claims), "{token}");
            }
            let headers = vec![("authorization".to_string(), format!("Bearer {token}"))];
            let _ = JWT_KEYS.claims(&get_root(&headers));
        }
        _ => {
            let headers = vec![("x-jwt-payload".to_string(), text.to_string())];
            let _ = JWT_TRUSTING.claims(&get_root(&headers));
        }
    }
}

fn explain_vs_filter_docs() -> Vec<load::Located> {
    let text = include_str!("../../examples/canary/resources.yaml");
    match load::parse_text(Path::new("canary.yaml"), text) {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    }
}

static EXPLAIN_VS_FILTER_EXPLAIN: LazyLock<Index> = LazyLock::new(|| {
    let settings = Settings {
        context_keys: context_keys(),
        ..Settings::default()
    };
    match load::compile(&explain_vs_filter_docs(), settings) {
        Ok(i) => i,
        Err(e) => panic!("{e}"),
    }
});

static EXPLAIN_VS_FILTER_FILTER: LazyLock<Index> = LazyLock::new(|| {
    let resources: Vec<_> = explain_vs_filter_docs()
        .into_iter()
        .map(|d| d.resource)
        .collect();
    let opts = BuildOptions {
        wasm_path: String::new(),
        genesis_listen: ("127.0.0.1".into(), 8080),
        internal_listen: None,
        context_keys: context_keys(),
    };
    let json = match serde_json::to_string(&served_config(&resources, &opts, Mode::Genesis)) {
        Ok(j) => j,
        Err(e) => panic!("{e}"),
    };
    match Index::from_json(&json) {
        Ok(i) => i,
        Err(e) => panic!("{e}"),
    }
});

fn explain_vs_filter_explained(index: &Index, owned: &OwnedRequest) -> ExplainView {
    fastrand::seed(0x5eed);
    explain(index, &owned.request())
}

/// Differential: `switchyard explain` (the control plane's index, compiled from
/// the YAML it loaded) and the filter (its index, compiled from the JSON the
/// control plane serves it) decide the same for the same request — same
/// decision or same refusal, same explanation. Random canary splits use the
/// same seed on both sides.
pub fn explain_vs_filter(data: &[u8]) {
    let Some(owned) = OwnedRequest::parse(data) else {
        return;
    };
    fastrand::seed(0x5eed);
    let a = EXPLAIN_VS_FILTER_EXPLAIN.route(&owned.request());
    fastrand::seed(0x5eed);
    let b = EXPLAIN_VS_FILTER_FILTER.route(&owned.request());
    assert_eq!(a, b);
    assert_eq!(
        explain_vs_filter_explained(&EXPLAIN_VS_FILTER_EXPLAIN, &owned),
        explain_vs_filter_explained(&EXPLAIN_VS_FILTER_FILTER, &owned)
    );
}

/// The plugin configuration the filter accepts (`on_configure`: JSON →
/// `PluginConfig` → `Index::compile`). Never panics; an accepted configuration
/// written back as JSON is accepted again (what the control plane re-serves).
pub fn plugin_config(data: &[u8]) {
    let Ok(config) = serde_json::from_slice::<PluginConfig>(data) else {
        return;
    };
    if Index::compile(&config).is_err() {
        return;
    }
    let json = match serde_json::to_string(&config) {
        Ok(j) => j,
        Err(e) => panic!("an accepted configuration cannot be written: {e}"),
    };
    if let Err(e) = Index::from_json(&json) {
        panic!("accepted, written back, refused: {e}\n{json}");
    }
}

/// The control plane's resource loader (`load::parse_text`, YAML documents or
/// JSON; the first byte picks) and validation (`load::compile`). Differential:
/// resources the control plane validates become, for each filter mode, the
/// plugin configuration `build_snapshot` compiles and serves as JSON; the
/// filter's `on_configure` path (JSON → `PluginConfig` → `Index::compile`) must
/// accept that JSON, with the same clusters.
pub fn resources(data: &[u8]) {
    let Some((&form, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let file = if form % 2 == 0 {
        "fuzz.yaml"
    } else {
        "fuzz.json"
    };
    let Ok(docs) = load::parse_text(Path::new(file), text) else {
        return;
    };
    if load::compile(&docs, Settings::default()).is_err() {
        return;
    }
    let resources: Vec<_> = docs.into_iter().map(|d| d.resource).collect();
    let opts = BuildOptions {
        wasm_path: "switchyard_filter.wasm".into(),
        genesis_listen: ("127.0.0.1".into(), 8080),
        internal_listen: Some(("127.0.0.1".into(), 15001)),
        context_keys: context_keys(),
    };
    for mode in [Mode::Genesis, Mode::Internal] {
        let config = served_config(&resources, &opts, mode);
        let served = match Index::compile(&config) {
            Ok(i) => i,
            Err(e) => panic!("validated, but build_snapshot refuses ({mode:?}): {e}"),
        };
        let json = match serde_json::to_string(&config) {
            Ok(j) => j,
            Err(e) => panic!("cannot encode ({mode:?}): {e}"),
        };
        // The filter's on_configure.
        let filter = serde_json::from_slice::<PluginConfig>(json.as_bytes())
            .map_err(ConfigError::from)
            .and_then(|c| Index::compile(&c));
        match filter {
            Ok(f) => assert_eq!(f.clusters(), served.clusters(), "{json}"),
            Err(e) => {
                panic!("validated and served, but the filter refuses ({mode:?}): {e}\n{json}")
            }
        }
    }
    istio_render(&resources);
}

/// `render istio` of validated resources: objects, or one of the documented
/// Istio refusals — never a plugin configuration the filter refuses; every
/// subset a DNS label.
fn istio_render(resources: &[switchyard_engine::Resource]) {
    use switchyard::istio::{render_istio, IstioError, IstioOptions, Via};
    let config = PluginConfig {
        settings: Settings::default(),
        resources: resources.to_vec(),
    };
    let Ok(index) = Index::compile(&config) else {
        return;
    };
    let opts = IstioOptions {
        namespace: "shop".into(),
        gateway_namespace: "istio-system".into(),
        gateway_selector: ("istio".into(), "ingressgateway".into()),
        gateway: None,
        version_label: "version".into(),
        pull_from: Some(("switchyard.switchyard-system".into(), 18001)),
        via: Via::Wasmplugin,
        url: "oci://registry/switchyard-filter:0".into(),
        sha256: None,
        context_key: None,
        pull_token: None,
    };
    match render_istio(&config, &index, &opts) {
        Ok(objects) => {
            for o in objects.iter().filter(|o| o["kind"] == "DestinationRule") {
                for s in o["spec"]["subsets"].as_array().into_iter().flatten() {
                    let name = s["name"].as_str().unwrap_or_default();
                    assert!(
                        switchyard_engine::validate::is_dns_label(name),
                        "subset {name} is no DNS label"
                    );
                }
            }
        }
        Err(e @ IstioError::Refused { .. }) | Err(e @ IstioError::Encode(_)) => {
            panic!("render istio of validated resources: {e}")
        }
        Err(_) => {}
    }
}

static API_BODIES_INDEX: LazyLock<Index> = LazyLock::new(|| example_index(Mode::Genesis));

/// The control plane's HTTP API bodies (`control-xds/src/api/`): apply /
/// publish (down to the resource documents), delete, release, rollback, retire
/// and explain (down to the explained request, against the canary example).
/// Never panics.
pub fn api_bodies(data: &[u8]) {
    read_bodies(data, &API_BODIES_INDEX, NOW);
}
