//! A rollout's state machine: pending → progressing[step] ⇄ paused / gated →
//! promoting (the bake at 100%) → succeeded | aborted. Pure: [`decide`] says
//! what the driver should do given the plan, the persisted [`Rollout`], what
//! was measured and the time; the driver applies it through the store.
//!
//! The failure guard runs in every non-terminal state (pending, gated and
//! paused included): a failing verdict aborts (`onFailure: abort`) or pauses
//! (`onFailure: pause`; a rollout already paused stays paused).

use serde::{Deserialize, Serialize};

use super::analyzer::Verdict;
use super::spec::{OnFailure, Plan};

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Applied, not started (`switchyard canary start`).
    Pending,
    /// At a step, judged; advances when the step's time and sample are met.
    Progressing,
    /// Held at a step until `resume` (too little traffic, a failure with
    /// `onFailure: pause`, or `pause`).
    Paused,
    /// The next step has a gate: held until `promote`.
    Gated,
    /// At 100% for the bake time, then the canary becomes the release.
    Promoting,
    Succeeded,
    Aborted,
}

impl Phase {
    pub fn terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Aborted)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Progressing => "progressing",
            Phase::Paused => "paused",
            Phase::Gated => "gated",
            Phase::Promoting => "promoting",
            Phase::Succeeded => "succeeded",
            Phase::Aborted => "aborted",
        }
    }
}

/// One entry of a rollout's event history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub at: String,
    pub at_unix_ms: u64,
    pub phase: Phase,
    pub step: usize,
    pub weight: String,
    pub reason: String,
    pub who: String,
}

/// The most events a rollout keeps (the oldest are dropped).
pub const MAX_EVENTS: usize = 200;

/// A rollout, as persisted with the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    pub canary: String,
    pub virtual_env: String,
    pub app: String,
    /// The canary deployment.
    pub deployment: String,
    /// The VE's release when the rollout started.
    pub stable: String,
    /// The Canary's steps as written (kept for `status` after the Canary ends).
    #[serde(default)]
    pub steps: Vec<String>,
    pub phase: Phase,
    /// Index of the current step (for promoting: the last step).
    pub step: usize,
    /// The weight the Canary is served with.
    pub weight: String,
    /// When the current step (or the bake) started.
    pub step_started_ms: u64,
    /// When the rollout started (`canary start`).
    #[serde(default)]
    pub started_ms: u64,
    /// Why the last decision was taken.
    pub reason: String,
    /// Whether the evidence must be forgotten on `resume` (a failure paused it).
    #[serde(default)]
    pub failed: bool,
    /// The Canary's match rules as applied, kept when an abort turns them off.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub saved_match: Vec<switchyard_engine::resources::MatchRule>,
    pub events: Vec<Event>,
}

/// What was measured for the current step (kept in memory by the driver).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepProgress {
    /// When the step's clock started: the step's start, or the driver's start
    /// if later (a restart gathers the evidence again, never skips it).
    pub clock_from_ms: u64,
    /// Canary requests finished during the step.
    pub canary_requests: u64,
}

/// What the driver should do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Go to step `step` (weight `steps[step]`).
    Advance {
        step: usize,
        reason: String,
    },
    /// The next step is gated: hold at the current one until `promote`.
    Gate {
        reason: String,
    },
    /// The last step is done: 100% for the bake time.
    Promote {
        reason: String,
    },
    /// The bake is done: release the canary.
    Succeed {
        reason: String,
    },
    /// The analysis failed (`onFailure`) or the step had too little traffic.
    Pause {
        reason: String,
        failed: bool,
    },
    Abort {
        reason: String,
    },
}

/// The percentage text of a weight in ppm (`10000` → `1%`).
pub fn weight_text(ppm: u32) -> String {
    let (whole, frac) = (ppm / 10_000, ppm % 10_000);
    if frac == 0 {
        format!("{whole}%")
    } else {
        let f = format!("{frac:04}");
        format!("{whole}.{}%", f.trim_end_matches('0'))
    }
}

