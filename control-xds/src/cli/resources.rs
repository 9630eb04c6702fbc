//! The resource verbs: `apply`, `publish`, `delete`, `validate` and `explain`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use serde::Serialize;
use switchyard_engine::{Index, Request};

use super::flow::{FilesBody, Session};
use super::output::{print, report, Output};
use crate::load;
use crate::views::{ExplainOutcome, ExplainView, IstioSubsetView, ValidateView};

#[derive(Subcommand)]
pub enum ResourceCommand {
    /// Create or replace resources (a file or directory, validated as one batch).
    Apply {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Delete a resource: KIND is Environment (env), VirtualEnvironment (ve),
    /// AppDeployment (deployment) or Canary.
    Delete { kind: String, name: String },
    /// Publish AppDeployments (immutable once they have a version).
    Publish {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Check resource files; prints every problem with file, line, field and reason.
    Validate {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Route a described request with the real engine and show the decision
    /// (against --config files, or the server's resources without --config).
    Explain(ExplainArgs),
}

#[derive(clap::Args)]
pub struct ExplainArgs {
    /// Resource file or directory; without it, ask the server.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The request path, query included, e.g. '/dev/hello?kf-ve=joe'.
    path: String,
    #[arg(long, short = 'X', default_value = "GET")]
    method: String,
    /// A request header, 'name: value' (repeatable).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// The client's address, ip:port.
    #[arg(long)]
    source: Option<String>,
    /// Istio mode (with --config): also show the selection header, the
    /// DestinationRule subset and Istio's cluster, Services in namespace NS.
    #[arg(long, value_name = "NS", requires = "config")]
    istio_namespace: Option<String>,
}

#[derive(Serialize)]
struct DeleteBody<'a> {
    kind: &'a str,
    name: &'a str,
}

/// `POST /v1/explain`'s body.
#[derive(Serialize)]
struct ExplainBody<'a> {
    path: &'a str,
    method: &'a str,
    headers: Vec<(String, String)>,
    source: Option<&'a str>,
}

impl ResourceCommand {
    pub fn run(self, session: &Session) -> anyhow::Result<ExitCode> {
        match self {
            ResourceCommand::Apply { file } => {
                session.change("/v1/apply", &FilesBody::read(&file, session.who())?)
            }
            ResourceCommand::Publish { file } => {
                session.change("/v1/publish", &FilesBody::read(&file, session.who())?)
            }
            ResourceCommand::Delete { kind, name } => session.change(
                "/v1/delete",
                &DeleteBody {
                    kind: &kind,
                    name: &name,
                },
            ),
            ResourceCommand::Validate { file } => Ok(validate(session.output, &file)),
            ResourceCommand::Explain(a) => match a.config.clone() {
                Some(config) => Ok(explain_local(session.output, &config, &a)),
                None => explain_remote(session, &a),
            },
        }
    }
}

fn validate(output: Output, file: &std::path::Path) -> ExitCode {
    match load::load_and_compile(file) {
        Ok((docs, index)) => {
            let view = ValidateView {
                valid: true,
                resources: Some(docs.len()),
                clusters: Some(index.clusters().len()),
                errors: None,
            };
            print(output, &view, || {
                format!(
                    "{} resources valid ({} clusters)",
                    docs.len(),
                    index.clusters().len()
                )
            });
            ExitCode::SUCCESS
        }
        Err(e) => report(output, &e),
    }
}

/// `name: value` headers; `lower` lower-cases the names (as Envoy hands them over).
fn headers(given: &[String], lower: bool) -> Vec<(String, String)> {
    given
        .iter()
        .filter_map(|h| h.split_once(':'))
        .map(|(k, v)| {
            let k = k.trim();
            let k = if lower {
                k.to_ascii_lowercase()
            } else {
                k.to_string()
            };
            (k, v.trim().to_string())
        })
        .collect()
}

/// Prints an explained request; exit 2 when it was refused.
fn print_explained(output: Output, mut view: ExplainView) -> ExitCode {
    let human = view.human.take().unwrap_or_default();
    let routed = view.routed();
    print(output, &view, || human);
    if routed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

fn explain_remote(session: &Session, a: &ExplainArgs) -> anyhow::Result<ExitCode> {
    let body = ExplainBody {
        path: &a.path,
        method: &a.method,
        headers: headers(&a.headers, false),
        source: a.source.as_deref(),
    };
    match session
        .client()
        .and_then(|c| c.post::<ExplainView, _>("/v1/explain", &body))
    {
        Ok(view) => Ok(print_explained(session.output, view)),
        Err(e) => Ok(super::output::api_error(session.output, &e)),
    }
}

fn explain_local(output: Output, config: &std::path::Path, a: &ExplainArgs) -> ExitCode {
    let (_, index) = match load::load_and_compile(config) {
        Ok(loaded) => loaded,
        Err(e) => return report(output, &e),
    };
    let headers = headers(&a.headers, true);
    let request = Request {
        method: &a.method,
        path: &a.path,
        headers: &headers,
        source_address: a.source.as_deref(),
        now_unix_seconds: crate::clock::now_unix_ms() / 1000,
    };
    let mut view = crate::explain::explain(&index, &request);
    if let Some(ns) = &a.istio_namespace {
        add_istio(&mut view, &index, ns);
    }
    print_explained(output, view)
}

/// Istio mode: where Istio sends the routed request (`--istio-namespace`).
fn add_istio(view: &mut ExplainView, index: &Index, namespace: &str) {
    let ExplainOutcome::Routed(routed) = &view.outcome else {
        return;
    };
    let Some(istio) = crate::istio::explain_subset(index, namespace, &routed.cluster)
        .and_then(|v| serde_json::from_value::<IstioSubsetView>(v).ok())
    else {
        return;
    };
    if let Some(human) = &mut view.human {
        human.push_str(&format!(
            "\n  istio: {} → {} subset {} ({})",
            istio.header, istio.host, istio.subset, istio.cluster
        ));
    }
    view.istio = Some(istio);
}
