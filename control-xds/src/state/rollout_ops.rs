//! A Canary's rollout changes as store operations: each returns a new [`Store`] (the
//! Canary's served weight and match rules, the rollout record, and for a
//! success the release) or an error, like every other change, so a rollout's
//! move is validated, persisted atomically with everything else and served as
//! one config version.

use switchyard_engine::Resource;

use crate::kind::Kind;
use crate::progressive::machine::{weight_text, Action, Event, Phase, Rollout, MAX_EVENTS};
use crate::progressive::spec::Plan;
use crate::state::{rfc3339, ChangeSummary, Store, StoreError};

/// A human's command on a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Start,
    Pause,
    Resume,
    /// Next step now (past a gate, a pause or the step's time); `full`: release now.
    Promote {
        full: bool,
    },
    Abort,
}

impl Command {
    pub fn name(self) -> &'static str {
        match self {
            Command::Start => "start",
            Command::Pause => "pause",
            Command::Resume => "resume",
            Command::Promote { full: false } => "promote",
            Command::Promote { full: true } => "promote --full",
            Command::Abort => "abort",
        }
    }
}

/// The Canary's plan, if it has steps.
pub fn plan_of(store: &Store, canary: &str) -> Result<Plan, StoreError> {
    let Some(Resource::Canary(c)) = store.get(Kind::Canary, canary) else {
        return Err(StoreError::NotFound(format!("Canary/{canary}")));
    };
    match Plan::of(&format!("Canary/{canary}"), &c.spec) {
        Ok(Some(plan)) => Ok(plan),
        Ok(None) => Err(StoreError::Conflict(format!(
            "Canary/{canary} has no steps: it is not a progressive rollout"
        ))),
        Err(e) => Err(StoreError::BadRequest(format!("{e:?}"))),
    }
}

/// The release of `app` in `ve`.
pub fn released(store: &Store, ve: &str, app: &str) -> Option<String> {
    match store.get(Kind::VirtualEnvironment, ve) {
        Some(Resource::VirtualEnvironment(v)) => v.spec.release.as_ref()?.apps.get(app).cloned(),
        _ => None,
    }
}

/// The (unpersisted) pending rollout of a Canary with steps that has no
/// rollout record yet: the driver guards it like any live one.
pub fn pending_rollout(store: &Store, name: &str) -> Option<Rollout> {
    if store.rollouts.contains_key(name) {
        return None;
    }
    let Some(Resource::Canary(c)) = store.get(Kind::Canary, name) else {
        return None;
    };
    if c.spec.steps.is_empty() {
        return None;
    }
    Some(Rollout {
        canary: name.to_string(),
        virtual_env: c.spec.virtual_environment.clone(),
        app: c.spec.app.clone(),
        deployment: c.spec.deployment.clone(),
        stable: released(store, &c.spec.virtual_environment, &c.spec.app).unwrap_or_default(),
        steps: c.spec.steps.clone(),
        phase: Phase::Pending,
        step: 0,
        weight: c.spec.weight.clone().unwrap_or_else(|| "0%".into()),
        step_started_ms: 0,
        started_ms: 0,
        reason: "not started".into(),
        failed: false,
        saved_match: Vec::new(),
        events: Vec::new(),
    })
}

fn event(r: &mut Rollout, reason: &str, who: &str, now_ms: u64) {
    r.reason = reason.to_string();
    r.events.push(Event {
        at: rfc3339(now_ms),
        at_unix_ms: now_ms,
        phase: r.phase,
        step: r.step,
        weight: r.weight.clone(),
        reason: reason.to_string(),
        who: who.to_string(),
    });
    if r.events.len() > MAX_EVENTS {
        let extra = r.events.len() - MAX_EVENTS;
        r.events.drain(..extra);
    }
}

impl Store {
    /// Sets the served weight (and, if given, match rules) of a Canary.
    fn set_canary(
        &mut self,
        name: &str,
        weight: &str,
        match_rules: Option<Vec<switchyard_engine::resources::MatchRule>>,
    ) -> Result<(), StoreError> {
        let key = (Kind::Canary.as_str().to_string(), name.to_string());
        let Some(Resource::Canary(c)) = self.resources.get_mut(&key) else {
            return Err(StoreError::NotFound(format!("Canary/{name}")));
        };
        c.spec.weight = Some(weight.to_string());
        if let Some(rules) = match_rules {
            c.spec.match_rules = rules;
        }
        Ok(())
    }

