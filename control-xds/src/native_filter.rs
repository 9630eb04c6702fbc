//! The native build of the filter (`filter/native`, an Envoy dynamic module)
//! as Envoy loads it: its HTTP filter entry for `render envoy` (JSON) and its
//! ECDS resource for `serve` (protobuf). Which build a deployment runs is the
//! `--filter wasm|native` setting; the plugin configuration is the same JSON
//! for both, passed as a `StringValue`.
//!
//! The module is loaded by file path (`module.local.filename`) and never
//! unloaded (`do_not_close`): it keeps per-worker buffers in thread-locals.

use envoy_types::pb::envoy::config::core::v3::TypedExtensionConfig;
use envoy_types::pb::envoy::config::core::v3::{
    async_data_source, data_source, AsyncDataSource, DataSource,
};
use envoy_types::pb::envoy::extensions::dynamic_modules::v3::DynamicModuleConfig;
use envoy_types::pb::envoy::extensions::filters::http::dynamic_modules::v3::DynamicModuleFilter;
use envoy_types::pb::google::protobuf::StringValue;
use serde_json::{json, Value};

use crate::xds::to_any;

/// Which build of the filter Envoy loads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum FilterBuild {
    /// The proxy-wasm filter (`switchyard_filter.wasm`), in Envoy's V8.
    #[default]
    Wasm,
    /// The Envoy dynamic module (`libswitchyard_native.so`), loaded into Envoy's
    /// process: about half the cost per request; no pull mode (README).
    Native,
}

/// Where `cargo`/`scripts/build-native.sh` leave the native filter.
pub const DEFAULT_NATIVE_PATH: &str = "target/native/libswitchyard_native.so";

/// The type URL of the native filter's configuration.
pub const FILTER_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter";

/// The HTTP filter entry of the native filter with an inline plugin configuration.
pub fn native_filter(name: &str, module_path: &str, plugin_config: &str) -> Value {
    json!({
        "name": name,
        "typed_config": {
            "@type": FILTER_TYPE,
            "dynamic_module_config": {
                "module": {"local": {"filename": module_path}},
                "do_not_close": true
            },
            "filter_name": name,
            "filter_config": {
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": plugin_config
            }
        }
    })
}

/// The ECDS resource of one filter: the native filter with its plugin
/// configuration (JSON) as a `StringValue`.
pub fn native_extension(
    name: &str,
    module_path: &str,
    plugin_config: &str,
) -> TypedExtensionConfig {
    let filter = DynamicModuleFilter {
        dynamic_module_config: Some(DynamicModuleConfig {
            do_not_close: true,
            module: Some(AsyncDataSource {
                specifier: Some(async_data_source::Specifier::Local(DataSource {
                    specifier: Some(data_source::Specifier::Filename(module_path.to_string())),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        }),
        filter_name: name.to_string(),
        filter_config: Some(to_any(&StringValue {
            value: plugin_config.to_string(),
        })),
        terminal_filter: false,
    };
    TypedExtensionConfig {
        name: name.to_string(),
        typed_config: Some(to_any(&filter)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn ecds_resource_carries_the_module_path_and_the_plugin_configuration() {
        let ext = native_extension("switchyard", "/opt/libswitchyard_native.so", "{\"a\":1}");
        let any = ext.typed_config.unwrap_or_default();
        assert_eq!(any.type_url, FILTER_TYPE);
        let filter = DynamicModuleFilter::decode(any.value.as_slice()).unwrap_or_default();
        assert_eq!(filter.filter_name, "switchyard");
        let module = filter.dynamic_module_config.unwrap_or_default();
        assert!(module.do_not_close);
        let Some(async_data_source::Specifier::Local(local)) =
            module.module.and_then(|m| m.specifier)
        else {
            unreachable!("the module is a local file");
        };
        assert_eq!(
            local.specifier,
            Some(data_source::Specifier::Filename(
                "/opt/libswitchyard_native.so".into()
            ))
        );
        let config = filter.filter_config.unwrap_or_default();
        let config = StringValue::decode(config.value.as_slice()).unwrap_or_default();
        assert_eq!(config.value, "{\"a\":1}");
    }

    #[test]
    fn json_entry_matches_the_ecds_resource() {
        let v = native_filter("switchyard", "/m.so", "{}");
        assert_eq!(v["typed_config"]["@type"], FILTER_TYPE);
        assert_eq!(
            v["typed_config"]["dynamic_module_config"]["module"]["local"]["filename"],
            "/m.so"
        );
        assert_eq!(v["typed_config"]["filter_config"]["value"], "{}");
    }
}
