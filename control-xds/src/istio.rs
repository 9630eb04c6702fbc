//! `switchyard render istio`: the topology as Istio objects (README, "Run on
//! Istio"). Components are Kubernetes Services, component versions are pods with
//! a version label; the filter runs in Istio mode at the ingress gateway
//! (genesis) and in the sidecars (internal), writes the selection header
//! `x-switchyard-version`, and rendered VirtualServices send each value to the
//! DestinationRule subset of that version with its LB policy.
//!
//! What istiod does with these objects was checked against its source
//! (istio/istio): WasmPlugin → ECDS in `pilot/pkg/model/extensions.go` and
//! `pilot/pkg/config/kube/extensions/translate.go` (empty `vm_id`, name
//! `<ns>.<name>`, `failStrategy` → `failure_policy`), filter order by phase in
//! `pilot/pkg/networking/core/listener_builder.go`, subsets and hash policies in
//! `pilot/pkg/networking/core/route/route.go`, subset names in
//! `pkg/config/validation/validation.go` (`validateSubsetName`: DNS-1123 label).
//!
//! Output is deterministic: objects in a fixed order, components and subsets
//! sorted, no timestamps or generated secrets.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use switchyard_engine::config::{PullSettings, PULL_TOKEN_ENV};
use switchyard_engine::context::ContextKey;
use switchyard_engine::{Index, Mode, PluginConfig, Settings};

use crate::topology::{is_label_value, ClusterModel, Lb, Listen, Topology, WASM_RUNTIME};

/// The selection header the Istio-mode filter writes and the VirtualServices match.
pub const SELECTION_HEADER: &str = switchyard_engine::headers::ISTIO_SELECTION_HEADER;
/// Above this many bytes of routing table (JSON) the table is not inlined in the
/// WasmPlugin: with the settings it must stay under [`OBJECT_LIMIT`].
pub const INLINE_LIMIT: usize = 512 * 1024;
/// No rendered object may exceed this (JSON bytes; etcd's limit is 1.5 MiB and
/// client-side apply doubles it).
pub const OBJECT_LIMIT: usize = 700 * 1024;
/// The WasmPlugin phase: after Istio's authentication (`jwt_authn`: forwarded
/// claims are there) and authorization (RBAC: denied requests are never
/// routed), before Istio's stats, fault, CORS and the router
/// (`listener_builder.go`).
pub const PHASE: &str = "STATS";
/// Within its phase the filter runs last (istiod sorts by priority, highest
/// first), so no plugin of the same phase changes routing after it.
pub const PRIORITY: i64 = -1000;
/// Maglev table size of hash subsets (Envoy's default, a prime).
pub const MAGLEV_TABLE_SIZE: u64 = 65537;

/// How the filter is inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    /// Istio's `WasmPlugin`.
    Wasmplugin,
    /// `EnvoyFilter`s: the filter by ECDS (`EXTENSION_CONFIG`) and an
    /// `HTTP_FILTER` patch before the router.
    Envoyfilter,
}

/// `render istio`'s options.
#[derive(Debug, Clone)]
pub struct IstioOptions {
    /// Namespace of the components' Services, VirtualServices, DestinationRules.
    pub namespace: String,
    /// Namespace of the ingress gateway (its WasmPlugin lives there).
    pub gateway_namespace: String,
    /// Labels selecting the ingress gateway's pods.
    pub gateway_selector: (String, String),
    /// An existing Gateway (`ns/name`) to bind the ingress VirtualService to;
    /// `None` renders one (`<gateway_namespace>/switchyard`, port 80, any host).
    pub gateway: Option<String>,
    /// The pod label carrying the component version.
    pub version_label: String,
    /// Pull mode: `switchyard serve`'s API as `host:port`.
    pub pull_from: Option<(String, u16)>,
    pub via: Via,
    /// Where istio-agent fetches the filter (`oci://…`, `https://…`, `file://…`).
    pub url: String,
    /// `WasmPlugin.spec.sha256` (for `oci://`: the image manifest's digest).
    pub sha256: Option<String>,
    /// The kf-context key for inline mode (pull mode gets keys from the API).
    pub context_key: Option<ContextKey>,
    /// Pull mode: the `pull`-role API token, inline in the plugin
    /// configuration. Without it the filter reads `SWITCHYARD_PULL_TOKEN` from
    /// the proxy's environment (`vmConfig.env` with `valueFrom: HOST`).
    pub pull_token: Option<String>,
}

