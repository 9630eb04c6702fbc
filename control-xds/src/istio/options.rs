//! What `render istio` is asked ([`IstioOptions`]), the limits and names it
//! renders with, and why it refuses ([`IstioError`]).

use serde_json::{json, Value};
use switchyard_engine::context::ContextKey;

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

pub(super) fn meta(name: &str, namespace: &str) -> Value {
    json!({"name": name, "namespace": namespace,
           "labels": {"app.kubernetes.io/managed-by": "switchyard"}})
}
