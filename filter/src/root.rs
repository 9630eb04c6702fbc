//! The root context: compiles the plugin configuration and hands the index to
//! every request's context. In pull mode it also polls the control plane.
//!
//! Pull mode (DESIGN.md "Configuration delivery", for Istio): every worker VM has
//! its own root context, so the table is shared through Envoy's shared data. On
//! each tick a VM (1) applies the shared configuration if it changed, and (2)
//! tries to take the poll lease with a compare-and-swap; only the VM that wins
//! fetches `GET /v1/config` and publishes the answer for all. A configuration that
//! does not compile is refused and the last good one stays.

use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use switchyard_engine::config::PullSettings;
use switchyard_engine::{Index, PluginConfig};

use crate::http::RequestContext;
use crate::metrics::Metrics;

/// Shared-data keys of pull mode.
const PULLED_CONFIG: &str = "switchyard.pull.config";
const POLL_LEASE: &str = "switchyard.pull.lease";

#[derive(Default)]
pub struct SwitchyardRoot {
    index: Option<Rc<Index>>,
    metrics: Rc<Metrics>,
    metrics_defined: bool,
    /// The plugin configuration as Envoy gave it (the pull settings live here).
    local: Option<PluginConfig>,
    /// The shared-data version of the pulled configuration last looked at.
    pulled_cas: Option<u32>,
}

impl SwitchyardRoot {
    /// Compiles `config`; on success it becomes the routing table.
    fn install(&mut self, config: &PluginConfig, origin: &str) -> bool {
        match Index::compile(config) {
            Ok(index) => {
                log::info!(
                    "switchyard: {origin} configuration accepted ({} clusters)",
                    index.clusters().len()
                );
                self.index = Some(Rc::new(index));
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

    /// Applies the shared pulled configuration if another VM (or this one) changed it.
    fn apply_shared(&mut self) {
        let Ok((Some(bytes), cas)) = hostcalls::get_shared_data(PULLED_CONFIG) else {
            return;
        };
        if cas.is_some() && cas == self.pulled_cas {
            return;
        }
        self.pulled_cas = cas;
        let Some(local) = self.local.clone() else {
            return;
        };
        match serde_json::from_slice::<PluginConfig>(&bytes) {
            Ok(pulled) => {
                self.install(&local.with_pulled(pulled), "pulled");
            }
            Err(e) => {
                log::error!("switchyard: pulled configuration refused: {e}");
                self.metrics.config_rejected();
            }
        }
    }

    /// Takes the poll lease if it is free or stale; true if this VM should poll.
    fn take_lease(&self, interval: Duration) -> bool {
        let now = crate::host::now_unix_millis();
        let Ok((lease, cas)) = hostcalls::get_shared_data(POLL_LEASE) else {
            return false;
        };
        let taken_at = lease
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        if now.saturating_sub(taken_at) < interval.as_millis() as u64 {
            return false;
        }
        hostcalls::set_shared_data(POLL_LEASE, Some(now.to_string().as_bytes()), cas).is_ok()
    }

    fn poll(&self, pull: &PullSettings) {
        let authority = pull.authority.as_deref().unwrap_or(&pull.cluster);
        let headers = vec![
            (":method", "GET"),
            (":path", pull.path.as_str()),
            (":authority", authority),
        ];
        let timeout = Duration::from_millis(pull.interval_ms.clamp(100, 10_000));
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
                let unchanged = matches!(
                    hostcalls::get_shared_data(PULLED_CONFIG),
                    Ok((Some(current), _)) if current == body
                );
                if !unchanged
                    && hostcalls::set_shared_data(PULLED_CONFIG, Some(&body), None).is_err()
                {
                    log::warn!("switchyard: could not share the pulled configuration");
                }
                self.metrics.pull_ok();
                self.apply_shared();
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
        let config = match serde_json::from_slice::<PluginConfig>(&bytes) {
            Ok(c) => c,
            Err(e) => {
                // Returning false makes Envoy keep the last good configuration.
                log::error!(
                    "switchyard: configuration refused: {}",
                    switchyard_engine::ConfigError::from(e)
                );
                self.metrics.config_rejected();
                return false;
            }
        };
        if !self.install(&config, "plugin") {
            return false;
        }
        let pull_interval = config.settings.pull.as_ref().map(|p| p.interval_ms);
        self.local = Some(config);
        self.pulled_cas = None;
        if let Some(ms) = pull_interval {
            // The shared table may already be newer than the inline resources.
            self.apply_shared();
            if let Err(status) =
                hostcalls::set_tick_period(Duration::from_millis(ms.clamp(100, 60_000) / 2))
            {
                log::error!("switchyard: cannot poll: set_tick_period failed: {status:?}");
            }
        }
        true
    }

    fn on_tick(&mut self) {
        self.apply_shared();
        if let Some(pull) = self.pull_settings().cloned() {
            if self.take_lease(Duration::from_millis(pull.interval_ms)) {
                self.poll(&pull);
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(RequestContext::new(
            self.index.clone(),
            self.metrics.clone(),
        )))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
