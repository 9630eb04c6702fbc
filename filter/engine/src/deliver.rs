//! The last step of every route, shared by genesis (`route.rs`) and internal
//! hops (`internal.rs`): once deployment and component are known, build the one
//! [`Decision`] — signed context, cluster, vars, headers to strip.

use crate::context::RoutingContext;
use crate::decision::{Decision, DecisionKind, Vars};
use crate::headers::{is_selector, CONTEXT_HEADER};
use crate::index::{
    ClusterId, ComponentId, ContextFor, DeploymentId, HashedOn, Id, Index, VirtualEnvironmentId,
};
use crate::request::Request;

/// Everything the caller decided, handed to [`Index::deliver`] in one piece.
pub(crate) struct Delivery<'i> {
    pub ve: VirtualEnvironmentId,
    pub deployment: DeploymentId,
    pub component: ComponentId,
    /// The route's (or, at a hop, the component's) cluster, and for `hash`
    /// clusters the hashed header and the round-robin twin.
    pub cluster: ClusterId,
    pub hash: Option<&'i HashedOn>,
    pub kind: DecisionKind,
    /// The deployment is the VE's release (the context names the release).
    pub released: bool,
    /// The caller's context expiry at a hop, `None` at genesis.
    pub expires_at: Option<u64>,
    /// The `:path` to forward, when it differs from the request's.
    pub rewritten_path: Option<String>,
    pub set_cookie: Option<String>,
    pub note: Option<&'static str>,
}

impl Index {
    /// The decision: the signed context, the cluster (a `hash` cluster, or its
    /// round-robin twin when the request lacks the hash header), the vars the
    /// component declares and the VE defines, and the inbound headers to remove
    /// (forged `kf-*` metadata and selectors, except those the filter overwrites).
    pub(crate) fn deliver<'i, 'r>(
        &'i self,
        req: &Request<'r>,
        d: Delivery<'i>,
    ) -> Decision<'i, 'r> {
        let ve = &self.ves[d.ve];
        let dep = &self.deployments[d.deployment];
        let comp = dep.component(d.component);
        let signed_for = ContextFor {
            ve: d.ve,
            deployment: d.deployment,
            component: d.component,
            released: d.released,
        };
        let context = self.issue_context(signed_for, req.now_unix_seconds, d.expires_at);
        let (cluster, hash_key) = match d.hash {
            Some(hashed) => match req.header(&hashed.header) {
                // Istio's DestinationRule hashes on the header itself: no copy.
                Some(v) => (d.cluster, (!self.settings.istio).then_some(v)),
                None => (hashed.twin, None),
            },
            None => (d.cluster, None),
        };
        let vars = Vars::new(&comp.vars, &ve.vars);
        let overwritten = self.settings.metadata_headers.names();
        let sets_context = context.is_some();
        let mut strip_headers = Vec::new();
        for (k, _) in req.headers {
            // Every `kf-*` header and selector starts with `k`: most headers stop here.
            if !k.starts_with('k') || !(k.starts_with("kf-") || is_selector(k)) {
                continue;
            }
            let k = k.as_str();
            let written_anyway = overwritten.contains(&k)
                || (sets_context && k == CONTEXT_HEADER)
                || k.strip_prefix("kf-var-")
                    .is_some_and(|name| vars.contains(name));
            if !written_anyway {
                strip_headers.push(k);
            }
        }
        Decision {
            environment: &self.environments[ve.environment].name,
            virtual_env: &ve.name,
            app: &dep.app,
            deployment: &dep.name,
            deployment_id: d.deployment.position(),
            component: &comp.name,
            component_version: &comp.version,
            cluster: &self.clusters[cluster].name,
            hash_key,
            kind: d.kind,
            vars,
            rewritten_path: d.rewritten_path,
            strip_headers,
            set_cookie: d.set_cookie,
            context,
            note: d.note,
        }
    }

    /// The signed routing context for a request delivered to `key.component`
    /// of `key.deployment`. At genesis the expiry is now + TTL; at a hop it is
    /// the expiry the caller's context had. Tokens are memoized per expiry
    /// second: requests of the same second reuse the same signature.
    pub(crate) fn issue_context(
        &self,
        key: ContextFor,
        now: u64,
        expires_at: Option<u64>,
    ) -> Option<String> {
        let keys = self.context_keys.as_ref()?;
        let expires_at = expires_at.unwrap_or(now + keys.ttl_seconds);
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
        let ve = &self.ves[key.ve];
        let dep = &self.deployments[key.deployment];
        let context = RoutingContext {
            environment: self.environments[ve.environment].name.clone(),
            virtual_env: ve.name.clone(),
            app: dep.app.clone(),
            deployment: dep.name.clone(),
            component: dep.component(key.component).name.clone(),
            release: if key.released {
                ve.release_id.clone()
            } else {
                String::new()
            },
        };
        let token = keys.sign(&context, expires_at)?;
        memo.tokens.insert(key, token.clone());
        Some(token)
    }
}
