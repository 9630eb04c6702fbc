//! The analyzer's simulations (BENCHMARKS.md, "Progressive delivery"):
//! `cargo bench -p switchyard --bench analyzer [-- --smoke]`.
//!
//! Per traffic level (requests/s through the Envoys, split by the step's
//! weight), 10,000 seeded rollouts of 1% → 10% → 50% → 100%, 10 s each, 10 s
//! bake: false rollbacks of a healthy canary (1% errors like the stable), of a
//! canary with no errors at all, and when both versions degrade to 20% together
//! at second 15; detection of a canary at 10× the stable's errors and of a
//! crash (all 5xx), in canary requests (median, p99). Then rollouts of 100k
//! canary requests at 10% weight (1,000 and 10,000 requests/s).

use switchyard::progressive::sim::{default_criterion, many, Scenario, Summary};

fn pct(s: &Summary) -> String {
    format!(
        "{:.2}% ({}/{})",
        f64::from(s.failed) * 100.0 / f64::from(s.rollouts),
        s.failed,
        s.rollouts
    )
}

fn main() {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let n = if smoke { 500 } else { 10_000 };
    let c = default_criterion();
    println!("rollouts per cell: {n}; 1% → 10% → 50% → 100%, 10 s each + 10 s bake, 1 s windows");
    println!();
    println!("| req/s | healthy (1% = stable) rolled back | no errors rolled back | both degrade to 20% rolled back | 10× stable caught | 10×: canary requests to rollback, median / p99 | crash caught | crash: median / p99 |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (i, rate) in [0.0, 1.0, 10.0, 100.0, 1_000.0, 10_000.0]
        .into_iter()
        .enumerate()
    {
        let seed = 1_000 * i as u64;
        let healthy = many(&Scenario::standard(rate, 0.01, 0.01), c, n, seed + 1);
        let clean = many(&Scenario::standard(rate, 0.0, 0.0), c, n, seed + 2);
        let mut both = Scenario::standard(rate, 0.01, 0.01);
        both.change = Some((15, 0.20, 0.20));
        let both = many(&both, c, n, seed + 3);
        let bad = many(&Scenario::standard(rate, 0.01, 0.10), c, n, seed + 4);
        let crash = many(&Scenario::standard(rate, 0.01, 1.0), c, n, seed + 5);
        println!(
            "| {rate} | {} | {} | {} | {} | {} / {} | {} | {} / {} |",
            pct(&healthy),
            pct(&clean),
            pct(&both),
            pct(&bad),
            bad.median,
            bad.p99,
            pct(&crash),
            crash.median,
            crash.p99
        );
    }
    println!();
    println!("| req/s | weight | canary requests per rollout | healthy rolled back |");
    println!("|---:|---:|---:|---:|");
    for rate in [1_000.0, 10_000.0] {
        let secs = (100_000.0 / (rate * 0.1)) as u32;
        let sc = Scenario {
            rate,
            steps: vec![0.10],
            step_secs: secs,
            bake_secs: 0,
            stable_error: 0.01,
            canary_error: 0.01,
            change: None,
        };
        let s = many(&sc, c, n, 77);
        println!(
            "| {rate} | 10% | {:.0} | {} |",
            s.mean_canary_requests,
            pct(&s)
        );
    }
}