    /// Finishes a change: validated, a new generation, the summary line.
    fn rollout_change(mut self, r: Rollout) -> Result<(Store, ChangeSummary), StoreError> {
        let line = format!(
            "{}: {} {} ({})",
            r.canary,
            r.phase.as_str(),
            r.weight,
            r.reason
        );
        self.rollouts.insert(r.canary.clone(), r);
        let mut next = self.validated()?;
        next.generation += 1;
        Ok((
            next,
            ChangeSummary {
                canary: vec![line],
                ..Default::default()
            },
        ))
    }

    /// Moves `r` to step `step` of `plan` (weight, clock).
    fn enter_step(
        &mut self,
        r: &mut Rollout,
        plan: &Plan,
        step: usize,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let ppm = *plan.steps_ppm.get(step).ok_or_else(|| {
            StoreError::Conflict(format!("Canary/{}: it has no step {}", r.canary, step + 1))
        })?;
        r.step = step;
        r.weight = weight_text(ppm);
        r.phase = Phase::Progressing;
        r.step_started_ms = now_ms;
        r.failed = false;
        self.set_canary(&r.canary, &r.weight.clone(), None)
    }

    fn enter_bake(&mut self, r: &mut Rollout, plan: &Plan, now_ms: u64) -> Result<(), StoreError> {
        r.step = plan.steps_ppm.len() - 1;
        r.weight = "100%".into();
        r.phase = Phase::Promoting;
        r.step_started_ms = now_ms;
        r.failed = false;
        self.set_canary(&r.canary, "100%", None)
    }

    /// Success: the canary deployment becomes the VE's release (recorded in the
    /// history like any release) and the Canary resource ends.
    fn succeed(
        &self,
        mut r: Rollout,
        reason: &str,
        who: &str,
        now_ms: u64,
    ) -> Result<(Store, ChangeSummary), StoreError> {
        let (mut next, released) = self.release(&r.deployment, &r.virtual_env, who)?;
        // one change, one generation: the release and the Canary's end together
        next.generation = self.generation;
        next.resources
            .remove(&(Kind::Canary.as_str().to_string(), r.canary.clone()));
        let name = r.canary.clone();
        r.phase = Phase::Succeeded;
        r.weight = "100%".into();
        event(&mut r, reason, who, now_ms);
        let (next, mut summary) = next.rollout_change(r)?;
        summary.releases = released.releases;
        summary.deleted.push(format!("Canary/{name}"));
        Ok((next, summary))
    }

    /// Abort: weight 0 and the match rules off, in one change (one config version).
    fn abort(
        &self,
        mut r: Rollout,
        reason: &str,
        who: &str,
        now_ms: u64,
    ) -> Result<(Store, ChangeSummary), StoreError> {
        let mut next = self.clone();
        if let Some(Resource::Canary(c)) = self.get(Kind::Canary, &r.canary) {
            if !c.spec.match_rules.is_empty() {
                r.saved_match = c.spec.match_rules.clone();
            }
        }
        next.set_canary(&r.canary, "0%", Some(Vec::new()))?;
        r.phase = Phase::Aborted;
        r.weight = "0%".into();
        event(&mut r, reason, who, now_ms);
        next.rollout_change(r)
    }

