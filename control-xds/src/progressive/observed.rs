//! What progressive delivery observes, shared by its writers and readers: the
//! Envoys' load reports ([`LoadReports`], written by the LRS service), what the
//! driver measured per rollout (written by the driver, read by `canary status`
//! and `/metrics`), and, on a replica that does not lead, the counts forwarded
//! to the leader (read by the replica session, which publishes them). The
//! running control plane holds it; the driver's own state is the driver's.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use super::analyzer::Counts;
use super::assess::Measured;
use super::lrs::LoadReports;

/// The observations of progressive delivery.
#[derive(Debug, Default)]
pub struct Observed {
    pub reports: LoadReports,
    measured: Mutex<BTreeMap<String, Measured>>,
    /// Replicas on etcd, not leading: every count the Envoys connected here
    /// reported, summed since start (published for the leader).
    forwarded: Mutex<BTreeMap<String, Counts>>,
}

impl Observed {
    /// What was measured for `canary`'s rollout, if the driver follows it.
    pub fn measured(&self, canary: &str) -> Option<Measured> {
        self.measured
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(canary)
            .cloned()
    }

    /// Replaces what was measured (the driver, after each look).
    pub fn set_measured(&self, measured: BTreeMap<String, Measured>) {
        *self.measured.lock().unwrap_or_else(PoisonError::into_inner) = measured;
    }

    /// Not leading: adds what this replica's Envoys reported to the counts
    /// published for the leader.
    pub fn forward(&self) {
        let taken = self.reports.take();
        let mut forwarded = self
            .forwarded
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (cluster, n) in taken {
            forwarded.entry(cluster).or_default().add(n);
        }
    }

    /// Every count forwarded since start, by cluster.
    pub fn forwarded(&self) -> BTreeMap<String, Counts> {
        self.forwarded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
