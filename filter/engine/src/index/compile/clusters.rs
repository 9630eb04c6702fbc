//! Distilling clusters: one per (app, component, version, LB policy), the policy
//! coming from a component's options with a route's patched over them.

use super::Builder;
use crate::index::ids::ClusterId;
use crate::index::table::{cluster_name, ClusterSpec, HashedOn};
use crate::resources::{Component, RawOptions};
use crate::route_options::{check, LbPolicy, Options};

/// The cluster a route (or a component, for internal hops) is served by.
#[derive(Debug, Clone)]
pub(super) struct Served {
    pub cluster: ClusterId,
    pub hash: Option<HashedOn>,
}

impl Builder {
    /// The cluster of (app, component, version, policy), added on first use.
    fn cluster(
        &mut self,
        app: &str,
        component: &str,
        comp: &Component,
        policy: LbPolicy,
    ) -> ClusterId {
        let key = (
            app.to_string(),
            component.to_string(),
            comp.version.clone(),
            policy,
        );
        if let Some(&id) = self.cluster_by_key.get(&key) {
            return id;
        }
        let id = self.clusters.push(ClusterSpec {
            name: cluster_name(app, component, &comp.version, &key.3),
            app: app.to_string(),
            component: component.to_string(),
            version: comp.version.clone(),
            endpoints: comp.endpoints.clone(),
            policy: key.3.clone(),
            protocol: comp.protocol,
        });
        self.cluster_by_key.insert(key, id);
        id
    }

    /// The cluster for a policy, plus the round-robin twin for `hash`.
    pub(super) fn served_by(
        &mut self,
        app: &str,
        component: &str,
        comp: &Component,
        policy: LbPolicy,
    ) -> Served {
        let hash_header = match &policy {
            LbPolicy::Hash { header, .. } => Some(header.clone()),
            _ => None,
        };
        let cluster = self.cluster(app, component, comp, policy);
        let hash = hash_header.map(|header| HashedOn {
            header,
            twin: self.cluster(app, component, comp, LbPolicy::RoundRobin),
        });
        Served { cluster, hash }
    }

    /// Checks one `options` value ([`check`]), recording its problems at `field`;
    /// `None` when absent or refused.
    pub(super) fn checked_options(
        &mut self,
        id: &str,
        field: &str,
        options: Option<&RawOptions>,
    ) -> Option<Options> {
        match check(options?) {
            Ok(o) => Some(o),
            Err(messages) => {
                for m in messages {
                    self.err(id, field, m);
                }
                None
            }
        }
    }

    /// The policy of checked options, recording a model error at `field`;
    /// round-robin when there are none or they are refused.
    pub(super) fn policy(&mut self, id: &str, field: &str, options: Option<&Options>) -> LbPolicy {
        match options.map(Options::policy) {
            None => LbPolicy::RoundRobin,
            Some(Ok(p)) => p,
            Some(Err(message)) => {
                self.err(id, field, message);
                LbPolicy::RoundRobin
            }
        }
    }
}
