//! Internal mode: component-to-component calls (DESIGN.md, "Component to
//! component"). The target component is named by `:authority`; the signed
//! `kf-context` says which deployment the request belongs to and which component
//! sends it. The hop is delivered only to that deployment's version of the target,
//! and only if the sender declared the target as a dependency.

use crate::context::ContextRefusal;
use crate::decision::{Decision, DecisionKind};
use crate::deliver::Delivery;
use crate::error::{ErrorCode, RouteError};
use crate::headers::CONTEXT_HEADER;
use crate::index::Index;
use crate::request::Request;

/// The component named by `:authority` (or `host`), port removed. In Istio mode
/// the authority is a Service host (`backend`, `backend.shop`,
/// `backend.shop.svc.cluster.local`): the component is its first label.
fn target_component<'r>(req: &Request<'r>, istio: bool) -> Option<&'r str> {
    let authority = req.header(":authority").or_else(|| req.header("host"))?;
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    };
    Some(match istio {
        true => host.split('.').next().unwrap_or(host),
        false => host,
    })
}

impl Index {
    /// Istio mode, internal: whether this call goes to a host that is no
    /// component of any deployment (a database, another team's service). The
    /// sidecar's outbound listener carries every call of the pod; those are
    /// not Switchyard's to check and pass untouched.
    pub fn is_foreign_host(&self, req: &Request<'_>) -> bool {
        self.settings.istio
            && target_component(req, true).is_some_and(|c| !self.mesh_components.contains(c))
    }

