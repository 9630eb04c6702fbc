//! The canary's error test: is the canary failing more often than the stable
//! version, *measured over the same seconds*? Pure (no clock, no I/O): it is fed
//! per-window counts and answers with a verdict.
//!
//! # Statistics
//!
//! Every window (one driver tick, the LRS reports of every Envoy summed) brings
//! `(n_c, e_c)` finished requests and 5xx of the canary's own clusters and
//! `(n_s, e_s)` of the stable's. The criterion is relative: the canary fails when
//! its error rate exceeds `k × p_s` (`k` = `maxErrorRatio`) where `p_s` is the
//! stable's rate, taken as at least `f` (`minErrorRate`).
//!
//! **Conditional test (both versions have traffic).** Given that an error
//! happened in a window, it came from the canary with probability
//! `π = n_c·p_c / (n_c·p_c + n_s·p_s)`. With equal rates (H0)
//! `π0 = n_c/(n_c+n_s)`; with the canary at `k×` (H1)
//! `π1 = k·n_c/(k·n_c+n_s)`. The error *rate* cancels: an incident that raises
//! both versions' errors together moves neither π, so it does not roll the canary
//! back, at any traffic level, with no estimate of the rate needed. The
//! window's log-likelihood ratio is
//! `e_c·ln(π1/π0) + e_s'·ln((1−π1)/(1−π0))` with `e_s' = max(e_s, f·n_s)`
//! (the floor: a stable with no errors still counts as failing `f` of its
//! requests, so a canary at 0.05% against a perfect stable is not "infinitely
//! worse"). Windows without errors carry no evidence (ratio 0): **no traffic
//! never fails a canary**.
//!
//! **One-sample test (no stable traffic: at 100%, in the bake).** The canary's
//! requests are Bernoulli trials against `q0 = max(p̂_s, f)` and `q1 = k·q0`
//! (at most `(1+q0)/2`): `e_c·ln(q1/q0) + (n_c−e_c)·ln((1−q1)/(1−q0))`. `p̂_s` is the
//! stable's *recent* rate — its counts decayed by [`DECAY`] per window that had
//! stable traffic, so it freezes at the last measured seconds — estimated
//! conservatively as `(e+1)/(n+2)` plus [`UPPER_Z`] standard errors: the test
//! treats `q0` as known, so an underestimate would be paid in false rollbacks;
//! a stable seen only a few times gives a high reference instead, and a
//! low-traffic rollout is judged leniently, never harshly.
//!
//! **CUSUM.** The ratios are summed as a Page CUSUM, `S = max(0, S + llr)`, and
//! the canary fails when `S ≥ h`. A CUSUM is a repeated SPRT that restarts
//! whenever the evidence favours H0, so its false-alarm rate per window is
//! roughly `e^{−h}` no matter how long the rollout runs, and a change late in the
//! rollout is caught as fast as one at the start (no evidence of health is
//! banked against it). Two CUSUMs run side by side on the same windows:
//!
//! - the *shift* test with `k` = `maxErrorRatio` (default 2), `h` = [`H_SHIFT`];
//! - the *crash* test with `k` = [`CRASH_RATIO`] (×50), `h` = [`H_CRASH`]: each
//!   canary error weighs `ln(50)` ≈ 3.9 at small weights, so a canary answering
//!   only 5xx fails after a handful of requests. Its one-sample form (no stable
//!   traffic) tests "the canary succeeds 50× less often than the stable":
//!   `q1 = 1 − (1−q0)/50`, where each success weighs −3.9, so only a run of
//!   near-solid errors adds up.
//!
//! **Absolute cap** (`maxErrorRate` = c, optional): a third CUSUM, one-sample,
//! `q1 = c`, `q0 = c/k`, whatever the stable does.
//!
//! Measured false-rollback rates and detection delays (seeded simulations of
//! 10,000 rollouts per traffic level, `progressive::sim`): BENCHMARKS.md,
//! "Progressive delivery".

use serde::{Deserialize, Serialize};

/// Decision threshold of the shift test.
pub const H_SHIFT: f64 = 12.0;
/// Decision threshold of the crash test.
pub const H_CRASH: f64 = 14.0;
/// The crash test's alternative: the canary fails 50× as often as the stable.
pub const CRASH_RATIO: f64 = 50.0;
/// Standard errors added to the stable's estimated rate in the one-sample test.
pub const UPPER_Z: f64 = 2.0;
/// Per window with stable traffic, the stable's recent counts are multiplied by this.
pub const DECAY: f64 = 0.7;

