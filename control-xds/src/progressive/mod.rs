//! Progressive delivery (issue 11): a Canary with `steps` moves its weight by
//! itself, judged from the per-version counts every Envoy reports over LRS.
//!
//! By layer, from the ground: `spec` checks the Canary's plan, `analyzer` is
//! the error test, `sim` simulates rollouts for it, `machine` is the rollout's
//! state machine (all pure, below the store; the rollout's moves as store
//! changes are the store's, `state::rollout_ops`); `assess` judges the
//! reports against a store (pure); `lrs` receives the Envoys' load reports,
//! `observed` holds them and what was measured, `notify` posts webhooks;
//! `driver` gathers, assesses and applies, run by the process (`daemon`).
//! (Its API routes are `crate::api::canaries`, its CLI `crate::cli::canary`.)

pub mod analyzer;
pub mod assess;
pub mod driver;
pub mod lrs;
pub mod machine;
pub mod notify;
pub mod observed;
pub mod sim;
pub mod spec;
