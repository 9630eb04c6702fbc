//! `switchyard serve`: run the control plane until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::filter_args::FilterArgs;
use super::render::addr;
use crate::snapshot_builder::BuildOptions;
use crate::start::ServeOptions;
use crate::tls::TlsFiles;

#[derive(Subcommand)]
pub enum ServeCommand {
    /// Run the control plane: ADS for Envoys and the HTTP API for this CLI.
    ///
    /// On first start the --config resources are the state; with --state DIR the
    /// state (resources, releases, history, context keys) is saved there after
    /// every change, and on later starts the saved state wins over --config.
    ///
    /// The API needs tokens: on first start an admin token is made (kept in
    /// --state DIR as admin.token, 0600) and left for the CLI of this user in
    /// ~/.config/switchyard/credentials/HOST_PORT; `switchyard token create`
    /// makes more.
    Serve(ServeArgs),
}

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Resource file or directory (first start only when --state has a state).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Directory of the persisted state (state.json); none: in memory only.
    #[arg(long, conflicts_with = "store")]
    state: Option<PathBuf>,
    /// Keep the state, the API tokens and the replicas in etcd instead:
    /// etcd://HOST:PORT[,HOST:PORT...]/PREFIX. Run several replicas with the
    /// same --store; each serves the same configuration to its Envoys.
    #[arg(long)]
    store: Option<crate::etcd::EtcdUrl>,
    /// This replica's name among the replicas on etcd (default: --xds-addr).
    #[arg(long, requires = "store")]
    replica_id: Option<String>,
    /// How many release records each virtual environment keeps (the oldest
    /// are dropped); rollback goes back at most this many releases.
    #[arg(long, default_value_t = crate::history::DEFAULT_HISTORY_LIMIT as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    history_limit: u32,
    #[arg(long, default_value = "127.0.0.1:18000")]
    xds_addr: std::net::SocketAddr,
    #[arg(long, default_value = "127.0.0.1:18001")]
    api_addr: std::net::SocketAddr,
    #[command(flatten)]
    filter: FilterArgs,
    /// Address of Envoy's genesis listener.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// Address of Envoy's internal listener (component-to-component calls).
    #[arg(long)]
    internal_listen: Option<String>,
    /// Serve the API without tokens (anyone who connects may do anything).
    /// Refused unless --api-addr is a loopback address.
    #[arg(long)]
    insecure_no_auth: bool,
    /// The API's TLS certificate chain (PEM); with --api-tls-key the API is https.
    #[arg(long, requires = "api_tls_key")]
    api_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --api-tls-cert.
    #[arg(long, requires = "api_tls_cert")]
    api_tls_key: Option<PathBuf>,
    /// mTLS on the API: only clients (CLI, pulling filters) with a
    /// certificate issued by this CA (PEM) are served; tokens are still needed.
    #[arg(long, requires = "api_tls_cert")]
    api_client_ca: Option<PathBuf>,
    /// xDS's TLS certificate chain (PEM); with --xds-tls-key xDS is TLS.
    #[arg(long, requires = "xds_tls_key")]
    xds_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --xds-tls-cert.
    #[arg(long, requires = "xds_tls_cert")]
    xds_tls_key: Option<PathBuf>,
    /// mTLS: only Envoys with a client certificate issued by this CA (PEM)
    /// get config; others are refused at the handshake and reported in `status`.
    #[arg(long, requires = "xds_tls_cert")]
    xds_client_ca: Option<PathBuf>,
}

impl ServeCommand {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let ServeCommand::Serve(a) = self;
        let tls = |cert: Option<PathBuf>, key: Option<PathBuf>, client_ca| {
            Some(TlsFiles {
                cert: cert?,
                key: key?,
                client_ca,
            })
        };
        let opts = ServeOptions {
            config: a.config,
            state_dir: a.state,
            etcd: a.store,
            replica_id: a.replica_id,
            history_limit: a.history_limit as usize,
            xds_addr: a.xds_addr,
            api_addr: a.api_addr,
            auth: !a.insecure_no_auth,
            api_tls: tls(a.api_tls_cert, a.api_tls_key, a.api_client_ca),
            xds_tls: tls(a.xds_tls_cert, a.xds_tls_key, a.xds_client_ca),
            build: BuildOptions {
                wasm_path: a.filter.wasm.clone(),
                native_path: a.filter.native_path(),
                genesis_listen: addr(&a.listen)?,
                internal_listen: a.internal_listen.as_deref().map(addr).transpose()?,
                context_keys: Vec::new(),
            },
        };
        serve(opts)
    }
}

/// Runs `switchyard serve` until SIGINT or SIGTERM.
fn serve(opts: ServeOptions) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(crate::daemon::run(opts, shutdown_signal()))?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
