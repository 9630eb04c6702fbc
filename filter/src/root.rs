//! The root context: compiles the plugin configuration and hands the table to
//! every request's context. In pull mode it also polls the control plane.
//!
//! Pull mode (DESIGN.md "Configuration delivery", for Istio): every worker VM has
//! its own root context, so the pulled table is shared through Envoy's shared data
//! under two keys: the table itself (`switchyard.pull.config`, the answer of
//! `GET /v1/config`) and a small version key (`switchyard.pull.version`, a sequence
//! number) that a publisher rewrites *after* every table it writes. Every VM ticks
//! every [`WATCH_TICK`] (100 ms, independent of `intervalMs`) and
//! 1. reads the version key — a few bytes — and only when its CAS changed reads
//!    the table and compiles it (unless the table's own CAS is the one it already
//!    compiled); a table that does not compile is refused, counted in
//!    `switchyard.config_rejected`, and the last good one stays;
//! 2. tries to take the poll lease (`switchyard.pull.lease`, a timestamp) by
//!    compare-and-swap once it is `intervalMs` old; only the winner polls, and on
//!    a 200 whose body differs from the shared table it publishes (table, then
//!    version) and installs it at once.
//!
//! Two VMs publishing at once: the table key ends with the last table written,
//! and the version key is written after each write, so its CAS changes after the
//! last table write; every VM reads the table after seeing that change, so all
//! converge on the same (last written) table. The poll timeout is 3/4 of
//! `intervalMs`, so a slow answer is dropped before the lease passes to another VM
//! and cannot overwrite a newer table with an older one.
//!
//! Bound (README, Pull): once one VM routes by a new table, every VM does within
//! 300 ms — one watch tick, the compile, and scheduling slack on a loaded machine
//! (a large table adds its compile time). Measured first → last VM: 3–104 ms with
//! `--concurrency 2` and 4, idle and beside 2–4 CPU-burning loops on 2 cores;
//! `tests/e2e/test_pull.py` asserts the 300 ms.
//!
//! The keys are namespaced by the plugin's name (`<plugin>/switchyard.pull.*`):
//! shared data is per VM id, and Istio gives every WasmPlugin an empty VM id, so
//! two Switchyard plugins on one proxy (gateway and sidecar, or two teams) would
//! otherwise share — and overwrite — one table.
//!
//! A pulled table may name clusters the static bootstrap lacks (it was rendered
//! from the inline table): they are found once per installed table
//! ([`UnreadyClusters`]) and requests routed to them get 503 `cluster_not_ready`.

use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use switchyard_engine::config::PullSettings;
use switchyard_engine::{KnownClusters, PluginConfig};
use switchyard_plugin::Table;

use crate::http::RequestContext;
use crate::metrics::Metrics;

/// Shared-data keys of pull mode, namespaced by the plugin's name.
#[derive(Default)]
struct SharedKeys {
    config: String,
    version: String,
    lease: String,
}

impl SharedKeys {
    fn of(plugin: &str) -> Self {
        Self {
            config: format!("{plugin}/switchyard.pull.config"),
            version: format!("{plugin}/switchyard.pull.version"),
            lease: format!("{plugin}/switchyard.pull.lease"),
        }
    }
}

/// How often every VM looks at the version key (and at the poll lease).
pub const WATCH_TICK: Duration = Duration::from_millis(100);

#[derive(Default)]
pub struct SwitchyardRoot {
    table: Option<Rc<Table>>,
    metrics: Rc<Metrics>,
    metrics_defined: bool,
    /// The plugin configuration as Envoy gave it (the pull settings live here).
    local: Option<PluginConfig>,
    /// The clusters of the plugin configuration's table: those the bootstrap has.
    known: KnownClusters,
    /// `node.id`, sent with every poll as `x-switchyard-node`.
    node_id: Option<String>,
    /// The pull-role API token sent with every poll (settings, else the VM's
    /// `SWITCHYARD_PULL_TOKEN`); never logged.
    pull_token: Option<String>,
    /// CAS of the version key when this VM last looked at it.
    seen_version: Option<u32>,
    /// CAS of the shared table this VM last compiled (or refused).
    applied_config: Option<u32>,
    /// Pull mode's shared-data keys.
    keys: SharedKeys,
}

