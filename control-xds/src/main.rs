//! The `switchyard` CLI: the control plane (`serve`) and the commands that talk to it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};
use switchyard::bootstrap::{AdsBootstrap, XdsTls};
use switchyard::client::{Client, ClientError, ClientTls};
use switchyard::load::{self, LoadErrors};
use switchyard::render::{render_envoy, RenderOptions};
use switchyard::snapshot_builder::BuildOptions;
use switchyard::start::ServeOptions;
use switchyard::tls::TlsFiles;
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

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Human,
    Json,
    Yaml,
}

#[derive(Subcommand)]
enum Command {
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
    Serve {
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
        store: Option<switchyard::etcd::EtcdUrl>,
        /// This replica's name among the replicas on etcd (default: --xds-addr).
        #[arg(long, requires = "store")]
        replica_id: Option<String>,
        /// How many release records each virtual environment keeps (the oldest
        /// are dropped); rollback goes back at most this many releases.
        #[arg(long, default_value_t = switchyard::history::DEFAULT_HISTORY_LIMIT as u32,
              value_parser = clap::value_parser!(u32).range(1..))]
        history_limit: u32,
        #[arg(long, default_value = "127.0.0.1:18000")]
        xds_addr: std::net::SocketAddr,
        #[arg(long, default_value = "127.0.0.1:18001")]
        api_addr: std::net::SocketAddr,
        /// Path of switchyard_filter.wasm as Envoy will see it.
        #[arg(
            long,
            default_value = "target/wasm32-wasip1/release/switchyard_filter.wasm"
        )]
        wasm: String,
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
    },
    /// Manage the API's tokens (admin): create one per user, pipeline or Envoy.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
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
    /// Make DEPLOYMENT the release of its app in a virtual environment.
    Release {
        deployment: String,
        #[arg(long = "virtual-env")]
        virtual_env: String,
    },
    /// Rotate or retire the keys that sign the routing context `kf-context`.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
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
    /// Check resource files; prints every problem with file, line, field and reason.
    Validate {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Route a described request with the real engine and show the decision
    /// (against --config files, or the server's resources without --config).
    Explain {
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
    },
    /// Progressive rollouts of Canaries with `steps`: start one, watch it, hold
    /// it, move it on, or stop it.
    Canary {
        #[command(subcommand)]
        action: CanaryAction,
    },
    /// Render configuration for a proxy.
    Render {
        #[command(subcommand)]
        target: RenderTarget,
    },
    /// Write the filter as an OCI image layout that istio-agent pulls (one
    /// tar+gzip layer holding plugin.wasm); prints the digests for
    /// `WasmPlugin.spec.sha256`. No Docker needed.
    Package {
        /// The filter (`scripts/build-wasm.sh` builds it).
        #[arg(
            long,
            default_value = "target/wasm32-wasip1/release/switchyard_filter.wasm"
        )]
        wasm: PathBuf,
        /// Directory of the OCI image layout (created).
        #[arg(long, default_value = "target/oci/switchyard-filter")]
        out: PathBuf,
        /// The image tag.
        #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
        tag: String,
    },
}

#[derive(Subcommand)]
enum TokenAction {
    /// A new token; it is printed once and stored only as a hash.
    Create {
        /// read (status, history, explain, resources), release (+ release,
        /// rollback, canaries), admin (+ apply, publish, delete, keys, tokens)
        /// or pull (the filter's pull mode only: GET /v1/config).
        #[arg(long)]
        role: String,
        /// A unique name (who or what uses it).
        #[arg(long)]
        name: String,
    },
    /// Every token's name, role and creation time.
    List,
    /// The token stops working at once.
    Revoke { name: String },
}

#[derive(Subcommand)]
enum CanaryAction {
    /// Start the rollout of an applied Canary with steps (its first step).
    Start { name: String },
    /// Step, weight, per-version requests and errors, the test statistic
    /// against its bound, the last decision and the events (all rollouts
    /// without NAME).
    Status { name: Option<String> },
    /// Hold the rollout at its step (the failure guard keeps running).
    Pause { name: String },
    /// Continue a paused rollout; the step's time and sample start again.
    Resume { name: String },
    /// Go to the next step now (past a gate or a pause); --full: make the
    /// canary the release now.
    Promote {
        name: String,
        #[arg(long)]
        full: bool,
    },
    /// Weight 0 and the match rules off (one config version); the stable keeps
    /// the release.
    Abort { name: String },
}

#[derive(Subcommand)]
enum KeysAction {
    /// A new key signs from now on; the old ones keep verifying until retired.
    Rotate,
    /// Contexts signed with KID stop verifying (not the signing key).
    Retire { kid: String },
}

