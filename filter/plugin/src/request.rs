//! One request: ask the engine where the request goes, then apply the decision
//! through the host (headers, route cache, local reply), and at the response the
//! headers the decision asked for.

use std::fmt::Display;

use switchyard_engine::{Decision, ErrorCode, Index, Mode, Request, RouteError};

use crate::Table;

/// The host calls the plugin logic makes. Every call that can fail returns an
/// error the logic logs through [`Host::warn`]; none is fatal.
pub trait Host {
    type Error: Display;
    /// Sets (`Some`) or removes (`None`) a request header.
    fn set_request_header(&mut self, name: &str, value: Option<&str>) -> Result<(), Self::Error>;
    /// Adds a response header (response phase).
    fn add_response_header(&mut self, name: &str, value: &str) -> Result<(), Self::Error>;
    /// Makes Envoy pick the route again now that the cluster header is set.
    fn clear_route_cache(&mut self) -> Result<(), Self::Error>;
    /// Answers the request locally with a JSON body.
    fn send_json(&mut self, status: u32, body: &str) -> Result<(), Self::Error>;
    /// `source.address` of the downstream connection, `ip:port`.
    fn source_address(&mut self) -> Option<String>;
    fn now_unix_seconds(&mut self) -> u64;
    fn warn(&mut self, message: &dyn Display);
    /// Counts a routed request.
    fn routed(&mut self, decision: &Decision<'_, '_>);
    /// Counts a refused request.
    fn refused(&mut self, code: ErrorCode);
}

/// What the response must carry, remembered from the request phase: the
/// deployment, VE and component version in one `String` (one allocation).
pub struct ResponseHeaders {
    values: String,
    /// Where the VE and the component version start in `values`.
    cuts: (usize, usize),
    set_cookie: Option<String>,
}

impl ResponseHeaders {
    fn new(d: &Decision<'_, '_>) -> Self {
        let mut values = String::with_capacity(
            d.deployment.len() + d.virtual_env.len() + d.component_version.len(),
        );
        values.push_str(d.deployment);
        let ve_at = values.len();
        values.push_str(d.virtual_env);
        let version_at = values.len();
        values.push_str(d.component_version);
        Self {
            values,
            cuts: (ve_at, version_at),
            set_cookie: d.set_cookie.clone(),
        }
    }

    /// (deployment, virtual env, component version).
    fn parts(&self) -> (&str, &str, &str) {
        let (ve_at, version_at) = self.cuts;
        (
            self.values.get(..ve_at).unwrap_or(""),
            self.values.get(ve_at..version_at).unwrap_or(""),
            self.values.get(version_at..).unwrap_or(""),
        )
    }
}

/// How the request phase ended.
pub enum Outcome {
    /// Let the request through; the response phase adds these headers, if any.
    Continue(Option<ResponseHeaders>),
    /// The request was answered locally (an error): stop the filter chain.
    Refused,
}

/// Refuses the request with `error`'s status and JSON body.
pub fn refuse<H: Host>(host: &mut H, error: &RouteError) -> Outcome {
    host.refused(error.code);
    if let Err(e) = host.send_json(error.code.status(), &error.body()) {
        host.warn(&e);
    }
    Outcome::Refused
}

/// Refuses a request when no configuration was ever accepted.
pub fn refuse_unconfigured<H: Host>(host: &mut H) -> Outcome {
    refuse(
        host,
        &RouteError::new(
            ErrorCode::EnvironmentNotFound,
            "no routing configuration loaded",
        ),
    )
}

/// Routes one request whose header map the host has read into `headers`.
pub fn route_request<H: Host>(
    host: &mut H,
    table: &Table,
    headers: &[(String, String)],
) -> Outcome {
    let index = &table.index;
    let pseudo = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    };
    let source = if index.needs_source_address() {
        host.source_address()
    } else {
        None
    };
    let request = Request {
        method: pseudo(":method"),
        path: pseudo(":path"),
        headers,
        source_address: source.as_deref(),
        now_unix_seconds: if index.needs_clock() {
            host.now_unix_seconds()
        } else {
            0
        },
    };
    let routed = match index.settings().mode {
        Mode::Genesis => index.route(&request),
        // Istio: the sidecar carries every call of the pod; only calls to
        // components are Switchyard's.
        Mode::Internal if index.is_foreign_host(&request) => return Outcome::Continue(None),
        Mode::Internal => index.route_internal(&request),
    };
    match routed.and_then(|d| table.unready.check(&d).map(|()| d)) {
        Ok(decision) => {
            if let Err(e) = apply(host, index, &decision) {
                host.warn(&e);
            }
            host.routed(&decision);
            let remember = index.settings().response_headers || decision.set_cookie.is_some();
            Outcome::Continue(remember.then(|| ResponseHeaders::new(&decision)))
        }
        Err(error) => refuse(host, &error),
    }
}

/// Writes the decision into the request: removed selectors, the rewritten
/// path, the metadata headers asked for, variables, context, hash key and
/// finally the cluster header, then clears the route cache.
fn apply<H: Host>(host: &mut H, index: &Index, d: &Decision<'_, '_>) -> Result<(), H::Error> {
    let settings = index.settings();
    for name in &d.strip_headers {
        host.set_request_header(name, None)?;
    }
    if let Some(path) = &d.rewritten_path {
        host.set_request_header(":path", Some(path))?;
    }
    let kind = d.kind.name();
    let wanted = settings.metadata_headers.names();
    for (name, value) in [
        ("kf-environment", d.environment),
        ("kf-virtual-env", d.virtual_env),
        ("kf-app", d.app),
        ("kf-deployment", d.deployment),
        ("kf-component", d.component),
        ("kf-component-version", d.component_version),
        ("kf-decision", &*kind),
    ] {
        if wanted.contains(&name) {
            host.set_request_header(name, Some(value))?;
        }
    }
    let mut var_header = String::new();
    for (name, value) in d.vars.iter() {
        var_header.clear();
        var_header.push_str("kf-var-");
        var_header.push_str(name);
        host.set_request_header(&var_header, Some(value))?;
    }
    if let Some(context) = &d.context {
        host.set_request_header("kf-context", Some(context))?;
    }
    if let Some(key) = d.hash_key {
        host.set_request_header(&settings.hash_key_header, Some(key))?;
    }
    host.set_request_header(&settings.cluster_header, Some(d.cluster))?;
    host.clear_route_cache()
}

