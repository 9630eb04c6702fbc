//! Snapshots: one consistent set of xDS resources, a version per resource type.
//!
//! A [`Snapshot`] knows nothing about Switchyard's domain: it holds, per
//! [`ResourceType`], a version string and named resources already encoded as
//! `google.protobuf.Any`. Before a snapshot is served it is checked against the
//! [`References`] its builder supplies (which clusters routes/listeners use, which
//! route configurations listeners load by RDS, ...), so Envoy is never sent a
//! listener pointing at a cluster that does not exist.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use envoy_types::pb::google::protobuf::Any;
use prost::Message;

/// The resource types served over ADS, declared in make-before-break push order:
/// clusters, their endpoints, the filter's extension config, listeners, routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum ResourceType {
    /// CDS: `envoy.config.cluster.v3.Cluster`.
    Cluster,
    /// EDS: `envoy.config.endpoint.v3.ClusterLoadAssignment`.
    Endpoint,
    /// ECDS: `envoy.config.core.v3.TypedExtensionConfig`.
    ExtensionConfig,
    /// LDS: `envoy.config.listener.v3.Listener`.
    Listener,
    /// RDS: `envoy.config.route.v3.RouteConfiguration`.
    Route,
}

impl ResourceType {
    /// Every type, in the order updates are pushed (make-before-break).
    pub const PUSH_ORDER: [ResourceType; 5] = [
        ResourceType::Cluster,
        ResourceType::Endpoint,
        ResourceType::ExtensionConfig,
        ResourceType::Listener,
        ResourceType::Route,
    ];

    /// The type URL used in discovery requests/responses and in `Any`.
    pub const fn type_url(self) -> &'static str {
        match self {
            ResourceType::Cluster => "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            ResourceType::Endpoint => {
                "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
            }
            ResourceType::ExtensionConfig => {
                "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"
            }
            ResourceType::Listener => "type.googleapis.com/envoy.config.listener.v3.Listener",
            ResourceType::Route => "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
        }
    }

    /// The type behind a type URL, if it is one we serve.
    pub fn from_type_url(url: &str) -> Option<Self> {
        Self::PUSH_ORDER.into_iter().find(|t| t.type_url() == url)
    }

    /// Whether resources of this type route requests to clusters (the filter's
    /// config names them, listeners and routes carry the filter and route): such
    /// a type is only sent once the clusters it may route to can be used.
    pub const fn routes_to_clusters(self) -> bool {
        matches!(
            self,
            ResourceType::ExtensionConfig | ResourceType::Listener | ResourceType::Route
        )
    }

    /// The short xDS name (`CDS`, `EDS`, `ECDS`, `LDS`, `RDS`).
    pub const fn short_name(self) -> &'static str {
        match self {
            ResourceType::Cluster => "CDS",
            ResourceType::Endpoint => "EDS",
            ResourceType::ExtensionConfig => "ECDS",
            ResourceType::Listener => "LDS",
            ResourceType::Route => "RDS",
        }
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short_name())
    }
}

/// Encodes a protobuf message as an `Any` carrying its full type URL.
pub fn to_any<M: Message + prost::Name>(message: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: message.encode_to_vec(),
    }
}

/// The resources of one type in a snapshot, by name, with their version.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    /// The version reported to Envoy in `version_info` for this type.
    pub version: String,
    /// Resources by name; names are unique within a type.
    pub items: BTreeMap<String, Any>,
    /// Per resource, a version that changes exactly when its encoded bytes do
    /// (a hash, computed once per snapshot): delta xDS sends a resource only
    /// when the version the stream's Envoy has differs.
    pub versions: BTreeMap<String, String>,
    /// A hash of every name and version: equal digests, equal resources. A
    /// stream whose last response of a type was computed from the same digest
    /// (and the same subscription) has nothing to send for it.
    pub digest: u64,
}

/// The version of one resource: a hash of its encoded bytes.
pub fn resource_version(any: &Any) -> String {
    use std::hash::{DefaultHasher, Hasher};
    let mut h = DefaultHasher::new();
    h.write(any.type_url.as_bytes());
    h.write(&any.value);
    format!("{:016x}-{}", h.finish(), any.value.len())
}

/// Names one resource refers to in another type, supplied by the snapshot
/// builder (which knows what it put in listeners and routes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct References {
    /// Clusters named by routes, listeners (e.g. TCP proxy) or other clusters.
    pub clusters: BTreeSet<String>,
    /// Clusters of type EDS, by their EDS service name: each must have exactly
    /// one `ClusterLoadAssignment` and every assignment must belong to one.
    pub eds_clusters: BTreeSet<String>,
    /// Route configuration names listeners load by RDS.
    pub routes: BTreeSet<String>,
    /// Extension config names listeners load by ECDS.
    pub extension_configs: BTreeSet<String>,
}

