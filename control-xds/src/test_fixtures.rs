//! Resource files shared by the control plane's unit tests.

/// An Environment `dev` whose VE `team-a` releases `web-v1` (component `frontend`).
pub const WEB_V1: &str = "\
kind: Environment
metadata: {name: dev}
spec: {subPath: dev, defaultVirtualEnvironment: team-a}
---
kind: VirtualEnvironment
metadata: {name: team-a}
spec:
  environment: dev
  release: {apps: {web: web-v1}}
---
kind: AppDeployment
metadata: {name: web-v1}
spec:
  app: web
  version: v1
  components:
    frontend:
      version: f1
      endpoints: [\"127.0.0.1:9101\"]
      routes: [{match: {pathPrefix: /hello}}]
";

/// A second deployment of `web`, another frontend version.
pub const WEB_V2: &str = "\
kind: AppDeployment
metadata: {name: web-v2}
spec:
  app: web
  version: v2
  components:
    frontend:
      version: f2
      endpoints: [\"127.0.0.1:9102\"]
      routes: [{match: {pathPrefix: /hello}}]
";

/// A running control plane (no Envoy, no state directory) over `text`, resource
/// documents as one file would hold them, with one context key `k1`.
pub fn plane_with(text: &str) -> crate::serve::ControlPlane {
    let docs = crate::load::parse_text(std::path::Path::new("r.yaml"), text).unwrap();
    let (mut store, _) = crate::state::Store::new().apply(&docs, "t").unwrap();
    store.context_keys = vec![crate::state::generate_context_key("k1").unwrap()];
    crate::serve::ControlPlane::start(
        store,
        crate::xds::SnapshotCache::new(),
        build_options(),
        None,
    )
    .unwrap()
}

/// web-v1 released in team-a, and web-v2 published.
pub fn web_v1_and_v2() -> String {
    format!("{WEB_V1}---\n{WEB_V2}")
}

/// The snapshot builder's options of the unit tests: genesis on 127.0.0.1:8080,
/// no internal listener, the filter at `/filter.wasm`.
pub fn build_options() -> crate::snapshot_builder::BuildOptions {
    crate::snapshot_builder::BuildOptions {
        wasm_path: "/filter.wasm".into(),
        native_path: None,
        genesis_listen: ("127.0.0.1".into(), 8080),
        internal_listen: None,
        context_keys: Vec::new(),
    }
}