/// Why nothing was rendered.
#[derive(Debug, thiserror::Error)]
pub enum IstioError {
    #[error("component '{component}': version '{version}' is not a Kubernetes label value (at most 63 characters: letters, digits, '-', '_', '.'), so no pod can carry it in label '{label}'")]
    VersionNotLabel {
        component: String,
        version: String,
        label: String,
    },
    #[error("component '{component}': endpoint '{endpoint}' names Service '{service}'; in Istio a component's Service must be named after the component")]
    ServiceName {
        component: String,
        endpoint: String,
        service: String,
    },
    #[error("component '{component}': its versions name different Services ({first} and {second}); all versions of a component are pods of one Service")]
    ServiceMismatch {
        component: String,
        first: String,
        second: String,
    },
    #[error("the routing table is {bytes} bytes of JSON, above the {limit}-byte inline limit (etcd keeps objects under 1.5 MiB): render with --pull-from SVC:PORT so the filter pulls it from `switchyard serve`")]
    TableTooLarge { bytes: usize, limit: usize },
    #[error("{kind} '{name}' would be {bytes} bytes, above the {limit}-byte limit per object (etcd keeps objects under 1.5 MiB); split the resources across namespaces")]
    ObjectTooLarge {
        kind: String,
        name: String,
        bytes: usize,
        limit: usize,
    },
    #[error("the rendered {what} plugin configuration is refused by the filter: {error}")]
    Refused { what: &'static str, error: String },
    #[error("cannot encode: {0}")]
    Encode(#[from] serde_json::Error),
}

/// A component's Kubernetes Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub fqdn: String,
    pub port: u16,
}

/// The fully qualified name of a Service host (`svc`, `svc.ns`, `svc.ns.svc`,
/// or already qualified).
pub fn qualify(host: &str, namespace: &str) -> String {
    let labels = host.split('.').count();
    if host.ends_with(".svc.cluster.local") || (labels > 2 && !host.ends_with(".svc")) {
        host.to_string()
    } else if host.ends_with(".svc") {
        format!("{host}.cluster.local")
    } else if labels == 2 {
        format!("{host}.svc.cluster.local")
    } else {
        format!("{host}.{namespace}.svc.cluster.local")
    }
}

/// The Service of one upstream: an endpoint naming a Kubernetes Service
/// (`<name>.<ns>.svc[.cluster.local]:port`) is it; otherwise the Service is named
/// after the component in `namespace`, port 80.
fn service_of(c: &ClusterModel, namespace: &str) -> Result<Service, IstioError> {
    for (host, port) in &c.endpoints {
        if host.ends_with(".svc") || host.contains(".svc.") {
            let name = host.split('.').next().unwrap_or_default();
            if name != c.component {
                return Err(IstioError::ServiceName {
                    component: c.component.clone(),
                    endpoint: format!("{host}:{port}"),
                    service: name.to_string(),
                });
            }
            return Ok(Service {
                fqdn: qualify(host, namespace),
                port: *port,
            });
        }
    }
    Ok(Service {
        fqdn: format!("{}.{namespace}.svc.cluster.local", c.component),
        port: 80,
    })
}

/// One subset: the upstream's model, its subset name, its Service.
#[derive(Debug, Clone)]
pub struct Subset {
    pub cluster: ClusterModel,
    pub name: String,
    pub service: Service,
}

impl Subset {
    /// Istio's Envoy cluster for this subset (`model.BuildSubsetKey`).
    pub fn istio_cluster(&self) -> String {
        format!(
            "outbound|{}|{}|{}",
            self.service.port, self.name, self.service.fqdn
        )
    }
}

/// Every subset of the topology by component (sorted), checked for Istio.
pub fn subsets(
    topology: &Topology,
    namespace: &str,
    version_label: &str,
) -> Result<BTreeMap<String, Vec<Subset>>, IstioError> {
    let mut by_component: BTreeMap<String, Vec<Subset>> = BTreeMap::new();
    for c in &topology.clusters {
        if !is_label_value(&c.version) {
            return Err(IstioError::VersionNotLabel {
                component: c.component.clone(),
                version: c.version.clone(),
                label: version_label.to_string(),
            });
        }
        let service = service_of(c, namespace)?;
        let list = by_component.entry(c.component.clone()).or_default();
        if let Some(first) = list.first() {
            if first.service != service {
                return Err(IstioError::ServiceMismatch {
                    component: c.component.clone(),
                    first: format!("{}:{}", first.service.fqdn, first.service.port),
                    second: format!("{}:{}", service.fqdn, service.port),
                });
            }
        }
        if list.iter().all(|s| s.cluster.name != c.name) {
            list.push(Subset {
                name: c.subset(),
                cluster: c.clone(),
                service,
            });
        }
    }
    for list in by_component.values_mut() {
        list.sort_by(|a, b| {
            a.name
                .cmp(&b.name)
                .then(a.cluster.name.cmp(&b.cluster.name))
        });
    }
    Ok(by_component)
}

/// The route of a version no VirtualService knows, or of a request without
/// the selection header (the filter failed open, or a pulled table names a
/// version rendered after these objects): 503 `cluster_not_ready`, never some
/// other version.
fn not_ready_route() -> Value {
    json!({
        "name": "switchyard-no-version",
        "directResponse": {
            "status": 503,
            "body": {"string": "{\"error\":\"cluster_not_ready\",\"message\":\"no route for this version: re-render `switchyard render istio` and apply it\"}"}
        },
        "headers": {"response": {"set": {"content-type": "application/json"}}}
    })
}

fn version_route(s: &Subset) -> Value {
    json!({
        "name": format!("{}.{}", s.cluster.component, s.name),
        "match": [{"headers": {SELECTION_HEADER: {"exact": s.cluster.name}}}],
        "route": [{"destination": {
            "host": s.service.fqdn,
            "subset": s.name,
            "port": {"number": s.service.port}
        }}],
        // The selection header is for the proxy only, never the upstream.
        "headers": {"request": {"remove": [SELECTION_HEADER]}}
    })
}

fn load_balancer(lb: &Lb) -> Value {
    match lb {
        Lb::RoundRobin => json!({"simple": "ROUND_ROBIN"}),
        Lb::LeastRequest => json!({"simple": "LEAST_REQUEST"}),
        Lb::Maglev { header, .. } => json!({"consistentHash": {
            "httpHeaderName": header,
            "maglev": {"tableSize": MAGLEV_TABLE_SIZE}
        }}),
    }
}

fn meta(name: &str, namespace: &str) -> Value {
    json!({"name": name, "namespace": namespace,
           "labels": {"app.kubernetes.io/managed-by": "switchyard"}})
}

/// The plugin configurations (genesis, and internal when it can verify
/// kf-context), compiled by the filter's engine first.
fn plugin_configs(
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
fn plugin_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Genesis => "switchyard",
        Mode::Internal => "switchyard-internal",
    }
}

