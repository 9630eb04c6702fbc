//! `switchyard canary …`: the human form of a rollout's status.

use serde_json::Value;

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

fn rate(c: &Value) -> String {
    let n = c["requests"].as_u64().unwrap_or(0);
    let e = c["errors"].as_u64().unwrap_or(0);
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
pub fn human_one(v: &Value) -> String {
    let steps: Vec<&str> = v["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    let mut lines = vec![format!(
        "Canary {}: {} → {} in {} ({}), {} at step {}/{} [{}], weight {}",
        text(&v["name"]),
        text(&v["stable"]),
        text(&v["deployment"]),
        text(&v["virtualEnv"]),
        text(&v["app"]),
        text(&v["phase"]),
        v["step"],
        steps.len(),
        steps.join(" → "),
        text(&v["weight"]),
    )];
    let live = !matches!(v["phase"].as_str(), Some("succeeded" | "aborted"));
    if let (Some(ms), true, true) = (v["stepElapsedMs"].as_u64(), live, v["analysis"].is_object()) {
        let a = &v["analysis"];
        lines.push(format!(
            "  step time {} s of {} s, canary requests this step {} of {}",
            ms / 1000,
            a["stepTimeMs"].as_u64().unwrap_or(0) / 1000,
            v["counts"]["canaryStep"]["requests"],
            a["minRequests"]
        ));
    }
    if v["counts"].is_object() {
        lines.push(format!("  canary: {}", rate(&v["counts"]["canary"])));
        lines.push(format!("  stable: {}", rate(&v["counts"]["stable"])));
    }
    let s = &v["statistic"];
    lines.push(format!(
        "  statistic: {} test {:.2} of bound {:.1}",
        text(&s["test"]),
        s["value"].as_f64().unwrap_or(0.0),
        s["bound"].as_f64().unwrap_or(0.0)
    ));
    lines.push(format!("  last decision: {}", text(&v["reason"])));
    let reporting = v["reporting"].as_array().map_or(0, Vec::len);
    lines.push(format!("  Envoys reporting load: {reporting}"));
    let events = v["events"].as_array().cloned().unwrap_or_default();
    if !events.is_empty() {
        lines.push("  events:".into());
        for e in events.iter().rev().take(10).rev() {
            lines.push(format!(
                "    {}  {:<11} {:>5}  {}  ({})",
                text(&e["at"]),
                text(&e["phase"]),
                text(&e["weight"]),
                text(&e["reason"]),
                text(&e["who"])
            ));
        }
    }
    lines.join("\n")
}

/// Every rollout.
pub fn human_list(v: &Value) -> String {
    let all: Vec<String> = v["canaries"]
        .as_array()
        .into_iter()
        .flatten()
        .map(human_one)
        .collect();
    if all.is_empty() {
        "no progressive canaries (a Canary with steps)".into()
    } else {
        all.join("\n\n")
    }
}
