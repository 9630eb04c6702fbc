//! Switchyard's control plane: resources → index → snapshot → stream.
//!
//! `load` reads resource files, the engine validates and indexes them, `render`
//! writes static Envoy configuration, `xds` serves snapshots to Envoys over ADS.
//! `state` is the store of resources and releases (persisted atomically),
//! `serve` runs the control plane (store → snapshot → cache), `api` is its HTTP
//! API and `client` the CLI's side of it; `rollout` says when a change is live
//! on every Envoy; `scope` cuts the table down for Envoys that serve only some
//! environments.

pub mod api;
pub mod client;
pub mod explain;
pub mod load;
pub mod metrics;
pub mod progressive;
pub mod render;
pub mod rollout;
pub mod scope;
pub mod serve;
pub mod snapshot_builder;
pub mod state;
pub mod xds;

#[cfg(test)]
mod test_fixtures;
