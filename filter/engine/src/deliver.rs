//! The last step of every route, shared by genesis (`route.rs`) and internal
//! hops (`internal.rs`): once deployment and component are known, build the one
//! [`Decision`] — signed context, cluster, vars, headers to strip.

use crate::context::RoutingContext;
use crate::decision::{Decision, DecisionKind, Vars};
use crate::headers::{is_selector, CONTEXT_HEADER};
use crate::index::Index;
use crate::request::Request;

/// Everything the caller decided, handed to [`Index::deliver`] in one piece.
pub(crate) struct Delivery<'i> {
    pub ve: usize,
    pub deployment: usize,
    pub component: usize,
    /// The route's (or, at a hop, the component's) cluster, and for `hash`
    /// clusters the hashed header and the round-robin twin.
    pub cluster: usize,
    pub hash: &'i Option<(String, usize)>,
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
        let comp = &dep.components[d.component];
        let context = self.issue_context(
            d.ve,
            d.deployment,
            d.component,
            d.released,
            req.now_unix_seconds,
            d.expires_at,
        );
        let (cluster, hash_key) = match d.hash {
            Some((header, twin)) => match req.header(header) {
                // Istio's DestinationRule hashes on the header itself: no copy.
                Some(v) => (d.cluster, (!self.settings.istio).then_some(v)),
                None => (*twin, None),
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
            deployment_id: d.deployment,
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
}
