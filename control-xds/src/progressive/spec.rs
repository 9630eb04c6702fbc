//! A Canary's progressive-delivery settings (`spec.steps`, `spec.analysis`):
//! their typed form and their checks, reported like every other validation
//! problem (resource, field; `load` adds the file, line and column).
//!
//! ```yaml
//! steps: ["1%", "10%", "50%", "100%"]   # strictly increasing, each in (0%, 100%]
//! analysis:
//!   stepTime: 60s        # minimum time at each step (≥ 1s)
//!   minRequests: 100     # minimum canary requests at each step before it advances
//!   maxWait: 10m         # a step still short of minRequests after this pauses (never fails)
//!   maxErrorRatio: 2     # the canary fails when its error rate exceeds this × the stable's
//!   maxErrorRate: "5%"   # optional absolute cap on the canary's error rate
//!   minErrorRate: "0.1%" # the stable's rate is taken as at least this (differences below it are noise)
//!   onFailure: abort     # abort (weight 0, match rules off) | pause (hold the weight, wait for a human)
//!   gates: ["50%"]       # wait for `switchyard canary promote` before these steps
//!   bakeTime: 60s        # time at 100% before the canary becomes the release
//!   webhooks: ["http://127.0.0.1:9000/rollouts"]   # every event, POSTed as JSON
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchyard_engine::canary::weight::parse_weight;
use switchyard_engine::resources::CanarySpec;
use switchyard_engine::{Resource, ValidationError};

/// `spec.analysis` as written (every field optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AnalysisDoc {
    step_time: Option<String>,
    min_requests: Option<u64>,
    max_wait: Option<String>,
    max_error_ratio: Option<f64>,
    max_error_rate: Option<String>,
    min_error_rate: Option<String>,
    on_failure: Option<OnFailure>,
    #[serde(default)]
    gates: Vec<String>,
    bake_time: Option<String>,
    #[serde(default)]
    webhooks: Vec<String>,
}

/// What a failed analysis does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Weight 0 and the match rules off, in one config version.
    #[default]
    Abort,
    /// Hold the current weight and wait for `resume`, `promote` or `abort`.
    Pause,
}

/// A Canary's rollout plan, checked and with defaults filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// Step weights in parts per million, strictly increasing.
    pub steps_ppm: Vec<u32>,
    /// The steps as written (`"10%"`), for display.
    pub steps: Vec<String>,
    pub step_time_ms: u64,
    pub min_requests: u64,
    pub max_wait_ms: u64,
    pub max_error_ratio: f64,
    /// Absolute cap on the canary's error rate (a fraction), if any.
    pub max_error_rate: Option<f64>,
    /// Floor of the stable's error rate (a fraction).
    pub min_error_rate: f64,
    pub on_failure: OnFailure,
    /// Indexes of the steps that wait for `promote` before they start.
    pub gates: Vec<usize>,
    pub bake_time_ms: u64,
    /// URLs that get every rollout event as a JSON POST.
    #[serde(default)]
    pub webhooks: Vec<String>,
}

pub const DEFAULT_STEP_TIME: Duration = Duration::from_secs(60);
pub const DEFAULT_MIN_REQUESTS: u64 = 100;
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(600);
pub const DEFAULT_MAX_ERROR_RATIO: f64 = 2.0;
pub const DEFAULT_MIN_ERROR_RATE: f64 = 0.001;
pub const DEFAULT_BAKE_TIME: Duration = Duration::from_secs(60);

/// Parses `500ms`, `30s`, `2m`, `1h` (a whole number and a unit).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration: write it like 500ms, 30s, 2m or 1h"))?;
    let ms = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => {
            return Err(format!(
                "'{text}' is not a duration: write it like 500ms, 30s, 2m or 1h"
            ))
        }
    };
    ms.map(Duration::from_millis)
        .ok_or_else(|| format!("'{text}' is too long"))
}

fn rate(text: &str) -> Result<f64, String> {
    parse_weight(text).map(|ppm| f64::from(ppm) / 1_000_000.0)
}

