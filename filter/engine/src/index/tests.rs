use super::*;
use crate::error::ValidationError;
use crate::test_fixtures::hello_world;
use serde_json::json;

fn problems(config: serde_json::Value) -> Vec<ValidationError> {
    match Index::from_json(&config.to_string()) {
        Err(ConfigError::Invalid(errors)) => errors,
        other => unreachable!("expected validation errors, got {other:?}"),
    }
}

#[test]
fn every_problem_is_reported_with_resource_and_field() {
    let mut config = hello_world();
    let resources = config["resources"].as_array_mut().unwrap();
    resources.push(
        json!({"kind": "VirtualEnvironment", "metadata": {"name": "Bad"},
        "spec": {"environment": "nowhere"}}),
    );
    resources.push(
        json!({"kind": "AppDeployment", "metadata": {"name": "broken"},
        "spec": {"app": "hello-world", "components": {"frontend": {
            "version": "zz", "endpoints": ["nohost"],
            "routes": [{"match": {"pathPrefix": "hello"}}],
            "options": {"loadbalancing": "hash"},
            "dependencies": ["ghost"]}}}}),
    );
    resources.push(
        json!({"kind": "VirtualEnvironment", "metadata": {"name": "live2"},
        "spec": {"environment": "prod", "release": {"apps": {"hello-world": "broken"}}}}),
    );
    let errors = problems(config);
    let got: Vec<(String, String)> = errors
        .iter()
        .map(|e| (e.resource.clone(), e.field.clone()))
        .collect();
    for expected in [
        ("VirtualEnvironment/Bad", "metadata.name"),
        ("VirtualEnvironment/Bad", "spec.environment"),
        (
            "AppDeployment/broken",
            "spec.components.frontend.endpoints[0]",
        ),
        (
            "AppDeployment/broken",
            "spec.components.frontend.routes[0].match.pathPrefix",
        ),
        ("AppDeployment/broken", "spec.components.frontend.options"),
        (
            "AppDeployment/broken",
            "spec.components.frontend.dependencies[0]",
        ),
        ("VirtualEnvironment/live2", "spec.release.apps.hello-world"),
    ] {
        assert!(
            got.contains(&(expected.0.into(), expected.1.into())),
            "missing {expected:?} in {got:?}"
        );
    }
    let hash = errors
        .iter()
        .find(|e| e.field == "spec.components.frontend.options")
        .unwrap();
    assert_eq!(
        hash.reason,
        "Hash header must be present when loadbalancing is set to hash."
    );
}

#[test]
fn unknown_fields_and_syntax_errors_have_positions() {
    let err = Index::from_json(r#"{"resources": [{"kind": "Environment", "metadata": {"name": "dev"}, "spec": {"subPath": "dev", "colour": 1}}]}"#).unwrap_err();
    match err {
        ConfigError::Syntax {
            line,
            column,
            message,
        } => {
            assert_eq!(line, 1);
            assert!(column > 0);
            assert!(message.contains("colour"), "{message}");
        }
        other => unreachable!("{other:?}"),
    }
}

#[test]
fn shared_component_version_must_have_one_protocol() {
    let mut config = hello_world();
    let resources = config["resources"].as_array_mut().unwrap();
    let mut d = crate::test_fixtures::deployment("hello-world-v4", "v4", "f1", "b4", 9204);
    d["spec"]["components"]["frontend"]["protocol"] = json!("grpc");
    resources.push(d);
    let errors = problems(config);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].field.ends_with("frontend.protocol"), "{errors:?}");
    assert!(errors[0].reason.contains("another protocol"));
    let index = crate::test_fixtures::index(&hello_world());
    assert!(index.clusters().iter().all(|c| !c.protocol.is_http2()));
}

#[test]
fn shared_component_version_must_have_one_set_of_endpoints() {
    let mut config = hello_world();
    let resources = config["resources"].as_array_mut().unwrap();
    let mut d = crate::test_fixtures::deployment("hello-world-v4", "v4", "f1", "b4", 9204);
    d["spec"]["components"]["frontend"]["endpoints"] = json!(["127.0.0.1:1"]);
    resources.push(d);
    let errors = problems(config);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].reason.contains("share one upstream"));
}

#[test]
fn duplicate_sub_paths_and_names() {
    let mut config = hello_world();
    let resources = config["resources"].as_array_mut().unwrap();
    resources.push(
        json!({"kind": "Environment", "metadata": {"name": "dev2"}, "spec": {"subPath": "dev"}}),
    );
    resources.push(
        json!({"kind": "Environment", "metadata": {"name": "dev"}, "spec": {"subPath": "dev3"}}),
    );
    let errors = problems(config);
    assert!(errors
        .iter()
        .any(|e| e.resource == "Environment/dev2" && e.reason.contains("already the subPath")));
    assert!(errors
        .iter()
        .any(|e| e.resource == "Environment/dev" && e.reason == "defined more than once"));
}

/// A deployment of one component `web` (version w1) with these component
/// options and routes.
fn web(options: serde_json::Value, routes: serde_json::Value) -> serde_json::Value {
    let mut component = json!({"version": "w1", "endpoints": ["127.0.0.1:9301"], "routes": routes});
    if !options.is_null() {
        component["options"] = options;
    }
    json!({"resources": [{"kind": "AppDeployment", "metadata": {"name": "web-v1"},
        "spec": {"app": "web", "components": {"web": component}}}]})
}

/// Route prefix → cluster name of the compiled deployment.
fn route_clusters(index: &Index) -> Vec<(String, String)> {
    index.deployments.as_slice()[0]
        .routes
        .iter()
        .map(|r| (r.prefix.clone(), index.clusters[r.cluster].name.clone()))
        .collect()
}

