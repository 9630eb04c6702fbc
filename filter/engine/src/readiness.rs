//! Clusters a routing table names that this Envoy does not have (DESIGN.md's 503
//! `cluster_not_ready`).
//!
//! In pull mode the Envoy's clusters come from a static bootstrap rendered from the
//! inline table, while the pulled table may be newer: a deployment published later
//! brings new component versions, so new distilled clusters. Routing to one of them
//! would make Envoy answer an empty 503. The host computes, once per installed
//! table, which of its clusters are not known ([`UnreadyClusters::of`]), and per
//! request refuses a decision whose cluster is one of them ([`UnreadyClusters::check`]:
//! one hash lookup, no allocation, nothing at all when every cluster is known).

use std::collections::HashSet;

use crate::decision::Decision;
use crate::error::{ErrorCode, RouteError};
use crate::index::Index;

/// The cluster names an Envoy is known to have.
#[derive(Debug, Clone, Default)]
pub struct KnownClusters(HashSet<String>);

impl KnownClusters {
    /// The distilled clusters of `index`: what a bootstrap rendered from it has.
    pub fn of(index: &Index) -> Self {
        Self(index.clusters().iter().map(|c| c.name.clone()).collect())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains(name)
    }
}

/// The clusters of one table that the Envoy does not have.
#[derive(Debug, Clone, Default)]
pub struct UnreadyClusters(HashSet<String>);

impl UnreadyClusters {
    /// Every cluster is ready (the table the Envoy's clusters were made from).
    pub fn none() -> Self {
        Self::default()
    }

    /// The clusters of `table` that are not in `known`.
    pub fn of(table: &Index, known: &KnownClusters) -> Self {
        Self(
            table
                .clusters()
                .iter()
                .filter(|c| !known.contains(&c.name))
                .map(|c| c.name.clone())
                .collect(),
        )
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Refuses a decision whose cluster this Envoy does not have.
    pub fn check(&self, d: &Decision<'_, '_>) -> Result<(), RouteError> {
        if self.0.is_empty() || !self.0.contains(d.cluster) {
            return Ok(());
        }
        Err(RouteError::new(
            ErrorCode::ClusterNotReady,
            format!(
                "component '{}' version '{}' is not ready on this proxy yet",
                d.component, d.component_version
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures::{deployment, hello_world, index};
    use crate::Request;

    fn get<'a>(path: &'a str, headers: &'a [(String, String)]) -> Request<'a> {
        Request {
            method: "GET",
            path,
            headers,
            source_address: None,
            now_unix_seconds: 1_800_000_000,
        }
    }

    /// The inline table plus a deployment with new component versions (f9, b9).
    fn pulled() -> Index {
        let mut config = hello_world();
        if let Some(resources) = config["resources"].as_array_mut() {
            resources.push(deployment("hello-world-v9", "v9", "f9", "b9", 9209));
        }
        index(&config)
    }

    #[test]
    fn a_cluster_the_envoy_lacks_is_refused_others_route() {
        let known = KnownClusters::of(&index(&hello_world()));
        let table = pulled();
        let unready = UnreadyClusters::of(&table, &known);
        // frontend f9, backend b9 (hash) and its round-robin twin
        assert_eq!(unready.len(), 3, "{unready:?}");

        let new = [("kf-dep".to_string(), "hello-world-v9".to_string())];
        let d = table.route(&get("/dev/hello", &new)).unwrap();
        let e = unready.check(&d).unwrap_err();
        assert_eq!(e.code, ErrorCode::ClusterNotReady);
        assert_eq!(e.code.status(), 503);
        assert!(
            e.body().contains("\"error\":\"cluster_not_ready\""),
            "{}",
            e.body()
        );
        assert!(e.message.contains("f9"), "{}", e.message);

        let backend = table.route(&get("/dev/hello/backend", &new)).unwrap();
        assert!(unready.check(&backend).is_err());

        let old = table.route(&get("/dev/hello", &[])).unwrap();
        assert_eq!(old.deployment, "hello-world-main");
        assert!(unready.check(&old).is_ok());
    }

    #[test]
    fn the_table_the_clusters_came_from_is_all_ready() {
        let inline = index(&hello_world());
        let unready = UnreadyClusters::of(&inline, &KnownClusters::of(&inline));
        assert!(unready.is_empty());
        let d = inline.route(&get("/dev/hello", &[])).unwrap();
        assert!(unready.check(&d).is_ok());
        assert!(UnreadyClusters::none().check(&d).is_ok());
    }
}
