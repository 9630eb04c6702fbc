//! Genesis routing: a request entering the mesh → environment, VE, deployment,
//! component and cluster (DESIGN.md, "A request's journey", steps 1–7).

use std::borrow::Cow;

use crate::context::RoutingContext;
use crate::decision::{Decision, DecisionKind};
use crate::error::{ErrorCode, RouteError};
use crate::index::{Index, RouteEntry};
use crate::internal::CONTEXT_HEADER;
use crate::request::{query_pairs, Request};
use crate::validate::is_dns_label;

/// Long and short selector names, checked in KubeFox's order:
/// long query, long header, short query, short header.
pub const VE_SELECTORS: (&str, &str) = ("kubefox-virtual-environment", "kf-ve");
pub const DEP_SELECTORS: (&str, &str) = ("kubefox-app-deployment", "kf-dep");

/// The metadata headers the filter sets on every routed request.
pub const METADATA_HEADERS: [&str; 7] = [
    "kf-environment",
    "kf-virtual-env",
    "kf-app",
    "kf-deployment",
    "kf-component",
    "kf-component-version",
    "kf-decision",
];

fn selector<'r>(req: &Request<'r>, (long, short): (&str, &str)) -> Option<Cow<'r, str>> {
    req.query_param(long)
        .or_else(|| req.header(long).map(Cow::Borrowed))
        .or_else(|| req.query_param(short))
        .or_else(|| req.header(short).map(Cow::Borrowed))
}

fn checked_selector<'r>(
    req: &Request<'r>,
    names: (&str, &str),
) -> Result<Option<Cow<'r, str>>, RouteError> {
    match selector(req, names) {
        Some(v) if !is_dns_label(&v) => Err(RouteError::new(
            ErrorCode::InvalidContext,
            format!("selector {} is not a valid name", names.1),
        )),
        other => Ok(other),
    }
}

fn is_selector(name: &str) -> bool {
    name == VE_SELECTORS.0
        || name == VE_SELECTORS.1
        || name == DEP_SELECTORS.0
        || name == DEP_SELECTORS.1
}

