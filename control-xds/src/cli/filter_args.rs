//! The arguments that say which build of the filter Envoy loads, shared by
//! `serve` and `render envoy`.

use crate::native_filter::FilterBuild;

#[derive(clap::Args, Debug, Clone)]
pub struct FilterArgs {
    /// Path of switchyard_filter.wasm as Envoy will see it.
    #[arg(
        long,
        default_value = "target/wasm32-wasip1/release/switchyard_filter.wasm"
    )]
    pub wasm: String,
    /// Which build of the filter Envoy loads: the proxy-wasm filter or the
    /// native Envoy dynamic module (README "The native filter").
    #[arg(long, value_enum, default_value = "wasm")]
    pub filter: FilterBuild,
    /// Path of libswitchyard_native.so as Envoy will see it (--filter native;
    /// scripts/build-native.sh builds it).
    #[arg(long, default_value = crate::native_filter::DEFAULT_NATIVE_PATH)]
    pub native: String,
}

impl FilterArgs {
    pub fn is_native(&self) -> bool {
        self.filter == FilterBuild::Native
    }

    /// The native module's path when the native build is chosen.
    pub fn native_path(&self) -> Option<String> {
        self.is_native().then(|| self.native.clone())
    }
}
