//! The `switchyard` CLI: the clap grammar, one module per verb family, the
//! client flow and the human printers.
//!
//! [`Cli`] holds the options every command shares; `Command` gathers the
//! families' verbs (each family's enum is flattened into it): `serve`
//! ([`serve`]); `apply`, `publish`, `delete`, `validate`, `explain`
//! ([`resources`]); `release`, `rollback`, `status`, `history` ([`releases`]);
//! `canary` ([`canary`]); `keys`, `token` ([`keys`]); `render`, `package`
//! ([`render`]); `completions` ([`completions`]). A family parses its arguments, calls the API through
//! [`flow`] (the client with its credential, change-and-wait) and prints with
//! [`output`] (`--output human|json|yaml`) and its own human printer.

pub mod canary;
pub mod client;
pub mod completions;
pub mod filter_args;
pub mod flow;
pub mod keys;
pub mod output;
pub mod releases;
pub mod render;
pub mod resources;
pub mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use flow::{parse_duration, Session};
use output::Output;

/// The options every command shares, and the command.
#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Version-aware dynamic routing for Envoy"
)]
pub struct Cli {
    /// Output format for results.
    #[arg(long, short, global = true, value_enum, default_value_t = Output::Human)]
    output: Output,
    /// The control plane's HTTP API (commands that talk to `switchyard serve`).
    #[arg(
        long,
        global = true,
        env = "SWITCHYARD_SERVER",
        default_value = "http://127.0.0.1:18001"
    )]
    server: String,
    /// A file holding the API token. Without it: $SWITCHYARD_TOKEN, else the
    /// admin credential `switchyard serve` left on this machine for --server
    /// (~/.config/switchyard/credentials/HOST_PORT).
    #[arg(long, global = true, env = "SWITCHYARD_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// The CA certificate (PEM) that signed the API's certificate (https://).
    #[arg(long, global = true, env = "SWITCHYARD_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// A client certificate chain (PEM) for an API that requires one
    /// (`serve --api-client-ca`).
    #[arg(
        long,
        global = true,
        env = "SWITCHYARD_CLIENT_CERT",
        requires = "client_key"
    )]
    client_cert: Option<PathBuf>,
    /// The private key (PEM) of --client-cert.
    #[arg(
        long,
        global = true,
        env = "SWITCHYARD_CLIENT_KEY",
        requires = "client_cert"
    )]
    client_key: Option<PathBuf>,
    /// Who makes the change, for the release history (default: $USER).
    #[arg(long, global = true)]
    who: Option<String>,
    /// How long a change waits until every connected Envoy has ACKed it
    /// (e.g. 500ms, 30s, 2m); it fails, naming each Envoy that NACKed or did not
    /// ACK in time (the change itself stays applied).
    #[arg(long, global = true, value_parser = parse_duration, default_value = "30s")]
    wait: std::time::Duration,
    /// Return once the control plane accepted the change, without waiting for
    /// the Envoys.
    #[arg(long, global = true, conflicts_with = "wait")]
    no_wait: bool,
    #[command(subcommand)]
    command: Command,
}

/// Every verb, by family.
#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Serve(serve::ServeCommand),
    #[command(flatten)]
    Resources(resources::ResourceCommand),
    #[command(flatten)]
    Releases(releases::ReleaseCommand),
    #[command(flatten)]
    Canary(canary::CanaryCommand),
    #[command(flatten)]
    Keys(keys::KeyCommand),
    #[command(flatten)]
    Render(render::RenderCommand),
    #[command(flatten)]
    Completions(completions::CompletionsCommand),
}

/// Runs the command; the exit code says how it went.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let session = Session {
        output: cli.output,
        server: cli.server,
        token_file: cli.token_file,
        tls: client::ClientTls {
            ca_cert: cli.ca_cert,
            client_cert: cli.client_cert.zip(cli.client_key),
        },
        who: cli.who,
        wait: (!cli.no_wait).then_some(cli.wait),
    };
    match cli.command {
        Command::Serve(c) => c.run(),
        Command::Resources(c) => c.run(&session),
        Command::Releases(c) => c.run(&session),
        Command::Canary(c) => c.run(&session),
        Command::Keys(c) => c.run(&session),
        Command::Render(c) => c.run(session.output),
        Command::Completions(c) => c.run(),
    }
}