/// The problems found in one Canary, each with its field.
struct Problems<'a> {
    resource: &'a str,
    errors: Vec<ValidationError>,
}

impl Problems<'_> {
    fn add(&mut self, field: String, reason: String) {
        self.errors
            .push(ValidationError::new(self.resource, field, reason));
    }

    /// An analysis duration in ms (`default` when absent; 0 when wrong).
    fn duration(
        &mut self,
        field: &str,
        value: &Option<String>,
        default: Duration,
        min: Duration,
    ) -> u64 {
        match value {
            None => default.as_millis() as u64,
            Some(text) => match parse_duration(text) {
                Ok(d) if d < min => {
                    self.add(
                        format!("spec.analysis.{field}"),
                        format!("'{text}' is below the minimum of {}ms", min.as_millis()),
                    );
                    0
                }
                Ok(d) => d.as_millis() as u64,
                Err(reason) => {
                    self.add(format!("spec.analysis.{field}"), reason);
                    0
                }
            },
        }
    }

    /// An analysis rate above 0%, if given and right.
    fn fraction(&mut self, field: &str, value: &Option<String>) -> Option<f64> {
        let text = value.as_ref()?;
        match rate(text) {
            Ok(0.0) => {
                self.add(format!("spec.analysis.{field}"), format!("'{text}' is 0%"));
                None
            }
            Ok(r) => Some(r),
            Err(reason) => {
                self.add(format!("spec.analysis.{field}"), reason);
                None
            }
        }
    }

    /// The steps' weights (ppm), each above 0% and above the one before.
    fn steps(&mut self, steps: &[String]) -> Vec<u32> {
        let mut steps_ppm = Vec::new();
        for (i, s) in steps.iter().enumerate() {
            match parse_weight(s) {
                Ok(0) => self.add(
                    format!("spec.steps[{i}]"),
                    format!("'{s}' is 0%: a step sends some traffic to the canary"),
                ),
                Ok(ppm) => {
                    if steps_ppm.last().is_some_and(|&last| ppm <= last) {
                        self.add(
                            format!("spec.steps[{i}]"),
                            format!("'{s}' is not above the step before it: steps only increase"),
                        );
                    }
                    steps_ppm.push(ppm);
                }
                Err(reason) => self.add(format!("spec.steps[{i}]"), reason),
            }
        }
        steps_ppm
    }

    /// `spec.analysis` read as its document (`None`: not readable).
    fn analysis(&mut self, analysis: &Option<serde_json::Value>) -> Option<AnalysisDoc> {
        let Some(v) = analysis else {
            return Some(AnalysisDoc::default());
        };
        match serde_json::from_value(v.clone()) {
            Ok(d) => Some(d),
            Err(e) => {
                let msg = e.to_string();
                // serde names an unknown field in backticks: point at it.
                let field = msg
                    .split('`')
                    .nth(1)
                    .filter(|_| msg.starts_with("unknown field"))
                    .map_or("spec.analysis".to_string(), |f| {
                        format!("spec.analysis.{f}")
                    });
                self.add(field, msg);
                None
            }
        }
    }

    /// The gated steps' indices, each gate naming one of the steps.
    fn gates(&mut self, steps: &[String], gates: &[String]) -> Vec<usize> {
        let mut out = Vec::new();
        for (i, g) in gates.iter().enumerate() {
            match steps.iter().position(|s| s.trim() == g.trim()) {
                Some(step) => out.push(step),
                None => self.add(
                    format!("spec.analysis.gates[{i}]"),
                    format!("'{g}' is not one of the steps ({})", steps.join(", ")),
                ),
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Every webhook an http:// or https:// URL.
    fn webhooks(&mut self, webhooks: &[String]) {
        for (i, url) in webhooks.iter().enumerate() {
            let rest = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"));
            let host = rest.map(|r| r.split('/').next().unwrap_or(""));
            if host.is_none_or(str::is_empty) || url.chars().any(char::is_whitespace) {
                self.add(
                    format!("spec.analysis.webhooks[{i}]"),
                    format!("'{url}' is not an http:// or https:// URL"),
                );
            }
        }
    }
}

impl Plan {
    /// The plan of a Canary with `steps`; `None` for a plain canary. Every
    /// problem is reported, with its field.
    pub fn of(resource: &str, spec: &CanarySpec) -> Result<Option<Plan>, Vec<ValidationError>> {
        let mut p = Problems {
            resource,
            errors: Vec::new(),
        };
        if spec.steps.is_empty() {
            if spec.analysis.is_some() {
                p.add(
                    "spec.analysis".into(),
                    "analysis judges progressive steps: add spec.steps, e.g. [\"1%\", \"10%\", \"100%\"]".into(),
                );
                return Err(p.errors);
            }
            return Ok(None);
        }
        let steps_ppm = p.steps(&spec.steps);
        let Some(doc) = p.analysis(&spec.analysis) else {
            return Err(p.errors);
        };
        let step_time_ms = p.duration(
            "stepTime",
            &doc.step_time,
            DEFAULT_STEP_TIME,
            Duration::from_secs(1),
        );
        let max_wait_ms = p.duration(
            "maxWait",
            &doc.max_wait,
            DEFAULT_MAX_WAIT,
            Duration::from_secs(1),
        );
        let bake_time_ms = p.duration(
            "bakeTime",
            &doc.bake_time,
            DEFAULT_BAKE_TIME,
            Duration::ZERO,
        );
        if doc.step_time.is_some() && doc.max_wait.is_some() && max_wait_ms < step_time_ms {
            p.add(
                "spec.analysis.maxWait".into(),
                "maxWait is shorter than stepTime: a step could never complete".into(),
            );
        }
        let max_error_ratio = doc.max_error_ratio.unwrap_or(DEFAULT_MAX_ERROR_RATIO);
        if !(max_error_ratio > 1.0 && max_error_ratio <= 1000.0) {
            p.add(
                "spec.analysis.maxErrorRatio".into(),
                format!("{max_error_ratio} must be above 1 (the canary may not be better than the stable) and at most 1000"),
            );
        }
        let max_error_rate = p.fraction("maxErrorRate", &doc.max_error_rate);
        let min_error_rate = p
            .fraction("minErrorRate", &doc.min_error_rate)
            .unwrap_or(DEFAULT_MIN_ERROR_RATE);
        if max_error_rate.is_some_and(|cap| cap > 0.5) {
            p.add(
                "spec.analysis.maxErrorRate".into(),
                "a cap above 50% would let a canary that fails most requests pass".into(),
            );
        }
        if min_error_rate > 0.1 {
            p.add(
                "spec.analysis.minErrorRate".into(),
                "at most 10%: a higher floor would hide a failing canary".into(),
            );
        }
        let min_requests = doc.min_requests.unwrap_or(DEFAULT_MIN_REQUESTS);
        let gates = p.gates(&spec.steps, &doc.gates);
        p.webhooks(&doc.webhooks);
        if !p.errors.is_empty() {
            return Err(p.errors);
        }
        Ok(Some(Plan {
            steps_ppm,
            steps: spec.steps.clone(),
            step_time_ms,
            min_requests,
            max_wait_ms,
            max_error_ratio,
            max_error_rate,
            min_error_rate,
            on_failure: doc.on_failure.unwrap_or_default(),
            gates,
            bake_time_ms,
            webhooks: doc.webhooks,
        }))
    }

    /// Whether step `i` waits for `promote` before it starts.
    pub fn gated(&self, step: usize) -> bool {
        self.gates.contains(&step)
    }
}

/// Every progressive-delivery problem of `resources` (Canaries only).
pub fn check(resources: &[Resource]) -> Vec<ValidationError> {
    resources
        .iter()
        .filter_map(|r| match r {
            Resource::Canary(c) => Plan::of(&r.id(), &c.spec).err(),
            _ => None,
        })
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(steps: &[&str], analysis: serde_json::Value) -> CanarySpec {
        let mut v = serde_json::json!({
            "virtualEnvironment": "prod", "app": "web", "deployment": "web-v2",
            "steps": steps,
        });
        if !analysis.is_null() {
            v["analysis"] = analysis;
        }
        serde_json::from_value(v).unwrap()
    }

    fn fields(e: Vec<ValidationError>) -> Vec<String> {
        e.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn defaults_fill_in() {
        let p = Plan::of(
            "Canary/c",
            &spec(&["1%", "10%", "100%"], serde_json::Value::Null),
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.steps_ppm, [10_000, 100_000, 1_000_000]);
        assert_eq!(
            (p.step_time_ms, p.min_requests, p.bake_time_ms),
            (60_000, 100, 60_000)
        );
        assert_eq!(p.on_failure, OnFailure::Abort);
        assert!(Plan::of("Canary/c", &spec(&[], serde_json::Value::Null))
            .unwrap()
            .is_none());
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let e = Plan::of(
            "Canary/c",
            &spec(
                &["10%", "5%", "0%", "x"],
                serde_json::json!({"stepTime": "2 weeks", "maxErrorRatio": 0.5,
                    "maxErrorRate": "90%", "gates": ["50%"], "bakeTime": "1m", "onFailure": "pause",
                    "webhooks": ["ftp://x", "http://ok.example/hook"]}),
            ),
        )
        .unwrap_err();
        assert_eq!(
            fields(e),
            [
                "spec.steps[1]",
                "spec.steps[2]",
                "spec.steps[3]",
                "spec.analysis.stepTime",
                "spec.analysis.maxErrorRatio",
                "spec.analysis.maxErrorRate",
                "spec.analysis.gates[0]",
                "spec.analysis.webhooks[0]"
            ]
        );
        let e = Plan::of(
            "Canary/c",
            &spec(&["1%"], serde_json::json!({"colour": "red"})),
        )
        .unwrap_err();
        assert_eq!(fields(e), ["spec.analysis.colour"]);
        let e = Plan::of("Canary/c", &spec(&[], serde_json::json!({}))).unwrap_err();
        assert_eq!(fields(e), ["spec.analysis"]);
        let e = Plan::of(
            "Canary/c",
            &spec(&["1%"], serde_json::json!({"onFailure": "explode"})),
        )
        .unwrap_err();
        assert_eq!(fields(e), ["spec.analysis"]);
    }

    #[test]
    fn gates_name_steps() {
        let p = Plan::of(
            "Canary/c",
            &spec(
                &["1%", "50%", "100%"],
                serde_json::json!({"gates": ["100%", "50%"], "onFailure": "pause"}),
            ),
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.gates, [1, 2]);
        assert!(p.gated(1) && !p.gated(0));
        assert_eq!(p.on_failure, OnFailure::Pause);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("2").is_err() && parse_duration("s").is_err());
    }

    #[test]
    fn problems_are_located_in_the_file() {
        use crate::test_fixtures::{WEB_V1, WEB_V2};
        let canary = "\
kind: Canary
metadata: {name: web-v2-canary}
spec:
  virtualEnvironment: team-a
  app: web
  deployment: web-v2
  steps: [\"1%\", \"50%\"]
  analysis:
    stepTime: 30s
    gates: [\"10%\"]
";
        let text = format!("{WEB_V1}---\n{WEB_V2}---\n{canary}");
        let docs = crate::load::parse_text(std::path::Path::new("c.yaml"), &text).unwrap();
        let errors =
            crate::load::compile(&docs, switchyard_engine::Settings::default()).unwrap_err();
        assert_eq!(errors.0.len(), 1, "{errors}");
        let e = &errors.0[0];
        let line = text.lines().position(|l| l.contains("gates:")).unwrap() + 1;
        assert_eq!((e.file.as_str(), e.line), ("c.yaml", line), "{errors}");
        assert_eq!(e.resource.as_deref(), Some("Canary/web-v2-canary"));
        assert!(e.reason.contains("not one of the steps"), "{errors}");
        let good = text.replace("[\"10%\"]", "[\"50%\"]");
        let docs = crate::load::parse_text(std::path::Path::new("c.yaml"), &good).unwrap();
        crate::load::compile(&docs, switchyard_engine::Settings::default()).unwrap();
    }
}
