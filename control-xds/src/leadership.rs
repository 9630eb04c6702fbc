//! Whether this replica leads (runs the canary driver): a flag with a local
//! deadline that the store's session keeps. The file store always leads; on
//! etcd the replica's session (`crate::etcd`) renews it with its lease. Knows
//! nothing of the backend, so the control plane above the store names no
//! etcd type for it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Whether this replica leads, with a local deadline: a leader that cannot
/// renew its lease stops counting itself leader a second before etcd can let
/// the lease expire and another replica take over (the deadline is counted
/// from before the renewal was sent). Always leading without etcd. Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct Leadership {
    /// Until when (ms on [`mono_ms`]'s clock) this replica leads.
    until_ms: Arc<AtomicU64>,
}

/// Milliseconds on a monotonic clock that starts with the process.
pub fn mono_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    u64::try_from(
        START
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_millis(),
    )
    .unwrap_or(u64::MAX)
}

impl Leadership {
    /// Leading for good (one process with the file store).
    pub fn always() -> Self {
        Self {
            until_ms: Arc::new(AtomicU64::new(u64::MAX)),
        }
    }

    /// Not leading until the store's session (on etcd,
    /// [`crate::etcd::Etcd::run_session`]) wins the election.
    pub fn none() -> Self {
        Self {
            until_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn holds(&self) -> bool {
        mono_ms() < self.until_ms.load(Ordering::SeqCst)
    }

    pub(crate) fn hold_until(&self, ms: u64) {
        self.until_ms.store(ms, Ordering::SeqCst);
    }

    /// Stops leading; returns whether it led.
    pub(crate) fn drop_it(&self) -> bool {
        let was = self.holds();
        self.until_ms.store(0, Ordering::SeqCst);
        was
    }
}