#[test]
fn route_options_are_patched_over_the_component_options() {
    let config = web(
        json!({"loadbalancing": "hash", "hash_header": "tenant-id", "hash_balance": 1.25}),
        json!([
            {"match": {"pathPrefix": "/plain"}},
            {"match": {"pathPrefix": "/empty"}, "options": {}},
            {"match": {"pathPrefix": "/user"}, "options": {"hash_header": "User-ID"}},
            {"match": {"pathPrefix": "/off"}, "options": {"hash_balance": null}},
            {"match": {"pathPrefix": "/unset"}, "options": {"loadbalancing": null}},
            {"match": {"pathPrefix": "/lc"}, "options": {"loadbalancing": "least-connection"}},
        ]),
    );
    let index = crate::test_fixtures::index(&config);
    let mut got = route_clusters(&index);
    got.sort();
    let c = |p: &str| format!("web/web/w1/{p}");
    assert_eq!(
        got,
        [
            ("/empty".to_string(), c("hash-tenant-id-125")),
            ("/lc".to_string(), c("least-connection")),
            ("/off".to_string(), c("hash-tenant-id-0")),
            ("/plain".to_string(), c("hash-tenant-id-125")),
            ("/unset".to_string(), c("round-robin")),
            ("/user".to_string(), c("hash-user-id-125")),
        ]
    );
}

#[test]
fn hash_options_without_hash_keep_the_default_algorithm() {
    // Cloud Controller accepts hash_header / hash_balance with loadbalancing
    // omitted and keeps its default algorithm.
    let config = web(
        json!({"hash_header": "tenant-id"}),
        json!([{"match": {"pathPrefix": "/a"}, "options": {"hash_balance": "2"}}]),
    );
    let index = crate::test_fixtures::index(&config);
    assert_eq!(
        route_clusters(&index),
        [("/a".to_string(), "web/web/w1/round-robin".to_string())]
    );
    // With the component's `loadbalancing: hash` but no header anywhere, the
    // component and the route are both refused, each at its own options.
    let config = web(
        json!({"loadbalancing": "hash"}),
        json!([{"match": {"pathPrefix": "/a"}, "options": {"hash_balance": "2"}}]),
    );
    let got: Vec<(String, String)> = problems(config)
        .into_iter()
        .map(|e| (e.field, e.reason))
        .collect();
    let missing = "Hash header must be present when loadbalancing is set to hash.".to_string();
    assert_eq!(
        got,
        [
            ("spec.components.web.options".to_string(), missing.clone()),
            ("spec.components.web.routes[0].options".to_string(), missing),
        ]
    );
}

#[test]
fn null_options_are_refused() {
    // route_create_message_spec.rb:395-410 "'options' is not a valid object"
    let text = r#"{"resources": [{"kind": "AppDeployment", "metadata": {"name": "web-v1"},
        "spec": {"app": "web", "components": {"web": {"version": "w1",
        "endpoints": ["127.0.0.1:9301"], "options": null,
        "routes": [{"match": {"pathPrefix": "/a"}, "options": null}]}}}}]}"#;
    let got: Vec<(String, String)> = match Index::from_json(text) {
        Err(ConfigError::Invalid(errors)) => {
            errors.into_iter().map(|e| (e.field, e.reason)).collect()
        }
        other => unreachable!("{other:?}"),
    };
    let refused = "'options' is not a valid object".to_string();
    assert_eq!(
        got,
        [
            ("spec.components.web.options".to_string(), refused.clone()),
            ("spec.components.web.routes[0].options".to_string(), refused),
        ]
    );
}

#[test]
fn each_route_reports_its_own_options() {
    // manifest_routes_update_message_spec.rb:815-842: one valid route, two invalid
    let config = web(
        serde_json::Value::Null,
        json!([
            {"match": {"pathPrefix": "/valid"}, "options": {"loadbalancing": "hash", "hash_header": "X-User-ID"}},
            {"match": {"pathPrefix": "/invalid"}, "options": {"loadbalancing": "round-robin", "hash_header": "X-User-ID"}},
            {"match": {"pathPrefix": "/long"}, "options": {"loadbalancing": "hash", "hash_header": "X".repeat(129), "hash_balance": "2.111111111111111"}},
        ]),
    );
    let got: Vec<(String, String)> = problems(config)
        .into_iter()
        .map(|e| (e.field, e.reason))
        .collect();
    let at = |i: usize, m: &str| {
        (
            format!("spec.components.web.routes[{i}].options"),
            m.to_string(),
        )
    };
    assert_eq!(
        got,
        [
            at(1, "Hash header can only be set when loadbalancing is hash"),
            at(2, "Hash header must be at most 128 characters"),
            at(2, "Hash balance must be at most 16 characters"),
        ]
    );
}

#[test]
fn the_settings_check_gives_the_internal_mode_problem_a_full_compile_gives() {
    let mut config: PluginConfig = serde_json::from_value(hello_world()).unwrap();
    config.settings.mode = crate::config::Mode::Internal;
    config.settings.context_keys.clear();
    let compiled = Index::compile(&config).err().map(|e| e.to_string());
    let checked = Index::check_settings(&config.settings)
        .err()
        .map(|e| e.to_string());
    assert!(checked
        .as_deref()
        .unwrap_or_default()
        .contains("internal mode needs context keys"));
    assert_eq!(checked, compiled);
    config.settings.mode = crate::config::Mode::Genesis;
    assert!(Index::check_settings(&config.settings).is_ok());
}
