//! The release verbs: `release`, `rollback`, `history` and `status`.

use std::process::ExitCode;

use clap::Subcommand;
use serde::Serialize;

use super::flow::{pulling_lines, release_line, Session};
use crate::views::{HistoryView, NodeView, StatusView};

#[derive(Subcommand)]
pub enum ReleaseCommand {
    /// Make DEPLOYMENT the release of its app in a virtual environment.
    Release {
        deployment: String,
        #[arg(long = "virtual-env")]
        virtual_env: String,
    },
    /// Restore the release before the latest one.
    Rollback {
        #[arg(long = "virtual-env")]
        virtual_env: String,
        /// The app to roll back (default: the one released last).
        #[arg(long)]
        app: Option<String>,
    },
    /// Releases, canaries and connected Envoys with what each ACKed or NACKed.
    Status,
    /// Release history (of one virtual environment, or all).
    History {
        #[arg(long = "virtual-env")]
        virtual_env: Option<String>,
    },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReleaseBody {
    deployment: String,
    virtual_env: String,
    who: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RollbackBody {
    virtual_env: String,
    app: Option<String>,
    who: String,
}

impl ReleaseCommand {
    pub fn run(self, session: &Session) -> anyhow::Result<ExitCode> {
        match self {
            ReleaseCommand::Release {
                deployment,
                virtual_env,
            } => session.change(
                "/v1/release",
                &ReleaseBody {
                    deployment,
                    virtual_env,
                    who: session.who(),
                },
            ),
            ReleaseCommand::Rollback { virtual_env, app } => session.change(
                "/v1/rollback",
                &RollbackBody {
                    virtual_env,
                    app,
                    who: session.who(),
                },
            ),
            ReleaseCommand::Status => session.get("/v1/status", &[], human_status),
            ReleaseCommand::History { virtual_env } => {
                let query: Vec<(&str, &str)> = virtual_env
                    .as_deref()
                    .map(|v| vec![("virtualEnv", v)])
                    .unwrap_or_default();
                session.get("/v1/history", &query, human_history)
            }
        }
    }
}

fn human_history(v: &HistoryView) -> String {
    if v.history.is_empty() {
        return "no releases yet".into();
    }
    v.history
        .iter()
        .map(|r| format!("{}  {:<12} {}  by {}", r.at, r.id, release_line(r), r.who))
        .collect::<Vec<_>>()
        .join("\n")
}

fn human_status(v: &StatusView) -> String {
    let mut out = vec![format!(
        "config version {} ({} resources), context keys: {}",
        v.version,
        v.resources,
        v.context_kids.join(", ")
    )];
    out.push("Releases".into());
    if v.releases.is_empty() {
        out.push("  (none)".into());
    }
    for r in &v.releases {
        let apps: Vec<String> = r
            .apps
            .iter()
            .map(|(app, dep)| format!("{app} → {dep}"))
            .collect();
        out.push(format!(
            "  {}/{}  {}  [{}]",
            r.environment,
            r.virtual_env,
            if apps.is_empty() {
                "(no release)".to_string()
            } else {
                apps.join(", ")
            },
            r.id.as_deref().unwrap_or("-")
        ));
    }
    out.push("Canaries".into());
    if v.canaries.is_empty() {
        out.push("  (none)".into());
    }
    for c in &v.canaries {
        let mut line = format!(
            "  {}  {}/{} → {}  weight {}, {} match rules",
            c.name,
            c.virtual_env,
            c.app,
            c.deployment,
            c.weight.as_deref().unwrap_or("0%"),
            c.match_rules
        );
        if let Some(phase) = &c.rollout {
            line.push_str(&format!(", rollout {phase} (`canary status`)"));
        }
        out.push(line);
    }
    if let Some(replicas) = &v.replicas {
        out.push("Replicas (etcd)".into());
        for r in replicas {
            out.push(format!(
                "  {}{}: xDS {}, API {}, config version {}, {} Envoys",
                r.id,
                if r.leader { " (leader)" } else { "" },
                r.xds_addr,
                r.api_addr,
                r.generation,
                r.envoys
            ));
        }
    }
    out.push("Envoys".into());
    if v.envoys.is_empty() {
        out.push("  (none connected yet)".into());
    }
    for e in &v.envoys {
        out.extend(envoy_lines(e));
    }
    out.extend(pulling_lines(&v.pulling));
    let refused = &v.tls_refused;
    if refused.total > 0 {
        out.push(format!(
            "TLS handshakes refused: {} (latest {})",
            refused.total,
            refused.latest.len()
        ));
        for r in refused.latest.iter().rev().take(5) {
            out.push(format!("  {} from {}: {}", r.listener, r.peer, r.reason));
        }
    }
    out.join("\n")
}

/// An Envoy: where it is connected, what it ACKed, its last NACKs.
fn envoy_lines(e: &NodeView) -> Vec<String> {
    let mut out = vec![format!(
        "  {} (cluster {}): {}{}",
        e.id,
        e.cluster,
        if e.connected {
            "connected"
        } else {
            "disconnected"
        },
        e.replica
            .as_ref()
            .map(|r| format!(" to replica {r}"))
            .unwrap_or_default()
    )];
    let mut types = Vec::new();
    let mut nacks = Vec::new();
    for (kind, t) in &e.types {
        let acked = t.acked_version.as_deref().unwrap_or("-");
        let sent = t.sent_version.as_deref().unwrap_or("-");
        if acked == sent {
            types.push(format!("{kind} {acked}"));
        } else {
            types.push(format!("{kind} {acked} (sent {sent})"));
        }
        if let Some(n) = &t.last_nack {
            nacks.push(format!(
                "    last NACK {kind} version {}: {}",
                n.version, n.message
            ));
        }
    }
    out.push(format!("    ACKed: {}", types.join("  ")));
    out.extend(nacks);
    out
}
