use super::*;
use crate::cli::client::{Client, ClientError};
use crate::load;
use crate::snapshot_builder::BuildOptions;
use crate::state::Store;
use crate::views;
use crate::xds::SnapshotCache;
use serde_json::{json, Value};

use crate::test_fixtures::WEB_V1 as RESOURCES;

fn server() -> String {
    server_with(None)
}

/// Serves the API (with `tokens`: authenticated) through the server loop
/// `serve` uses, in a background runtime; returns its URL.
fn server_with(tokens: Option<Arc<Tokens>>) -> String {
    let docs = load::parse_text(std::path::Path::new("r.yaml"), RESOURCES).unwrap();
    let (store, _) = Store::new().apply(&docs, "t").unwrap();
    let opts = BuildOptions {
        wasm_path: "/filter.wasm".into(),
        genesis_listen: ("127.0.0.1".into(), 8080),
        internal_listen: None,
        context_keys: Vec::new(),
    };
    let plane = Arc::new(ControlPlane::start(store, SnapshotCache::new(), opts, None).unwrap());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            crate::http_server::serve(
                l,
                router(plane, tokens),
                None,
                Default::default(),
                std::future::pending(),
            )
            .await;
        });
    });
    format!("http://{addr}")
}

fn api_error(r: Result<Value, ClientError>) -> (u16, String, Value) {
    match r {
        Err(ClientError::Api { status, body }) => (
            status,
            body.error.clone(),
            serde_json::to_value(body).unwrap(),
        ),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[test]
fn errors_are_json_with_status_codes() {
    let c = Client::new(&server());
    let (status, code, _) = api_error(c.post::<Value, _>("/v1/apply", &json!({"nope": 1})));
    assert_eq!((status, code.as_str()), (400, "bad_request"));

    let bad = RESOURCES.replace("/hello", "hello");
    let (status, code, body) =
        api_error(c.post::<Value, _>("/v1/apply", &json!({"filename": "x.yaml", "text": bad})));
    assert_eq!((status, code.as_str()), (400, "invalid_resources"));
    assert_eq!(body["problems"][0]["file"], "x.yaml");
    assert!(body["problems"][0]["line"].as_u64().unwrap() > 10, "{body}");

    let (status, code, _) = api_error(c.post::<Value, _>(
        "/v1/release",
        &json!({"deployment": "web-v9", "virtualEnv": "team-a"}),
    ));
    assert_eq!((status, code.as_str()), (404, "not_found"));
    let (status, code, _) = api_error(c.post::<Value, _>(
        "/v1/rollback",
        &json!({"virtualEnv": "team-a", "app": "web"}),
    ));
    assert_eq!((status, code.as_str()), (409, "conflict"));
    let (status, _, _) = api_error(c.get::<Value>("/v1/history", &[("virtualEnv", "nope")]));
    assert_eq!(status, 404);
    let (status, _, _) = api_error(c.get::<Value>("/v1/nothing", &[]));
    assert_eq!(status, 404);
}

#[test]
fn every_call_needs_a_token_of_a_role_that_grants_it() {
    let (tokens, admin) = Tokens::open(None).unwrap();
    let tokens = Arc::new(tokens);
    let url = server_with(Some(tokens.clone()));
    let admin = Client::new(&url).with_token(admin);
    let token = |role: &str| {
        let t = admin
            .post::<Value, _>("/v1/tokens", &json!({"name": role, "role": role}))
            .unwrap();
        Client::new(&url).with_token(t["token"].as_str().map(str::to_string))
    };
    let (read, release, pull) = (token("read"), token("release"), token("pull"));
    let nobody = Client::new(&url);
    let wrong = Client::new(&url).with_token(Some("syt_wrong".into()));
    let release_body = json!({"deployment": "web-v1", "virtualEnv": "team-a"});
    let apply_body = json!({"filename": "r.yaml", "text": RESOURCES});

    for c in [&nobody, &wrong] {
        let (status, code, body) = api_error(c.get::<Value>("/v1/status", &[]));
        assert_eq!((status, code.as_str()), (401, "unauthenticated"), "{body}");
    }
    // read: reads, not changes, not the secrets
    assert!(read.get::<Value>("/v1/status", &[]).is_ok());
    assert!(read.get::<Value>("/v1/history", &[]).is_ok());
    assert!(read
        .post::<Value, _>("/v1/explain", &json!({"path": "/dev/hello"}))
        .is_ok());
    for r in [
        read.post::<Value, _>("/v1/release", &release_body),
        read.get::<Value>("/v1/config", &[]),
        read.post::<Value, _>("/v1/apply", &apply_body),
    ] {
        let (status, code, body) = api_error(r);
        assert_eq!((status, code.as_str()), (403, "forbidden"), "{body}");
        assert!(
            body["message"].as_str().unwrap().contains("role read"),
            "{body}"
        );
    }
    // release: releases, not apply, keys, tokens or the secrets
    assert!(release
        .post::<Value, _>("/v1/release", &release_body)
        .is_ok());
    for r in [
        release.post::<Value, _>("/v1/apply", &apply_body),
        release.post::<Value, _>("/v1/keys/rotate", &json!({})),
        release.get::<Value>("/v1/tokens", &[]),
        release.get::<Value>("/v1/config", &[]),
    ] {
        assert_eq!(api_error(r).0, 403);
    }
    // admin: everything but the secrets
    assert!(admin.post::<Value, _>("/v1/apply", &apply_body).is_ok());
    assert_eq!(api_error(admin.get::<Value>("/v1/config", &[])).0, 403);
    // pull: only the secrets
    assert!(pull.get::<Value>("/v1/config", &[]).unwrap()["resources"].is_array());
    assert_eq!(api_error(pull.get::<Value>("/v1/status", &[])).0, 403);
    // a revoked token stops working at once; the last admin stays
    admin
        .post::<Value, _>("/v1/tokens/revoke", &json!({"name": "read"}))
        .unwrap();
    assert_eq!(api_error(read.get::<Value>("/v1/status", &[])).0, 401);
    let (status, _, _) =
        api_error(admin.post::<Value, _>("/v1/tokens/revoke", &json!({"name": "admin"})));
    assert_eq!(status, 409);
    // no token appears in any answer but the one that created it
    let list = admin.get::<Value>("/v1/tokens", &[]).unwrap().to_string();
    assert!(!list.contains("syt_") && !list.contains("sha256"), "{list}");
    assert!(Client::new(&url).get::<Value>("/healthz", &[]).is_ok());
}

#[test]
fn bodies_are_limited_and_bad_input_is_a_json_error() {
    let c = Client::new(&server());
    let big = "x".repeat(MAX_BODY + 1);
    let (status, code, _) =
        api_error(c.post::<Value, _>("/v1/apply", &json!({"filename": "a", "text": big})));
    assert_eq!((status, code.as_str()), (413, "body_too_large"));
    let (status, code, _) = api_error(c.get::<Value>("/v1/live", &[("generation", "x")]));
    assert_eq!((status, code.as_str()), (400, "bad_request"));
    let (status, code, _) = api_error(c.post::<Value, _>("/v1/release", &json!([1, 2])));
    assert_eq!((status, code.as_str()), (400, "bad_request"));
}

#[test]
fn resources_never_show_secrets() {
    let env = "kind: Environment\nmetadata: {name: dev}\nspec:\n  subPath: dev\n  defaultVirtualEnvironment: team-a\n  jwt:\n    keys: [{kid: k, alg: HS256, secret: this-hmac-secret-is-longer-than-32-bytes}]\n";
    let c = Client::new(&server());
    c.post::<Value, _>("/v1/apply", &json!({"filename": "e.yaml", "text": env}))
        .unwrap();
    let all = c.get::<Value>("/v1/resources", &[]).unwrap().to_string();
    assert!(
        !all.contains("this-hmac-secret-is-longer-than-32-bytes"),
        "{all}"
    );
    assert!(all.contains("(redacted)"), "{all}");
}

#[test]
fn reads_and_explain() {
    let c = Client::new(&server());
    let status = c.get::<Value>("/v1/status", &[]).unwrap();
    assert_eq!(status["version"], "1");
    assert_eq!(status["releases"][0]["apps"]["web"], "web-v1");
    assert!(!status.to_string().contains("secret"));
    let config = c.get::<Value>("/v1/config", &[]).unwrap();
    assert_eq!(config["resources"].as_array().unwrap().len(), 3);
    assert_eq!(
        c.get::<Value>("/v1/resources", &[]).unwrap()["resources"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let e = c
        .post::<Value, _>(
            "/v1/explain",
            &json!({"path": "/dev/hello", "headers": [["X-A", "1"]]}),
        )
        .unwrap();
    assert_eq!(
        (e["routed"].clone(), e["deployment"].clone()),
        (json!(true), json!("web-v1"))
    );
    assert!(e["human"].as_str().unwrap().contains("web-v1"));
    let e = c
        .post::<Value, _>("/v1/explain", &json!({"path": "/nowhere"}))
        .unwrap();
    assert_eq!(e["error"], "environment_not_found");
}

/// Every answer of a real server reads as its view and serializes back to the
/// same JSON, byte for byte.
#[test]
fn answers_round_trip_through_their_views() {
    use views::assert_round_trip;
    let (tokens, admin) = Tokens::open(None).unwrap();
    let url = server_with(Some(Arc::new(tokens)));
    let c = Client::new(&url).with_token(admin);
    let get = |path: &str, q: &[(&str, &str)]| c.get::<Value>(path, q).unwrap();
    let post = |path: &str, body: Value| c.post::<Value, _>(path, &body).unwrap();
    assert_round_trip::<views::HealthView>(get("/healthz", &[]));
    assert_round_trip::<views::ResourcesView>(get("/v1/resources", &[]));
    let both = crate::test_fixtures::web_v1_and_v2();
    assert_round_trip::<views::ChangeView>(post(
        "/v1/apply",
        json!({"filename": "r.yaml", "text": both}),
    ));
    let released = post(
        "/v1/release",
        json!({"deployment": "web-v2", "virtualEnv": "team-a", "who": "joe"}),
    );
    assert!(
        !released["releases"].as_array().unwrap().is_empty(),
        "{released}"
    );
    assert_round_trip::<views::ChangeView>(released);
    assert_round_trip::<views::ChangeView>(post("/v1/keys/rotate", json!({})));
    assert_round_trip::<views::StatusView>(get("/v1/status", &[]));
    assert_round_trip::<views::HistoryView>(get("/v1/history", &[]));
    assert_round_trip::<views::LiveView>(get(
        "/v1/live",
        &[("generation", "1"), ("timeoutMs", "0")],
    ));
    assert_round_trip::<views::CanaryListView>(get("/v1/canaries", &[]));
    for path in ["/dev/hello", "/nowhere"] {
        assert_round_trip::<views::ExplainView>(post("/v1/explain", json!({"path": path})));
    }
    let created = post("/v1/tokens", json!({"name": "ci", "role": "pull"}));
    assert_round_trip::<views::TokenCreatedView>(created.clone());
    assert_round_trip::<views::TokenListView>(get("/v1/tokens", &[]));
    assert_round_trip::<views::TokenRevokedView>(post("/v1/tokens/revoke", json!({"name": "ci"})));
    let errors = [
        c.post::<Value, _>(
            "/v1/apply",
            &json!({"filename": "x.yaml", "text": "kind: Nope"}),
        ),
        c.get::<Value>("/v1/nothing", &[]),
    ];
    for e in errors {
        let (_, _, body) = api_error(e);
        assert_round_trip::<views::ErrorView>(body);
    }
}

/// The API answers a path the route table does not name with 404, after the
/// admin check (as before the table).
#[test]
fn a_path_without_a_route_needs_admin_and_is_not_found() {
    let (tokens, admin) = Tokens::open(None).unwrap();
    let url = server_with(Some(Arc::new(tokens)));
    let (status, code, _) = api_error(Client::new(&url).get::<Value>("/v1/nothing", &[]));
    assert_eq!((status, code.as_str()), (401, "unauthenticated"));
    let admin = Client::new(&url).with_token(admin);
    let (status, code, _) = api_error(admin.get::<Value>("/v1/nothing", &[]));
    assert_eq!((status, code.as_str()), (404, "not_found"));
}

/// The module comment's table lists every route with its role.
#[test]
fn the_documented_table_is_the_route_table() {
    let doc = include_str!("mod.rs");
    for r in routes() {
        let role = match r.access {
            Access::Anyone => "none".to_string(),
            Access::Needs(role) => role.to_string(),
        };
        let row = format!("//! | {} | {} | {role} |", r.method, r.path);
        assert!(doc.contains(&row), "no row `{row}` in api/mod.rs");
    }
}