/// The next action for `rollout`, or `None` to wait.
pub fn decide(
    plan: &Plan,
    rollout: &Rollout,
    progress: &StepProgress,
    verdict: &Verdict,
    now_ms: u64,
) -> Option<Action> {
    if rollout.phase.terminal() {
        return None;
    }
    if let Verdict::Failing(why) = verdict {
        return match plan.on_failure {
            OnFailure::Abort => Some(Action::Abort {
                reason: format!("analysis failed: {why}"),
            }),
            // pending already holds (nothing moves until `start`)
            OnFailure::Pause if !matches!(rollout.phase, Phase::Paused | Phase::Pending) => {
                Some(Action::Pause {
                    reason: format!("analysis failed: {why}"),
                    failed: true,
                })
            }
            OnFailure::Pause => None,
        };
    }
    let elapsed = now_ms.saturating_sub(progress.clock_from_ms);
    match rollout.phase {
        Phase::Progressing => {
            let last = plan.steps_ppm.len().saturating_sub(1);
            if elapsed >= plan.step_time_ms && progress.canary_requests >= plan.min_requests {
                let done = format!(
                    "step {} ({}) held {} s with {} canary requests, no failure",
                    rollout.step + 1,
                    rollout.weight,
                    elapsed / 1000,
                    progress.canary_requests
                );
                if rollout.step >= last {
                    Some(Action::Promote { reason: done })
                } else if plan.gated(rollout.step + 1) {
                    Some(Action::Gate {
                        reason: format!(
                            "{done}; step {} ({}) waits for `switchyard canary promote`",
                            rollout.step + 2,
                            plan.steps[rollout.step + 1]
                        ),
                    })
                } else {
                    Some(Action::Advance {
                        step: rollout.step + 1,
                        reason: done,
                    })
                }
            } else if elapsed >= plan.max_wait_ms && progress.canary_requests < plan.min_requests {
                Some(Action::Pause {
                    reason: format!(
                        "too little traffic: {} of {} canary requests in {} s (maxWait); `switchyard canary resume` to wait again",
                        progress.canary_requests,
                        plan.min_requests,
                        elapsed / 1000
                    ),
                    failed: false,
                })
            } else {
                None
            }
        }
        Phase::Promoting if elapsed >= plan.bake_time_ms => Some(Action::Succeed {
            reason: format!("baked {} s at 100% with no failure", elapsed / 1000),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progressive::spec::Plan;
    use switchyard_engine::resources::CanarySpec;

    fn plan(analysis: serde_json::Value) -> Plan {
        let spec: CanarySpec = serde_json::from_value(serde_json::json!({
            "virtualEnvironment": "prod", "app": "web", "deployment": "web-v2",
            "steps": ["1%", "50%", "100%"], "analysis": analysis,
        }))
        .unwrap();
        Plan::of("Canary/c", &spec).unwrap().unwrap()
    }

    fn rollout(phase: Phase, step: usize) -> Rollout {
        Rollout {
            canary: "c".into(),
            virtual_env: "prod".into(),
            app: "web".into(),
            deployment: "web-v2".into(),
            stable: "web-v1".into(),
            steps: vec!["1%".into(), "50%".into(), "100%".into()],
            phase,
            step,
            weight: "1%".into(),
            step_started_ms: 0,
            started_ms: 0,
            reason: String::new(),
            failed: false,
            saved_match: Vec::new(),
            events: Vec::new(),
        }
    }

    fn progress(requests: u64) -> StepProgress {
        StepProgress {
            clock_from_ms: 1_000,
            canary_requests: requests,
        }
    }

    #[test]
    fn a_step_advances_only_after_its_time_and_sample() {
        let p = plan(serde_json::json!({"stepTime": "10s", "minRequests": 50, "maxWait": "60s"}));
        let r = rollout(Phase::Progressing, 0);
        assert_eq!(
            decide(&p, &r, &progress(500), &Verdict::Healthy, 10_999),
            None
        );
        assert_eq!(
            decide(&p, &r, &progress(49), &Verdict::Healthy, 30_000),
            None
        );
        assert!(matches!(
            decide(&p, &r, &progress(50), &Verdict::Healthy, 11_000),
            Some(Action::Advance { step: 1, .. })
        ));
        // too little traffic pauses, never fails
        assert!(matches!(
            decide(&p, &r, &progress(3), &Verdict::Healthy, 61_000),
            Some(Action::Pause { failed: false, .. })
        ));
        // the last step promotes; the bake ends in success
        let last = rollout(Phase::Progressing, 2);
        assert!(matches!(
            decide(&p, &last, &progress(50), &Verdict::Healthy, 11_000),
            Some(Action::Promote { .. })
        ));
        let baking = rollout(Phase::Promoting, 2);
        assert_eq!(
            decide(&p, &baking, &progress(0), &Verdict::Healthy, 60_000),
            None
        );
        assert!(matches!(
            decide(&p, &baking, &progress(0), &Verdict::Healthy, 61_000),
            Some(Action::Succeed { .. })
        ));
    }

    #[test]
    fn gates_hold_and_the_guard_runs_in_every_live_state() {
        let p = plan(serde_json::json!({"stepTime": "1s", "minRequests": 0, "gates": ["50%"]}));
        assert!(matches!(
            decide(
                &p,
                &rollout(Phase::Progressing, 0),
                &progress(0),
                &Verdict::Healthy,
                5_000
            ),
            Some(Action::Gate { .. })
        ));
        assert_eq!(
            decide(
                &p,
                &rollout(Phase::Gated, 0),
                &progress(0),
                &Verdict::Healthy,
                500_000
            ),
            None
        );
        let failing = Verdict::Failing("x".into());
        for phase in [
            Phase::Pending,
            Phase::Progressing,
            Phase::Paused,
            Phase::Gated,
            Phase::Promoting,
        ] {
            assert!(
                matches!(
                    decide(&p, &rollout(phase, 1), &progress(0), &failing, 2_000),
                    Some(Action::Abort { .. })
                ),
                "{phase:?}"
            );
        }
        for phase in [Phase::Succeeded, Phase::Aborted] {
            assert_eq!(
                decide(&p, &rollout(phase, 1), &progress(0), &failing, 2_000),
                None
            );
        }
        let pausing = plan(serde_json::json!({"onFailure": "pause"}));
        assert!(matches!(
            decide(
                &pausing,
                &rollout(Phase::Gated, 1),
                &progress(0),
                &failing,
                2_000
            ),
            Some(Action::Pause { failed: true, .. })
        ));
        assert_eq!(
            decide(
                &pausing,
                &rollout(Phase::Paused, 1),
                &progress(0),
                &failing,
                2_000
            ),
            None
        );
    }

    #[test]
    fn weights_print_as_written() {
        assert_eq!(weight_text(10_000), "1%");
        assert_eq!(weight_text(1_000_000), "100%");
        assert_eq!(weight_text(1_500), "0.15%");
        assert_eq!(weight_text(0), "0%");
    }
}