impl SwitchyardRoot {
    /// Compiles `config`; on success it becomes the routing table. A pulled table
    /// may name clusters the bootstrap lacks: they are found here, once.
    fn install(&mut self, config: &PluginConfig, origin: &str, pulled: bool) -> bool {
        match Table::compile(config, pulled, &self.known) {
            Ok(table) => {
                log::info!(
                    "switchyard: {origin} configuration accepted ({} clusters, {} not ready)",
                    table.index.clusters().len(),
                    table.unready.len()
                );
                self.table = Some(Rc::new(table));
                self.metrics.new_index();
                true
            }
            Err(e) => {
                log::error!("switchyard: {origin} configuration refused: {e}");
                self.metrics.config_rejected();
                false
            }
        }
    }

    fn pull_settings(&self) -> Option<&PullSettings> {
        self.local.as_ref()?.settings.pull.as_ref()
    }

    /// Applies the shared pulled table if a VM published one since the last look.
    /// The usual case — nothing new — reads only the small version key.
    fn apply_shared(&mut self) {
        let Ok((Some(version), version_cas)) = hostcalls::get_shared_data(&self.keys.version)
        else {
            return;
        };
        if version_cas.is_some() && version_cas == self.seen_version {
            return;
        }
        self.seen_version = version_cas;
        let Ok((Some(bytes), config_cas)) = hostcalls::get_shared_data(&self.keys.config) else {
            return;
        };
        if config_cas.is_some() && config_cas == self.applied_config {
            return;
        }
        self.applied_config = config_cas;
        let Some(local) = self.local.clone() else {
            return;
        };
        let origin = format!("pulled (#{})", String::from_utf8_lossy(&version));
        match serde_json::from_slice::<PluginConfig>(&bytes) {
            Ok(pulled) => {
                self.install(&local.with_pulled(pulled), &origin, true);
            }
            Err(e) => {
                log::error!("switchyard: {origin} configuration refused: {e}");
                self.metrics.config_rejected();
            }
        }
    }

    /// Shares a polled table with every VM: the table, then a new version.
    fn publish(&self, body: &[u8]) {
        let unchanged = matches!(
            hostcalls::get_shared_data(&self.keys.config),
            Ok((Some(current), _)) if current == body
        );
        if unchanged {
            return;
        }
        if let Err(status) = hostcalls::set_shared_data(&self.keys.config, Some(body), None) {
            log::warn!("switchyard: could not share the pulled configuration: {status:?}");
            return;
        }
        let next = match hostcalls::get_shared_data(&self.keys.version) {
            Ok((Some(v), _)) => String::from_utf8_lossy(&v).parse::<u64>().unwrap_or(0) + 1,
            _ => 1,
        };
        if let Err(status) =
            hostcalls::set_shared_data(&self.keys.version, Some(next.to_string().as_bytes()), None)
        {
            log::warn!("switchyard: could not share the pulled version: {status:?}");
        }
    }

    /// Takes the poll lease if it is free or stale; true if this VM should poll.
    fn take_lease(&self, interval: Duration) -> bool {
        let now = crate::host::now_unix_millis();
        let Ok((lease, cas)) = hostcalls::get_shared_data(&self.keys.lease) else {
            return false;
        };
        let taken_at = lease
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        if now.saturating_sub(taken_at) < interval.as_millis() as u64 {
            return false;
        }
        hostcalls::set_shared_data(&self.keys.lease, Some(now.to_string().as_bytes()), cas).is_ok()
    }

