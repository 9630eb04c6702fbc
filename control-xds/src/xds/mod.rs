//! The xDS protocol layer, independent of Switchyard's domain.
//!
//! Data flows one way: a builder makes a [`Snapshot`] (per resource type, a
//! version and named `Any` resources) and hands it to the [`SnapshotCache`],
//! which checks it and wakes every ADS stream; the [`AdsServer`] pushes it to
//! each Envoy and records, per node, what was sent, ACKed and NACKed.
//!
//! `snapshot` is the snapshot, `cache` the cache, `server` the gRPC service
//! and the protocol's rules; a stream's task is `stream` (ordering:
//! make-before-break), its per-type state `subscription`, its requests and
//! responses of either protocol `request`.

pub mod cache;
mod request;
pub mod server;
pub mod snapshot;
mod stream;
mod subscription;

pub use cache::{Nack, NodeStatus, ScopeBuilder, Served, SnapshotCache, TypeStatus};
pub use server::{AdsServer, NodeScope, ServeError};
pub use snapshot::{
    to_any, Inconsistency, References, ResourceType, Resources, Snapshot, SnapshotError,
};
