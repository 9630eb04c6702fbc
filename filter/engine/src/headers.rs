//! Header names the engine reads and writes: selectors, routing metadata,
//! `kf-context`, and the default cluster/hash headers. A leaf: it imports
//! nothing from the crate, so every module may depend on it.

/// Long and short selector names, checked in KubeFox's order:
/// long query, long header, short query, short header.
pub const VE_SELECTORS: (&str, &str) = ("kubefox-virtual-environment", "kf-ve");
pub const DEP_SELECTORS: (&str, &str) = ("kubefox-app-deployment", "kf-dep");

/// The metadata headers the filter sets on every routed request (`full`).
pub const METADATA_HEADERS: [&str; 7] = [
    "kf-environment",
    "kf-virtual-env",
    "kf-app",
    "kf-deployment",
    "kf-component",
    "kf-component-version",
    "kf-decision",
];

/// The only metadata header besides `kf-context` and vars in `lean` mode.
pub const LEAN_METADATA_HEADERS: [&str; 1] = ["kf-deployment"];

/// The signed routing context.
pub const CONTEXT_HEADER: &str = "kf-context";

/// Default header Envoy's route reads the cluster name from.
pub const DEFAULT_CLUSTER_HEADER: &str = "x-switchyard-cluster";
/// Default header the route's hash policy hashes on for `hash` clusters.
pub const DEFAULT_HASH_KEY_HEADER: &str = "x-switchyard-hash-key";
/// Istio mode's default selection header: the rendered VirtualServices match its
/// value (the distilled upstream's key) and route to that version's subset.
pub const ISTIO_SELECTION_HEADER: &str = "x-switchyard-version";

/// Whether `name` (a header or query parameter) is one of the four selectors.
pub fn is_selector(name: &str) -> bool {
    name == VE_SELECTORS.0
        || name == VE_SELECTORS.1
        || name == DEP_SELECTORS.0
        || name == DEP_SELECTORS.1
}
