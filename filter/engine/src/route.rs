//! Genesis routing: a request entering the mesh → normalized path, environment,
//! selectors, VE, deployment (canary included), component, delivery (DESIGN.md,
//! "A request's journey"), one function per step.

use std::borrow::Cow;

use crate::decision::{Decision, DecisionKind};
use crate::deliver::Delivery;
use crate::error::{ErrorCode, RouteError};
use crate::headers::{is_selector, DEP_SELECTORS, VE_SELECTORS};
use crate::index::{DeploymentId, EnvironmentId, Index, RouteEntry, VirtualEnvironmentId};
use crate::path;
use crate::request::{percent_decode, query_pairs, split_query, Request};
use crate::validate::is_dns_label;
/// The VE and deployment selectors a request gives, if any.
type Selected<'r> = (Option<Cow<'r, str>>, Option<Cow<'r, str>>);

/// Step 3: both selectors (VE, deployment), each in KubeFox's order — long
/// query, long header, short query, short header — found in one pass over the
/// query string and one over the headers; one that is not a DNS label is refused.
fn checked_selectors<'r>(
    req: &Request<'r>,
    query: Option<&'r str>,
) -> Result<Selected<'r>, RouteError> {
    let names = [
        VE_SELECTORS.0,
        VE_SELECTORS.1,
        DEP_SELECTORS.0,
        DEP_SELECTORS.1,
    ];
    let mut in_query: [Option<Cow<'r, str>>; 4] = [None, None, None, None];
    let mut in_headers: [Option<&'r str>; 4] = [None; 4];
    if let Some(query) = query {
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = percent_decode(k);
            if let Some(i) = names.iter().position(|n| *n == k) {
                if in_query[i].is_none() {
                    in_query[i] = Some(percent_decode(v));
                }
            }
        }
    }
    for (k, v) in req.headers {
        // Every selector starts with `k`: most headers are passed over at once.
        if !k.starts_with('k') {
            continue;
        }
        if let Some(i) = names.iter().position(|n| n == k) {
            if in_headers[i].is_none() {
                in_headers[i] = Some(v.as_str());
            }
        }
    }
    let [ve_long, ve_short, dep_long, dep_short] = in_query;
    let pick = |long: Option<Cow<'r, str>>, short: Option<Cow<'r, str>>, at: usize| {
        let value = long
            .or_else(|| in_headers[at].map(Cow::Borrowed))
            .or(short)
            .or_else(|| in_headers[at + 1].map(Cow::Borrowed));
        match value {
            Some(v) if !is_dns_label(&v) => Err(RouteError::new(
                ErrorCode::InvalidContext,
                format!("selector {} is not a valid name", names[at + 1]),
            )),
            other => Ok(other),
        }
    };
    let ve = pick(ve_long, ve_short, 0)?;
    let dep = pick(dep_long, dep_short, 2)?;
    Ok((ve, dep))
}

/// Step 0: the path routed by and forwarded (see [`path`]), without the query.
fn normalized_path(path_only: &str) -> Result<Cow<'_, str>, RouteError> {
    path::normalize(path_only).map_err(|e| RouteError::new(ErrorCode::InvalidPath, e.message()))
}

/// How step 5 chose the deployment; step 6 finds the component in it.
enum Pick<'i> {
    /// `kf-dep` named it: its own routes decide the component.
    Explicit(DeploymentId),
    /// The VE's release: the release's route table picked the app (and so the
    /// deployment) and the route at once.
    Released(DeploymentId, &'i RouteEntry),
    /// The canary; the released deployment and route serve if it lacks the route.
    Canary {
        canary: DeploymentId,
        stable: (DeploymentId, &'i RouteEntry),
    },
}

/// Step 5's answer.
struct DeploymentChoice<'i> {
    pick: Pick<'i>,
    kind: DecisionKind,
    set_cookie: Option<String>,
    note: Option<&'static str>,
}

impl Index {
    /// Routes a genesis request, or says why it is refused.
    pub fn route<'i, 'r>(&'i self, req: &Request<'r>) -> Result<Decision<'i, 'r>, RouteError> {
        // `:path` split once: the path routes, the query carries selectors.
        let (path_only, query) = split_query(req.path);
        let path = normalized_path(path_only)?;
        let (env, rel_path) = self.environment(&path)?;
        let (ve_sel, dep_sel) = checked_selectors(req, query)?;
        let ve = self.virtual_environment(env, ve_sel.as_deref())?;
        let choice = self.deployment(ve, dep_sel.as_deref(), req, rel_path)?;
        let (deployment, route, kind) = self.component(&choice.pick, choice.kind, req, rel_path)?;
        let forwarded = if self.environments[env].strip_sub_path {
            Some(rel_path)
        } else {
            matches!(path, Cow::Owned(_)).then_some(&*path)
        };
        Ok(self.deliver(
            req,
            Delivery {
                ve,
                deployment,
                component: route.component,
                cluster: route.cluster,
                hash: route.hash.as_ref(),
                kind,
                released: kind != DecisionKind::Explicit,
                expires_at: None,
                rewritten_path: rewrite_path(path_only, query, forwarded),
                set_cookie: choice.set_cookie,
                note: choice.note,
            },
        ))
    }

