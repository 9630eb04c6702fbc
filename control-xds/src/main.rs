//! The `switchyard` CLI: the control plane (`serve`) and the commands that talk to it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use switchyard::load::{self, LoadErrors};
use switchyard::render::{render_envoy, RenderOptions};
use switchyard_engine::{PluginConfig, Request, Settings};

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Version-aware dynamic routing for Envoy"
)]
struct Cli {
    /// Output format for results.
    #[arg(long, short, global = true, value_enum, default_value_t = Output::Human)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Human,
    Json,
    Yaml,
}

#[derive(Subcommand)]
enum Command {
    /// Check resource files; prints every problem with file, line, field and reason.
    Validate {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Route a described request with the real engine and show the decision.
    Explain {
        /// Resource file or directory.
        #[arg(long)]
        config: PathBuf,
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
    },
    /// Render configuration for a proxy.
    Render {
        #[command(subcommand)]
        target: RenderTarget,
    },
}

#[derive(Subcommand)]
enum RenderTarget {
    /// A static Envoy bootstrap with the filter and the resources inline.
    Envoy {
        /// Resource file or directory.
        #[arg(long)]
        config: PathBuf,
        /// Path of switchyard_filter.wasm as Envoy will see it.
        #[arg(
            long,
            default_value = "target/wasm32-wasip1/release/switchyard_filter.wasm"
        )]
        wasm: String,
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print(output: Output, value: &serde_json::Value, human: impl FnOnce() -> String) {
    match output {
        Output::Human => println!("{}", human()),
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        ),
        Output::Yaml => print!("{}", serde_saphyr::to_string(value).unwrap_or_default()),
    }
}

fn report(output: Output, errors: &LoadErrors) -> ExitCode {
    let value = serde_json::json!({"valid": false, "errors": errors.0});
    match output {
        Output::Human => eprintln!("{errors}"),
        _ => print(output, &value, String::new),
    }
    ExitCode::FAILURE
}

fn addr(s: &str) -> anyhow::Result<(String, u16)> {
    let (h, p) = s
        .rsplit_once(':')
        .ok_or_else(|| anyhow::anyhow!("'{s}' is not host:port"))?;
    Ok((h.trim_matches(['[', ']']).to_string(), p.parse()?))
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate { file } => {
            let docs = match load::load_path(&file) {
                Ok(d) => d,
                Err(e) => return Ok(report(cli.output, &e)),
            };
            match load::compile(&docs, Settings::default()) {
                Ok(index) => {
                    let value = serde_json::json!({"valid": true, "resources": docs.len(), "clusters": index.clusters().len()});
                    print(cli.output, &value, || {
                        format!(
                            "{} resources valid ({} clusters)",
                            docs.len(),
                            index.clusters().len()
                        )
                    });
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Ok(report(cli.output, &e)),
            }
        }
        Command::Explain {
            config,
            path,
            method,
            headers,
            source,
        } => {
            let docs = match load::load_path(&config) {
                Ok(d) => d,
                Err(e) => return Ok(report(cli.output, &e)),
            };
            let index = match load::compile(&docs, Settings::default()) {
                Ok(i) => i,
                Err(e) => return Ok(report(cli.output, &e)),
            };
            let headers: Vec<(String, String)> = headers
                .iter()
                .filter_map(|h| h.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let request = Request {
                method: &method,
                path: &path,
                headers: &headers,
                source_address: source.as_deref(),
                now_unix_seconds: now,
            };
            Ok(switchyard::explain::explain(
                &index,
                &request,
                |v, human| print(cli.output, v, || human),
            ))
        }
        Command::Render {
            target:
                RenderTarget::Envoy {
                    config,
                    wasm,
                    listen,
                    admin,
                },
        } => {
            let docs = match load::load_path(&config) {
                Ok(d) => d,
                Err(e) => return Ok(report(cli.output, &e)),
            };
            let index = match load::compile(&docs, Settings::default()) {
                Ok(i) => i,
                Err(e) => return Ok(report(cli.output, &e)),
            };
            let plugin = PluginConfig {
                settings: Settings::default(),
                resources: docs.into_iter().map(|d| d.resource).collect(),
            };
            let opts = RenderOptions {
                wasm_path: wasm,
                listen: addr(&listen)?,
                admin: addr(&admin)?,
            };
            let value = render_envoy(&plugin, &index, &opts);
            match cli.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&value)?),
                _ => print!("{}", serde_saphyr::to_string(&value)?),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
