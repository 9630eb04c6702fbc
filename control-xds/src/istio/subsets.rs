//! Components as Istio routing: each component version is a DestinationRule
//! subset of its component's Service ([`subsets`]), reached by the
//! VirtualService route matching its selection header value; hash policies
//! that DestinationRule lacks are EnvoyFilter patches ([`balance_filter`]).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::options::{meta, IstioError, MAGLEV_TABLE_SIZE, SELECTION_HEADER};
use crate::topology::{is_label_value, ClusterModel, Lb, Topology};

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
pub(super) fn service_of(c: &ClusterModel, namespace: &str) -> Result<Service, IstioError> {
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
pub(super) fn not_ready_route() -> Value {
    json!({
        "name": "switchyard-no-version",
        "directResponse": {
            "status": 503,
            "body": {"string": "{\"error\":\"cluster_not_ready\",\"message\":\"no route for this version: re-render `switchyard render istio` and apply it\"}"}
        },
        "headers": {"response": {"set": {"content-type": "application/json"}}}
    })
}

pub(super) fn version_route(s: &Subset) -> Value {
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

pub(super) fn load_balancer(lb: &Lb) -> Value {
    match lb {
        Lb::RoundRobin => json!({"simple": "ROUND_ROBIN"}),
        Lb::LeastRequest => json!({"simple": "LEAST_REQUEST"}),
        Lb::Maglev { header, .. } => json!({"consistentHash": {
            "httpHeaderName": header,
            "maglev": {"tableSize": MAGLEV_TABLE_SIZE}
        }}),
    }
}

/// `hash_balance_factor`, which DestinationRule lacks, as CLUSTER patches on
/// Istio's subset clusters.
pub(super) fn balance_filter(
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