    /// Step 2: the environment is the first segment of the normalized path; the
    /// rest (at least `/`) is what routes match against.
    fn environment<'p>(&self, path: &'p str) -> Result<(EnvironmentId, &'p str), RouteError> {
        let rest = path.strip_prefix('/').unwrap_or(path);
        let (segment, after) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let env = self.environment_at(segment).ok_or_else(|| {
            RouteError::new(
                ErrorCode::EnvironmentNotFound,
                "no environment serves this path",
            )
        })?;
        Ok((env, if after.is_empty() { "/" } else { after }))
    }

    /// Step 4: the selected VE (it must belong to the environment), else the
    /// environment's default.
    fn virtual_environment(
        &self,
        env_id: EnvironmentId,
        selected: Option<&str>,
    ) -> Result<VirtualEnvironmentId, RouteError> {
        let env = &self.environments[env_id];
        let Some(name) = selected else {
            return env.default_ve.ok_or_else(|| {
                RouteError::new(
                    ErrorCode::VirtualEnvironmentNotFound,
                    format!(
                        "no virtual environment selected and environment '{}' has no default",
                        env.name
                    ),
                )
            });
        };
        let ve = self.virtual_environment_named(name).ok_or_else(|| {
            RouteError::new(
                ErrorCode::VirtualEnvironmentNotFound,
                format!("virtual environment '{name}' not found"),
            )
        })?;
        if self.ves[ve].environment != env_id {
            return Err(RouteError::new(
                ErrorCode::InvalidContext,
                format!(
                    "virtual environment '{name}' does not belong to environment '{}'",
                    env.name
                ),
            ));
        }
        Ok(ve)
    }

    /// Step 5: `kf-dep` if given; else the VE's release for this path (its
    /// routes say which app), where a Canary of that app may choose instead.
    fn deployment<'i>(
        &'i self,
        ve: VirtualEnvironmentId,
        selected: Option<&str>,
        req: &Request<'_>,
        rel_path: &str,
    ) -> Result<DeploymentChoice<'i>, RouteError> {
        let chosen = |pick, kind| DeploymentChoice {
            pick,
            kind,
            set_cookie: None,
            note: None,
        };
        if let Some(name) = selected {
            let dep = self.deployment_named(name).ok_or_else(|| {
                RouteError::new(
                    ErrorCode::DeploymentNotFound,
                    format!("deployment '{name}' not found"),
                )
            })?;
            return Ok(chosen(Pick::Explicit(dep), DecisionKind::Explicit));
        }
        let ve = &self.ves[ve];
        if ve.release.is_empty() {
            return Err(RouteError::new(
                ErrorCode::NoRelease,
                format!("virtual environment '{}' has no release", ve.name),
            ));
        }
        // A plain loop: the hottest scan of a release decision.
        let mut found = None;
        'scan: for list in ve.release_routes.candidates(rel_path) {
            for &at in list {
                let route = self.route_entry(at);
                if route.matches(req.method, rel_path) {
                    found = Some((at.deployment, route));
                    break 'scan;
                }
            }
        }
        let (stable, route) = found.ok_or_else(route_not_found)?;
        let Some(of_app) = ve.canaries.get(&self.deployments[stable].app) else {
            return Ok(chosen(Pick::Released(stable, route), DecisionKind::Release));
        };
        let verdict = self.canaries[of_app.canary].decide(req);
        let pick = if verdict.to_canary {
            Pick::Canary {
                canary: of_app.deployment,
                stable: (stable, route),
            }
        } else {
            Pick::Released(stable, route)
        };
        Ok(DeploymentChoice {
            pick,
            kind: verdict.kind,
            set_cookie: verdict.set_cookie,
            note: verdict.note,
        })
    }

    /// Step 6: the component, by the deployment's routes (longest match first).
    /// A canary lacking the route leaves the request to the stable side.
    fn component<'i>(
        &'i self,
        pick: &Pick<'i>,
        kind: DecisionKind,
        req: &Request<'_>,
        rel_path: &str,
    ) -> Result<(DeploymentId, &'i RouteEntry, DecisionKind), RouteError> {
        match *pick {
            Pick::Explicit(dep) => Ok((dep, self.match_route(dep, req.method, rel_path)?, kind)),
            Pick::Released(dep, route) => Ok((dep, route, kind)),
            Pick::Canary {
                canary,
                stable: (stable, route),
            } => Ok(match self.match_route(canary, req.method, rel_path) {
                Ok(r) => (canary, r, kind),
                Err(_) => (stable, route, DecisionKind::CanaryStable),
            }),
        }
    }

    fn match_route(
        &self,
        dep: DeploymentId,
        method: &str,
        rel_path: &str,
    ) -> Result<&RouteEntry, RouteError> {
        self.deployments[dep]
            .routes
            .iter()
            .find(|r| r.matches(method, rel_path))
            .ok_or_else(route_not_found)
    }
}

fn route_not_found() -> RouteError {
    RouteError::new(ErrorCode::RouteNotFound, "no route matches this request")
}

/// Step 7's `:path`, if it differs from the request's: `forwarded` replaces the
/// path (normalized, and/or the subPath segment removed) and selector query
/// parameters are dropped; the rest of the query stays as written.
fn rewrite_path(path: &str, query: Option<&str>, forwarded: Option<&str>) -> Option<String> {
    let has_selector = query.is_some_and(|q| query_pairs(q).any(|(k, _)| is_selector(&k)));
    if forwarded.is_none() && !has_selector {
        return None;
    }
    let mut out = String::with_capacity(path.len() + query.map_or(0, |q| q.len() + 1));
    out.push_str(forwarded.unwrap_or(path));
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
        assert_eq!(d.vars.iter().collect::<Vec<_>>(), vec![("who", "Universe")]);
        let d = index.route(&req("/dev/hello?kf-ve=joe", &[])).unwrap();
        assert_eq!(d.vars.iter().collect::<Vec<_>>(), vec![("who", "Joe")]);
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

#[cfg(test)]
#[path = "route_path_tests.rs"]
mod path_tests;