    /// Routes a component-to-component call, or refuses it.
    pub fn route_internal<'i, 'r>(
        &'i self,
        req: &Request<'r>,
    ) -> Result<Decision<'i, 'r>, RouteError> {
        let keys = self.context_keys.as_ref().ok_or_else(|| {
            RouteError::new(ErrorCode::InvalidContextToken, "no context keys configured")
        })?;
        let token = req.header(CONTEXT_HEADER).ok_or_else(|| {
            RouteError::new(ErrorCode::MissingContext, "kf-context header is required")
        })?;
        let (ctx, expires_at) = keys.verify(token, req.now_unix_seconds).map_err(|r| {
            let why = match r {
                ContextRefusal::Malformed => "kf-context is malformed",
                ContextRefusal::UnknownKey => "kf-context is signed by an unknown key",
                ContextRefusal::BadSignature => "kf-context signature does not verify",
                ContextRefusal::Expired => "kf-context has expired",
            };
            RouteError::new(ErrorCode::InvalidContextToken, why)
        })?;
        let not_in = |what: &str| {
            RouteError::new(
                ErrorCode::ComponentNotInDeployment,
                format!("{what} is not part of deployment '{}'", ctx.deployment),
            )
        };
        let dep_id = self
            .deployment_named(&ctx.deployment)
            .ok_or_else(|| not_in("the deployment"))?;
        let dep = &self.deployments[dep_id];
        if dep.app != ctx.app {
            return Err(RouteError::new(
                ErrorCode::InvalidContext,
                "the context's deployment belongs to another app",
            ));
        }
        let ve_id = self
            .virtual_environment_named(&ctx.virtual_env)
            .ok_or_else(|| {
                RouteError::new(
                    ErrorCode::InvalidContext,
                    "the context's virtual environment is gone",
                )
            })?;
        let ve = &self.ves[ve_id];
        let env = &self.environments[ve.environment];
        if env.name != ctx.environment {
            return Err(RouteError::new(
                ErrorCode::InvalidContext,
                "the context's environment does not match",
            ));
        }
        let target_name = target_component(req, self.settings.istio).ok_or_else(|| {
            RouteError::new(
                ErrorCode::RouteNotFound,
                "no target component in :authority",
            )
        })?;
        let (_, source) = dep
            .component_named(&ctx.component)
            .ok_or_else(|| not_in(&format!("component '{}'", ctx.component)))?;
        let (target_id, target) = dep
            .component_named(target_name)
            .ok_or_else(|| not_in(&format!("component '{target_name}'")))?;
        if !source.dependencies.iter().any(|d| d == target_name) {
            return Err(RouteError::new(
                ErrorCode::DependencyNotDeclared,
                format!(
                    "component '{}' does not declare '{target_name}' as a dependency",
                    source.name
                ),
            ));
        }
        Ok(self.deliver(
            req,
            Delivery {
                ve: ve_id,
                deployment: dep_id,
                component: target_id,
                cluster: target.cluster,
                hash: target.hash.as_ref(),
                kind: DecisionKind::Internal,
                released: !ctx.release.is_empty(),
                expires_at: Some(expires_at),
                // A hop forwards the path as the component sent it.
                rewritten_path: None,
                set_cookie: None,
                note: None,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures::{hello_world, index};
    use base64::Engine as _;
    use serde_json::json;

    fn keyed(mut config: serde_json::Value, kids: &[(&str, u8)], signing: Option<&str>) -> Index {
        config["settings"] = json!({
            "contextKeys": kids.iter().map(|(kid, b)| json!({"kid": kid, "secret": base64::engine::general_purpose::STANDARD.encode([*b; 32])})).collect::<Vec<_>>(),
            "signingKid": signing,
        });
        index(&config)
    }

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn at<'a>(path: &'a str, headers: &'a [(String, String)], now: u64) -> Request<'a> {
        Request {
            method: "GET",
            path,
            headers,
            source_address: None,
            now_unix_seconds: now,
        }
    }

    /// Genesis through deployment `dep`, then a hop from frontend to `target`.
    fn hop(
        index: &Index,
        dep: &str,
        target: &str,
        now: u64,
    ) -> Result<(String, String), RouteError> {
        let none = headers(&[]);
        let path = format!("/dev/hello?kf-dep={dep}");
        let genesis = index.route(&at(&path, &none, 1000)).unwrap();
        let token = genesis.context.unwrap();
        let h = headers(&[(":authority", target), ("kf-context", &token)]);
        let d = index.route_internal(&at("/hello/backend", &h, now))?;
        Ok((d.component_version.to_string(), d.context.unwrap()))
    }

    #[test]
    fn figures_11_and_12_each_deployment_reaches_its_own_backend() {
        let index = keyed(hello_world(), &[("k1", 1)], None);
        // v1 = frontend f1 + backend b1; v2 = the same frontend f1 + backend b2.
        assert_eq!(
            hop(&index, "hello-world-main", "backend", 1001).unwrap().0,
            "b1"
        );
        assert_eq!(
            hop(&index, "hello-world-v2", "backend:8080", 1001)
                .unwrap()
                .0,
            "b2"
        );
    }

    #[test]
    fn every_refusal_has_its_code() {
        let index = keyed(hello_world(), &[("k1", 1)], None);
        let code =
            |h: Vec<(String, String)>| index.route_internal(&at("/", &h, 1001)).unwrap_err().code;
        assert_eq!(
            code(headers(&[(":authority", "backend")])),
            ErrorCode::MissingContext
        );
        assert_eq!(
            code(headers(&[
                (":authority", "backend"),
                ("kf-context", "x.y.z")
            ])),
            ErrorCode::InvalidContextToken
        );
        // expired: the genesis token lives 30 s
        assert_eq!(
            hop(&index, "hello-world-main", "backend", 1031)
                .unwrap_err()
                .code,
            ErrorCode::InvalidContextToken
        );
        // a component outside the deployment
        assert_eq!(
            hop(&index, "hello-world-main", "payments", 1001)
                .unwrap_err()
                .code,
            ErrorCode::ComponentNotInDeployment
        );
        // foreign key
        let other = keyed(hello_world(), &[("k1", 2)], None);
        let none = headers(&[]);
        let token = other
            .route(&at("/dev/hello", &none, 1000))
            .unwrap()
            .context
            .unwrap();
        assert_eq!(
            code(headers(&[
                (":authority", "backend"),
                ("kf-context", &token)
            ])),
            ErrorCode::InvalidContextToken
        );
    }

    #[test]
    fn undeclared_dependency_is_refused() {
        let index = keyed(hello_world(), &[("k1", 1)], None);
        // The context names backend as the sender (delivered to backend); backend
        // does not declare frontend.
        let (_, backend_token) = hop(&index, "hello-world-main", "backend", 1001).unwrap();
        let h = headers(&[(":authority", "frontend"), ("kf-context", &backend_token)]);
        assert_eq!(
            index.route_internal(&at("/", &h, 1002)).unwrap_err().code,
            ErrorCode::DependencyNotDeclared
        );
    }

    #[test]
    fn hops_never_extend_the_context() {
        let index = keyed(hello_world(), &[("k1", 1)], None);
        let (_, token) = hop(&index, "hello-world-main", "backend", 1001).unwrap();
        let keys = index.context_keys.as_ref().unwrap();
        assert_eq!(keys.verify(&token, 1002).unwrap().1, 1030);
    }

    #[test]
    fn rotation_keeps_old_contexts_working_until_retired() {
        let old = keyed(hello_world(), &[("old", 1)], None);
        let none = headers(&[]);
        let token = old
            .route(&at("/dev/hello", &none, 1000))
            .unwrap()
            .context
            .unwrap();
        let h = headers(&[(":authority", "backend"), ("kf-context", &token)]);
        let rotating = keyed(hello_world(), &[("old", 1), ("new", 2)], Some("new"));
        assert!(rotating.route_internal(&at("/", &h, 1001)).is_ok());
        let retired = keyed(hello_world(), &[("new", 2)], None);
        assert_eq!(
            retired.route_internal(&at("/", &h, 1001)).unwrap_err().code,
            ErrorCode::InvalidContextToken
        );
    }

    #[test]
    fn contexts_are_reused_within_a_second_and_renewed_after() {
        let index = keyed(hello_world(), &[("k1", 1)], None);
        let none = headers(&[]);
        let token = |path: &str, now| index.route(&at(path, &none, now)).unwrap().context.unwrap();
        let first = token("/dev/hello", 1000);
        assert_eq!(
            token("/dev/hello", 1000),
            first,
            "same second, same context"
        );
        assert_ne!(
            token("/dev/hello/backend", 1000),
            first,
            "another component"
        );
        let later = token("/dev/hello", 1001);
        let keys = index.context_keys.as_ref().unwrap();
        assert_eq!(
            keys.verify(&later, 1001).unwrap().1,
            1031,
            "a new second, a new expiry"
        );
    }

    #[test]
    fn istio_mode_takes_the_component_from_the_service_host() {
        let mut config = hello_world();
        config["settings"] = json!({"istio": true, "contextKeys": [{"kid": "k1",
            "secret": base64::engine::general_purpose::STANDARD.encode([1u8; 32])}]});
        let index = index(&config);
        assert_eq!(index.settings().cluster_header, "x-switchyard-version");
        for host in [
            "backend",
            "backend.shop",
            "backend.shop.svc.cluster.local",
            "backend.shop.svc.cluster.local:80",
        ] {
            let (version, _) = hop(&index, "hello-world-v2", host, 1001).unwrap();
            assert_eq!(version, "b2", "{host}");
        }
        // A host that is no component is not Switchyard's; a component is.
        let h = headers(&[(":authority", "postgres.db.svc.cluster.local:5432")]);
        assert!(index.is_foreign_host(&at("/", &h, 1001)));
        let h = headers(&[(":authority", "backend.shop")]);
        assert!(!index.is_foreign_host(&at("/", &h, 1001)));
        assert_eq!(
            index.route_internal(&at("/", &h, 1001)).unwrap_err().code,
            ErrorCode::MissingContext
        );
        // Istio's DestinationRule hashes on tenant-id itself: no hash-key copy,
        // and without the header the round-robin twin still serves.
        let h = headers(&[("tenant-id", "t1")]);
        let d = index.route(&at("/dev/hello/backend", &h, 1001)).unwrap();
        assert_eq!(d.cluster, "hello-world/backend/b1/hash-tenant-id-125");
        assert_eq!(d.hash_key, None);
        let d = index.route(&at("/dev/hello/backend", &[], 1001)).unwrap();
        assert_eq!(d.cluster, "hello-world/backend/b1/round-robin");
        // Outside Istio mode the host is the component, whole.
        let plain = keyed(hello_world(), &[("k1", 1)], None);
        assert!(!plain.is_foreign_host(&at("/", &h, 1001)));
        assert!(hop(&plain, "hello-world-v2", "backend.shop", 1001).is_err());
    }

    #[test]
    fn internal_mode_in_pull_mode_waits_for_pulled_keys() {
        let mut config = hello_world();
        config["settings"] = json!({"mode": "internal", "pull": {"cluster": "api"}});
        let index = index(&config);
        let h = headers(&[(":authority", "backend"), ("kf-context", "x")]);
        assert_eq!(
            index.route_internal(&at("/", &h, 1001)).unwrap_err().code,
            ErrorCode::InvalidContextToken
        );
    }

    #[test]
    fn internal_mode_without_keys_is_refused() {
        let mut config = hello_world();
        config["settings"] = json!({"mode": "internal"});
        let err = Index::from_json(&config.to_string()).unwrap_err();
        assert!(err.to_string().contains("contextKeys"), "{err}");
    }
}