const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";

/// Pull mode without an inline token: the filter reads it from the proxy's
/// environment.
fn host_token(plugin: &PluginConfig) -> bool {
    plugin
        .settings
        .pull
        .as_ref()
        .is_some_and(|p| p.token.is_none())
}

fn wasm_plugin(
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
fn envoy_filter_plugin(
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

/// `hash_balance_factor`, which DestinationRule lacks, as CLUSTER patches on
/// Istio's subset clusters.
fn balance_filter(
    subsets: &BTreeMap<String, Vec<Subset>>,
    namespace: &str,
    selector: Option<&(String, String)>,
) -> Option<Value> {
    let patches: Vec<Value> = subsets
        .values()
        .flatten()
        .filter_map(|s| match s.cluster.lb {
            Lb::Maglev {
                balance_factor: Some(f),
                ..
            } => Some(json!({
                "applyTo": "CLUSTER",
                "match": {"context": "ANY", "cluster": {
                    "service": s.service.fqdn, "subset": s.name, "portNumber": s.service.port
                }},
                "patch": {"operation": "MERGE", "value": {
                    "common_lb_config": {"consistent_hashing_lb_config": {"hash_balance_factor": f}}
                }}
            })),
            _ => None,
        })
        .collect();
    if patches.is_empty() {
        return None;
    }
    let mut spec = json!({"configPatches": patches});
    if let Some((k, v)) = selector {
        spec["workloadSelector"] = json!({"labels": {k.clone(): v}});
    }
    Some(json!({
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": meta("switchyard-hash-balance", namespace),
        "spec": spec
    }))
}

/// Every object `render istio` prints, in order.
pub fn render_istio(
    config: &PluginConfig,
    index: &Index,
    opts: &IstioOptions,
) -> Result<Vec<Value>, IstioError> {
    let topology = Topology::of(
        index,
        &Listen {
            genesis: ("0.0.0.0".into(), 0),
            internal: None,
        },
    );
    let subsets = subsets(&topology, &opts.namespace, &opts.version_label)?;
    let mut ports: Vec<u16> = subsets
        .values()
        .filter_map(|l| l.first().map(|s| s.service.port))
        .collect();
    ports.sort_unstable();
    ports.dedup();

    let pull_service = opts.pull_from.as_ref().map(|(host, port)| Service {
        fqdn: qualify(host, &opts.namespace),
        port: *port,
    });
    let pull = pull_service.as_ref().map(|s| PullSettings {
        // Istio's name for the Service's cluster (`outbound|<port>||<fqdn>`).
        cluster: format!("outbound|{}||{}", s.port, s.fqdn),
        authority: Some(format!("{}:{}", s.fqdn, s.port)),
        path: "/v1/config".into(),
        interval_ms: 1000,
        token: opts.pull_token.clone(),
    });

    let mut out = Vec::new();
    for (mode, plugin) in plugin_configs(config, opts, pull.as_ref())? {
        out.push(match opts.via {
            Via::Wasmplugin => wasm_plugin(mode, &plugin, opts, &ports)?,
            Via::Envoyfilter => envoy_filter_plugin(mode, &plugin, opts, &ports)?,
        });
    }

    let gateway = match &opts.gateway {
        Some(g) => g.clone(),
        None => {
            out.push(json!({
                "apiVersion": "networking.istio.io/v1",
                "kind": "Gateway",
                "metadata": meta("switchyard", &opts.gateway_namespace),
                "spec": {
                    "selector": {opts.gateway_selector.0.clone(): opts.gateway_selector.1},
                    "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}]
                }
            }));
            format!("{}/switchyard", opts.gateway_namespace)
        }
    };

    // Genesis at the gateway: every version of every component by its key.
    let mut gateway_routes: Vec<Value> = subsets.values().flatten().map(version_route).collect();
    gateway_routes.push(not_ready_route());
    out.push(json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": meta("switchyard-gateway", &opts.namespace),
        "spec": {"hosts": ["*"], "gateways": [gateway], "http": gateway_routes}
    }));

    for (component, list) in &subsets {
        let service = &list[0].service;
        let mut routes: Vec<Value> = list.iter().map(version_route).collect();
        routes.push(not_ready_route());
        out.push(json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": meta(&format!("switchyard-{component}"), &opts.namespace),
            "spec": {"hosts": [service.fqdn], "http": routes}
        }));
        let dr_subsets: Vec<Value> = list
            .iter()
            .map(|s| {
                let mut policy = json!({"loadBalancer": load_balancer(&s.cluster.lb)});
                if s.cluster.http2 {
                    // HTTP/2 to the pods even when the Service port is named `http`.
                    policy["connectionPool"] = json!({"http": {"h2UpgradePolicy": "UPGRADE"}});
                }
                json!({
                    "name": s.name,
                    "labels": {opts.version_label.clone(): s.cluster.version},
                    "trafficPolicy": policy
                })
            })
            .collect();
        out.push(json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": meta(&format!("switchyard-{component}"), &opts.namespace),
            "spec": {"host": service.fqdn, "subsets": dr_subsets}
        }));
    }

    out.extend(balance_filter(
        &subsets,
        &opts.gateway_namespace,
        Some(&opts.gateway_selector),
    ));
    out.extend(balance_filter(&subsets, &opts.namespace, None));

    if let Some(s) = &pull_service {
        if s.fqdn.ends_with(".svc.cluster.local") {
            // A Service in the cluster: istiod already has its
            // `outbound|<port>||<fqdn>` cluster; a namespace whose Sidecar
            // narrows egress needs this host listed (the gateway is not scoped
            // by Sidecars).
            let svc_namespace = s.fqdn.split('.').nth(1).unwrap_or_default();
            out.push(json!({
                "apiVersion": "networking.istio.io/v1",
                "kind": "Sidecar",
                "metadata": meta("default", &opts.namespace),
                "spec": {"egress": [{"hosts": [
                    "./*",
                    "istio-system/*",
                    format!("{svc_namespace}/{}", s.fqdn)
                ]}]}
            }));
        } else {
            // Outside the cluster: a ServiceEntry gives it an outbound cluster.
            out.push(json!({
                "apiVersion": "networking.istio.io/v1",
                "kind": "ServiceEntry",
                "metadata": meta("switchyard-api", &opts.namespace),
                "spec": {
                    "hosts": [s.fqdn],
                    "location": "MESH_EXTERNAL",
                    "resolution": "DNS",
                    "ports": [{"number": s.port, "name": "http-api", "protocol": "HTTP"}]
                }
            }));
        }
    }

    for o in &out {
        let bytes = serde_json::to_vec(o)?.len();
        if bytes > OBJECT_LIMIT {
            return Err(IstioError::ObjectTooLarge {
                kind: o["kind"].as_str().unwrap_or_default().to_string(),
                name: o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                bytes,
                limit: OBJECT_LIMIT,
            });
        }
    }
    Ok(out)
}