#[derive(Subcommand)]
enum RenderTarget {
    /// A static Envoy bootstrap with the filter and the resources inline; or,
    /// with --ads, the bootstrap of an Envoy that gets everything over ADS.
    Envoy {
        /// Resource file or directory.
        #[arg(long, required_unless_present = "ads")]
        config: Option<PathBuf>,
        /// Render the ADS bootstrap for `switchyard serve`'s xDS at HOST:PORT
        /// (node, ADS cluster, admin) instead of a static one. Several
        /// replicas: HOST:PORT,HOST:PORT,... (the first healthy one is used;
        /// when it dies the Envoy moves to the next).
        #[arg(long, conflicts_with_all = ["config", "internal_listen", "pull_from"])]
        ads: Option<String>,
        /// With --ads: delta xDS (`api_type: DELTA_GRPC`): on a change Envoy
        /// is sent only the resources that changed.
        #[arg(long, requires = "ads")]
        delta: bool,
        /// ADS over TLS: verify the control plane's certificate against
        /// --xds-ca (and its IP or name); with --xds-cert/--xds-key present a
        /// client certificate (mTLS, `serve --xds-client-ca`).
        #[arg(long, requires_all = ["ads", "xds_ca"])]
        xds_tls: bool,
        /// The CA (PEM, as Envoy sees the file) that signed serve's xDS certificate.
        #[arg(long, requires = "xds_tls")]
        xds_ca: Option<String>,
        /// This Envoy's client certificate chain (PEM) for xDS mTLS.
        #[arg(long, requires_all = ["xds_tls", "xds_key"])]
        xds_cert: Option<String>,
        /// The private key (PEM) of --xds-cert.
        #[arg(long, requires = "xds_cert")]
        xds_key: Option<String>,
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
        /// Also render the internal listener (component-to-component calls); a
        /// context-signing key is generated for both listeners.
        #[arg(long)]
        internal_listen: Option<String>,
        /// Pull mode: the filter polls this control plane API (host:port) for the
        /// routing table instead of using the resources inline.
        #[arg(long)]
        pull_from: Option<String>,
        /// Pull mode: a file holding the `pull`-role API token the filter sends
        /// (`switchyard token create --role pull`); it goes into the bootstrap.
        /// Without it the filter sends $SWITCHYARD_PULL_TOKEN of its VM, if any.
        #[arg(long, requires = "pull_from")]
        pull_token_file: Option<PathBuf>,
        /// Pull mode over https (`serve --api-tls-*`): the CA (PEM, as Envoy
        /// sees the file) that signed the API's certificate.
        #[arg(long, requires = "pull_from")]
        pull_ca: Option<String>,
        /// Pull mode against an API with mTLS (`serve --api-client-ca`): this
        /// Envoy's client certificate chain (PEM, as Envoy sees the file).
        #[arg(long, requires_all = ["pull_ca", "pull_key"])]
        pull_cert: Option<String>,
        /// The private key (PEM) of --pull-cert.
        #[arg(long, requires = "pull_cert")]
        pull_key: Option<String>,
        /// `node.id` of this Envoy (pull mode reports it as pulling under it;
        /// `status` lists an ADS Envoy by it). Default: switchyard-static, or
        /// switchyard-envoy with --ads.
        #[arg(long)]
        node_id: Option<String>,
    },
    /// Istio objects: WasmPlugins (or EnvoyFilters), the VirtualServices and
    /// DestinationRules pinning component versions as subsets, what pull mode
    /// needs. Multi-document YAML in a stable order.
    Istio {
        /// Resource file or directory.
        #[arg(long)]
        config: PathBuf,
        /// Namespace of the components' Services (and of the rendered routing).
        #[arg(long, default_value = "default")]
        namespace: String,
        /// Label selecting the ingress gateway's pods (`key=value`).
        #[arg(long, default_value = "istio=ingressgateway")]
        gateway_selector: String,
        /// Namespace of the ingress gateway.
        #[arg(long, default_value = "istio-system")]
        gateway_namespace: String,
        /// Bind the ingress VirtualService to this existing Gateway (`ns/name`)
        /// instead of rendering one.
        #[arg(long)]
        gateway: Option<String>,
        /// The pod label carrying the component version.
        #[arg(long, default_value = "version")]
        version_label: String,
        /// Pull mode: the filter polls `switchyard serve`'s API at this Service
        /// (`SVC[.NS]:PORT`) through Istio's `outbound|PORT||FQDN` cluster.
        #[arg(long)]
        pull_from: Option<String>,
        /// How the filter is inserted.
        #[arg(long, value_enum, default_value = "wasmplugin")]
        via: switchyard::istio::Via,
        /// Where istio-agent fetches the filter (`switchyard package` prints it).
        #[arg(long, default_value = concat!("oci://ghcr.io/switchyard/switchyard-filter:", env!("CARGO_PKG_VERSION")))]
        url: String,
        /// `WasmPlugin.spec.sha256` (`switchyard package` prints it).
        #[arg(long)]
        sha256: Option<String>,
        /// A kf-context key (`{kid, secret}`, YAML or JSON) for inline mode; pull
        /// mode gets the keys from the control plane.
        #[arg(long)]
        context_key_file: Option<PathBuf>,
        /// Pull mode: a file holding the `pull`-role API token, written into the
        /// plugin configuration. Without it the filter reads
        /// $SWITCHYARD_PULL_TOKEN from the proxy's environment.
        #[arg(long, requires = "pull_from")]
        pull_token_file: Option<PathBuf>,
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

/// Writes a result to stdout. A closed pipe (`switchyard validate … | head`) is
/// not an error worth a panic: the reader has what it wanted.
fn print(output: Output, value: &serde_json::Value, human: impl FnOnce() -> String) {
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

fn write_stdout(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
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

/// `500ms`, `30s`, `2m` (a bare number is seconds).
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
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
    std::time::Duration::try_from_secs_f64(seconds).map_err(|e| format!("'{text}': {e}"))
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let output = cli.output;
    let wait = (!cli.no_wait).then_some(cli.wait);
    let tls = ClientTls {
        ca_cert: cli.ca_cert.clone(),
        client_cert: cli.client_cert.clone().zip(cli.client_key.clone()),
    };
    let client = || Client::connect(&cli.server, cli.token_file.as_deref(), &tls);
    // A change, then (unless --no-wait) the wait until it is live everywhere.
    let change = |path: &str, body: &Value| {
        let started = std::time::Instant::now();
        let client = match client() {
            Ok(c) => c,
            Err(e) => return Ok(api_error(output, &e)),
        };
        let result = client.post(path, body);
        change_and_wait(output, &client, result, wait, started)
    };
    let who = || {
        cli.who
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "unknown".into())
    };
    match cli.command {
        Command::Serve {
            config,
            state,
            store,
            replica_id,
            history_limit,
            xds_addr,
            api_addr,
            wasm,
            listen,
            internal_listen,
            insecure_no_auth,
            api_tls_cert,
            api_tls_key,
            api_client_ca,
            xds_tls_cert,
            xds_tls_key,
            xds_client_ca,
        } => {
            let tls = |cert: Option<PathBuf>, key: Option<PathBuf>, client_ca| {
                Some(TlsFiles {
                    cert: cert?,
                    key: key?,
                    client_ca,
                })
            };
            let opts = ServeOptions {
                config,
                state_dir: state,
                etcd: store,
                replica_id,
                history_limit: history_limit as usize,
                xds_addr,
                api_addr,
                auth: !insecure_no_auth,
                api_tls: tls(api_tls_cert, api_tls_key, api_client_ca),
                xds_tls: tls(xds_tls_cert, xds_tls_key, xds_client_ca),
                build: BuildOptions {
                    wasm_path: wasm,
                    genesis_listen: addr(&listen)?,
                    internal_listen: internal_listen.as_deref().map(addr).transpose()?,
                    context_keys: Vec::new(),
                },
            };
            serve(opts)
        }
        Command::Apply { file } => {
            let body = files_body(&file, &who())?;
            change("/v1/apply", &body)
        }
        Command::Publish { file } => {
            let body = files_body(&file, &who())?;
            change("/v1/publish", &body)
        }
        Command::Delete { kind, name } => {
            change("/v1/delete", &json!({"kind": kind, "name": name}))
        }
        Command::Release {
            deployment,
            virtual_env,
        } => change(
            "/v1/release",
            &json!({"deployment": deployment, "virtualEnv": virtual_env, "who": who()}),
        ),
        Command::Rollback { virtual_env, app } => change(
            "/v1/rollback",
            &json!({"virtualEnv": virtual_env, "app": app, "who": who()}),
        ),
        Command::Keys {
            action: KeysAction::Rotate,
        } => change("/v1/keys/rotate", &json!({})),
        Command::Keys {
            action: KeysAction::Retire { kid },
        } => change("/v1/keys/retire", &json!({ "kid": kid })),
        Command::Token { action } => match action {
            TokenAction::Create { role, name } => call(
                output,
                client().and_then(|c| c.post("/v1/tokens", &json!({"role": role, "name": name}))),
                human_token,
            ),
            TokenAction::List => call(
                output,
                client().and_then(|c| c.get("/v1/tokens", &[])),
                human_tokens,
            ),
            TokenAction::Revoke { name } => call(
                output,
                client().and_then(|c| c.post("/v1/tokens/revoke", &json!({ "name": name }))),
                |v| format!("revoked {} ({})", text(&v["revoked"]), text(&v["role"])),
            ),
        },
        Command::Status => call(
            output,
            client().and_then(|c| c.get("/v1/status", &[])),
            human_status,
        ),
        Command::Canary { action } => {
            let (verb, name, full) = match action {
                CanaryAction::Start { name } => ("start", name, false),
                CanaryAction::Pause { name } => ("pause", name, false),
                CanaryAction::Resume { name } => ("resume", name, false),
                CanaryAction::Promote { name, full } => ("promote", name, full),
                CanaryAction::Abort { name } => ("abort", name, false),
                CanaryAction::Status { name: Some(n) } => {
                    return call(
                        output,
                        client().and_then(|c| c.get(&format!("/v1/canaries/{n}"), &[])),
                        switchyard::progressive::cli::human_one,
                    )
                }
                CanaryAction::Status { name: None } => {
                    return call(
                        output,
                        client().and_then(|c| c.get("/v1/canaries", &[])),
                        switchyard::progressive::cli::human_list,
                    )
                }
            };
            change(
                &format!("/v1/canary/{verb}"),
                &json!({"name": name, "full": full, "who": who()}),
            )
        }
        Command::History { virtual_env } => {
            let query: Vec<(&str, &str)> = virtual_env
                .as_deref()
                .map(|v| vec![("virtualEnv", v)])
                .unwrap_or_default();
            call(
                output,
                client().and_then(|c| c.get("/v1/history", &query)),
                human_history,
            )
        }
        Command::Explain {
            config: None,
            path,
            method,
            headers,
            source,
            istio_namespace: _,
        } => {
            let headers: Vec<(String, String)> = headers
                .iter()
                .filter_map(|h| h.split_once(':'))
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .collect();
            let body =
                json!({"path": path, "method": method, "headers": headers, "source": source});
            match client().and_then(|c| c.post("/v1/explain", &body)) {
                Ok(mut v) => {
                    let human = v["human"].as_str().unwrap_or_default().to_string();
                    if let Some(m) = v.as_object_mut() {
                        m.remove("human");
                    }
                    print(output, &v, || human);
                    Ok(if v["routed"] == json!(true) {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(2)
                    })
                }
                Err(e) => Ok(api_error(output, &e)),
            }
        }
        Command::Validate { file } => match load::load_and_compile(&file) {
            Ok((docs, index)) => {
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
        },
        Command::Explain {
            config: Some(config),
            path,
            method,
            headers,
            source,
            istio_namespace,
        } => {
            let (_, index) = match load::load_and_compile(&config) {
                Ok(loaded) => loaded,
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
                |v, human| {
                    let istio = istio_namespace.as_deref().and_then(|ns| {
                        let key = v["cluster"].as_str()?;
                        switchyard::istio::explain_subset(&index, ns, key)
                    });
                    match istio {
                        Some(istio) => {
                            let mut v = v.clone();
                            let human = format!(
                                "{human}\n  istio: {} → {} subset {} ({})",
                                istio["header"].as_str().unwrap_or_default(),
                                istio["host"].as_str().unwrap_or_default(),
                                istio["subset"].as_str().unwrap_or_default(),
                                istio["cluster"].as_str().unwrap_or_default()
                            );
                            v["istio"] = istio;
                            print(cli.output, &v, || human)
                        }
                        None => print(cli.output, v, || human),
                    }
                },
            ))
        }
        Command::Package { wasm, out, tag } => {
            let p = switchyard::package::package(&wasm, &out, &tag)?;
            let value = serde_json::to_value(&p)?;
            print(cli.output, &value, || {
                format!(
                    "OCI image layout {dir} (tag {tag}): plugin.wasm, {bytes} bytes\n\
                     manifest sha256 {manifest}   <- WasmPlugin.spec.sha256 for url: oci://…\n\
                     plugin.wasm sha256 {wasm}   <- WasmPlugin.spec.sha256 for https:// or file:// urls\n\
                     push (keeps the manifest digest): oras cp --from-oci-layout {dir}:{tag} REGISTRY/switchyard-filter:{tag}",
                    dir = p.layout.display(),
                    tag = p.tag,
                    bytes = p.wasm_bytes,
                    manifest = p.manifest_sha256,
                    wasm = p.wasm_sha256,
                )
            });
            Ok(ExitCode::SUCCESS)
        }
        Command::Render {
            target:
                RenderTarget::Istio {
                    config,
                    namespace,
                    gateway_selector,
                    gateway_namespace,
                    gateway,
                    version_label,
                    pull_from,
                    via,
                    url,
                    sha256,
                    context_key_file,
                    pull_token_file,
                },
        } => {
            let (docs, index) = match load::load_and_compile(&config) {
                Ok(loaded) => loaded,
                Err(e) => return Ok(report(cli.output, &e)),
            };
            let gateway_selector = gateway_selector
                .split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| anyhow::anyhow!("--gateway-selector must be key=value"))?;
            let pull_from = pull_from
                .map(|p| match p.rsplit_once(':') {
                    Some((host, port)) if !host.is_empty() => port
                        .parse::<u16>()
                        .map(|port| (host.to_string(), port))
                        .map_err(|_| anyhow::anyhow!("--pull-from {p}: the port is not a number")),
                    _ => Err(anyhow::anyhow!("--pull-from must be SVC:PORT")),
                })
                .transpose()?;
            let context_key = match context_key_file {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                    Some(
                        serde_saphyr::from_str::<switchyard_engine::context::ContextKey>(&text)
                            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
                    )
                }
                None => None,
            };
            let plugin = PluginConfig {
                settings: Settings::default(),
                resources: docs.into_iter().map(|d| d.resource).collect(),
            };
            let opts = switchyard::istio::IstioOptions {
                namespace,
                gateway_namespace,
                gateway_selector,
                gateway,
                version_label,
                pull_from,
                via,
                url,
                sha256,
                context_key,
                pull_token: pull_token_file
                    .as_deref()
                    .map(|p| {
                        std::fs::read_to_string(p)
                            .map(|t| t.trim().to_string())
                            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))
                    })
                    .transpose()?,
            };
            let objects = switchyard::istio::render_istio(&plugin, &index, &opts)?;
            let table = serde_json::to_vec(&plugin.resources)?.len();
            if table > switchyard::istio::INLINE_LIMIT {
                eprintln!(
                    "note: the routing table is {table} bytes, above the {}-byte inline limit: the plugins carry none and pull it from {}",
                    switchyard::istio::INLINE_LIMIT,
                    opts.pull_from.as_ref().map(|(h, p)| format!("{h}:{p}")).unwrap_or_default()
                );
            }
            if opts.context_key.is_none() && opts.pull_from.is_none() {
                eprintln!(
                    "note: no --context-key-file or --pull-from: no kf-context is issued and no sidecar plugin is rendered (component-to-component calls get 503 cluster_not_ready)"
                );
            }
            match cli.output {
                Output::Json => {
                    write_stdout(&format!("{}\n", serde_json::to_string_pretty(&objects)?))
                }
                _ => {
                    let mut text = String::new();
                    for o in &objects {
                        text.push_str("---\n");
                        text.push_str(&serde_saphyr::to_string(o)?);
                    }
                    write_stdout(&text)
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Render {
            target:
                RenderTarget::Envoy {
                    config,
                    ads,
                    delta,
                    xds_tls,
                    xds_ca,
                    xds_cert,
                    xds_key,
                    wasm,
                    listen,
                    admin,
                    internal_listen,
                    pull_from,
                    pull_token_file,
                    pull_ca,
                    pull_cert,
                    pull_key,
                    node_id,
                },
        } => {
            let (Some(config), None) = (config, &ads) else {
                let value = switchyard::bootstrap::render(&AdsBootstrap {
                    ads: ads
                        .as_deref()
                        .unwrap_or_default()
                        .split(',')
                        .map(addr)
                        .collect::<Result<_, _>>()?,
                    admin: addr(&admin)?,
                    node_id: node_id.unwrap_or_else(|| "switchyard-envoy".into()),
                    tls: xds_tls.then(|| XdsTls {
                        ca: xds_ca.unwrap_or_default(),
                        client_cert: xds_cert.zip(xds_key),
                    }),
                    delta,
                });
                return print_bootstrap(cli.output, &value);
            };
            let node_id = node_id.unwrap_or_else(|| "switchyard-static".into());
            let (docs, index) = match load::load_and_compile(&config) {
                Ok(loaded) => loaded,
                Err(e) => return Ok(report(cli.output, &e)),
            };
            let mut settings = Settings::default();
            if internal_listen.is_some() {
                settings.context_keys =
                    vec![switchyard::context_keys::generate_context_key("render-1")?];
            }
            if let Some(api) = &pull_from {
                settings.pull = Some(switchyard_engine::config::PullSettings {
                    cluster: switchyard::render::PULL_CLUSTER.to_string(),
                    authority: Some(api.clone()),
                    path: "/v1/config".into(),
                    interval_ms: 1000,
                    token: pull_token_file
                        .as_deref()
                        .map(|p| {
                            std::fs::read_to_string(p)
                                .map(|t| t.trim().to_string())
                                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))
                        })
                        .transpose()?,
                });
            }
            let plugin = PluginConfig {
                settings,
                resources: docs.into_iter().map(|d| d.resource).collect(),
            };
            let opts = RenderOptions {
                wasm_path: wasm,
                listen: addr(&listen)?,
                admin: addr(&admin)?,
                internal_listen: internal_listen.as_deref().map(addr).transpose()?,
                pull_from: pull_from.as_deref().map(addr).transpose()?,
                node_id,
            };
            let mut value = render_envoy(&plugin, &index, &opts);
            if let (Some(ca), Some((host, _))) = (&pull_ca, &opts.pull_from) {
                let tls = XdsTls {
                    ca: ca.clone(),
                    client_cert: pull_cert.zip(pull_key),
                };
                switchyard::bootstrap::pull_over_tls(&mut value, &tls, host);
            }
            print_bootstrap(cli.output, &value)
        }
    }
}