    fn poll(&self, pull: &PullSettings) {
        let authority = pull.authority.as_deref().unwrap_or(&pull.cluster);
        let mut headers = vec![
            (":method", "GET"),
            (":path", pull.path.as_str()),
            (":authority", authority),
        ];
        if let Some(node) = &self.node_id {
            headers.push(("x-switchyard-node", node.as_str()));
        }
        let authorization = self.pull_token.as_ref().map(|t| format!("Bearer {t}"));
        if let Some(a) = &authorization {
            headers.push(("authorization", a.as_str()));
        }
        // Shorter than the lease: a late answer never lands after the next poll's.
        let timeout = Duration::from_millis((pull.interval_ms * 3 / 4).clamp(50, 10_000));
        if let Err(status) =
            hostcalls::dispatch_http_call(&pull.cluster, headers, None, vec![], timeout)
        {
            log::warn!("switchyard: poll of {} failed: {status:?}", pull.cluster);
            self.metrics.pull_failed();
        }
    }
}

impl Context for SwitchyardRoot {
    fn on_http_call_response(
        &mut self,
        _token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let status = hostcalls::get_map_value(
            proxy_wasm::types::MapType::HttpCallResponseHeaders,
            ":status",
        )
        .ok()
        .flatten();
        let body = hostcalls::get_buffer(
            proxy_wasm::types::BufferType::HttpCallResponseBody,
            0,
            body_size,
        )
        .ok()
        .flatten();
        match (status.as_deref(), body) {
            (Some("200"), Some(body)) => {
                self.publish(&body);
                self.metrics.pull_ok();
                self.apply_shared();
            }
            (Some(status @ ("401" | "403")), _) => {
                // A missing or wrong credential: the last good table stays.
                log::warn!(
                    "switchyard: poll refused ({status}): the pull token is missing, wrong or \
                     not of the pull role"
                );
                self.metrics.pull_failed();
            }
            (status, _) => {
                log::warn!("switchyard: poll answered {status:?}");
                self.metrics.pull_failed();
            }
        }
    }
}

impl RootContext for SwitchyardRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        if !self.metrics_defined {
            self.metrics = Rc::new(Metrics::define());
            self.metrics_defined = true;
        }
        let bytes = match crate::host::plugin_configuration() {
            Ok(b) => b.unwrap_or_default(),
            Err(e) => {
                log::error!("switchyard: configuration refused: {e}");
                return false;
            }
        };
        let config = match switchyard_plugin::parse_config(&bytes) {
            Ok(c) => c,
            Err(e) => {
                // Returning false makes Envoy keep the last good configuration.
                log::error!("switchyard: configuration refused: {e}");
                self.metrics.config_rejected();
                return false;
            }
        };
        if !self.install(&config, "plugin", false) {
            return false;
        }
        self.known = self
            .table
            .as_ref()
            .map(|t| KnownClusters::of(&t.index))
            .unwrap_or_default();
        let pull = config.settings.pull.is_some();
        self.pull_token = config.settings.pull.as_ref().and_then(|p| {
            p.token.clone().or_else(|| {
                std::env::var(switchyard_engine::config::PULL_TOKEN_ENV)
                    .ok()
                    .filter(|t| !t.trim().is_empty())
            })
        });
        self.local = Some(config);
        self.seen_version = None;
        self.applied_config = None;
        if pull {
            self.node_id = crate::host::node_id();
            let plugin = crate::host::plugin_name();
            self.keys = SharedKeys::of(plugin.as_deref().unwrap_or("switchyard"));
            // The shared table may already be newer than the inline resources.
            self.apply_shared();
            if let Err(status) = hostcalls::set_tick_period(WATCH_TICK) {
                log::error!("switchyard: cannot poll: set_tick_period failed: {status:?}");
            }
        }
        true
    }

    fn on_tick(&mut self) {
        self.apply_shared();
        if let Some(pull) = self.pull_settings() {
            if self.take_lease(Duration::from_millis(pull.interval_ms)) {
                self.poll(pull);
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(RequestContext::new(
            self.table.clone(),
            self.metrics.clone(),
        )))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
