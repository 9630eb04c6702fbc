//! Resources shared by the engine's unit tests: the hello-world scenario of DESIGN.md.

use serde_json::{json, Value};

use crate::{Index, PluginConfig};

pub fn hello_world() -> Value {
    json!({"resources": [
        {"kind": "Environment", "metadata": {"name": "dev"},
         "spec": {"subPath": "dev", "defaultVirtualEnvironment": "team-a", "releasePolicy": {"type": "Testing"}},
         "vars": {"who": "Universe", "color": "blue"}},
        {"kind": "Environment", "metadata": {"name": "prod"},
         "spec": {"subPath": "prod", "stripSubPath": true, "releasePolicy": {"type": "Stable"}}},
        {"kind": "VirtualEnvironment", "metadata": {"name": "team-a"},
         "spec": {"environment": "dev", "release": {"apps": {"hello-world": "hello-world-main"}}}},
        {"kind": "VirtualEnvironment", "metadata": {"name": "joe"},
         "spec": {"environment": "dev", "release": {"apps": {"hello-world": "hello-world-v2"}}},
         "vars": {"who": "Joe"}},
        {"kind": "VirtualEnvironment", "metadata": {"name": "empty"}, "spec": {"environment": "dev"}},
        {"kind": "VirtualEnvironment", "metadata": {"name": "live"},
         "spec": {"environment": "prod", "release": {"apps": {"hello-world": "hello-world-v2"}}}},
        deployment("hello-world-main", "v1", "f1", "b1", 9201),
        deployment("hello-world-v2", "v2", "f1", "b2", 9202),
        deployment("hello-world-v3", "v3", "f3", "b3", 9203),
    ]})
}

pub fn deployment(name: &str, version: &str, front: &str, back: &str, back_port: u16) -> Value {
    json!({"kind": "AppDeployment", "metadata": {"name": name},
    "spec": {"app": "hello-world", "version": version, "components": {
       "frontend": {"version": front, "endpoints": [format!("127.0.0.1:91{}", &front[1..])],
                    "routes": [{"match": {"pathPrefix": "/hello", "methods": ["GET"]}, "options": {"loadbalancing": "round-robin"}}],
                    "vars": ["who", "missing"], "dependencies": ["backend"]},
       "backend": {"version": back, "endpoints": [format!("127.0.0.1:{back_port}")],
                   "routes": [{"match": {"pathPrefix": "/hello/backend"}}],
                   "options": {"loadbalancing": "hash", "hash_header": "tenant-id", "hash_balance": 1.25}}
    }}})
}

pub fn index(config: &Value) -> Index {
    let config: PluginConfig = serde_json::from_value(config.clone()).unwrap_or_default();
    match Index::compile(&config) {
        Ok(index) => index,
        Err(e) => unreachable!("fixture does not compile: {e}"),
    }
}

/// [`hello_world`] plus a second environment `stg` (subPath kept, default VE
/// `qa` releasing hello-world-v3), so paths can try to cross from one to another.
pub fn with_staging() -> Value {
    let mut config = hello_world();
    if let Some(resources) = config["resources"].as_array_mut() {
        resources.push(json!({"kind": "Environment", "metadata": {"name": "stg"},
            "spec": {"subPath": "stg", "defaultVirtualEnvironment": "qa"}}));
        resources.push(json!({"kind": "VirtualEnvironment", "metadata": {"name": "qa"},
            "spec": {"environment": "stg", "release": {"apps": {"hello-world": "hello-world-v3"}}}}));
    }
    config
}