    /// `canary start`: a new rollout at its first step.
    fn canary_start(
        &self,
        name: &str,
        plan: &Plan,
        who: &str,
        now_ms: u64,
    ) -> Result<(Store, ChangeSummary), StoreError> {
        let current = self.rollouts.get(name).cloned();
        let conflict = |what: &str| StoreError::Conflict(format!("Canary/{name}: {what}"));
        if let Some(r) = current.as_ref().filter(|r| !r.phase.terminal()) {
            return Err(conflict(&format!(
                "the rollout is already {}",
                r.phase.as_str()
            )));
        }
        let mut next = self.clone();
        let Some(Resource::Canary(c)) = self.get(Kind::Canary, name) else {
            return Err(StoreError::NotFound(format!("Canary/{name}")));
        };
        let stable = released(self, &c.spec.virtual_environment, &c.spec.app).ok_or_else(|| {
            conflict("its virtual environment has no release of the app to compare with")
        })?;
        let mut events = current.map(|r| r.events).unwrap_or_default();
        let restore = self
            .rollouts
            .get(name)
            .map(|r| r.saved_match.clone())
            .filter(|m| !m.is_empty());
        if let Some(rules) = restore {
            next.set_canary(name, "0%", Some(rules))?;
        }
        events.truncate(MAX_EVENTS);
        let mut r = Rollout {
            canary: name.to_string(),
            virtual_env: c.spec.virtual_environment.clone(),
            app: c.spec.app.clone(),
            deployment: c.spec.deployment.clone(),
            stable,
            steps: plan.steps.clone(),
            phase: Phase::Progressing,
            step: 0,
            weight: String::new(),
            step_started_ms: now_ms,
            started_ms: now_ms,
            reason: String::new(),
            failed: false,
            saved_match: Vec::new(),
            events,
        };
        next.enter_step(&mut r, plan, 0, now_ms)?;
        event(&mut r, "started", who, now_ms);
        next.rollout_change(r)
    }

    /// A human's command.
    pub fn canary_command(
        &self,
        name: &str,
        command: Command,
        who: &str,
        now_ms: u64,
    ) -> Result<(Store, ChangeSummary), StoreError> {
        let plan = plan_of(self, name)?;
        let current = self.rollouts.get(name).cloned();
        let active = current.as_ref().filter(|r| !r.phase.terminal());
        let conflict = |what: &str| StoreError::Conflict(format!("Canary/{name}: {what}"));
        let mut next = self.clone();
        match command {
            Command::Start => self.canary_start(name, &plan, who, now_ms),
            Command::Abort => {
                let r = active
                    .cloned()
                    .ok_or_else(|| conflict("no rollout in progress"))?;
                self.abort(r, "aborted by hand", who, now_ms)
            }
            Command::Pause => {
                let mut r = active
                    .cloned()
                    .ok_or_else(|| conflict("no rollout in progress"))?;
                if r.phase == Phase::Paused {
                    return Ok((self.clone(), ChangeSummary::default()));
                }
                r.phase = Phase::Paused;
                event(&mut r, "paused by hand", who, now_ms);
                next.rollout_change(r)
            }
            Command::Resume => {
                let mut r = active
                    .cloned()
                    .ok_or_else(|| conflict("no rollout in progress"))?;
                if r.phase != Phase::Paused {
                    return Err(conflict(&format!(
                        "the rollout is {}, not paused",
                        r.phase.as_str()
                    )));
                }
                r.phase = Phase::Progressing;
                r.step_started_ms = now_ms;
                r.failed = false;
                event(
                    &mut r,
                    "resumed by hand: the step starts again",
                    who,
                    now_ms,
                );
                next.rollout_change(r)
            }
            Command::Promote { full } => {
                let mut r = active
                    .cloned()
                    .ok_or_else(|| conflict("no rollout in progress"))?;
                if full {
                    return self.succeed(r, "promoted by hand (--full)", who, now_ms);
                }
                match r.phase {
                    Phase::Promoting => {
                        self.succeed(r, "promoted by hand past the bake", who, now_ms)
                    }
                    _ if r.step + 1 >= plan.steps_ppm.len() => {
                        next.enter_bake(&mut r, &plan, now_ms)?;
                        event(&mut r, "promoted by hand: bake at 100%", who, now_ms);
                        next.rollout_change(r)
                    }
                    _ => {
                        let step = r.step + 1;
                        next.enter_step(&mut r, &plan, step, now_ms)?;
                        event(
                            &mut r,
                            &format!("promoted by hand to step {}", step + 1),
                            who,
                            now_ms,
                        );
                        next.rollout_change(r)
                    }
                }
            }
        }
    }