/// Finished requests and errors (5xx) in one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub requests: u64,
    pub errors: u64,
}

impl Counts {
    pub fn add(&mut self, other: Counts) {
        self.requests += other.requests;
        self.errors += other.errors;
    }
}

/// What the analyzer needs from the Canary's plan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Criterion {
    /// `maxErrorRatio`: the tolerated canary/stable error-rate ratio (> 1).
    pub max_ratio: f64,
    /// `maxErrorRate`: an absolute cap on the canary's error rate, if any.
    pub max_rate: Option<f64>,
    /// `minErrorRate`: the stable's rate is taken as at least this.
    pub min_rate: f64,
}

/// The verdict after a window.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// No evidence the canary is worse (so far).
    Healthy,
    /// The canary is worse than the criterion allows: which test said so.
    Failing(String),
}

/// The analyzer's state: the CUSUMs and the stable's running counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analyzer {
    #[serde(skip, default = "default_criterion")]
    criterion: Criterion,
    shift: f64,
    crash: f64,
    cap: f64,
    /// The stable's recent counts, decayed (for the one-sample test).
    stable_requests: f64,
    stable_errors: f64,
}

fn default_criterion() -> Criterion {
    Criterion {
        max_ratio: 2.0,
        max_rate: None,
        min_rate: 0.001,
    }
}

/// The statistic closest to its bound, for `canary status`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Statistic {
    /// `shift`, `crash` or `cap`.
    pub test: &'static str,
    pub value: f64,
    pub bound: f64,
}

fn llr_conditional(n_c: f64, e_c: f64, n_s: f64, e_s: f64, k: f64) -> f64 {
    if n_c <= 0.0 || n_s <= 0.0 || e_c + e_s <= 0.0 {
        return 0.0;
    }
    let p0 = n_c / (n_c + n_s);
    let p1 = k * n_c / (k * n_c + n_s);
    e_c * (p1 / p0).ln() + e_s * ((1.0 - p1) / (1.0 - p0)).ln()
}

/// The one-sample alternative to `q0`: `k·q0`, but at most halfway from `q0`
/// to 1 (so it stays a rate, above `q0`).
fn alternative(q0: f64, k: f64) -> f64 {
    (k * q0).min((1.0 + q0) / 2.0)
}

fn llr_one_sample(n: f64, e: f64, q0: f64, q1: f64) -> f64 {
    if n <= 0.0 || q1 <= q0 {
        return 0.0;
    }
    e * (q1 / q0).ln() + (n - e) * ((1.0 - q1) / (1.0 - q0)).ln()
}

impl Analyzer {
    pub fn new(criterion: Criterion) -> Self {
        Self {
            criterion,
            shift: 0.0,
            crash: 0.0,
            cap: 0.0,
            stable_requests: 0.0,
            stable_errors: 0.0,
        }
    }

    /// Forgets the evidence (after a human resumed a failed canary).
    pub fn reset(&mut self) {
        self.shift = 0.0;
        self.crash = 0.0;
        self.cap = 0.0;
    }

    /// The stable's recent error rate, estimated high (two standard errors
    /// above `(e+1)/(n+2)`), floored; below 1.
    fn stable_rate(&self) -> f64 {
        let n = self.stable_requests + 2.0;
        let p = (self.stable_errors + 1.0) / n;
        (p + UPPER_Z * (p * (1.0 - p) / n).sqrt())
            .max(self.criterion.min_rate)
            .min(0.99)
    }

