//! Switchyard's control plane: resources → index → snapshot → stream.
//!
//! `load` reads resource files, the engine validates and indexes them, `render`
//! writes static Envoy configuration, `xds` serves snapshots to Envoys over ADS.

pub mod api;
pub mod client;
pub mod explain;
pub mod load;
pub mod render;
pub mod serve;
pub mod snapshot_builder;
pub mod state;
pub mod xds;
