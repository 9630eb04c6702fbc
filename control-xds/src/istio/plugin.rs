//! The filter as Istio objects: its plugin configurations (genesis, and
//! internal when it can verify kf-context), each as a `WasmPlugin` or as
//! `EnvoyFilter`s (ECDS and an `HTTP_FILTER` patch before the router).

use serde_json::{json, Value};
use switchyard_engine::config::{PullSettings, PULL_TOKEN_ENV};
use switchyard_engine::{Index, Mode, PluginConfig, Settings};

use super::options::{
    meta, IstioError, IstioOptions, INLINE_LIMIT, PHASE, PRIORITY, SELECTION_HEADER,
};
use crate::topology::WASM_RUNTIME;

/// The plugin configurations (genesis, and internal when it can verify
/// kf-context), compiled by the filter's engine first.
pub(super) fn plugin_configs(
    config: &PluginConfig,
    opts: &IstioOptions,
    pull: Option<&PullSettings>,
) -> Result<Vec<(Mode, PluginConfig)>, IstioError> {
    let table_bytes = serde_json::to_vec(&config.resources)?.len();
    let inline = table_bytes <= INLINE_LIMIT;
    if !inline && pull.is_none() {
        return Err(IstioError::TableTooLarge {
            bytes: table_bytes,
            limit: INLINE_LIMIT,
        });
    }
    let mut modes = vec![Mode::Genesis];
    if opts.context_key.is_some() || pull.is_some() {
        modes.push(Mode::Internal);
    }
    let mut out = Vec::new();
    for mode in modes {
        let plugin = PluginConfig {
            settings: Settings {
                mode,
                istio: true,
                cluster_header: SELECTION_HEADER.to_string(),
                context_keys: opts.context_key.iter().cloned().collect(),
                pull: pull.cloned(),
                ..Settings::default()
            },
            resources: if inline {
                config.resources.clone()
            } else {
                Vec::new()
            },
        };
        Index::compile(&plugin).map_err(|e| IstioError::Refused {
            what: if mode == Mode::Genesis {
                "genesis"
            } else {
                "internal"
            },
            error: e.to_string(),
        })?;
        out.push((mode, plugin));
    }
    Ok(out)
}

/// The plugin's name in Istio (`PluginConfig.name` is `<ns>.<name>`).
pub(super) fn plugin_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Genesis => "switchyard",
        Mode::Internal => "switchyard-internal",
    }
}

const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";

/// Pull mode without an inline token: the filter reads it from the proxy's
/// environment.
pub(super) fn host_token(plugin: &PluginConfig) -> bool {
    plugin
        .settings
        .pull
        .as_ref()
        .is_some_and(|p| p.token.is_none())
}

pub(super) fn wasm_plugin(
    mode: Mode,
    plugin: &PluginConfig,
    opts: &IstioOptions,
    ports: &[u16],
) -> Result<Value, IstioError> {
    let name = plugin_name(mode);
    let (namespace, selector, matches) = match mode {
        Mode::Genesis => (
            &opts.gateway_namespace,
            Some(
                json!({"matchLabels": {opts.gateway_selector.0.clone(): opts.gateway_selector.1}}),
            ),
            json!([{"mode": "CLIENT"}]),
        ),
        // Every pod of the namespace, on the outbound side, only towards the
        // components' Service ports.
        Mode::Internal => (
            &opts.namespace,
            None,
            json!([{"mode": "CLIENT",
                    "ports": ports.iter().map(|p| json!({"number": p})).collect::<Vec<_>>()}]),
        ),
    };
    let mut spec = json!({
        "url": opts.url,
        "imagePullPolicy": "IfNotPresent",
        "pluginName": name,
        "phase": PHASE,
        "priority": PRIORITY,
        // A plugin that cannot load must not let requests through unrouted: a
        // client-sent x-switchyard-version would then pick a version. Istio
        // answers them with a deny-all RBAC filter instead (pkg/wasm/convert.go).
        "failStrategy": "FAIL_CLOSE",
        "type": "HTTP",
        "match": matches,
        "pluginConfig": serde_json::to_value(plugin)?,
    });
    if let Some(selector) = selector {
        spec["selector"] = selector;
    }
    if let Some(sha) = &opts.sha256 {
        spec["sha256"] = json!(sha);
    }
    if host_token(plugin) {
        spec["vmConfig"] = json!({"env": [{"name": PULL_TOKEN_ENV, "valueFrom": "HOST"}]});
    }
    Ok(json!({
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": meta(name, namespace),
        "spec": spec
    }))
}

/// The `--via envoyfilter` form: the filter as an ECDS resource
/// (`EXTENSION_CONFIG`, so a new configuration does not drain listeners) and an
/// `HTTP_FILTER` patch inserting it before the router, as istiod would.
pub(super) fn envoy_filter_plugin(
    mode: Mode,
    plugin: &PluginConfig,
    opts: &IstioOptions,
    ports: &[u16],
) -> Result<Value, IstioError> {
    let name = plugin_name(mode);
    let namespace = match mode {
        Mode::Genesis => &opts.gateway_namespace,
        Mode::Internal => &opts.namespace,
    };
    let resource = format!("{namespace}.{name}");
    let mut remote = json!({"http_uri": {"uri": opts.url, "cluster": "_", "timeout": "30s"}});
    if let Some(sha) = &opts.sha256 {
        remote["sha256"] = json!(sha);
    }
    let code = if let Some(path) = opts.url.strip_prefix("file://") {
        json!({"local": {"filename": path}})
    } else {
        json!({"remote": remote})
    };
    let extension = json!({
        "applyTo": "EXTENSION_CONFIG",
        "patch": {"operation": "ADD", "value": {
            "name": resource,
            "typed_config": {
                "@type": WASM_TYPE,
                "config": {
                    "name": resource,
                    "root_id": name,
                    "vm_config": if host_token(plugin) {
                        json!({"runtime": WASM_RUNTIME, "code": code,
                               "environment_variables": {"host_env_keys": [PULL_TOKEN_ENV]}})
                    } else {
                        json!({"runtime": WASM_RUNTIME, "code": code})
                    },
                    "configuration": {
                        "@type": "type.googleapis.com/google.protobuf.StringValue",
                        "value": serde_json::to_string(plugin)?
                    },
                    "failure_policy": "FAIL_CLOSED"
                }
            }
        }}
    });
    let insert = |context: &str, port: Option<u16>| {
        let mut listener = json!({"filterChain": {"filter": {
            "name": "envoy.filters.network.http_connection_manager",
            "subFilter": {"name": "envoy.filters.http.router"}
        }}});
        if let Some(port) = port {
            listener["portNumber"] = json!(port);
        }
        json!({
            "applyTo": "HTTP_FILTER",
            "match": {"context": context, "listener": listener},
            "patch": {"operation": "INSERT_BEFORE", "value": {
                "name": resource,
                "config_discovery": {
                    "config_source": {"ads": {}, "initial_fetch_timeout": "0s"},
                    "type_urls": [WASM_TYPE]
                }
            }}
        })
    };
    let mut patches = vec![extension];
    let mut spec = json!({"priority": PRIORITY});
    match mode {
        Mode::Genesis => {
            patches.push(insert("GATEWAY", None));
            spec["workloadSelector"] =
                json!({"labels": {opts.gateway_selector.0.clone(): opts.gateway_selector.1}});
        }
        Mode::Internal => {
            patches.extend(ports.iter().map(|p| insert("SIDECAR_OUTBOUND", Some(*p))))
        }
    }
    spec["configPatches"] = json!(patches);
    Ok(json!({
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": meta(name, namespace),
        "spec": spec
    }))
}