impl Index {
    /// Routes a genesis request, or says why it is refused.
    pub fn route<'i, 'r>(&'i self, req: &Request<'r>) -> Result<Decision<'i, 'r>, RouteError> {
        let path = req.path_only();
        // Step 2: the environment is the first path segment.
        let rest = path.strip_prefix('/').unwrap_or(path);
        let (segment, after) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let env_idx = *self.env_by_sub_path.get(segment).ok_or_else(|| {
            RouteError::new(
                ErrorCode::EnvironmentNotFound,
                "no environment serves this path",
            )
        })?;
        let env = &self.environments[env_idx];
        let rel_path = if after.is_empty() { "/" } else { after };

        // Step 3: selectors.
        let ve_sel = checked_selector(req, VE_SELECTORS)?;
        let dep_sel = checked_selector(req, DEP_SELECTORS)?;

        // Step 4: the virtual environment.
        let ve_idx = match &ve_sel {
            Some(name) => {
                let idx = *self.ve_by_name.get(name.as_ref()).ok_or_else(|| {
                    RouteError::new(
                        ErrorCode::VirtualEnvironmentNotFound,
                        format!("virtual environment '{name}' not found"),
                    )
                })?;
                if self.ves[idx].environment != env_idx {
                    return Err(RouteError::new(
                        ErrorCode::InvalidContext,
                        format!(
                            "virtual environment '{name}' does not belong to environment '{}'",
                            env.name
                        ),
                    ));
                }
                idx
            }
            None => env.default_ve.ok_or_else(|| {
                RouteError::new(
                    ErrorCode::VirtualEnvironmentNotFound,
                    format!(
                        "no virtual environment selected and environment '{}' has no default",
                        env.name
                    ),
                )
            })?,
        };
        let ve = &self.ves[ve_idx];

        // Steps 5 and 6: deployment, then component by route.
        let mut set_cookie = None;
        let mut note = None;
        let (dep_idx, route, kind) = match &dep_sel {
            Some(name) => {
                let dep_idx = *self.dep_by_name.get(name.as_ref()).ok_or_else(|| {
                    RouteError::new(
                        ErrorCode::DeploymentNotFound,
                        format!("deployment '{name}' not found"),
                    )
                })?;
                let route = self.match_route(dep_idx, req.method, rel_path)?;
                (dep_idx, route, DecisionKind::Explicit)
            }
            None => {
                if ve.release.is_empty() {
                    return Err(RouteError::new(
                        ErrorCode::NoRelease,
                        format!("virtual environment '{}' has no release", ve.name),
                    ));
                }
                let (stable, route) = ve
                    .release_routes
                    .candidates(rel_path)
                    .map(|&(d, r)| (d, &self.deployments[d].routes[r]))
                    .find(|(_, r)| r.matches(req.method, rel_path))
                    .ok_or_else(|| {
                        RouteError::new(ErrorCode::RouteNotFound, "no route matches this request")
                    })?;
                match ve.canaries.get(&self.deployments[stable].app) {
                    None => (stable, route, DecisionKind::Release),
                    Some(&(c, canary_dep)) => {
                        let verdict = self.canaries[c].decide(req);
                        set_cookie = verdict.set_cookie;
                        note = verdict.note;
                        if verdict.to_canary {
                            match self.match_route(canary_dep, req.method, rel_path) {
                                Ok(r) => (canary_dep, r, verdict.kind),
                                // The canary lacks this route: the stable side serves it.
                                Err(_) => (stable, route, DecisionKind::CanaryStable),
                            }
                        } else {
                            (stable, route, verdict.kind)
                        }
                    }
                }
            }
        };
        let mut decision = self.deliver(
            req,
            (ve_idx, dep_idx, route.component),
            (route.cluster, &route.hash),
            kind,
            kind != DecisionKind::Explicit,
            None,
        );
        decision.rewritten_path = rewrite_path(req.path, env.strip_sub_path.then_some(rel_path));
        decision.set_cookie = set_cookie;
        decision.note = note;
        Ok(decision)
    }

    /// The decision once deployment and component are known, shared by genesis and
    /// internal hops: the signed context, the cluster (a `hash` cluster, or its
    /// round-robin twin when the request lacks the hash header), the vars the
    /// component declares and the VE defines, and the inbound headers to remove
    /// (forged `kf-*` metadata and selectors, except those the filter overwrites).
    /// `released`: the deployment is the VE's release (the context names it);
    /// `expires_at`: the caller's context expiry at a hop, `None` at genesis.
    pub(crate) fn deliver<'i, 'r>(
        &'i self,
        req: &Request<'r>,
        (ve_idx, dep_idx, comp_idx): (usize, usize, usize),
        (cluster, hash): (usize, &'i Option<(String, usize)>),
        kind: DecisionKind,
        released: bool,
        expires_at: Option<u64>,
    ) -> Decision<'i, 'r> {
        let ve = &self.ves[ve_idx];
        let dep = &self.deployments[dep_idx];
        let comp = &dep.components[comp_idx];
        let context = self.issue_context(
            ve_idx,
            dep_idx,
            comp_idx,
            released,
            req.now_unix_seconds,
            expires_at,
        );
        let (cluster, hash_key) = match hash {
            Some((header, twin)) => match req.header(header) {
                Some(v) => (cluster, Some(v)),
                None => (*twin, None),
            },
            None => (cluster, None),
        };
        let vars: Vec<(&str, &str)> = comp
            .vars
            .iter()
            .filter_map(|n| ve.vars.get(n).map(|v| (n.as_str(), v.as_str())))
            .collect();
        let overwritten = self.settings.metadata_headers.names();
        let sets_context = context.is_some();
        let strip_headers = req
            .headers
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| k.starts_with("kf-") || is_selector(k))
            .filter(|k| !overwritten.contains(k))
            .filter(|k| !(sets_context && *k == CONTEXT_HEADER))
            .filter(|k| {
                !k.strip_prefix("kf-var-")
                    .is_some_and(|name| vars.iter().any(|(n, _)| *n == name))
            })
            .collect();
        Decision {
            environment: &self.environments[ve.environment].name,
            virtual_env: &ve.name,
            app: &dep.app,
            deployment: &dep.name,
            deployment_id: dep_idx,
            component: &comp.name,
            component_version: &comp.version,
            cluster: &self.clusters[cluster].name,
            hash_key,
            kind,
            vars,
            rewritten_path: None,
            strip_headers,
            set_cookie: None,
            context,
            note: None,
        }
    }

