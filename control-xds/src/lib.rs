//! Switchyard's control plane: resources → index → snapshot → stream.
//!
//! `load` reads resource files, the engine validates and indexes them,
//! `topology` is what Switchyard asks of a proxy (computed once from the index,
//! rendered by `snapshot_builder` and `render`), `render` writes static Envoy
//! configuration, `istio` the Istio objects and `package` the filter's OCI
//! image, `xds` serves snapshots to Envoys over ADS.
//! `state` is the store of resources and releases (persisted atomically),
//! `serve` runs the control plane (store → snapshot → cache), `api` is its HTTP
//! API and `client` the CLI's side of it; `rollout` says when a change is live
//! on every Envoy; `scope` cuts the table down for Envoys that serve only some
//! environments. `auth` holds the API's tokens and roles, `credentials` where
//! the CLI finds its token, `tls` and `http_server` serve the API and xDS over
//! TLS with limits for slow clients; `atomic_file` writes files atomically.

pub mod api;
pub mod atomic_file;
pub mod auth;
pub mod client;
pub mod credentials;
pub mod explain;
pub mod http_server;
pub mod istio;
pub mod load;
pub mod package;
pub mod render;
pub mod rollout;
pub mod scope;
pub mod serve;
pub mod snapshot_builder;
pub mod state;
pub mod tls;
pub mod topology;
pub mod xds;

#[cfg(test)]
mod test_fixtures;
