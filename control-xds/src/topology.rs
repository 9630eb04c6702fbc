//! The one topology: what Switchyard asks of a proxy, computed once from the
//! compiled [`Index`] and rendered by every renderer — the ADS protobufs
//! (`snapshot_builder`), the static bootstrap (`render`) and the Istio objects
//! (`istio`). A timeout, an LB mapping or a header name changes here, in one place.
//!
//! The model: listeners (genesis, optionally internal) each running one filter
//! in one mode; one catch-all route per listener whose cluster comes from the
//! filter's selection header and whose hash comes from its hash-key header;
//! one cluster per distilled [`ClusterSpec`] with its LB policy, hash key,
//! endpoints and upstream protocol (HTTP/2 for `http2` and `grpc` components).

use switchyard_engine::validate::split_endpoint;
use switchyard_engine::{ClusterSpec, Index, LbPolicy, Mode, Settings};

/// The HTTP filter (and ECDS resource) routing genesis traffic.
pub const GENESIS_FILTER: &str = "switchyard";
/// The HTTP filter (and ECDS resource) checking component-to-component calls.
pub const INTERNAL_FILTER: &str = "switchyard-internal";
/// The genesis listener and its route configuration.
pub const GENESIS_LISTENER: &str = "switchyard_genesis";
/// The internal listener and its route configuration.
pub const INTERNAL_LISTENER: &str = "switchyard_internal";
/// The Wasm VM both filters share (one VM, one root context per filter).
pub const VM_ID: &str = "switchyard";
/// The Wasm runtime.
pub const WASM_RUNTIME: &str = "envoy.wasm.runtime.v8";
/// Upstream connect timeout of every cluster, in seconds.
pub const CONNECT_TIMEOUT_SECONDS: i64 = 1;
/// The cluster extension option that makes an upstream HTTP/2.
pub const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
/// Route timeout, in seconds.
pub const ROUTE_TIMEOUT_SECONDS: i64 = 30;

/// Everything one proxy is asked to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    pub listeners: Vec<ListenerModel>,
    pub clusters: Vec<ClusterModel>,
}

/// A listener: its address, the filter it runs (by name, also the filter's root
/// id and ECDS resource name) in which mode, and its route.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerModel {
    pub name: String,
    pub address: (String, u16),
    pub filter: String,
    pub mode: Mode,
    pub route: RouteModel,
}

/// The one catch-all route of a listener (its route configuration is named
/// after the listener).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteModel {
    /// The route reads the cluster from this header and removes it.
    pub cluster_header: String,
    /// The route hashes on this header; the router's upstream filters remove it
    /// (Envoy drops a route's removed headers before hashing).
    pub hash_key_header: String,
    pub timeout_seconds: i64,
}

/// How an upstream's endpoints are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovery {
    /// Every endpoint is an IP: static endpoints (EDS when served).
    Ips,
    /// Some endpoint is a DNS name: STRICT_DNS with the endpoints inline.
    Dns,
}

/// The load-balancing policy of an upstream, in Envoy's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lb {
    RoundRobin,
    LeastRequest,
    /// Maglev hashing on the request header `header` (the route hashes on the
    /// filter's copy of it), `hash_balance_factor` when set.
    Maglev {
        header: String,
        balance_factor: Option<u32>,
    },
}

impl Lb {
    /// Envoy's `lb_policy` enum name.
    pub fn envoy_name(&self) -> &'static str {
        match self {
            Lb::RoundRobin => "ROUND_ROBIN",
            Lb::LeastRequest => "LEAST_REQUEST",
            Lb::Maglev { .. } => "MAGLEV",
        }
    }
}

/// One distilled upstream: (app, component, component version, LB policy).
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterModel {
    pub name: String,
    pub app: String,
    pub component: String,
    pub version: String,
    /// `(host, port)` of each endpoint, as written.
    pub endpoints: Vec<(String, u16)>,
    pub discovery: Discovery,
    pub lb: Lb,
    pub connect_timeout_seconds: i64,
    /// The proxy speaks HTTP/2 to the endpoints (`http2` and `grpc` components).
    pub http2: bool,
}

