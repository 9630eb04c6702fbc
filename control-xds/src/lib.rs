//! Switchyard's control plane: resources → index → snapshot → stream.
//!
//! Layers, each importing only the ones before it:
//! 1. the domain: `load` reads resource files (the engine validates and
//!    indexes them), `state` is the store of resources, releases and context
//!    keys with its operations (`history` is the release history,
//!    `context_keys` makes keys, `clock` dates records, `change_log` keeps
//!    recent changes by id so a retried change is never made twice);
//! 2. persistence: `state_store` is the one interface to where the store is
//!    kept, with two backends: the state file (`persist`, through
//!    `atomic_file`) and etcd (`etcd`: guarded writes, watches, the replica
//!    session with its lease and leadership); `auth` keeps the API tokens in
//!    the state directory or in etcd;
//! 3. proxy configuration: `topology` is what Switchyard asks of a proxy,
//!    rendered by `snapshot_builder` (xDS), `render` (static bootstraps;
//!    `bootstrap` renders an ADS Envoy's bootstrap) and `istio` (Istio
//!    objects; `package` writes the filter's OCI image); `scope` cuts the table
//!    down for Envoys that serve only some environments;
//! 4. serving: `xds` streams snapshots to Envoys over ADS, `serve` is the
//!    control plane (store → snapshot → disk → cache), `rollout` says when a
//!    change is live on every Envoy, `api` is the HTTP API over it (`explain`
//!    routes a described request for it and the CLI),
//!    `http_server` and `tls` serve it and xDS (TLS, limits for slow clients;
//!    `log_limit` keeps client-caused log lines within a budget);
//!    `replicas` is what the other replicas on etcd published (their Envoys);
//!    `progressive` runs Canaries with steps (its plan and error test are
//!    domain-level; its LRS service, driver and API serve), `metrics` renders
//!    Prometheus text from the control plane;
//! 5. the process: `start` is what `serve` starts from (options, the first
//!    store), `daemon` wires the control plane, the API and xDS to their
//!    listeners (on etcd also the replica's watch, session and election); `client` and `credentials` are the CLI's side of the API.

pub mod api;
pub mod atomic_file;
pub mod auth;
pub mod bootstrap;
pub mod change_log;
pub mod client;
pub mod clock;
pub mod context_keys;
pub mod credentials;
pub mod daemon;
pub mod etcd;
pub mod explain;
pub mod history;
pub mod http_server;
pub mod istio;
pub mod load;
pub mod log_limit;
pub mod metrics;
pub mod package;
pub mod persist;
pub mod progressive;
pub mod render;
pub mod replicas;
pub mod rollout;
pub mod scope;
pub mod serve;
pub mod snapshot_builder;
pub mod start;
pub mod state;
pub mod state_store;
pub mod tls;
pub mod topology;
pub mod xds;

#[cfg(test)]
mod test_fixtures;