/// One reason a snapshot cannot be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inconsistency {
    /// A resource's `Any` carries a type URL other than its type's.
    WrongTypeUrl {
        /// The type the resource was filed under.
        kind: ResourceType,
        /// The resource name.
        name: String,
        /// The type URL it carries.
        found: String,
    },
    /// A name is referenced but no resource of that type carries it.
    Missing {
        /// The type that lacks the resource.
        kind: ResourceType,
        /// The missing name.
        name: String,
    },
    /// A `ClusterLoadAssignment` that no EDS cluster uses.
    UnusedEndpoints {
        /// The assignment's cluster name.
        name: String,
    },
}

impl fmt::Display for Inconsistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Inconsistency::WrongTypeUrl { kind, name, found } => write!(
                f,
                "{kind} resource '{name}' has type URL '{found}', expected '{}'",
                kind.type_url()
            ),
            Inconsistency::Missing { kind, name } => {
                write!(
                    f,
                    "{kind} resource '{name}' is referenced but not in the snapshot"
                )
            }
            Inconsistency::UnusedEndpoints { name } => {
                write!(f, "EDS resource '{name}' belongs to no EDS cluster")
            }
        }
    }
}

/// Why a snapshot was refused; lists every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("inconsistent xDS snapshot: {}", join(.problems))]
pub struct SnapshotError {
    /// Every problem found, in type order.
    pub problems: Vec<Inconsistency>,
}

fn join(problems: &[Inconsistency]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A full set of xDS resources: per type, a version and named resources.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    by_type: BTreeMap<ResourceType, Resources>,
    extension_order: Option<ExtensionOrder>,
}

/// Two ECDS resources that must reach Envoy in order: when one response would
/// change both, `first` goes alone and `then` only once Envoy ACKs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionOrder {
    pub first: String,
    pub then: String,
}

impl Snapshot {
    /// An empty snapshot: every type has version "" and no resources.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the resources of one type (builder style).
    pub fn with(
        mut self,
        kind: ResourceType,
        version: impl Into<String>,
        items: impl IntoIterator<Item = (String, Any)>,
    ) -> Self {
        self.set(kind, version, items);
        self
    }

    /// Orders two ECDS resources ([`ExtensionOrder`]; builder style).
    pub fn with_extension_order(
        mut self,
        first: impl Into<String>,
        then: impl Into<String>,
    ) -> Self {
        self.extension_order = Some(ExtensionOrder {
            first: first.into(),
            then: then.into(),
        });
        self
    }

    /// The ECDS resources that must reach Envoy in order, if any.
    pub fn extension_order(&self) -> Option<&ExtensionOrder> {
        self.extension_order.as_ref()
    }

    /// Replaces the resources of one type.
    pub fn set(
        &mut self,
        kind: ResourceType,
        version: impl Into<String>,
        items: impl IntoIterator<Item = (String, Any)>,
    ) {
        let items: BTreeMap<String, Any> = items.into_iter().collect();
        let versions: BTreeMap<String, String> = items
            .iter()
            .map(|(name, any)| (name.clone(), resource_version(any)))
            .collect();
        let digest = {
            use std::hash::{DefaultHasher, Hash, Hasher};
            let mut h = DefaultHasher::new();
            versions.hash(&mut h);
            h.finish()
        };
        self.by_type.insert(
            kind,
            Resources {
                version: version.into(),
                items,
                versions,
                digest,
            },
        );
    }

    /// The resources of one type (empty if never set).
    pub fn resources(&self, kind: ResourceType) -> &Resources {
        static EMPTY: Resources = Resources {
            version: String::new(),
            items: BTreeMap::new(),
            versions: BTreeMap::new(),
            digest: 0,
        };
        self.by_type.get(&kind).unwrap_or(&EMPTY)
    }

    /// The version of one type ("" if never set).
    pub fn version(&self, kind: ResourceType) -> &str {
        &self.resources(kind).version
    }