/// The response phase: adds the headers the request's decision asked for.
pub fn respond<H: Host>(host: &mut H, table: Option<&Table>, r: &ResponseHeaders) {
    let show = table.is_some_and(|t| t.index.settings().response_headers);
    let mut result = Ok(());
    if show {
        let (deployment, virtual_env, component_version) = r.parts();
        result = result
            .and_then(|_| host.add_response_header("kf-deployment", deployment))
            .and_then(|_| host.add_response_header("kf-virtual-env", virtual_env))
            .and_then(|_| host.add_response_header("kf-component-version", component_version));
    }
    if let Some(cookie) = &r.set_cookie {
        result = result.and_then(|_| host.add_response_header("set-cookie", cookie));
    }
    if let Err(e) = result {
        host.warn(&e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_config, Table};
    use switchyard_engine::KnownClusters;

    /// A host that records what the plugin logic asked of it.
    #[derive(Default)]
    struct Recorder {
        calls: Vec<String>,
    }

    impl Host for Recorder {
        type Error = String;
        fn set_request_header(&mut self, name: &str, value: Option<&str>) -> Result<(), String> {
            self.calls
                .push(format!("set {name}={}", value.unwrap_or("<removed>")));
            Ok(())
        }
        fn add_response_header(&mut self, name: &str, value: &str) -> Result<(), String> {
            self.calls.push(format!("response {name}={value}"));
            Ok(())
        }
        fn clear_route_cache(&mut self) -> Result<(), String> {
            self.calls.push("clear_route_cache".into());
            Ok(())
        }
        fn send_json(&mut self, status: u32, body: &str) -> Result<(), String> {
            self.calls.push(format!("reply {status} {body}"));
            Ok(())
        }
        fn source_address(&mut self) -> Option<String> {
            None
        }
        fn now_unix_seconds(&mut self) -> u64 {
            0
        }
        fn warn(&mut self, message: &dyn Display) {
            self.calls.push(format!("warn {message}"));
        }
        fn routed(&mut self, decision: &Decision<'_, '_>) {
            self.calls.push(format!("routed {}", decision.deployment));
        }
        fn refused(&mut self, code: ErrorCode) {
            self.calls.push(format!("refused {}", code.as_str()));
        }
    }

    const CONFIG: &str = r#"{"resources": [
        {"kind": "Environment", "metadata": {"name": "dev"},
         "spec": {"subPath": "dev", "defaultVirtualEnvironment": "team-a"}, "vars": {"who": "Universe"}},
        {"kind": "VirtualEnvironment", "metadata": {"name": "team-a"},
         "spec": {"environment": "dev", "release": {"apps": {"hello-world": "main"}}}},
        {"kind": "AppDeployment", "metadata": {"name": "main"},
         "spec": {"app": "hello-world", "version": "v1", "components": {
           "frontend": {"version": "f1", "endpoints": ["127.0.0.1:9101"],
                        "routes": [{"match": {"pathPrefix": "/hello"}}], "vars": ["who"]}}}}
    ]}"#;

    fn table() -> Table {
        let config = parse_config(CONFIG.as_bytes()).unwrap_or_default();
        Table::compile(&config, false, &KnownClusters::default())
            .unwrap_or_else(|e| unreachable!("the test configuration compiles: {e}"))
    }

    fn headers(path: &str) -> Vec<(String, String)> {
        vec![
            (":method".into(), "GET".into()),
            (":path".into(), path.into()),
        ]
    }

    #[test]
    fn a_routed_request_gets_its_headers_the_cluster_last_then_a_route_cache_clear() {
        let (table, mut host) = (table(), Recorder::default());
        let Outcome::Continue(response) = route_request(&mut host, &table, &headers("/dev/hello"))
        else {
            unreachable!("routed")
        };
        let calls = &host.calls;
        assert!(
            calls.contains(&"set kf-deployment=main".to_string()),
            "{calls:?}"
        );
        assert!(
            calls.contains(&"set kf-var-who=Universe".to_string()),
            "{calls:?}"
        );
        let cluster = calls
            .iter()
            .position(|c| c.starts_with("set x-switchyard-cluster="));
        assert_eq!(cluster, Some(calls.len() - 3), "{calls:?}");
        assert_eq!(calls[calls.len() - 2], "clear_route_cache");
        assert_eq!(calls[calls.len() - 1], "routed main");

        let mut host = Recorder::default();
        if let Some(r) = &response {
            respond(&mut host, Some(&table), r);
        }
        assert!(
            host.calls
                .contains(&"response kf-deployment=main".to_string()),
            "{:?}",
            host.calls
        );
    }

    #[test]
    fn a_refused_request_is_answered_with_its_code_and_counted() {
        let (table, mut host) = (table(), Recorder::default());
        let outcome = route_request(&mut host, &table, &headers("/nowhere"));
        assert!(matches!(outcome, Outcome::Refused));
        assert_eq!(host.calls[0], "refused environment_not_found");
        assert!(host.calls[1].starts_with("reply 404 "), "{:?}", host.calls);
        assert!(host.calls[1].contains("environment_not_found"));
    }
}
