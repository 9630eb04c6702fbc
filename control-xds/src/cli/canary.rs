//! `switchyard canary …`: start, watch, hold, move on or stop a progressive
//! rollout, and its human form.

use std::process::ExitCode;

use clap::Subcommand;
use serde::Serialize;

use super::flow::Session;
use crate::views::{CanaryListView, CanaryStatusView, CountsView};

#[derive(Subcommand)]
pub enum CanaryCommand {
    /// Progressive rollouts of Canaries with `steps`: start one, watch it, hold
    /// it, move it on, or stop it.
    Canary {
        #[command(subcommand)]
        action: CanaryAction,
    },
}

#[derive(Subcommand)]
pub enum CanaryAction {
    /// Start the rollout of an applied Canary with steps (its first step).
    Start { name: String },
    /// Step, weight, per-version requests and errors, the test statistic
    /// against its bound, the last decision and the events (all rollouts
    /// without NAME).
    Status { name: Option<String> },
    /// Hold the rollout at its step (the failure guard keeps running).
    Pause { name: String },
    /// Continue a paused rollout; the step's time and sample start again.
    Resume { name: String },
    /// Go to the next step now (past a gate or a pause); --full: make the
    /// canary the release now.
    Promote {
        name: String,
        #[arg(long)]
        full: bool,
    },
    /// Weight 0 and the match rules off (one config version); the stable keeps
    /// the release.
    Abort { name: String },
}

/// `POST /v1/canary/{action}`'s body.
#[derive(Serialize)]
struct CommandBody {
    name: String,
    full: bool,
    who: String,
}

impl CanaryCommand {
    pub fn run(self, session: &Session) -> anyhow::Result<ExitCode> {
        let CanaryCommand::Canary { action } = self;
        let (verb, name, full) = match action {
            CanaryAction::Start { name } => ("start", name, false),
            CanaryAction::Pause { name } => ("pause", name, false),
            CanaryAction::Resume { name } => ("resume", name, false),
            CanaryAction::Promote { name, full } => ("promote", name, full),
            CanaryAction::Abort { name } => ("abort", name, false),
            CanaryAction::Status { name: Some(n) } => {
                return session.get(&format!("/v1/canaries/{n}"), &[], human_one)
            }
            CanaryAction::Status { name: None } => {
                return session.get("/v1/canaries", &[], human_list)
            }
        };
        let who = session.who();
        session.change(
            &format!("/v1/canary/{verb}"),
            &CommandBody { name, full, who },
        )
    }
}

fn rate(c: &CountsView) -> String {
    let (n, e) = (c.requests, c.errors);
    if n == 0 {
        format!("{n} requests, {e} errors")
    } else {
        format!(
            "{n} requests, {e} errors ({:.2}%)",
            e as f64 * 100.0 / n as f64
        )
    }
}

/// One rollout, several lines.
pub fn human_one(v: &CanaryStatusView) -> String {
    let mut lines = vec![format!(
        "Canary {}: {} → {} in {} ({}), {} at step {}/{} [{}], weight {}",
        v.name,
        v.stable.as_deref().unwrap_or("-"),
        v.deployment,
        v.virtual_env,
        v.app,
        v.phase,
        v.step,
        v.steps.len(),
        v.steps.join(" → "),
        v.weight,
    )];
    let live = !matches!(v.phase.as_str(), "succeeded" | "aborted");
    if let (Some(ms), true, Some(a)) = (v.step_elapsed_ms, live, &v.analysis) {
        let step_requests = v.counts.map(|c| c.canary_step.requests);
        lines.push(format!(
            "  step time {} s of {} s, canary requests this step {} of {}",
            ms / 1000,
            a.step_time_ms / 1000,
            step_requests.map_or("null".to_string(), |n| n.to_string()),
            a.min_requests
        ));
    }
    if let Some(c) = &v.counts {
        lines.push(format!("  canary: {}", rate(&c.canary)));
        lines.push(format!("  stable: {}", rate(&c.stable)));
    }
    let s = &v.statistic;
    lines.push(format!(
        "  statistic: {} test {:.2} of bound {:.1}",
        s.test, s.value, s.bound
    ));
    lines.push(format!("  last decision: {}", v.reason));
    lines.push(format!("  Envoys reporting load: {}", v.reporting.len()));
    if !v.events.is_empty() {
        lines.push("  events:".into());
        let skip = v.events.len().saturating_sub(10);
        for e in &v.events[skip..] {
            lines.push(format!(
                "    {}  {:<11} {:>5}  {}  ({})",
                e.at, e.phase, e.weight, e.reason, e.who
            ));
        }
    }
    lines.join("\n")
}

/// Every rollout.
pub fn human_list(v: &CanaryListView) -> String {
    let all: Vec<String> = v.canaries.iter().map(human_one).collect();
    if all.is_empty() {
        "no progressive canaries (a Canary with steps)".into()
    } else {
        all.join("\n\n")
    }
}