    /// The driver's decision.
    pub fn canary_decision(
        &self,
        name: &str,
        action: &Action,
        now_ms: u64,
    ) -> Result<(Store, ChangeSummary), StoreError> {
        const WHO: &str = "switchyard (analysis)";
        let plan = plan_of(self, name)?;
        let mut r = self
            .rollouts
            .get(name)
            .filter(|r| !r.phase.terminal())
            .cloned()
            .or_else(|| pending_rollout(self, name))
            .ok_or_else(|| {
                StoreError::Conflict(format!("Canary/{name}: no rollout in progress"))
            })?;
        let mut next = self.clone();
        match action {
            Action::Abort { reason } => self.abort(r, reason, WHO, now_ms),
            Action::Succeed { reason } => self.succeed(r, reason, WHO, now_ms),
            Action::Advance { step, reason } => {
                next.enter_step(&mut r, &plan, *step, now_ms)?;
                event(&mut r, reason, WHO, now_ms);
                next.rollout_change(r)
            }
            Action::Promote { reason } => {
                next.enter_bake(&mut r, &plan, now_ms)?;
                event(&mut r, reason, WHO, now_ms);
                next.rollout_change(r)
            }
            Action::Gate { reason } => {
                r.phase = Phase::Gated;
                event(&mut r, reason, WHO, now_ms);
                next.rollout_change(r)
            }
            Action::Pause { reason, failed } => {
                r.phase = Phase::Paused;
                r.failed = *failed;
                event(&mut r, reason, WHO, now_ms);
                next.rollout_change(r)
            }
        }
    }

    /// A Canary re-applied during its rollout gets the rollout's weight back
    /// (the control plane owns the weight while a rollout runs).
    pub fn canary_reconcile(
        &self,
        name: &str,
        now_ms: u64,
    ) -> Result<(Store, ChangeSummary), StoreError> {
        let Some(mut r) = self
            .rollouts
            .get(name)
            .filter(|r| !r.phase.terminal())
            .cloned()
        else {
            return Ok((self.clone(), ChangeSummary::default()));
        };
        let mut next = self.clone();
        next.set_canary(name, &r.weight.clone(), None)?;
        let reason = format!("the Canary was re-applied: weight {} restored", r.weight);
        event(&mut r, &reason, "switchyard", now_ms);
        next.rollout_change(r)
    }

