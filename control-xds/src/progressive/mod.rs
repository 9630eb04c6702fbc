//! Progressive delivery (issue 11): a Canary with `steps` moves its weight by
//! itself, judged from the per-version counts every Envoy reports over LRS.
//!
//! Domain (pure): `spec` checks the Canary's plan, `analyzer` is the error
//! test, `sim` simulates rollouts for it, `machine` is the rollout's state
//! machine, `store_ops` its moves as store changes. Serving: `lrs` receives
//! the Envoys' load reports, `driver` ties reports, analyzer and machine to the
//! control plane, `notify` posts webhooks. (Its API routes are
//! `crate::api::canaries`, its CLI `crate::cli::canary`.)

pub mod analyzer;
pub mod driver;
pub mod lrs;
pub mod machine;
pub mod notify;
pub mod sim;
pub mod spec;
pub mod store_ops;
