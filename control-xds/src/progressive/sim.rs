//! Seeded rollout simulations for the analyzer: Poisson traffic split by the
//! step's weight, Bernoulli errors per version, one window per second. Used by
//! the analyzer's tests and by `cargo bench -p switchyard --bench analyzer`
//! (BENCHMARKS.md, "Progressive delivery").
//!
//! Large counts are drawn from normal approximations (Poisson mean ≥ 30,
//! binomial n·min(p, 1−p) ≥ 30); smaller ones exactly.

use super::analyzer::{Analyzer, Counts, Criterion, Verdict};

/// splitmix64: small, seedable, good enough for simulation.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    pub fn poisson(&mut self, mean: f64) -> u64 {
        if mean <= 0.0 {
            return 0;
        }
        if mean >= 30.0 {
            return (mean + mean.sqrt() * self.normal()).round().max(0.0) as u64;
        }
        let limit = (-mean).exp();
        let mut k = 0;
        let mut p = self.uniform();
        while p > limit {
            k += 1;
            p *= self.uniform();
        }
        k
    }

    pub fn binomial(&mut self, n: u64, p: f64) -> u64 {
        if n == 0 || p <= 0.0 {
            return 0;
        }
        if p >= 1.0 {
            return n;
        }
        if p > 0.5 {
            return n - self.binomial(n, 1.0 - p);
        }
        let nf = n as f64;
        if nf * p >= 30.0 {
            let sd = (nf * p * (1.0 - p)).sqrt();
            return (nf * p + sd * self.normal()).round().clamp(0.0, nf) as u64;
        }
        // Exact: skip geometrically from one success to the next.
        let log_q = (1.0 - p).ln();
        let (mut at, mut k) = (0u64, 0u64);
        loop {
            let skip = (self.uniform().ln() / log_q).floor() as u64;
            at = at.saturating_add(skip).saturating_add(1);
            if at > n {
                return k;
            }
            k += 1;
        }
    }
}

/// One simulated rollout.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Requests per second through the Envoys (canary + stable).
    pub rate: f64,
    /// Weight of each step (fractions) and seconds per step; then the bake at 100%.
    pub steps: Vec<f64>,
    pub step_secs: u32,
    pub bake_secs: u32,
    pub stable_error: f64,
    pub canary_error: f64,
    /// From this second on, the error rates become (stable, canary).
    pub change: Option<(u32, f64, f64)>,
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The second the analyzer failed the canary, if it did.
    pub failed_at: Option<u32>,
    /// Canary requests seen from the change (or the start) to the failure.
    pub canary_requests_to_failure: u64,
    pub canary_requests: u64,
}

impl Scenario {
    /// The rollout of issue 11: 1% → 10% → 50% → 100%, 10 s each, 10 s bake.
    pub fn standard(rate: f64, stable_error: f64, canary_error: f64) -> Self {
        Self {
            rate,
            steps: vec![0.01, 0.10, 0.50, 1.0],
            step_secs: 10,
            bake_secs: 10,
            stable_error,
            canary_error,
            change: None,
        }
    }

    pub fn run(&self, criterion: Criterion, seed: u64) -> Outcome {
        let mut rng = Rng::new(seed);
        let mut analyzer = Analyzer::new(criterion);
        let total = self.steps.len() as u32 * self.step_secs + self.bake_secs;
        let (mut since_change, mut canary_requests) = (0u64, 0u64);
        for t in 0..total {
            let step = (t / self.step_secs.max(1)) as usize;
            let w = self.steps.get(step).copied().unwrap_or(1.0);
            let (p_s, p_c, changed) = match self.change {
                Some((at, s, c)) if t >= at => (s, c, true),
                _ => (self.stable_error, self.canary_error, self.change.is_none()),
            };
            let n_c = rng.poisson(self.rate * w);
            let n_s = rng.poisson(self.rate * (1.0 - w));
            let canary = Counts {
                requests: n_c,
                errors: rng.binomial(n_c, p_c),
            };
            let stable = Counts {
                requests: n_s,
                errors: rng.binomial(n_s, p_s),
            };
            canary_requests += n_c;
            if changed {
                since_change += n_c;
            }
            if let Verdict::Failing(_) = analyzer.observe(canary, stable) {
                return Outcome {
                    failed_at: Some(t),
                    canary_requests_to_failure: since_change,
                    canary_requests,
                };
            }
        }
        Outcome {
            failed_at: None,
            canary_requests_to_failure: 0,
            canary_requests,
        }
    }
}

/// Results over many seeded rollouts.
#[derive(Debug, Clone)]
pub struct Summary {
    pub rollouts: u32,
    pub failed: u32,
    /// Canary requests to the failure: median and p99 over the failed rollouts.
    pub median: u64,
    pub p99: u64,
    pub mean_canary_requests: f64,
}