    /// A rollout whose Canary was deleted ends (aborted; nothing to serve).
    pub fn canary_gone(
        &self,
        name: &str,
        now_ms: u64,
    ) -> Result<(Store, ChangeSummary), StoreError> {
        let mut next = self.clone();
        let Some(mut r) = self
            .rollouts
            .get(name)
            .filter(|r| !r.phase.terminal())
            .cloned()
        else {
            return Ok((next, ChangeSummary::default()));
        };
        r.phase = Phase::Aborted;
        r.weight = "0%".into();
        event(&mut r, "the Canary was deleted", "switchyard", now_ms);
        next.rollouts.insert(name.to_string(), r);
        next.generation += 1;
        Ok((
            next,
            ChangeSummary {
                canary: vec![format!("{name}: aborted (the Canary was deleted)")],
                ..Default::default()
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load;
    use crate::test_fixtures::{WEB_V1, WEB_V2};
    use std::path::Path;

    const CANARY: &str = "\
kind: Canary
metadata: {name: c}
spec:
  virtualEnvironment: team-a
  app: web
  deployment: web-v2
  match: [{headers: {x-canary: \"true\"}}]
  steps: [\"10%\", \"50%\"]
  analysis: {stepTime: 1s, minRequests: 0, gates: [\"50%\"], bakeTime: 1s}
";

    fn store() -> Store {
        let text = format!("{WEB_V1}---\n{WEB_V2}---\n{CANARY}");
        let docs = load::parse_text(Path::new("r.yaml"), &text).unwrap();
        Store::new().apply(&docs, "t").unwrap().0
    }

    fn served(s: &Store) -> (Option<String>, usize) {
        match s.get(Kind::Canary, "c") {
            Some(Resource::Canary(c)) => (c.spec.weight.clone(), c.spec.match_rules.len()),
            _ => (None, 0),
        }
    }

    #[test]
    fn start_gate_promote_succeed() {
        let s = store();
        let (s, sum) = s.canary_command("c", Command::Start, "ann", 1_000).unwrap();
        assert!(sum.changed());
        assert_eq!(served(&s), (Some("10%".into()), 1));
        assert!(s.canary_command("c", Command::Start, "ann", 1_000).is_err());
        let gate = Action::Gate { reason: "g".into() };
        let (s, _) = s.canary_decision("c", &gate, 2_000).unwrap();
        assert_eq!(s.rollouts["c"].phase, Phase::Gated);
        let (s, _) = s
            .canary_command("c", Command::Promote { full: false }, "ann", 3_000)
            .unwrap();
        assert_eq!(
            (s.rollouts["c"].phase, served(&s).0.as_deref()),
            (Phase::Progressing, Some("50%"))
        );
        let (s, _) = s
            .canary_decision("c", &Action::Promote { reason: "p".into() }, 4_000)
            .unwrap();
        assert_eq!(served(&s).0.as_deref(), Some("100%"));
        let generation = s.generation;
        let (s, sum) = s
            .canary_decision(
                "c",
                &Action::Succeed {
                    reason: "ok".into(),
                },
                5_000,
            )
            .unwrap();
        assert_eq!(s.generation, generation + 1, "one change");
        assert!(s.get(Kind::Canary, "c").is_none());
        assert_eq!(released(&s, "team-a", "web").as_deref(), Some("web-v2"));
        assert_eq!(sum.releases.len(), 1);
        assert_eq!(s.rollouts["c"].phase, Phase::Succeeded);
        // a release like any other: rollback restores the stable
        let (s, _) = s.rollback("team-a", None, "t").unwrap();
        assert_eq!(released(&s, "team-a", "web").as_deref(), Some("web-v1"));
        let phases: Vec<_> = s.rollouts["c"]
            .events
            .iter()
            .map(|e| e.phase.as_str())
            .collect();
        assert_eq!(
            phases,
            [
                "progressing",
                "gated",
                "progressing",
                "promoting",
                "succeeded"
            ]
        );
    }

    #[test]
    fn abort_turns_weight_and_match_rules_off_in_one_change_and_start_restores_them() {
        let (s, _) = store()
            .canary_command("c", Command::Start, "ann", 1_000)
            .unwrap();
        let generation = s.generation;
        let (s, _) = s
            .canary_decision(
                "c",
                &Action::Abort {
                    reason: "analysis failed".into(),
                },
                2_000,
            )
            .unwrap();
        assert_eq!(s.generation, generation + 1);
        assert_eq!(served(&s), (Some("0%".into()), 0));
        assert_eq!(released(&s, "team-a", "web").as_deref(), Some("web-v1"));
        assert!(
            s.canary_command("c", Command::Abort, "ann", 3_000).is_err(),
            "nothing to abort"
        );
        let (s, _) = s.canary_command("c", Command::Start, "ann", 4_000).unwrap();
        assert_eq!(served(&s), (Some("10%".into()), 1));
    }

    #[test]
    fn commands_on_plain_or_missing_canaries_are_refused() {
        let s = store();
        assert!(matches!(
            s.canary_command("nope", Command::Start, "a", 0),
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            s.canary_command("c", Command::Resume, "a", 0),
            Err(StoreError::Conflict(_))
        ));
    }

    #[test]
    fn a_canary_re_applied_mid_rollout_gets_the_rollouts_weight_back() {
        let (s, _) = store()
            .canary_command("c", Command::Start, "ann", 1_000)
            .unwrap();
        let again = CANARY.replace("steps:", "weight: \"30%\"\n  steps:");
        let docs = load::parse_text(Path::new("c.yaml"), &again).unwrap();
        let (s, _) = s.apply(&docs, "bob").unwrap();
        assert_eq!(served(&s).0.as_deref(), Some("30%"));
        let (s, sum) = s.canary_reconcile("c", 2_000).unwrap();
        assert!(sum.changed());
        assert_eq!(served(&s).0.as_deref(), Some("10%"));
        assert!(s.rollouts["c"].reason.contains("re-applied"));
    }

    #[test]
    fn a_pending_canary_is_guarded_too() {
        let s = store();
        let abort = Action::Abort {
            reason: "analysis failed: x".into(),
        };
        let (s, _) = s.canary_decision("c", &abort, 1_000).unwrap();
        assert_eq!(s.rollouts["c"].phase, Phase::Aborted);
        assert_eq!(served(&s), (Some("0%".into()), 0));
    }
}
