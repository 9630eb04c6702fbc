//! Scoped Envoys: an Envoy that declares which environments it serves gets only
//! what routing those environments needs, so a push to it carries a fraction of
//! a large table (README "Sizing").
//!
//! An Envoy declares its scope in its bootstrap's node metadata:
//!
//! ```yaml
//! node:
//!   id: edge-eu-1
//!   metadata: {switchyard.environments: [prod, stg]}   # or "prod,stg"
//! ```
//!
//! Its resources are then the named Environments, their VirtualEnvironments, the
//! Canaries of those VEs and the AppDeployments those VEs release or those
//! Canaries name — and only their clusters, endpoints and routing table. A
//! request there that names another deployment with `kf-dep` gets
//! `deployment_not_found`; an Envoy without the metadata gets everything.

use std::collections::BTreeSet;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::value::Kind;
use switchyard_engine::Resource;

/// The node metadata key listing the environments an Envoy serves.
pub const SCOPE_METADATA_KEY: &str = "switchyard.environments";

/// The environments a node declared (`None`: it serves all of them).
pub fn scope_of(node: &Node) -> Option<BTreeSet<String>> {
    let value = node.metadata.as_ref()?.fields.get(SCOPE_METADATA_KEY)?;
    let names: BTreeSet<String> = match value.kind.as_ref()? {
        Kind::StringValue(list) => list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        Kind::ListValue(list) => list
            .values
            .iter()
            .filter_map(|v| match &v.kind {
                Some(Kind::StringValue(s)) => Some(s.trim().to_string()),
                _ => None,
            })
            .filter(|s| !s.is_empty())
            .collect(),
        _ => return None,
    };
    Some(names)
}

/// The resources an Envoy serving `environments` needs.
pub fn scoped(resources: &[Resource], environments: &BTreeSet<String>) -> Vec<Resource> {
    let ves: BTreeSet<&str> = resources
        .iter()
        .filter_map(|r| match r {
            Resource::VirtualEnvironment(ve) if environments.contains(&ve.spec.environment) => {
                Some(ve.metadata.name.as_str())
            }
            _ => None,
        })
        .collect();
    let mut deployments: BTreeSet<&str> = BTreeSet::new();
    for r in resources {
        match r {
            Resource::VirtualEnvironment(ve) if ves.contains(ve.metadata.name.as_str()) => {
                if let Some(release) = &ve.spec.release {
                    deployments.extend(release.apps.values().map(String::as_str));
                }
            }
            Resource::Canary(c) if ves.contains(c.spec.virtual_environment.as_str()) => {
                deployments.insert(c.spec.deployment.as_str());
            }
            _ => {}
        }
    }
    resources
        .iter()
        .filter(|r| match r {
            Resource::Environment(e) => environments.contains(&e.metadata.name),
            Resource::VirtualEnvironment(ve) => ves.contains(ve.metadata.name.as_str()),
            Resource::Canary(c) => ves.contains(c.spec.virtual_environment.as_str()),
            Resource::AppDeployment(d) => deployments.contains(d.metadata.name.as_str()),
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::google::protobuf::{ListValue, Struct, Value};
    use serde_json::json;

    fn resources() -> Vec<Resource> {
        let docs = json!([
            {"kind": "Environment", "metadata": {"name": "dev"}, "spec": {"subPath": "dev"}},
            {"kind": "Environment", "metadata": {"name": "prod"}, "spec": {"subPath": "prod"}},
            {"kind": "VirtualEnvironment", "metadata": {"name": "team-a"},
             "spec": {"environment": "dev", "release": {"apps": {"web": "web-v1"}}}},
            {"kind": "VirtualEnvironment", "metadata": {"name": "live"},
             "spec": {"environment": "prod", "release": {"apps": {"web": "web-v2"}}}},
            {"kind": "AppDeployment", "metadata": {"name": "web-v1"}, "spec": {"app": "web",
             "components": {"w": {"version": "a", "endpoints": ["127.0.0.1:1"],
                                  "routes": [{"match": {"pathPrefix": "/"}}]}}}},
            {"kind": "AppDeployment", "metadata": {"name": "web-v2"}, "spec": {"app": "web",
             "components": {"w": {"version": "b", "endpoints": ["127.0.0.1:1"],
                                  "routes": [{"match": {"pathPrefix": "/"}}]}}}},
            {"kind": "AppDeployment", "metadata": {"name": "web-v3"}, "spec": {"app": "web",
             "components": {"w": {"version": "c", "endpoints": ["127.0.0.1:1"],
                                  "routes": [{"match": {"pathPrefix": "/"}}]}}}},
            {"kind": "Canary", "metadata": {"name": "c"}, "spec": {"virtualEnvironment": "live",
             "app": "web", "deployment": "web-v3", "weight": "5%"}}
        ]);
        serde_json::from_value(docs).unwrap()
    }

    fn ids(rs: &[Resource]) -> Vec<String> {
        rs.iter().map(Resource::id).collect()
    }

    #[test]
    fn a_scope_keeps_its_environments_ves_canaries_and_their_deployments() {
        let all = resources();
        let prod = scoped(&all, &["prod".to_string()].into());
        assert_eq!(
            ids(&prod),
            [
                "Environment/prod",
                "VirtualEnvironment/live",
                "AppDeployment/web-v2",
                "AppDeployment/web-v3",
                "Canary/c"
            ]
        );
        let dev = scoped(&all, &["dev".to_string()].into());
        assert_eq!(
            ids(&dev),
            [
                "Environment/dev",
                "VirtualEnvironment/team-a",
                "AppDeployment/web-v1"
            ]
        );
        // a scoped table compiles like the whole one
        for part in [prod, dev] {
            let config = switchyard_engine::PluginConfig {
                resources: part,
                ..Default::default()
            };
            switchyard_engine::Index::compile(&config).unwrap();
        }
    }

    #[test]
    fn scope_comes_from_node_metadata_as_a_list_or_a_comma_string() {
        let node = |v: Kind| Node {
            metadata: Some(Struct {
                fields: [(SCOPE_METADATA_KEY.to_string(), Value { kind: Some(v) })].into(),
            }),
            ..Default::default()
        };
        let list = Kind::ListValue(ListValue {
            values: ["prod", "stg"]
                .iter()
                .map(|s| Value {
                    kind: Some(Kind::StringValue(s.to_string())),
                })
                .collect(),
        });
        let both: BTreeSet<String> = ["prod".to_string(), "stg".to_string()].into();
        assert_eq!(scope_of(&node(list)), Some(both.clone()));
        assert_eq!(
            scope_of(&node(Kind::StringValue("prod, stg".into()))),
            Some(both)
        );
        assert_eq!(scope_of(&Node::default()), None);
        assert_eq!(scope_of(&node(Kind::BoolValue(true))), None);
    }
}
