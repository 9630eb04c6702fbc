//! Switchyard's routing engine: pure Rust, no proxy-wasm.
//!
//! Resources ([`resources`]) are validated and compiled once into an [`Index`];
//! per request, [`Index::route`] answers where the request goes ([`Decision`]) or
//! why it is refused ([`RouteError`]). The filter, the control plane's validation
//! and `switchyard explain` all run this same code.

pub mod canary;
pub mod config;
pub mod context;
pub mod decision;
mod deliver;
pub mod error;
pub mod headers;
pub mod index;
pub mod internal;
mod name_map;
pub mod path;
pub mod readiness;
pub mod request;
pub mod resources;
pub mod route;
pub mod route_options;
pub mod validate;

#[cfg(test)]
mod test_fixtures;

pub use config::{Mode, PluginConfig, Settings};
pub use decision::{Decision, DecisionKind};
pub use error::{ConfigError, ErrorCode, RouteError, ValidationError};
pub use index::{cluster_name, ClusterSpec, Index};
pub use readiness::{KnownClusters, UnreadyClusters};
pub use request::Request;
pub use resources::Resource;
pub use route_options::LbPolicy;