impl ClusterModel {
    /// The model of a distilled cluster.
    pub fn of(spec: &ClusterSpec) -> Self {
        let endpoints: Vec<(String, u16)> = spec
            .endpoints
            .iter()
            .map(|e| {
                let (host, port) = split_endpoint(e);
                (host.to_string(), port)
            })
            .collect();
        let discovery = if endpoints
            .iter()
            .all(|(h, _)| h.parse::<std::net::IpAddr>().is_ok())
        {
            Discovery::Ips
        } else {
            Discovery::Dns
        };
        let lb = match &spec.policy {
            LbPolicy::RoundRobin => Lb::RoundRobin,
            LbPolicy::LeastConnection => Lb::LeastRequest,
            LbPolicy::Hash {
                header,
                balance_factor,
            } => Lb::Maglev {
                header: header.clone(),
                balance_factor: (*balance_factor > 0).then_some(*balance_factor),
            },
        };
        Self {
            name: spec.name.clone(),
            app: spec.app.clone(),
            component: spec.component.clone(),
            version: spec.version.clone(),
            endpoints,
            discovery,
            lb,
            connect_timeout_seconds: CONNECT_TIMEOUT_SECONDS,
            http2: spec.protocol.is_http2(),
        }
    }
}

/// Where the listeners listen.
#[derive(Debug, Clone, PartialEq)]
pub struct Listen {
    pub genesis: (String, u16),
    /// The internal listener (component-to-component calls), if any.
    pub internal: Option<(String, u16)>,
}

impl Topology {
    /// The topology of a compiled index: the genesis listener, the internal one
    /// when wanted, every distilled cluster (in the index's order).
    pub fn of(index: &Index, listen: &Listen) -> Self {
        let settings = index.settings();
        let mut listeners = vec![ListenerModel::new(
            GENESIS_LISTENER,
            &listen.genesis,
            GENESIS_FILTER,
            Mode::Genesis,
            settings,
        )];
        if let Some(internal) = &listen.internal {
            listeners.push(ListenerModel::new(
                INTERNAL_LISTENER,
                internal,
                INTERNAL_FILTER,
                Mode::Internal,
                settings,
            ));
        }
        Self {
            listeners,
            clusters: index.clusters().iter().map(ClusterModel::of).collect(),
        }
    }
}

impl ListenerModel {
    fn new(
        name: &str,
        address: &(String, u16),
        filter: &str,
        mode: Mode,
        settings: &Settings,
    ) -> Self {
        Self {
            name: name.to_string(),
            address: address.clone(),
            filter: filter.to_string(),
            mode,
            route: RouteModel {
                cluster_header: settings.cluster_header.clone(),
                hash_key_header: settings.hash_key_header.clone(),
                timeout_seconds: ROUTE_TIMEOUT_SECONDS,
            },
        }
    }
}

/// Kubernetes label values (and so the version label Istio subsets select on):
/// at most 63 characters, alphanumerics, `-`, `_`, `.`, alphanumeric at both ends.
pub fn is_label_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// FNV-1a, 64 bits: a short stable digest for generated names.
pub fn fnv64(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl ClusterModel {
    /// The Istio DestinationRule subset of this upstream: a DNS-1123 label (as
    /// istiod's `validateSubsetName` requires) made of the version and the LB
    /// policy — `b1a0001-round-robin`, `b1a0001-least-request`,
    /// `b1a0001-maglev-<8 hex of header and balance>`; a version that does not
    /// fit a label is replaced by a digest of it.
    pub fn subset(&self) -> String {
        let policy = match &self.lb {
            Lb::RoundRobin => "round-robin".to_string(),
            Lb::LeastRequest => "least-request".to_string(),
            Lb::Maglev {
                header,
                balance_factor,
            } => format!(
                "maglev-{:08x}",
                fnv64(&format!("{header}/{}", balance_factor.unwrap_or(0))) as u32
            ),
        };
        let plain = format!("{}-{policy}", self.version);
        if switchyard_engine::validate::is_dns_label(&plain) && plain.len() <= 63 {
            plain
        } else {
            format!("v{:016x}-{policy}", fnv64(&self.version))
        }
    }
}