    /// Checks the snapshot can be served: type URLs match their types, every
    /// referenced cluster, route configuration and extension config exists, and
    /// EDS assignments match the EDS clusters one to one.
    pub fn check(&self, refs: &References) -> Result<(), SnapshotError> {
        let mut problems = Vec::new();
        for kind in ResourceType::PUSH_ORDER {
            for (name, any) in &self.resources(kind).items {
                if any.type_url != kind.type_url() {
                    problems.push(Inconsistency::WrongTypeUrl {
                        kind,
                        name: name.clone(),
                        found: any.type_url.clone(),
                    });
                }
            }
        }
        let mut missing = |kind: ResourceType, wanted: &BTreeSet<String>| {
            let have = &self.resources(kind).items;
            for name in wanted.iter().filter(|n| !have.contains_key(*n)) {
                problems.push(Inconsistency::Missing {
                    kind,
                    name: name.clone(),
                });
            }
        };
        missing(ResourceType::Cluster, &refs.clusters);
        missing(ResourceType::Endpoint, &refs.eds_clusters);
        missing(ResourceType::ExtensionConfig, &refs.extension_configs);
        missing(ResourceType::Route, &refs.routes);
        for name in self.resources(ResourceType::Endpoint).items.keys() {
            if !refs.eds_clusters.contains(name) {
                problems.push(Inconsistency::UnusedEndpoints { name: name.clone() });
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SnapshotError { problems })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
    use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;

    fn cluster(name: &str) -> (String, Any) {
        let c = Cluster {
            name: name.into(),
            ..Default::default()
        };
        (name.into(), to_any(&c))
    }

    fn cla(name: &str) -> (String, Any) {
        let c = ClusterLoadAssignment {
            cluster_name: name.into(),
            ..Default::default()
        };
        (name.into(), to_any(&c))
    }

    fn route(name: &str) -> (String, Any) {
        let r = RouteConfiguration {
            name: name.into(),
            ..Default::default()
        };
        (name.into(), to_any(&r))
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn type_urls_round_trip_and_push_order_is_make_before_break() {
        for kind in ResourceType::PUSH_ORDER {
            assert_eq!(ResourceType::from_type_url(kind.type_url()), Some(kind));
        }
        assert_eq!(ResourceType::from_type_url("type.googleapis.com/x"), None);
        let order: Vec<_> = ResourceType::PUSH_ORDER
            .iter()
            .map(|t| t.short_name())
            .collect();
        assert_eq!(order, ["CDS", "EDS", "ECDS", "LDS", "RDS"]);
        assert_eq!(
            to_any(&Cluster::default()).type_url,
            ResourceType::Cluster.type_url()
        );
    }

    #[test]
    fn consistent_snapshot_passes() {
        let snap = Snapshot::new()
            .with(ResourceType::Cluster, "1", [cluster("a"), cluster("b")])
            .with(ResourceType::Endpoint, "1", [cla("b")])
            .with(ResourceType::Route, "1", [route("main")]);
        let refs = References {
            clusters: set(&["a", "b"]),
            eds_clusters: set(&["b"]),
            routes: set(&["main"]),
            extension_configs: BTreeSet::new(),
        };
        assert_eq!(snap.check(&refs), Ok(()));
        assert_eq!(snap.version(ResourceType::Cluster), "1");
        assert_eq!(snap.version(ResourceType::Listener), "");
        assert!(snap.resources(ResourceType::Listener).items.is_empty());
    }

    #[test]
    fn every_problem_is_listed() {
        let mut wrong = cluster("c");
        wrong.1.type_url = ResourceType::Route.type_url().into();
        let snap = Snapshot::new()
            .with(ResourceType::Cluster, "1", [cluster("a"), wrong])
            .with(ResourceType::Endpoint, "1", [cla("orphan")]);
        let refs = References {
            clusters: set(&["a", "gone"]),
            eds_clusters: set(&["a"]),
            routes: set(&["main"]),
            extension_configs: set(&["switchyard"]),
        };
        let err = snap.check(&refs).unwrap_err();
        assert_eq!(
            err.problems,
            vec![
                Inconsistency::WrongTypeUrl {
                    kind: ResourceType::Cluster,
                    name: "c".into(),
                    found: ResourceType::Route.type_url().into(),
                },
                Inconsistency::Missing {
                    kind: ResourceType::Cluster,
                    name: "gone".into()
                },
                Inconsistency::Missing {
                    kind: ResourceType::Endpoint,
                    name: "a".into()
                },
                Inconsistency::Missing {
                    kind: ResourceType::ExtensionConfig,
                    name: "switchyard".into()
                },
                Inconsistency::Missing {
                    kind: ResourceType::Route,
                    name: "main".into()
                },
                Inconsistency::UnusedEndpoints {
                    name: "orphan".into()
                },
            ]
        );
        let msg = err.to_string();
        assert!(
            msg.contains("CDS resource 'gone' is referenced but not in the snapshot"),
            "{msg}"
        );
        assert!(
            msg.contains("EDS resource 'orphan' belongs to no EDS cluster"),
            "{msg}"
        );
    }
}
