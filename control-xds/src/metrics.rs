//! Prometheus metrics of `switchyard serve` (`GET /metrics`, text format, the
//! `prometheus-client` crate). Rendered at scrape time from the store, the
//! xDS cache and the rollouts, so no request path carries instrumentation:
//!
//! - `switchyard_config_generation`, `switchyard_snapshots_served_total`,
//!   `switchyard_resources{kind}`
//! - with replicas on etcd: `switchyard_replicas`, `switchyard_leader` (1 on
//!   the replica that runs the canary driver)
//! - `switchyard_envoys_connected`, `switchyard_xds_envoys{type, state}`
//!   (state: `acked` the served version, `nacked` it, or `pending`),
//!   `switchyard_lrs_envoys_reporting`
//! - per progressive Canary: `switchyard_canary_phase{canary, phase}` (1 for
//!   the current phase), `switchyard_canary_weight_ratio{canary}`,
//!   `switchyard_canary_step{canary}`,
//!   `switchyard_canary_requests_total{canary, version}` and
//!   `switchyard_canary_errors_total{canary, version}` (version: canary |
//!   stable; since the rollout, or the control plane, started),
//!   `switchyard_canary_statistic{canary, test}` and
//!   `switchyard_canary_statistic_bound{canary, test}`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use switchyard_engine::canary::weight::parse_weight;
use switchyard_engine::Resource;

use crate::kind::Kind;
use crate::progressive::machine::Phase;
use crate::serve::{snapshot_version, ControlPlane};
use crate::state::Store;
use crate::xds::ResourceType;

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: i64) {
    let g: Gauge = Gauge::default();
    g.set(value);
    registry.register(name, help, g);
}

/// The metrics text.
pub fn render(plane: &ControlPlane) -> String {
    let mut r = Registry::with_prefix("switchyard");
    let store = plane.store();
    store_metrics(&mut r, plane, &store);
    xds_metrics(&mut r, plane, &store);
    canary_metrics(&mut r, plane, &store);
    let mut out = String::new();
    if encode(&mut out, &r).is_err() {
        out.clear();
    }
    out
}

/// The store: its generation, snapshots served, resources by kind.
fn store_metrics(r: &mut Registry, plane: &ControlPlane, store: &Store) {
    gauge(
        r,
        "config_generation",
        "Generation of the store (the served config version)",
        store.generation as i64,
    );
    let served: Counter = Counter::default();
    served.inc_by(plane.snapshots_served());
    r.register(
        "snapshots_served",
        "Snapshots built and served since start",
        served,
    );
    let kinds: Family<Labels, Gauge> = Family::default();
    for res in store.resources.values() {
        kinds.get_or_create(&labels(&[("kind", res.kind())])).inc();
    }
    r.register("resources", "Resources in the store, by kind", kinds);
}

/// The Envoys: connected, by xDS type and state; the replicas on etcd.
fn xds_metrics(r: &mut Registry, plane: &ControlPlane, store: &Store) {
    let version = snapshot_version(store.generation);
    let nodes = plane.cache().nodes();
    gauge(
        r,
        "envoys_connected",
        "Envoys with an open ADS stream",
        nodes.iter().filter(|n| n.connected).count() as i64,
    );
    if let Some(view) = plane.replicas() {
        gauge(
            r,
            "replicas",
            "Replicas registered in etcd (serve --store), this one included",
            view.all().len() as i64,
        );
        gauge(
            r,
            "leader",
            "1 if this replica runs singleton work (the canary driver)",
            i64::from(plane.is_leader()),
        );
    }
    let xds: Family<Labels, Gauge> = Family::default();
    for t in ResourceType::PUSH_ORDER {
        for state in ["acked", "nacked", "pending"] {
            xds.get_or_create(&labels(&[("type", t.short_name()), ("state", state)]))
                .set(0);
        }
    }
    for n in nodes.iter().filter(|n| n.connected) {
        for t in ResourceType::PUSH_ORDER {
            let s = n.types.get(&t);
            let state = match s {
                Some(s) if s.acked_version.as_deref() == Some(version.as_str()) => "acked",
                Some(s) if s.last_nack.as_ref().is_some_and(|k| k.version == version) => "nacked",
                _ => "pending",
            };
            xds.get_or_create(&labels(&[("type", t.short_name()), ("state", state)]))
                .inc();
        }
    }
    r.register(
        "xds_envoys",
        "Connected Envoys by xDS type and whether they ACKed the served version",
        xds,
    );
}