/// `switchyard explain` in Istio mode: the subset a decision's upstream key
/// goes to, when its components' Services are in `namespace`.
pub fn explain_subset(index: &Index, namespace: &str, key: &str) -> Option<Value> {
    let topology = Topology::of(
        index,
        &Listen {
            genesis: ("0.0.0.0".into(), 0),
            internal: None,
        },
    );
    let subsets = subsets(&topology, namespace, "version").ok()?;
    let s = subsets.values().flatten().find(|s| s.cluster.name == key)?;
    Some(json!({
        "header": format!("{SELECTION_HEADER}: {key}"),
        "host": s.service.fqdn,
        "subset": s.name,
        "cluster": s.istio_cluster(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compile(components: Value) -> (PluginConfig, Index) {
        let config: PluginConfig = serde_json::from_value(json!({"resources": [
            {"kind": "Environment", "metadata": {"name": "dev"},
             "spec": {"subPath": "dev", "defaultVirtualEnvironment": "a"}},
            {"kind": "VirtualEnvironment", "metadata": {"name": "a"},
             "spec": {"environment": "dev", "release": {"apps": {"shop": "shop-v1"}}}},
            {"kind": "AppDeployment", "metadata": {"name": "shop-v1"},
             "spec": {"app": "shop", "version": "v1", "components": components}}
        ]}))
        .unwrap();
        let index = Index::compile(&config).unwrap();
        (config, index)
    }

    fn opts() -> IstioOptions {
        IstioOptions {
            namespace: "shop".into(),
            gateway_namespace: "istio-system".into(),
            gateway_selector: ("istio".into(), "ingressgateway".into()),
            gateway: None,
            version_label: "version".into(),
            pull_from: None,
            via: Via::Wasmplugin,
            url: "oci://r/f:1".into(),
            sha256: None,
            context_key: None,
            pull_token: None,
        }
    }

    fn route(path: &str) -> Value {
        json!([{"match": {"pathPrefix": path}}])
    }

    #[test]
    fn an_endpoint_naming_a_service_is_the_components_service() {
        let (config, index) = compile(json!({
            "cart": {"version": "c1", "endpoints": ["cart.store.svc:8080"], "routes": route("/cart")},
            "web": {"version": "w1", "endpoints": ["10.0.0.1:9000"], "routes": route("/")}
        }));
        let mut opts = opts();
        opts.context_key = Some(ContextKey {
            kid: "k".into(),
            secret: "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into(),
        });
        let objs = render_istio(&config, &index, &opts).unwrap();
        let hosts: Vec<&str> = objs
            .iter()
            .filter(|o| o["kind"] == "DestinationRule")
            .map(|o| o["spec"]["host"].as_str().unwrap())
            .collect();
        assert_eq!(
            hosts,
            ["cart.store.svc.cluster.local", "web.shop.svc.cluster.local"]
        );
        // The sidecar plugin acts on the Services' ports only.
        assert_eq!(objs[1]["metadata"]["name"], "switchyard-internal");
        let ports = &objs[1]["spec"]["match"][0]["ports"];
        assert_eq!(ports, &json!([{"number": 80}, {"number": 8080}]));
    }

    #[test]
    fn services_must_be_named_after_their_component() {
        let (config, index) = compile(json!({
            "cart": {"version": "c1", "endpoints": ["basket.store.svc:8080"], "routes": route("/")}
        }));
        let err = render_istio(&config, &index, &opts()).unwrap_err();
        assert!(matches!(err, IstioError::ServiceName { .. }), "{err}");
        assert!(err.to_string().contains("'basket'"), "{err}");
    }

    #[test]
    fn subsets_are_dns_labels_even_for_odd_versions() {
        let (_, index) = compile(json!({
            "cart": {"version": "C1_Release.7", "endpoints": ["10.0.0.1:1"], "routes": route("/"),
                     "options": {"loadbalancing": "hash", "hash_header": "tenant", "hash_balance": 2}},
            "web": {"version": "w1", "endpoints": ["10.0.0.2:1"], "routes": route("/w")}
        }));
        let topology = Topology::of(
            &index,
            &Listen {
                genesis: ("0.0.0.0".into(), 0),
                internal: None,
            },
        );
        let all = subsets(&topology, "shop", "version").unwrap();
        let names: Vec<String> = all.values().flatten().map(|s| s.name.clone()).collect();
        for name in &names {
            assert!(
                switchyard_engine::validate::is_dns_label(name),
                "{name} is no DNS label"
            );
        }
        assert!(names.contains(&"w1-round-robin".to_string()));
        // The odd version is a digest; hash and twin stay apart.
        assert_eq!(names.iter().filter(|n| n.starts_with('v')).count(), 2);
        let web = &all["web"][0];
        assert_eq!(
            web.istio_cluster(),
            "outbound|80|w1-round-robin|web.shop.svc.cluster.local"
        );
    }

    #[test]
    fn service_hosts_are_qualified() {
        assert_eq!(qualify("api", "shop"), "api.shop.svc.cluster.local");
        assert_eq!(qualify("api.sy", "shop"), "api.sy.svc.cluster.local");
        assert_eq!(qualify("api.sy.svc", "shop"), "api.sy.svc.cluster.local");
        assert_eq!(
            qualify("api.sy.svc.cluster.local", "shop"),
            "api.sy.svc.cluster.local"
        );
        assert_eq!(qualify("api.example.com", "shop"), "api.example.com");
    }
}
