//! Switchyard's control plane: resources → store → snapshot → stream.
//!
//! Layers, from the ground up; a module names only modules of its own layer
//! or below (`tests/layers.rs` holds this table as code and fails on any
//! import that points up, naming the file, the line and both layers):
//! 1. base: `clock` (the one wall clock), `context_keys`, `log_limit`, and
//!    `views` (the API's answers as types, the wire contract);
//! 2. xds: the xDS protocol — snapshots, the cache, the ADS server — knowing
//!    nothing of Switchyard (a node's scope is read by a function it is given);
//! 3. canary rules: `progressive`'s plan (`spec`), error test (`analyzer`),
//!    state machine (`machine`) and simulations (`sim`), pure;
//! 4. resources: `load` reads resource files (the engine validates them),
//!    `scope` cuts them down per Envoy, `topology` is what Switchyard asks of a
//!    proxy, `explain` routes a described request;
//! 5. store: `state` is the store with its operations (`state::rollout_ops`
//!    for rollouts, `history` for releases, `change_log` for recent changes by
//!    id so a retried change is never made twice); `state_store` is where it is kept
//!    (`persist` and `atomic_file`: the state file; `etcd`), `leadership`
//!    whether this replica leads (kept by the store's session); `auth` keeps the
//!    API tokens; `replicas` reads what the other replicas published;
//! 6. derived: what a store gives, purely — `snapshot_builder` (xDS),
//!    `render` and `bootstrap` (static configs), `native_filter` (the native
//!    build's filter entry for both), `istio` and `package`, and
//!    `progressive::assess` (the rollouts' judgement);
//! 7. serving: `serve` is the running control plane (store → snapshot →
//!    saved → cache), `propagation` says when a change is live, `tls` and
//!    `http_server` serve, `progressive::{lrs, observed, notify}` take the
//!    Envoys' load reports, hold what was measured and post webhooks; `ui`
//!    is the dashboard the API serves at `/ui/` (its files, and the
//!    rollouts' counts over time it plots);
//! 8. api: the HTTP API (`api`, `metrics`, `progressive::api`);
//! 9. process: `daemon` wires the control plane, the API, xDS and the canary
//!    driver (`progressive::driver`: gather → assess → apply) to listeners;
//!    `start` is what it starts from; the CLI (`cli`, `client`,
//!    `credentials`) talks to the API; `completions` writes its shell
//!    completion scripts.
//!
//! Why a test rather than crates: splitting this 18k-line crate into six
//! crates would move every file while six engineers change them, and would
//! need a public API between each pair of crates. The test gives the same
//! guarantee Cargo would — no import points up — at the cost of being a
//! test, not a compile error: it fails in `cargo test`, not in `cargo build`,
//! and it reads `use` paths as text (an upward path spelled through a
//! re-export of a lower module would escape it; there is none today). The
//! layers can become crates later along the same table. Import cycles inside
//! a layer are checked with `farm-studio look` (none).

pub mod api;
pub mod atomic_file;
pub mod auth;
pub mod bootstrap;
pub mod change_log;
pub mod cli;
pub mod clock;
pub mod completions;
pub mod context_keys;
pub mod credentials;
pub mod daemon;
pub mod etcd;
pub mod explain;
pub mod history;
pub mod http_server;
pub mod istio;
pub mod kind;
pub mod leadership;
pub mod load;
pub mod log_limit;
pub mod metrics;
pub mod native_filter;
pub mod package;
pub mod persist;
pub mod progressive;
pub mod propagation;
pub mod render;
pub mod replicas;
pub mod scope;
pub mod serve;
pub mod snapshot_builder;
pub mod start;
pub mod state;
pub mod state_store;
pub mod tls;
pub mod topology;
pub mod ui;
pub mod views;
pub mod xds;

#[cfg(test)]
mod test_fixtures;
