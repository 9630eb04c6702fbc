//! How the CLI writes results: `--output human|json|yaml`, errors from the
//! API, and resource problems.

use std::process::ExitCode;

use clap::ValueEnum;
use serde::Serialize;

use super::client::ClientError;
use crate::load::LoadErrors;
use crate::views::{ErrorView, ProblemView, ValidateView};

/// The output format of results.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Human,
    Json,
    Yaml,
}

/// Writes a result to stdout: `human()` in human form, else `value` as JSON or
/// YAML.
pub fn print<T: Serialize>(output: Output, value: &T, human: impl FnOnce() -> String) {
    let text = match output {
        Output::Human => format!("{}\n", human()),
        Output::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(value).unwrap_or_default()
        ),
        Output::Yaml => serde_saphyr::to_string(value).unwrap_or_default(),
    };
    write_stdout(&text);
}

/// Writes to stdout. A closed pipe (`switchyard validate … | head`) is not an
/// error worth a panic: the reader has what it wanted.
pub fn write_stdout(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// A rendered document: YAML, or JSON with `--output json`.
pub fn print_document<T: Serialize>(output: Output, value: &T) -> anyhow::Result<ExitCode> {
    match output {
        Output::Json => write_stdout(&format!("{}\n", serde_json::to_string_pretty(value)?)),
        _ => write_stdout(&serde_saphyr::to_string(value)?),
    }
    Ok(ExitCode::SUCCESS)
}

/// A resource problem as the API and `validate` show it.
pub fn problem_view(e: &crate::load::LoadError) -> ProblemView {
    ProblemView {
        file: e.file.clone(),
        line: e.line,
        column: e.column,
        resource: e.resource.clone(),
        field: e.field.clone(),
        reason: e.reason.clone(),
    }
}

/// Resource files that do not load: every problem, and a failing exit.
pub fn report(output: Output, errors: &LoadErrors) -> ExitCode {
    let view = ValidateView {
        valid: false,
        resources: None,
        clusters: None,
        errors: Some(errors.0.iter().map(problem_view).collect()),
    };
    match output {
        Output::Human => eprintln!("{errors}"),
        _ => print(output, &view, String::new),
    }
    ExitCode::FAILURE
}

/// An API call that failed: the error (and every resource problem), and a
/// failing exit.
pub fn api_error(output: Output, e: &ClientError) -> ExitCode {
    match (output, e) {
        (Output::Human, ClientError::Api { body, .. }) => {
            eprintln!("error: {}", body.message);
            for p in body.problems.iter().flatten() {
                eprintln!("  {p}");
            }
        }
        (Output::Human, e) => eprintln!("error: {e}"),
        (_, ClientError::Api { body, .. }) => print(output, body, String::new),
        (_, e) => print(
            output,
            &ErrorView {
                error: "unreachable".into(),
                message: e.to_string(),
                problems: None,
                change: None,
            },
            String::new,
        ),
    }
    ExitCode::FAILURE
}

/// Prints an API answer (or error) and chooses the exit code.
pub fn answer<T: Serialize>(
    output: Output,
    result: Result<T, ClientError>,
    human: impl FnOnce(&T) -> String,
) -> anyhow::Result<ExitCode> {
    match result {
        Ok(v) => {
            print(output, &v, || human(&v));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(api_error(output, &e)),
    }
}
