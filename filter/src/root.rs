//! The root context: compiles the plugin configuration and hands the index to
//! every request's context.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use switchyard_engine::Index;

use crate::http::RequestContext;
use crate::metrics::Metrics;

#[derive(Default)]
pub struct SwitchyardRoot {
    index: Option<Rc<Index>>,
    metrics: Rc<Metrics>,
    metrics_defined: bool,
}

impl Context for SwitchyardRoot {}

impl RootContext for SwitchyardRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        if !self.metrics_defined {
            self.metrics = Rc::new(Metrics::define());
            self.metrics_defined = true;
        }
        let bytes = match crate::host::plugin_configuration() {
            Ok(Some(b)) => b,
            Ok(None) => Vec::new(),
            Err(e) => {
                log::error!("switchyard: configuration refused: {e}");
                return false;
            }
        };
        let text = String::from_utf8_lossy(&bytes);
        match Index::from_json(&text) {
            Ok(index) => {
                log::info!(
                    "switchyard: configuration accepted ({} clusters)",
                    index.clusters().len()
                );
                self.index = Some(Rc::new(index));
                self.metrics.new_index();
                true
            }
            Err(e) => {
                // Returning false makes Envoy keep the last good configuration.
                log::error!("switchyard: configuration refused: {e}");
                self.metrics.config_rejected();
                false
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