    /// The signed routing context for a request delivered to component
    /// `comp_idx` of deployment `dep_idx`. At genesis the expiry is now + TTL; at a
    /// hop it is the expiry the caller's context had. Tokens are memoized per
    /// expiry second: requests of the same second reuse the same signature.
    pub(crate) fn issue_context(
        &self,
        ve_idx: usize,
        dep_idx: usize,
        comp_idx: usize,
        released: bool,
        now: u64,
        expires_at: Option<u64>,
    ) -> Option<String> {
        let keys = self.context_keys.as_ref()?;
        let expires_at = expires_at.unwrap_or(now + keys.ttl_seconds);
        let key = (ve_idx, dep_idx, comp_idx, released);
        let mut memo = self
            .context_memo
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if memo.expires_at != expires_at {
            memo.expires_at = expires_at;
            memo.tokens.clear();
        }
        if let Some(token) = memo.tokens.get(&key) {
            return Some(token.clone());
        }
        let ve = &self.ves[ve_idx];
        let dep = &self.deployments[dep_idx];
        let context = RoutingContext {
            environment: self.environments[ve.environment].name.clone(),
            virtual_env: ve.name.clone(),
            app: dep.app.clone(),
            deployment: dep.name.clone(),
            component: dep.components[comp_idx].name.clone(),
            release: if released {
                ve.release_id.clone()
            } else {
                String::new()
            },
        };
        let token = keys.sign(&context, expires_at)?;
        memo.tokens.insert(key, token.clone());
        Some(token)
    }

    fn match_route(
        &self,
        dep_idx: usize,
        method: &str,
        rel_path: &str,
    ) -> Result<&RouteEntry, RouteError> {
        self.deployments[dep_idx]
            .routes
            .iter()
            .find(|r| r.matches(method, rel_path))
            .ok_or_else(|| {
                RouteError::new(ErrorCode::RouteNotFound, "no route matches this request")
            })
    }
}

