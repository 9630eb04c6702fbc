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
//!
//! `options` holds what `render istio` is asked and its limits, `subsets`
//! renders the routing (Services, subsets, hash policies), `plugin` the
//! filter's objects; this module puts them in order.

mod options;
mod plugin;
mod subsets;

use serde_json::{json, Value};
use switchyard_engine::config::PullSettings;
use switchyard_engine::{Index, PluginConfig};

use crate::topology::{Listen, Topology};
use options::meta;
pub use options::{
    IstioError, IstioOptions, Via, INLINE_LIMIT, MAGLEV_TABLE_SIZE, OBJECT_LIMIT, PHASE, PRIORITY,
    SELECTION_HEADER,
};
use plugin::{envoy_filter_plugin, plugin_configs, wasm_plugin};
use subsets::{balance_filter, load_balancer, not_ready_route, version_route};
pub use subsets::{qualify, subsets, Service, Subset};

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
    let (pull_service, pull) = pull_from(opts);

    let mut out = Vec::new();
    for (mode, plugin) in plugin_configs(config, opts, pull.as_ref())? {
        out.push(match opts.via {
            Via::Wasmplugin => wasm_plugin(mode, &plugin, opts, &ports)?,
            Via::Envoyfilter => envoy_filter_plugin(mode, &plugin, opts, &ports)?,
        });
    }
    let gateway = gateway(opts, &mut out);

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
        out.extend(component_objects(component, list, opts));
    }
    out.extend(balance_filter(
        &subsets,
        &opts.gateway_namespace,
        Some(&opts.gateway_selector),
    ));
    out.extend(balance_filter(&subsets, &opts.namespace, None));
    if let Some(s) = &pull_service {
        out.push(pull_access(s, opts));
    }
    within_limit(&out)?;
    Ok(out)
}

/// Pull mode: `switchyard serve`'s Service, and where the filter pulls from.
fn pull_from(opts: &IstioOptions) -> (Option<Service>, Option<PullSettings>) {
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
    (pull_service, pull)
}

/// The Gateway the ingress VirtualService binds to (`ns/name`); renders one
/// into `out` when none is given.
fn gateway(opts: &IstioOptions, out: &mut Vec<Value>) -> String {
    match &opts.gateway {
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
    }
}

/// A component's VirtualService (each version by its key) and
/// DestinationRule (a subset per version, with its LB policy).
fn component_objects(component: &str, list: &[Subset], opts: &IstioOptions) -> [Value; 2] {
    let service = &list[0].service;
    let mut routes: Vec<Value> = list.iter().map(version_route).collect();
    routes.push(not_ready_route());
    let virtual_service = json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": meta(&format!("switchyard-{component}"), &opts.namespace),
        "spec": {"hosts": [service.fqdn], "http": routes}
    });
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
    let destination_rule = json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": meta(&format!("switchyard-{component}"), &opts.namespace),
        "spec": {"host": service.fqdn, "subsets": dr_subsets}
    });
    [virtual_service, destination_rule]
}

/// What lets the filter reach `switchyard serve`'s API: a Sidecar egress
/// entry for a Service in the cluster, a ServiceEntry for one outside.
fn pull_access(s: &Service, opts: &IstioOptions) -> Value {
    if s.fqdn.ends_with(".svc.cluster.local") {
        // A Service in the cluster: istiod already has its
        // `outbound|<port>||<fqdn>` cluster; a namespace whose Sidecar
        // narrows egress needs this host listed (the gateway is not scoped
        // by Sidecars).
        let svc_namespace = s.fqdn.split('.').nth(1).unwrap_or_default();
        json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "Sidecar",
            "metadata": meta("default", &opts.namespace),
            "spec": {"egress": [{"hosts": [
                "./*",
                "istio-system/*",
                format!("{svc_namespace}/{}", s.fqdn)
            ]}]}
        })
    } else {
        // Outside the cluster: a ServiceEntry gives it an outbound cluster.
        json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "ServiceEntry",
            "metadata": meta("switchyard-api", &opts.namespace),
            "spec": {
                "hosts": [s.fqdn],
                "location": "MESH_EXTERNAL",
                "resolution": "DNS",
                "ports": [{"number": s.port, "name": "http-api", "protocol": "HTTP"}]
            }
        })
    }
}

/// Refuses an object above [`OBJECT_LIMIT`].
fn within_limit(out: &[Value]) -> Result<(), IstioError> {
    for o in out {
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
    Ok(())
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
    use switchyard_engine::context::ContextKey;

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
