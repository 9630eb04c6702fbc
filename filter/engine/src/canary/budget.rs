//! The verification budget: how much failed signature checking one verifier
//! (one Envoy worker) allows, so that forged tokens cannot turn requests into
//! CPU, while new valid tokens still get verified during a flood.
//!
//! Costs are in budget units: thousands of Envoy instructions (`Key::cost`).
//! Two pools pay for checks:
//! - **Credit**, for any unseen token. Every uncached token earns
//!   [`BUDGET_EARN`]; the credit also refills completely every
//!   [`BUDGET_REFILL_SECONDS`]. Capped at one *burst*: every check the dearest
//!   token can need (all keys of one algorithm, for a token without `kid`).
//! - **Reserve**, only for a token that was deferred before (it came when the
//!   credit was short and is back: a client resending its token). It refills
//!   completely every [`RESERVE_REFILL_SECONDS`], whatever the traffic, up to
//!   one burst. A flood of distinct forged tokens never touches it, so a new
//!   valid token is verified on its next request; an attacker who resends each
//!   forged token spends at most one burst per [`RESERVE_REFILL_SECONDS`] per
//!   worker (ES384, the dearest check, ≈ 38 M instructions: a few percent of a
//!   core) and then competes with new users for it.
//!
//! A token is checked only if its pool holds every check it may need, so a
//! token without `kid` is tried with all keys of its algorithm or with none;
//! a token that verifies with none of them spends the cost of every check it
//! failed; a token that verifies spends nothing.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::{Mutex, PoisonError};

/// Budget units every uncached token earns: a third of a request without a
/// token (0.31 M instructions), so a flood of forged tokens stays under 2×
/// such a request's added cost even counting one burst (BENCHMARKS.md §6).
pub const BUDGET_EARN: u64 = 100;

/// The credit also refills completely in this many seconds: after a flood, a
/// new token does not wait for traffic to earn credit.
pub const BUDGET_REFILL_SECONDS: u64 = 60;

/// The reserve refills completely in this many seconds.
pub const RESERVE_REFILL_SECONDS: u64 = 1;

/// Deferred tokens remembered (by a 64-bit keyed hash), oldest forgotten first.
const DEFERRED: usize = 512;

/// Which pool pays for a token's checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pool {
    Credit,
    Reserve,
}

#[derive(Debug)]
struct State {
    cap: u64,
    credit: u64,
    /// The clock (Unix seconds) of the credit's last time-based refill.
    credit_at: u64,
    reserve: u64,
    reserve_at: u64,
    /// Hashes of tokens deferred for lack of credit: a ring, `next` its oldest.
    deferred: Vec<u64>,
    next: usize,
}

/// Credit for failed signature checks (see the module comment).
#[derive(Debug)]
pub(crate) struct Budget {
    state: Mutex<State>,
    hasher: RandomState,
}

/// `pool` refilled for `now`: completely after `period` seconds (or at the
/// first look), proportionally before.
fn refill(pool: &mut u64, at: &mut u64, cap: u64, period: u64, now: u64) {
    let elapsed = now.saturating_sub(*at);
    let by_time = if *at == 0 || elapsed >= period {
        cap
    } else {
        cap.saturating_mul(elapsed) / period
    };
    if by_time > 0 || *at == 0 {
        *at = now;
    }
    *pool = pool.saturating_add(by_time).min(cap);
}

impl Budget {
    /// Both pools start full at `cap` (one burst).
    pub(crate) fn new(cap: u64) -> Self {
        Budget {
            state: Mutex::new(State {
                cap,
                credit: cap,
                credit_at: 0,
                reserve: cap,
                reserve_at: 0,
                deferred: Vec::new(),
                next: 0,
            }),
            hasher: RandomState::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An uncached token arrived at `now` (Unix seconds): the credit earns
    /// [`BUDGET_EARN`] and its share of the time-based refill, up to the cap.
    pub(crate) fn earn(&self, now: u64) {
        let mut s = self.state();
        let State {
            cap,
            credit,
            credit_at,
            ..
        } = &mut *s;
        refill(credit, credit_at, *cap, BUDGET_REFILL_SECONDS, now);
        *credit = credit.saturating_add(BUDGET_EARN).min(*cap);
    }

    /// The pool that pays for checking `token` with checks costing up to
    /// `cost` in all, or `None` when neither may: the token is then remembered
    /// as deferred, so that on its return it may use the reserve.
    pub(crate) fn grant(&self, token: &str, cost: u64, now: u64) -> Option<Pool> {
        let mut s = self.state();
        if s.credit >= cost {
            return Some(Pool::Credit);
        }
        let hash = self.hasher.hash_one(token);
        if s.deferred.contains(&hash) {
            let State {
                cap,
                reserve,
                reserve_at,
                ..
            } = &mut *s;
            refill(reserve, reserve_at, *cap, RESERVE_REFILL_SECONDS, now);
            if *reserve >= cost {
                return Some(Pool::Reserve);
            }
            return None;
        }
        if s.deferred.len() < DEFERRED {
            s.deferred.push(hash);
        } else {
            let at = s.next;
            s.deferred[at] = hash;
            s.next = (at + 1) % DEFERRED;
        }
        None
    }

    /// A check paid by `pool` failed: its cost comes out of the pool.
    pub(crate) fn spend(&self, pool: Pool, cost: u64) {
        let mut s = self.state();
        let pool = match pool {
            Pool::Credit => &mut s.credit,
            Pool::Reserve => &mut s.reserve,
        };
        *pool = pool.saturating_sub(cost);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;

    #[test]
    fn credit_pays_first_and_is_spent_by_failures() {
        let b = Budget::new(1_000);
        b.earn(NOW);
        assert_eq!(b.grant("a", 1_000, NOW), Some(Pool::Credit));
        b.spend(Pool::Credit, 1_000);
        // 100 earned: not enough for 1,000, deferred
        b.earn(NOW);
        assert_eq!(b.grant("b", 1_000, NOW), None);
        // cheaper checks are still paid
        assert_eq!(b.grant("c", 100, NOW), Some(Pool::Credit));
    }

    #[test]
    fn a_deferred_token_that_returns_uses_the_reserve_once_per_refill() {
        let b = Budget::new(1_000);
        b.earn(NOW);
        b.spend(Pool::Credit, 1_000);
        for i in 0..2_000 {
            // a flood of distinct tokens is deferred and never touches the reserve
            assert_eq!(b.grant(&format!("forged{i}"), 1_000, NOW), None);
        }
        assert_eq!(b.grant("user", 1_000, NOW), None, "first sight: deferred");
        assert_eq!(b.grant("user", 1_000, NOW), Some(Pool::Reserve));
        b.spend(Pool::Reserve, 1_000);
        assert_eq!(b.grant("user", 1_000, NOW), None, "reserve spent");
        assert_eq!(
            b.grant("user", 1_000, NOW + RESERVE_REFILL_SECONDS),
            Some(Pool::Reserve),
            "refilled with time"
        );
    }

    #[test]
    fn the_credit_refills_with_time() {
        let b = Budget::new(10_000);
        b.earn(NOW);
        b.spend(Pool::Credit, 10_000);
        b.earn(NOW + BUDGET_REFILL_SECONDS / 2);
        assert_eq!(b.grant("x", 5_000, NOW), Some(Pool::Credit));
        b.earn(NOW + BUDGET_REFILL_SECONDS * 2);
        assert_eq!(b.grant("y", 10_000, NOW), Some(Pool::Credit));
    }
}