/// Runs `rollouts` rollouts of `scenario` with seeds `seed..seed+rollouts`.
pub fn many(scenario: &Scenario, criterion: Criterion, rollouts: u32, seed: u64) -> Summary {
    let mut delays = Vec::new();
    let mut canary_total = 0u64;
    for i in 0..rollouts {
        let o = scenario.run(
            criterion,
            seed.wrapping_add(u64::from(i))
                .wrapping_mul(0x2545_f491_4f6c_dd1d),
        );
        canary_total += o.canary_requests;
        if o.failed_at.is_some() {
            delays.push(o.canary_requests_to_failure);
        }
    }
    delays.sort_unstable();
    let pick = |q: f64| {
        if delays.is_empty() {
            0
        } else {
            delays[((delays.len() as f64 * q).ceil() as usize).clamp(1, delays.len()) - 1]
        }
    };
    Summary {
        rollouts,
        failed: delays.len() as u32,
        median: pick(0.5),
        p99: pick(0.99),
        mean_canary_requests: canary_total as f64 / f64::from(rollouts.max(1)),
    }
}

/// The default criterion (maxErrorRatio 2, no cap, floor 0.1%).
pub fn default_criterion() -> Criterion {
    Criterion {
        max_ratio: super::spec::DEFAULT_MAX_ERROR_RATIO,
        max_rate: None,
        min_rate: super::spec::DEFAULT_MIN_ERROR_RATE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLLOUTS: u32 = 10_000;
    const LEVELS: [f64; 6] = [0.0, 1.0, 10.0, 100.0, 1_000.0, 10_000.0];

    #[test]
    fn samplers_have_the_right_means() {
        let mut rng = Rng::new(7);
        let n = 20_000;
        for mean in [0.5, 5.0, 50.0, 5_000.0] {
            let total: u64 = (0..n).map(|_| rng.poisson(mean)).sum();
            let got = total as f64 / f64::from(n);
            assert!(
                (got - mean).abs() < mean * 0.03 + 0.02,
                "poisson {mean}: {got}"
            );
        }
        for (trials, p) in [(10, 0.01), (100, 0.3), (10_000, 0.01), (50, 0.9)] {
            let total: u64 = (0..n).map(|_| rng.binomial(trials, p)).sum();
            let got = total as f64 / f64::from(n);
            let want = trials as f64 * p;
            assert!(
                (got - want).abs() < want * 0.03 + 0.02,
                "binomial {trials} {p}: {got}"
            );
        }
    }

    #[test]
    fn a_healthy_canary_is_almost_never_rolled_back() {
        for (i, rate) in LEVELS.into_iter().enumerate() {
            let s = many(
                &Scenario::standard(rate, 0.01, 0.01),
                default_criterion(),
                ROLLOUTS,
                100 + i as u64,
            );
            assert!(
                s.failed * 1000 <= ROLLOUTS,
                "{rate} req/s: {} of {ROLLOUTS} rolled back",
                s.failed
            );
            if rate == 0.0 {
                assert_eq!(s.failed, 0, "no traffic never fails");
            }
        }
    }

    #[test]
    fn a_canary_with_no_errors_at_all_passes_and_so_does_one_at_the_floor() {
        for rate in LEVELS {
            let s = many(
                &Scenario::standard(rate, 0.0, 0.0),
                default_criterion(),
                ROLLOUTS,
                3,
            );
            assert_eq!(s.failed, 0, "{rate}");
            let s = many(
                &Scenario::standard(rate, 0.0, 0.001),
                default_criterion(),
                ROLLOUTS,
                4,
            );
            assert!(
                s.failed * 1000 <= ROLLOUTS,
                "{rate} req/s at the floor: {}",
                s.failed
            );
        }
    }

    #[test]
    fn stable_and_canary_degrading_together_is_not_a_rollback() {
        for (i, rate) in LEVELS.into_iter().enumerate() {
            let mut sc = Scenario::standard(rate, 0.01, 0.01);
            // both go from 1% to 20% errors during the 10% step
            sc.change = Some((15, 0.20, 0.20));
            let s = many(&sc, default_criterion(), ROLLOUTS, 200 + i as u64);
            assert!(
                s.failed * 1000 <= ROLLOUTS,
                "{rate} req/s: {} of {ROLLOUTS} rolled back",
                s.failed
            );
        }
    }

    #[test]
    fn a_canary_at_ten_times_the_stables_errors_is_caught_within_hundreds_of_requests() {
        for rate in [100.0, 1_000.0, 10_000.0] {
            let s = many(
                &Scenario::standard(rate, 0.01, 0.10),
                default_criterion(),
                ROLLOUTS,
                9,
            );
            assert!(
                s.failed * 1000 >= ROLLOUTS * 999,
                "{rate} req/s: {} of {ROLLOUTS} bad canaries caught",
                s.failed
            );
            assert!(
                s.p99 <= 1_000,
                "{rate} req/s: p99 {} canary requests",
                s.p99
            );
        }
    }

    #[test]
    fn a_crashing_canary_is_caught_after_a_handful_of_requests() {
        for rate in [10.0, 100.0, 1_000.0, 10_000.0] {
            let s = many(
                &Scenario::standard(rate, 0.01, 1.0),
                default_criterion(),
                ROLLOUTS,
                11,
            );
            assert_eq!(s.failed, ROLLOUTS, "{rate}");
            // a window is a second: at high rates the first window already carries many
            if rate <= 100.0 {
                assert!(
                    s.median <= 10,
                    "{rate} req/s: median {} canary requests",
                    s.median
                );
            }
        }
    }
}
