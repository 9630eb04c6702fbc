//! Progressive delivery (issue 11): a Canary with `steps` moves its weight by
//! itself, judged from the per-version counts every Envoy reports over LRS.
//!
//! `spec` checks the Canary's plan, `analyzer` is the error test (pure), `sim`
//! simulates rollouts for it.

pub mod analyzer;
pub mod api;
pub mod cli;
pub mod driver;
pub mod lrs;
pub mod machine;
pub mod notify;
pub mod sim;
pub mod spec;
pub mod store_ops;