/// The path to forward, if it differs from `:path`: the subPath segment removed
/// (when `stripped` gives the rest) and selector query parameters dropped.
fn rewrite_path(full: &str, stripped: Option<&str>) -> Option<String> {
    let (path, query) = crate::request::split_query(full);
    let has_selector = query.is_some_and(|q| query_pairs(q).any(|(k, _)| is_selector(&k)));
    if stripped.is_none() && !has_selector {
        return None;
    }
    let mut out = String::with_capacity(full.len());
    out.push_str(stripped.unwrap_or(path));
    if let Some(q) = query {
        let kept: Vec<&str> = q
            .split('&')
            .filter(|p| !p.is_empty())
            .filter(|p| {
                let key = p.split_once('=').map_or(*p, |(k, _)| k);
                !is_selector(&crate::request::percent_decode(key))
            })
            .collect();
        if !kept.is_empty() {
            out.push('?');
            out.push_str(&kept.join("&"));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures::{hello_world, index};

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req<'a>(path: &'a str, headers: &'a [(String, String)]) -> Request<'a> {
        Request {
            method: "GET",
            path,
            headers,
            source_address: Some("127.0.0.1:5555"),
            now_unix_seconds: 1_800_000_000,
        }
    }

    #[test]
    fn release_of_the_default_ve() {
        let index = index(&hello_world());
        let d = index.route(&req("/dev/hello", &[])).unwrap();
        assert_eq!(
            (
                d.environment,
                d.virtual_env,
                d.deployment,
                d.component,
                d.component_version
            ),
            ("dev", "team-a", "hello-world-main", "frontend", "f1")
        );
        assert_eq!(d.kind, DecisionKind::Release);
        assert_eq!(d.cluster, "hello-world/frontend/f1/round-robin");
        assert_eq!(d.rewritten_path, None);
    }

    #[test]
    fn explicit_selectors_by_query_and_header_long_and_short() {
        let index = index(&hello_world());
        let none = headers(&[]);
        for path in [
            "/dev/hello?kf-dep=hello-world-v3&kf-ve=joe",
            "/dev/hello?kubefox-app-deployment=hello-world-v3&kubefox-virtual-environment=joe",
        ] {
            let d = index.route(&req(path, &none)).unwrap();
            assert_eq!(
                (d.deployment, d.virtual_env, d.kind),
                ("hello-world-v3", "joe", DecisionKind::Explicit)
            );
            assert_eq!(d.rewritten_path.as_deref(), Some("/dev/hello"));
        }
        let h = headers(&[("kf-dep", "hello-world-v3"), ("kf-ve", "joe")]);
        let d = index.route(&req("/dev/hello?x=1", &h)).unwrap();
        assert_eq!((d.deployment, d.virtual_env), ("hello-world-v3", "joe"));
        assert_eq!(d.rewritten_path, None, "only selector params are removed");
        assert_eq!(d.strip_headers, vec!["kf-dep", "kf-ve"]);
        let h = headers(&[("kubefox-app-deployment", "hello-world-v2")]);
        let d = index
            .route(&req("/dev/hello?a=1&kf-dep=hello-world-v3&b=2", &h))
            .unwrap();
        // KubeFox order: long query > long header > short query > short header.
        assert_eq!(d.deployment, "hello-world-v2");
        assert_eq!(d.rewritten_path.as_deref(), Some("/dev/hello?a=1&b=2"));
    }

    #[test]
    fn longest_route_wins_and_hash_uses_twin_without_header() {
        let index = index(&hello_world());
        let d = index.route(&req("/dev/hello/backend/x", &[])).unwrap();
        assert_eq!(
            (d.component, d.cluster, d.hash_key),
            ("backend", "hello-world/backend/b1/round-robin", None)
        );
        let h = headers(&[("tenant-id", "acme")]);
        let d = index.route(&req("/dev/hello/backend", &h)).unwrap();
        assert_eq!(
            (d.cluster, d.hash_key),
            ("hello-world/backend/b1/hash-tenant-id-125", Some("acme"))
        );
        // segment boundary: /hellox is not /hello
        let e = index.route(&req("/dev/hellox", &[])).unwrap_err();
        assert_eq!(e.code, ErrorCode::RouteNotFound);
    }

    #[test]
    fn vars_are_inherited_and_overridden_key_by_key() {
        let index = index(&hello_world());
        let d = index.route(&req("/dev/hello", &[])).unwrap();
        assert_eq!(d.vars, vec![("who", "Universe")]);
        let d = index.route(&req("/dev/hello?kf-ve=joe", &[])).unwrap();
        assert_eq!(d.vars, vec![("who", "Joe")]);
        assert_eq!(d.deployment, "hello-world-v2", "joe's own release");
    }

    #[test]
    fn forged_metadata_is_stripped_or_overwritten() {
        let index = index(&hello_world());
        let h = headers(&[
            ("kf-deployment", "forged"),
            ("kf-context", "forged"),
            ("kf-var-who", "forged"),
            ("kf-var-secret", "x"),
            ("kf-whatever", "x"),
            ("accept", "*/*"),
        ]);
        let d = index.route(&req("/dev/hello", &h)).unwrap();
        // kf-deployment and kf-var-who are overwritten by the filter; the rest removed.
        assert_eq!(
            d.strip_headers,
            vec!["kf-context", "kf-var-secret", "kf-whatever"]
        );
    }

    #[test]
    fn lean_metadata_strips_what_it_does_not_overwrite() {
        let mut config = hello_world();
        config["settings"] = serde_json::json!({"metadataHeaders": "lean"});
        let index = index(&config);
        let h = headers(&[
            ("kf-deployment", "forged"),
            ("kf-environment", "forged"),
            ("kf-decision", "x"),
        ]);
        let d = index.route(&req("/dev/hello", &h)).unwrap();
        assert_eq!(d.strip_headers, vec!["kf-environment", "kf-decision"]);
    }

    #[test]
    fn releases_of_several_apps_share_one_route_table() {
        let mut config = hello_world();
        let resources = config["resources"].as_array_mut().unwrap();
        resources.push(serde_json::json!({"kind": "AppDeployment", "metadata": {"name": "shop-v1"},
            "spec": {"app": "shop", "components": {
                "web": {"version": "w1", "endpoints": ["127.0.0.1:1"], "routes": [{"match": {"pathPrefix": "/"}}]},
                "api": {"version": "a1", "endpoints": ["127.0.0.1:2"], "routes": [{"match": {"pathPrefix": "/api/"}}]}}}}));
        for r in resources.iter_mut() {
            if r["metadata"]["name"] == "team-a" {
                r["spec"]["release"]["apps"]["shop"] = serde_json::json!("shop-v1");
            }
        }
        let index = index(&config);
        let served = |path: &str| {
            let d = index.route(&req(path, &[])).unwrap();
            (d.app, d.component)
        };
        assert_eq!(served("/dev/hello/backend"), ("hello-world", "backend"));
        assert_eq!(served("/dev/hello"), ("hello-world", "frontend"));
        assert_eq!(served("/dev/api/orders"), ("shop", "api"));
        assert_eq!(
            served("/dev/hellox"),
            ("shop", "web"),
            "the catch-all route"
        );
        assert_eq!(served("/dev"), ("shop", "web"));
    }

    #[test]
    fn strip_sub_path() {
        let index = index(&hello_world());
        let d = index
            .route(&req("/prod/hello?kf-ve=live&q=1", &[]))
            .unwrap();
        assert_eq!(d.rewritten_path.as_deref(), Some("/hello?q=1"));
    }

    #[test]
    fn every_genesis_error_code() {
        let index = index(&hello_world());
        let cases = [
            ("/nope/hello", ErrorCode::EnvironmentNotFound),
            (
                "/dev/hello?kf-ve=nobody",
                ErrorCode::VirtualEnvironmentNotFound,
            ),
            ("/dev/hello?kf-ve=live", ErrorCode::InvalidContext),
            ("/dev/hello?kf-ve=Bad_Name", ErrorCode::InvalidContext),
            ("/dev/hello?kf-dep=nothing", ErrorCode::DeploymentNotFound),
            ("/dev/other", ErrorCode::RouteNotFound),
            ("/dev/hello?kf-ve=empty", ErrorCode::NoRelease),
            ("/prod/hello", ErrorCode::VirtualEnvironmentNotFound),
        ];
        for (path, code) in cases {
            let e = index.route(&req(path, &[])).unwrap_err();
            assert_eq!(e.code, code, "{path}");
            let body: serde_json::Value = serde_json::from_str(&e.body()).unwrap();
            assert_eq!(body["error"], code.as_str());
        }
        let mut post = req("/dev/hello", &[]);
        post.method = "POST";
        assert_eq!(
            index.route(&post).unwrap_err().code,
            ErrorCode::RouteNotFound
        );
    }

    #[test]
    fn distillation_shares_clusters() {
        let index = index(&hello_world());
        let names: Vec<&str> = index.clusters().iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names
                .iter()
                .filter(|n| n.starts_with("hello-world/frontend/f1/"))
                .count(),
            1
        );
        assert!(names.contains(&"hello-world/backend/b2/hash-tenant-id-125"));
        assert!(names.contains(&"hello-world/backend/b2/round-robin"));
    }
}