/// Progressive rollouts: phase, weight, step, and what was measured.
fn canary_metrics(r: &mut Registry, plane: &ControlPlane, store: &Store) {
    gauge(
        r,
        "lrs_envoys_reporting",
        "Envoys that sent a load report",
        plane.progressive().reports.nodes().len() as i64,
    );

    let phase: Family<Labels, Gauge> = Family::default();
    let weight: Family<Labels, Gauge<f64, AtomicU64>> = Family::default();
    let step: Family<Labels, Gauge> = Family::default();
    let requests: Family<Labels, Counter> = Family::default();
    let errors: Family<Labels, Counter> = Family::default();
    let statistic: Family<Labels, Gauge<f64, AtomicU64>> = Family::default();
    let bound: Family<Labels, Gauge<f64, AtomicU64>> = Family::default();
    let mut names: Vec<String> = store.rollouts.keys().cloned().collect();
    for res in store.resources.values() {
        if let Resource::Canary(c) = res {
            if !c.spec.steps.is_empty() && !names.contains(&c.metadata.name) {
                names.push(c.metadata.name.clone());
            }
        }
    }
    for name in &names {
        let rollout = store.rollouts.get(name);
        let current = rollout.map_or(Phase::Pending, |r| r.phase);
        for p in [
            Phase::Pending,
            Phase::Progressing,
            Phase::Paused,
            Phase::Gated,
            Phase::Promoting,
            Phase::Succeeded,
            Phase::Aborted,
        ] {
            phase
                .get_or_create(&labels(&[("canary", name), ("phase", p.as_str())]))
                .set(i64::from(p == current));
        }
        let w = match (rollout, store.get(Kind::Canary, name)) {
            (Some(r), _) => r.weight.clone(),
            (None, Some(Resource::Canary(c))) => c.spec.weight.clone().unwrap_or_default(),
            _ => String::new(),
        };
        let ppm = parse_weight(&w).unwrap_or(0);
        weight
            .get_or_create(&labels(&[("canary", name)]))
            .set(f64::from(ppm) / 1_000_000.0);
        step.get_or_create(&labels(&[("canary", name)]))
            .set(rollout.map_or(0, |r| r.step as i64 + 1));
        if let Some(measured) = plane.progressive().measured(name) {
            for (v, c) in [("canary", measured.canary), ("stable", measured.stable)] {
                requests
                    .get_or_create(&labels(&[("canary", name), ("version", v)]))
                    .inc_by(c.requests);
                errors
                    .get_or_create(&labels(&[("canary", name), ("version", v)]))
                    .inc_by(c.errors);
            }
            let s = measured.statistic;
            statistic
                .get_or_create(&labels(&[("canary", name), ("test", s.test)]))
                .set(s.value);
            bound
                .get_or_create(&labels(&[("canary", name), ("test", s.test)]))
                .set(s.bound);
        }
    }
    r.register("canary_phase", "1 for the rollout's current phase", phase);
    r.register(
        "canary_weight_ratio",
        "The canary's served weight (0-1)",
        weight,
    );
    r.register(
        "canary_step",
        "The rollout's step (1-based; 0: not started)",
        step,
    );
    r.register(
        "canary_requests",
        "Finished requests per version, from LRS",
        requests,
    );
    r.register(
        "canary_errors",
        "5xx responses per version, from LRS",
        errors,
    );
    r.register(
        "canary_statistic",
        "The error test's statistic closest to its bound",
        statistic,
    );
    r.register(
        "canary_statistic_bound",
        "The bound at which the canary fails",
        bound,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::rollout_ops::Command;
    use crate::test_fixtures::{plane_with, WEB_V1, WEB_V2};

    #[test]
    fn metrics_name_the_config_and_the_rollouts() {
        let canary = "kind: Canary\nmetadata: {name: c}\nspec: {virtualEnvironment: team-a, app: web, deployment: web-v2, steps: [\"5%\", \"100%\"]}\n";
        let plane = plane_with(&format!("{WEB_V1}---\n{WEB_V2}---\n{canary}"));
        let before = render(&plane);
        assert!(
            before.contains("switchyard_canary_phase{canary=\"c\",phase=\"pending\"} 1"),
            "{before}"
        );
        plane
            .change(|s| s.canary_command("c", Command::Start, "t", 1))
            .unwrap();
        let text = render(&plane);
        for line in [
            "switchyard_config_generation 2",
            "switchyard_snapshots_served_total 2",
            "switchyard_resources{kind=\"Canary\"} 1",
            "switchyard_envoys_connected 0",
            "switchyard_canary_phase{canary=\"c\",phase=\"progressing\"} 1",
            "switchyard_canary_weight_ratio{canary=\"c\"} 0.05",
            "switchyard_canary_step{canary=\"c\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
