//! The client flow of the commands that talk to `switchyard serve`: the
//! client with its credential, who makes a change, and change-and-wait (a
//! change, then the wait until every Envoy routes by it), with the human form
//! of a change and of where the Envoys are.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::client::{Client, ClientError, ClientTls};
use super::output::{api_error, print, Output};
use crate::views::{ChangeView, EnvoyStateView, LiveView, PollView, ReleaseView};

/// What a command that talks to the API needs from the global options.
pub struct Session {
    pub output: Output,
    pub server: String,
    pub token_file: Option<PathBuf>,
    pub tls: ClientTls,
    /// `--who`.
    pub who: Option<String>,
    /// `--wait`, or `None` with `--no-wait`.
    pub wait: Option<Duration>,
}

impl Session {
    /// The client for `--server`, with its TLS files and credential.
    pub fn client(&self) -> Result<Client, ClientError> {
        Client::connect(&self.server, self.token_file.as_deref(), &self.tls)
    }

    /// Who makes a change: `--who`, else `$USER`.
    pub fn who(&self) -> String {
        self.who
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "unknown".into())
    }

    /// `GET path`, printed by `human`.
    pub fn get<T>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        human: impl FnOnce(&T) -> String,
    ) -> anyhow::Result<ExitCode>
    where
        T: Serialize + for<'de> Deserialize<'de>,
    {
        let result = self.client().and_then(|c| c.get(path, query));
        super::output::answer(self.output, result, human)
    }

    /// `POST path` with `body`, printed by `human`.
    pub fn post<T, B>(
        &self,
        path: &str,
        body: &B,
        human: impl FnOnce(&T) -> String,
    ) -> anyhow::Result<ExitCode>
    where
        T: Serialize + for<'de> Deserialize<'de>,
        B: Serialize,
    {
        let result = self.client().and_then(|c| c.post(path, body));
        super::output::answer(self.output, result, human)
    }

    /// A change (`POST path` with `body`), then, unless `--no-wait`, the wait
    /// until every connected Envoy has ACKed it.
    pub fn change<B: Serialize>(&self, path: &str, body: &B) -> anyhow::Result<ExitCode> {
        let started = Instant::now();
        let client = match self.client() {
            Ok(c) => c,
            Err(e) => return Ok(api_error(self.output, &e)),
        };
        let result = client.post(path, body);
        change_and_wait(self.output, &client, result, self.wait, started)
    }
}

/// The body of `apply` and `publish`: a file or every resource file of a
/// directory.
#[derive(Serialize)]
pub struct FilesBody {
    pub files: Vec<FileText>,
    pub who: String,
}

/// One resource file.
#[derive(Serialize)]
pub struct FileText {
    pub filename: String,
    pub text: String,
}

impl FilesBody {
    pub fn read(path: &Path, who: String) -> anyhow::Result<Self> {
        let mut files = Vec::new();
        for p in crate::load::resource_files(path)? {
            let text = std::fs::read_to_string(&p)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))?;
            files.push(FileText {
                filename: p.display().to_string(),
                text,
            });
        }
        if files.is_empty() {
            anyhow::bail!("no .yaml, .yml or .json file in {}", path.display());
        }
        Ok(Self { files, who })
    }
}