    /// Takes one window's counts and says whether the canary now fails.
    pub fn observe(&mut self, canary: Counts, stable: Counts) -> Verdict {
        let c = self.criterion;
        if stable.requests > 0 {
            self.stable_requests = self.stable_requests * DECAY + stable.requests as f64;
            self.stable_errors =
                self.stable_errors * DECAY + stable.errors.min(stable.requests) as f64;
        }
        let (n_c, e_c) = (
            canary.requests as f64,
            canary.errors.min(canary.requests) as f64,
        );
        let (n_s, e_s) = (
            stable.requests as f64,
            stable.errors.min(stable.requests) as f64,
        );
        let (shift, crash) = if n_s > 0.0 {
            let e_s = e_s.max(c.min_rate * n_s);
            (
                llr_conditional(n_c, e_c, n_s, e_s, c.max_ratio),
                llr_conditional(n_c, e_c, n_s, e_s, CRASH_RATIO),
            )
        } else {
            let q0 = self.stable_rate();
            (
                llr_one_sample(n_c, e_c, q0, alternative(q0, c.max_ratio)),
                llr_one_sample(n_c, e_c, q0, 1.0 - (1.0 - q0) / CRASH_RATIO),
            )
        };
        self.shift = (self.shift + shift).max(0.0);
        self.crash = (self.crash + crash).max(0.0);
        if let Some(cap) = c.max_rate {
            let llr = llr_one_sample(n_c, e_c, cap / c.max_ratio, cap);
            self.cap = (self.cap + llr).max(0.0);
        }
        if self.crash >= H_CRASH {
            Verdict::Failing(format!(
                "the canary fails far more often than the stable (crash test {:.1} ≥ {H_CRASH})",
                self.crash
            ))
        } else if self.shift >= H_SHIFT {
            Verdict::Failing(format!(
                "the canary's error rate exceeds {}× the stable's (shift test {:.1} ≥ {H_SHIFT})",
                c.max_ratio, self.shift
            ))
        } else if c.max_rate.is_some() && self.cap >= H_SHIFT {
            Verdict::Failing(format!(
                "the canary's error rate exceeds the cap of {}% (cap test {:.1} ≥ {H_SHIFT})",
                c.max_rate.unwrap_or(0.0) * 100.0,
                self.cap
            ))
        } else {
            Verdict::Healthy
        }
    }

    /// The test statistic closest to its bound.
    pub fn statistic(&self) -> Statistic {
        let mut best = Statistic {
            test: "shift",
            value: self.shift,
            bound: H_SHIFT,
        };
        if self.crash / H_CRASH > best.value / best.bound {
            best = Statistic {
                test: "crash",
                value: self.crash,
                bound: H_CRASH,
            };
        }
        if self.criterion.max_rate.is_some() && self.cap / H_SHIFT > best.value / best.bound {
            best = Statistic {
                test: "cap",
                value: self.cap,
                bound: H_SHIFT,
            };
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analyzer() -> Analyzer {
        Analyzer::new(Criterion {
            max_ratio: 2.0,
            max_rate: None,
            min_rate: 0.001,
        })
    }

    fn counts(requests: u64, errors: u64) -> Counts {
        Counts { requests, errors }
    }

    #[test]
    fn a_crash_fails_after_a_handful_of_requests() {
        let mut a = analyzer();
        // 1% weight: 99 stable requests (1 error) for each canary request
        let mut failed_after = None;
        for i in 1..=20 {
            if let Verdict::Failing(_) = a.observe(counts(1, 1), counts(99, 1)) {
                failed_after = Some(i);
                break;
            }
        }
        let n = failed_after.expect("a crash is caught");
        assert!(n <= 5, "caught after {n} canary requests");
    }

    #[test]
    fn no_traffic_and_no_errors_never_fail() {
        let mut a = analyzer();
        for _ in 0..100_000 {
            assert_eq!(a.observe(counts(0, 0), counts(0, 0)), Verdict::Healthy);
            assert_eq!(a.observe(counts(0, 0), counts(100, 5)), Verdict::Healthy);
            assert_eq!(a.observe(counts(10, 0), counts(0, 0)), Verdict::Healthy);
        }
        assert_eq!(a.statistic().value, 0.0);
    }

    #[test]
    fn both_failing_together_is_not_the_canarys_fault() {
        let mut a = analyzer();
        for _ in 0..10_000 {
            // both at 50% errors, 10% weight, exactly proportional
            assert_eq!(a.observe(counts(10, 5), counts(90, 45)), Verdict::Healthy);
        }
    }

    #[test]
    fn at_100_percent_the_stables_past_rate_is_the_reference() {
        let mut a = analyzer();
        a.observe(counts(100, 1), counts(10_000, 100));
        let mut failed = false;
        for _ in 0..50 {
            if let Verdict::Failing(_) = a.observe(counts(100, 10), counts(0, 0)) {
                failed = true;
                break;
            }
        }
        assert!(failed, "10× the stable's past rate fails at 100%");
    }

    #[test]
    fn the_cap_fails_a_canary_even_when_the_stable_is_as_bad() {
        let mut a = Analyzer::new(Criterion {
            max_ratio: 2.0,
            max_rate: Some(0.05),
            min_rate: 0.001,
        });
        let mut failed = false;
        for _ in 0..100 {
            if let Verdict::Failing(why) = a.observe(counts(100, 20), counts(100, 20)) {
                assert!(why.contains("cap"), "{why}");
                failed = true;
                break;
            }
        }
        assert!(failed);
    }
}