/// A rendered bootstrap: YAML, or JSON with `--output json`.
fn print_bootstrap(output: Output, value: &Value) -> anyhow::Result<ExitCode> {
    match output {
        Output::Json => write_stdout(&format!("{}\n", serde_json::to_string_pretty(value)?)),
        _ => write_stdout(&serde_saphyr::to_string(value)?),
    }
    Ok(ExitCode::SUCCESS)
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
    runtime.block_on(async move {
        let shutdown = async {
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
        };
        switchyard::daemon::run(opts, shutdown).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `{files: [{filename, text}], who}` for a file or every resource file of a directory.
fn files_body(path: &std::path::Path, who: &str) -> anyhow::Result<Value> {
    let paths = load::resource_files(path)?;
    let mut files = Vec::new();
    for p in paths {
        let text = std::fs::read_to_string(&p)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))?;
        files.push(json!({"filename": p.display().to_string(), "text": text}));
    }
    if files.is_empty() {
        anyhow::bail!("no .yaml, .yml or .json file in {}", path.display());
    }
    Ok(json!({"files": files, "who": who}))
}

/// Prints a change's answer; unless `wait` is `None`, first waits until every
/// connected Envoy has ACKed it (`/v1/live`) and adds that as `live`. Exits
/// non-zero, naming each Envoy, if one NACKed or did not ACK in time.
fn change_and_wait(
    output: Output,
    client: &Client,
    result: Result<Value, ClientError>,
    wait: Option<std::time::Duration>,
    started: std::time::Instant,
) -> anyhow::Result<ExitCode> {
    let mut answer = match result {
        Ok(v) => v,
        Err(e) => return Ok(api_error(output, &e)),
    };
    let generation = answer["generation"].as_u64();
    let (Some(wait), Some(generation), true) = (wait, generation, answer["changed"] == json!(true))
    else {
        print(output, &answer, || human_change(&answer));
        return Ok(ExitCode::SUCCESS);
    };
    let timeout_ms = wait.as_millis().to_string();
    let live = client.get_with_timeout(
        "/v1/live",
        &[
            ("generation", generation.to_string().as_str()),
            ("timeoutMs", timeout_ms.as_str()),
        ],
        wait + std::time::Duration::from_secs(10),
    );
    let mut live = match live {
        Ok(v) => v,
        Err(e) => {
            print(output, &answer, || human_change(&answer));
            eprintln!("error: the change was applied, but whether it is live is unknown: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    live["elapsedMs"] = json!(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
    let complete = live["complete"] == json!(true);
    answer["live"] = live;
    print(output, &answer, || {
        format!(
            "{}
{}",
            human_change(&answer),
            human_live(&answer["live"])
        )
    });
    if complete {
        return Ok(ExitCode::SUCCESS);
    }
    if output == Output::Human {
        eprintln!(
            "error: not live on every Envoy within {}; the change itself stays applied (config version {})",
            format_duration(wait),
            text(&answer["version"])
        );
    }
    Ok(ExitCode::FAILURE)
}

/// One line per pull-mode Envoy: it has no ACK, only its last poll.
fn pulling_lines(pulling: &Value) -> Vec<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    pulling
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            format!(
                "  {}: pulling (last poll {} ms ago, config version {})",
                text(&p["id"]),
                now.saturating_sub(p["lastPollUnixMs"].as_u64().unwrap_or(0)),
                p["generation"]
            )
        })
        .collect()
}

fn format_duration(d: std::time::Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// `live on N/N Envoys in X ms`, then one line per Envoy that is not live and
/// per pulling Envoy.
fn human_live(live: &Value) -> String {
    let mut lines = vec![format!(
        "live on {}/{} Envoys in {} ms",
        live["live"], live["connected"], live["elapsedMs"]
    )];
    for e in live["envoys"].as_array().into_iter().flatten() {
        match e["state"].as_str() {
            Some("nacked") => lines.push(format!(
                "  {}: NACKed {} version {}: {}",
                text(&e["id"]),
                text(&e["kind"]),
                text(&e["version"]),
                text(&e["message"])
            )),
            Some("pending") => lines.push(format!(
                "  {}: did not ACK in time (waiting for {})",
                text(&e["id"]),
                e["waitingFor"]
                    .as_array()
                    .map(|k| k.iter().map(text).collect::<Vec<_>>().join(", "))
                    .unwrap_or_default()
            )),
            _ => {}
        }
    }
    lines.extend(pulling_lines(&live["pulling"]));
    lines.join("\n")
}

/// Prints an API answer (or error) and chooses the exit code.
fn call(
    output: Output,
    result: Result<Value, ClientError>,
    human: fn(&Value) -> String,
) -> anyhow::Result<ExitCode> {
    match result {
        Ok(v) => {
            print(output, &v, || human(&v));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(api_error(output, &e)),
    }
}

fn api_error(output: Output, e: &ClientError) -> ExitCode {
    match (output, e) {
        (Output::Human, ClientError::Api { body, message, .. }) => {
            eprintln!("error: {message}");
            for p in body["problems"].as_array().into_iter().flatten() {
                eprintln!("  {}", problem_line(p));
            }
        }
        (Output::Human, e) => eprintln!("error: {e}"),
        (_, ClientError::Api { body, .. }) => print(output, body, String::new),
        (_, e) => print(
            output,
            &json!({"error": "unreachable", "message": e.to_string()}),
            String::new,
        ),
    }
    ExitCode::FAILURE
}

/// `file:line:column: resource: field: reason`, as `validate` prints problems.
fn problem_line(p: &Value) -> String {
    let mut s = format!(
        "{}:{}:{}: ",
        p["file"].as_str().unwrap_or("?"),
        p["line"],
        p["column"]
    );
    for k in ["resource", "field"] {
        if let Some(v) = p[k].as_str() {
            s.push_str(v);
            s.push_str(": ");
        }
    }
    s.push_str(p["reason"].as_str().unwrap_or_default());
    s
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

fn human_change(v: &Value) -> String {
    let mut lines = Vec::new();
    for (key, verb) in [
        ("created", "created"),
        ("updated", "updated"),
        ("deleted", "deleted"),
    ] {
        for id in v[key].as_array().into_iter().flatten() {
            lines.push(format!("{verb} {}", text(id)));
        }
    }
    for r in v["releases"].as_array().into_iter().flatten() {
        lines.push(format!(
            "{}  [{} by {}]",
            release_line(r),
            text(&r["id"]),
            text(&r["who"])
        ));
    }
    for k in v["keys"].as_array().into_iter().flatten() {
        lines.push(format!("context key {}", text(k)));
    }
    for c in v["canary"].as_array().into_iter().flatten() {
        lines.push(format!("canary {}", text(c)));
    }
    let unchanged = v["unchanged"].as_array().map_or(0, Vec::len);
    if lines.is_empty() {
        lines.push("no change".into());
    } else if unchanged > 0 {
        lines.push(format!("{unchanged} unchanged"));
    }
    lines.push(format!("config version {}", text(&v["version"])));
    lines.join("\n")
}

fn release_line(r: &Value) -> String {
    let what = match r["action"].as_str() {
        Some("rollback") => "rolled back",
        Some("apply") => "applied release",
        _ => "released",
    };
    format!(
        "{what} {}: {} → {} (was {})",
        text(&r["virtualEnv"]),
        text(&r["app"]),
        r["deployment"].as_str().unwrap_or("(none)"),
        r["previous"].as_str().unwrap_or("(none)"),
    )
}

/// The new token alone on stdout (for `$(switchyard token create ...)`).
fn human_token(v: &Value) -> String {
    eprintln!(
        "created token '{}' with role {}; it is shown only now (stored as a hash)",
        text(&v["name"]),
        text(&v["role"])
    );
    text(&v["token"]).to_string()
}

fn human_tokens(v: &Value) -> String {
    v["tokens"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            format!(
                "{:<20} {:<8} created {}",
                text(&t["name"]),
                text(&t["role"]),
                text(&t["created"])
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn human_history(v: &Value) -> String {
    let records = v["history"].as_array().cloned().unwrap_or_default();
    if records.is_empty() {
        return "no releases yet".into();
    }
    records
        .iter()
        .map(|r| {
            format!(
                "{}  {:<12} {}  by {}",
                text(&r["at"]),
                text(&r["id"]),
                release_line(r),
                text(&r["who"])
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn human_status(v: &Value) -> String {
    let mut out = vec![format!(
        "config version {} ({} resources), context keys: {}",
        text(&v["version"]),
        v["resources"],
        v["contextKids"]
            .as_array()
            .map(|k| k.iter().map(text).collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    )];
    out.push("Releases".into());
    if v["releases"].as_array().is_none_or(Vec::is_empty) {
        out.push("  (none)".into());
    }
    for r in v["releases"].as_array().into_iter().flatten() {
        let apps: Vec<String> = r["apps"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(app, dep)| format!("{app} → {}", text(dep)))
            .collect();
        out.push(format!(
            "  {}/{}  {}  [{}]",
            text(&r["environment"]),
            text(&r["virtualEnv"]),
            if apps.is_empty() {
                "(no release)".to_string()
            } else {
                apps.join(", ")
            },
            r["id"].as_str().unwrap_or("-")
        ));
    }
    let canaries = v["canaries"].as_array().cloned().unwrap_or_default();
    out.push("Canaries".into());
    if canaries.is_empty() {
        out.push("  (none)".into());
    }
    for c in &canaries {
        out.push(format!(
            "  {}  {}/{} → {}  weight {}, {} match rules",
            text(&c["name"]),
            text(&c["virtualEnv"]),
            text(&c["app"]),
            text(&c["deployment"]),
            c["weight"].as_str().unwrap_or("0%"),
            c["matchRules"]
        ));
        if let Some(phase) = c["rollout"].as_str() {
            if let Some(last) = out.last_mut() {
                last.push_str(&format!(", rollout {phase} (`canary status`)"));
            }
        }
    }
    if let Some(replicas) = v["replicas"].as_array() {
        out.push("Replicas (etcd)".into());
        for r in replicas {
            out.push(format!(
                "  {}{}: xDS {}, API {}, config version {}, {} Envoys",
                text(&r["id"]),
                if r["leader"] == json!(true) {
                    " (leader)"
                } else {
                    ""
                },
                text(&r["xdsAddr"]),
                text(&r["apiAddr"]),
                r["generation"],
                r["envoys"]
            ));
        }
    }
    let envoys = v["envoys"].as_array().cloned().unwrap_or_default();
    out.push("Envoys".into());
    if envoys.is_empty() {
        out.push("  (none connected yet)".into());
    }
    for e in &envoys {
        out.push(format!(
            "  {} (cluster {}): {}{}",
            text(&e["id"]),
            text(&e["cluster"]),
            if e["connected"] == json!(true) {
                "connected"
            } else {
                "disconnected"
            },
            e["replica"]
                .as_str()
                .map(|r| format!(" to replica {r}"))
                .unwrap_or_default()
        ));
        let mut types = Vec::new();
        let mut nacks = Vec::new();
        for (kind, t) in e["types"].as_object().into_iter().flatten() {
            let acked = t["ackedVersion"].as_str().unwrap_or("-");
            let sent = t["sentVersion"].as_str().unwrap_or("-");
            if acked == sent {
                types.push(format!("{kind} {acked}"));
            } else {
                types.push(format!("{kind} {acked} (sent {sent})"));
            }
            if let Some(n) = t["lastNack"].as_object() {
                nacks.push(format!(
                    "    last NACK {kind} version {}: {}",
                    n.get("version").and_then(Value::as_str).unwrap_or("?"),
                    n.get("message").and_then(Value::as_str).unwrap_or("")
                ));
            }
        }
        out.push(format!("    ACKed: {}", types.join("  ")));
        out.extend(nacks);
    }
    out.extend(pulling_lines(&v["pulling"]));
    let refused = &v["tlsRefused"];
    if refused["total"].as_u64().unwrap_or(0) > 0 {
        out.push(format!(
            "TLS handshakes refused: {} (latest {})",
            refused["total"],
            refused["latest"].as_array().map_or(0, Vec::len)
        ));
        for r in refused["latest"]
            .as_array()
            .into_iter()
            .flatten()
            .rev()
            .take(5)
        {
            out.push(format!(
                "  {} from {}: {}",
                text(&r["listener"]),
                text(&r["peer"]),
                text(&r["reason"])
            ));
        }
    }
    out.join("\n")
}