/// Prints a change's answer; unless `wait` is `None`, first waits until every
/// connected Envoy has ACKed it (`/v1/live`) and adds that as `live`. Exits
/// non-zero, naming each Envoy, if one NACKed or did not ACK in time.
fn change_and_wait(
    output: Output,
    client: &Client,
    result: Result<ChangeView, ClientError>,
    wait: Option<Duration>,
    started: Instant,
) -> anyhow::Result<ExitCode> {
    let mut answer = match result {
        Ok(v) => v,
        Err(e) => return Ok(api_error(output, &e)),
    };
    let (Some(wait), true) = (wait, answer.changed) else {
        print(output, &answer, || human_change(&answer));
        return Ok(ExitCode::SUCCESS);
    };
    let timeout_ms = wait.as_millis().to_string();
    let generation = answer.generation.to_string();
    let live = client.get_with_timeout::<LiveView>(
        "/v1/live",
        &[
            ("generation", generation.as_str()),
            ("timeoutMs", timeout_ms.as_str()),
        ],
        wait + Duration::from_secs(10),
    );
    let mut live = match live {
        Ok(v) => v,
        Err(e) => {
            print(output, &answer, || human_change(&answer));
            eprintln!("error: the change was applied, but whether it is live is unknown: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    live.elapsed_ms = Some(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
    let complete = live.complete;
    let human = format!("{}\n{}", human_change(&answer), human_live(&live));
    answer.live = Some(live);
    print(output, &answer, || human);
    if complete {
        return Ok(ExitCode::SUCCESS);
    }
    if output == Output::Human {
        eprintln!(
            "error: not live on every Envoy within {}; the change itself stays applied (config version {})",
            format_duration(wait),
            answer.version
        );
    }
    Ok(ExitCode::FAILURE)
}

/// `500ms`, `30s`, `2m` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration like 500ms, 30s or 2m"))?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" => number * 60.0,
        _ => return Err(format!("'{text}': the unit must be ms, s or m")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("'{text}': {e}"))
}

fn format_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// What a change did, a line per resource, release, key and canary change.
pub fn human_change(v: &ChangeView) -> String {
    let mut lines = Vec::new();
    for (ids, verb) in [
        (&v.created, "created"),
        (&v.updated, "updated"),
        (&v.deleted, "deleted"),
    ] {
        for id in ids {
            lines.push(format!("{verb} {id}"));
        }
    }
    for r in &v.releases {
        lines.push(format!("{}  [{} by {}]", release_line(r), r.id, r.who));
    }
    for k in &v.keys {
        lines.push(format!("context key {k}"));
    }
    for c in &v.canary {
        lines.push(format!("canary {c}"));
    }
    if lines.is_empty() {
        lines.push("no change".into());
    } else if !v.unchanged.is_empty() {
        lines.push(format!("{} unchanged", v.unchanged.len()));
    }
    lines.push(format!("config version {}", v.version));
    lines.join("\n")
}

/// `released VE: app → deployment (was previous)`.
pub fn release_line(r: &ReleaseView) -> String {
    let what = match r.action.as_str() {
        "rollback" => "rolled back",
        "apply" => "applied release",
        _ => "released",
    };
    format!(
        "{what} {}: {} → {} (was {})",
        r.virtual_env,
        r.app,
        r.deployment.as_deref().unwrap_or("(none)"),
        r.previous.as_deref().unwrap_or("(none)"),
    )
}

/// `live on N/N Envoys in X ms`, then one line per Envoy that is not live and
/// per pulling Envoy.
fn human_live(live: &LiveView) -> String {
    let mut lines = vec![format!(
        "live on {}/{} Envoys in {} ms",
        live.live,
        live.connected,
        live.elapsed_ms.unwrap_or(0)
    )];
    for e in &live.envoys {
        match &e.state {
            EnvoyStateView::Nacked {
                kind,
                version,
                message,
            } => lines.push(format!(
                "  {}: NACKed {kind} version {version}: {message}",
                e.id
            )),
            EnvoyStateView::Pending { waiting_for } => lines.push(format!(
                "  {}: did not ACK in time (waiting for {})",
                e.id,
                waiting_for.join(", ")
            )),
            EnvoyStateView::Live => {}
        }
    }
    lines.extend(pulling_lines(&live.pulling));
    lines.join("\n")
}

/// One line per pull-mode Envoy: it has no ACK, only its last poll.
pub fn pulling_lines(pulling: &[PollView]) -> Vec<String> {
    let now = crate::clock::now_unix_ms();
    pulling
        .iter()
        .map(|p| {
            format!(
                "  {}: pulling (last poll {} ms ago, config version {})",
                p.id,
                now.saturating_sub(p.last_poll_unix_ms),
                p.generation
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("2h").is_err());
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(3)), "3s");
    }
}
