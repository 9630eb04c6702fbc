//! Webhook notifications: every rollout event is POSTed as JSON to the
//! Canary's `analysis.webhooks`, from a thread of its own (2 s timeout, no
//! retry), so a slow or dead receiver never holds a rollout back. Failures are
//! logged.

use std::time::Duration;

use serde_json::{json, Value};

use crate::state::Store;

/// The JSON of `canary`'s latest event in `store`, if it has one.
pub fn payload(store: &Store, canary: &str) -> Option<Value> {
    let r = store.rollouts.get(canary)?;
    let e = r.events.last()?;
    Some(json!({
        "canary": r.canary,
        "virtualEnv": r.virtual_env,
        "app": r.app,
        "deployment": r.deployment,
        "stable": r.stable,
        "phase": e.phase,
        "step": e.step + 1,
        "weight": e.weight,
        "reason": e.reason,
        "who": e.who,
        "at": e.at,
        "atUnixMs": e.at_unix_ms,
    }))
}

/// POSTs `payload` to every URL of `webhooks`, each from its own thread.
pub fn send(webhooks: &[String], payload: Value) {
    for url in webhooks {
        let (url, body) = (url.clone(), payload.clone());
        let spawned = std::thread::Builder::new()
            .name("switchyard-webhook".into())
            .spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .timeout_global(Some(Duration::from_secs(2)))
                    .build()
                    .into();
                match agent.post(&url).send_json(&body) {
                    Ok(_) => tracing::debug!(%url, "webhook sent"),
                    Err(e) => tracing::warn!(%url, error = %e, "webhook not delivered"),
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no thread for a webhook");
        }
    }
}

/// After a change of `canary`'s rollout: tells its webhooks (taken from the
/// plan before the change, since a success deletes the Canary).
pub fn after_change(webhooks: &[String], store: &Store, canary: &str) {
    if webhooks.is_empty() {
        return;
    }
    if let Some(p) = payload(store, canary) {
        send(webhooks, p);
    }
}
