//! The local verbs that write configuration for a proxy: `render envoy`,
//! `render istio` and `package` (the filter as an OCI image).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use switchyard_engine::{PluginConfig, Settings};

use super::filter_args::FilterArgs;
use super::output::{print, print_document, report, write_stdout, Output};
use crate::bootstrap::{AdsBootstrap, XdsTls};
use crate::load;
use crate::render::{render_envoy, RenderOptions};

// Parsed once per process: the size of the larger variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum RenderCommand {
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
pub enum RenderTarget {
    /// A static Envoy bootstrap with the filter and the resources inline; or,
    /// with --ads, the bootstrap of an Envoy that gets everything over ADS.
    Envoy(EnvoyArgs),
    /// Istio objects: WasmPlugins (or EnvoyFilters), the VirtualServices and
    /// DestinationRules pinning component versions as subsets, what pull mode
    /// needs. Multi-document YAML in a stable order.
    Istio(IstioArgs),
}

#[derive(clap::Args)]
pub struct EnvoyArgs {
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
    #[command(flatten)]
    filter: FilterArgs,
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
}

#[derive(clap::Args)]
pub struct IstioArgs {
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
    via: crate::istio::Via,
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
}

impl RenderCommand {
    pub fn run(self, output: Output) -> anyhow::Result<ExitCode> {
        match self {
            RenderCommand::Render {
                target: RenderTarget::Envoy(a),
            } => render_envoy_bootstrap(output, a),
            RenderCommand::Render {
                target: RenderTarget::Istio(a),
            } => render_istio(output, a),
            RenderCommand::Package { wasm, out, tag } => package(output, &wasm, &out, &tag),
        }
    }
}

/// `host:port` (an IPv6 host in brackets).
pub fn addr(s: &str) -> anyhow::Result<(String, u16)> {
    let (h, p) = s
        .rsplit_once(':')
        .ok_or_else(|| anyhow::anyhow!("'{s}' is not host:port"))?;
    Ok((h.trim_matches(['[', ']']).to_string(), p.parse()?))
}

/// A token file's token (trimmed).
fn read_token(path: Option<&Path>) -> anyhow::Result<Option<String>> {
    path.map(|p| {
        std::fs::read_to_string(p)
            .map(|t| t.trim().to_string())
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))
    })
    .transpose()
}

fn render_envoy_bootstrap(output: Output, a: EnvoyArgs) -> anyhow::Result<ExitCode> {
    let (Some(config), None) = (&a.config, &a.ads) else {
        let value = crate::bootstrap::render(&AdsBootstrap {
            ads: (a.ads.as_deref().unwrap_or_default().split(','))
                .map(addr)
                .collect::<Result<_, _>>()?,
            admin: addr(&a.admin)?,
            node_id: a.node_id.unwrap_or_else(|| "switchyard-envoy".into()),
            tls: a.xds_tls.then(|| XdsTls {
                ca: a.xds_ca.unwrap_or_default(),
                client_cert: a.xds_cert.zip(a.xds_key),
            }),
            delta: a.delta,
        });
        return print_document(output, &value);
    };
    let (docs, index) = match load::load_and_compile(config) {
        Ok(loaded) => loaded,
        Err(e) => return Ok(report(output, &e)),
    };
    let mut settings = Settings::default();
    if a.internal_listen.is_some() {
        settings.context_keys = vec![crate::context_keys::generate_context_key("render-1")?];
    }
    if let Some(api) = &a.pull_from {
        settings.pull = Some(switchyard_engine::config::PullSettings {
            cluster: crate::render::PULL_CLUSTER.to_string(),
            authority: Some(api.clone()),
            path: "/v1/config".into(),
            interval_ms: 1000,
            token: read_token(a.pull_token_file.as_deref())?,
        });
    }
    let plugin = PluginConfig {
        settings,
        resources: docs.into_iter().map(|d| d.resource).collect(),
    };
    if a.filter.is_native() && a.pull_from.is_some() {
        anyhow::bail!(
            "--filter native has no pull mode (--pull-from): pull mode shares the pulled \
             table between Envoy's workers through proxy-wasm shared data; use \
             --filter wasm for pull mode"
        );
    }
    let opts = RenderOptions {
        wasm_path: a.filter.wasm.clone(),
        native_path: a.filter.native_path(),
        listen: addr(&a.listen)?,
        admin: addr(&a.admin)?,
        internal_listen: a.internal_listen.as_deref().map(addr).transpose()?,
        pull_from: a.pull_from.as_deref().map(addr).transpose()?,
        node_id: a.node_id.unwrap_or_else(|| "switchyard-static".into()),
    };
    let mut value = render_envoy(&plugin, &index, &opts);
    if let (Some(ca), Some((host, _))) = (&a.pull_ca, &opts.pull_from) {
        let tls = XdsTls {
            ca: ca.clone(),
            client_cert: a.pull_cert.zip(a.pull_key),
        };
        crate::bootstrap::pull_over_tls(&mut value, &tls, host);
    }
    print_document(output, &value)
}

/// `--pull-from SVC:PORT`.
fn service_port(p: &str) -> anyhow::Result<(String, u16)> {
    match p.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() => port
            .parse::<u16>()
            .map(|port| (host.to_string(), port))
            .map_err(|_| anyhow::anyhow!("--pull-from {p}: the port is not a number")),
        _ => Err(anyhow::anyhow!("--pull-from must be SVC:PORT")),
    }
}

fn render_istio(output: Output, a: IstioArgs) -> anyhow::Result<ExitCode> {
    let (docs, index) = match load::load_and_compile(&a.config) {
        Ok(loaded) => loaded,
        Err(e) => return Ok(report(output, &e)),
    };
    let gateway_selector = (a.gateway_selector.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| anyhow::anyhow!("--gateway-selector must be key=value"))?;
    let context_key = match &a.context_key_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
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
    let opts = crate::istio::IstioOptions {
        namespace: a.namespace,
        gateway_namespace: a.gateway_namespace,
        gateway_selector,
        gateway: a.gateway,
        version_label: a.version_label,
        pull_from: a.pull_from.as_deref().map(service_port).transpose()?,
        via: a.via,
        url: a.url,
        sha256: a.sha256,
        context_key,
        pull_token: read_token(a.pull_token_file.as_deref())?,
    };
    let objects = crate::istio::render_istio(&plugin, &index, &opts)?;
    let table = serde_json::to_vec(&plugin.resources)?.len();
    if table > crate::istio::INLINE_LIMIT {
        eprintln!(
            "note: the routing table is {table} bytes, above the {}-byte inline limit: the plugins carry none and pull it from {}",
            crate::istio::INLINE_LIMIT,
            opts.pull_from.as_ref().map(|(h, p)| format!("{h}:{p}")).unwrap_or_default()
        );
    }
    if opts.context_key.is_none() && opts.pull_from.is_none() {
        eprintln!(
            "note: no --context-key-file or --pull-from: no kf-context is issued and no sidecar plugin is rendered (component-to-component calls get 503 cluster_not_ready)"
        );
    }
    match output {
        Output::Json => write_stdout(&format!("{}\n", serde_json::to_string_pretty(&objects)?)),
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

fn package(output: Output, wasm: &Path, out: &Path, tag: &str) -> anyhow::Result<ExitCode> {
    let p = crate::package::package(wasm, out, tag)?;
    print(output, &p, || {
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
