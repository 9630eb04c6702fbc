//! Compiling a VirtualEnvironment: its release (app → deployment), the released
//! routes bucketed for lookup, and its vars over the Environment's.

use std::collections::BTreeMap;

use super::Builder;
use crate::index::ids::{DeploymentId, DeploymentRoute, EnvironmentId, Id, RouteId};
use crate::index::rules;
use crate::index::table::{ReleaseRoutes, VirtualEnvironmentEntry};
use crate::name_map::NameMap;
use crate::resources::{Release, VirtualEnvironment};

impl Builder {
    pub(super) fn add_virtual_environment(&mut self, ve: &VirtualEnvironment) {
        let id = format!("VirtualEnvironment/{}", ve.metadata.name);
        let Some(&env) = self.env_by_name.get(&ve.spec.environment) else {
            let reason = rules::missing("Environment", &ve.spec.environment);
            self.err(&id, "spec.environment", reason);
            return;
        };
        let release = match &ve.spec.release {
            Some(r) => self.release(&id, env, r),
            None => BTreeMap::new(),
        };
        let release_routes = self.release_routes(&release);
        // The Environment's vars, overridden key by key by the VE's.
        let mut vars: NameMap<String, String> = self.environments[env]
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        vars.extend(ve.vars.iter().map(|(k, v)| (k.clone(), v.to_text())));
        let ve_id = self.ves.push(VirtualEnvironmentEntry {
            name: ve.metadata.name.clone(),
            environment: env,
            vars,
            release,
            release_id: ve
                .spec
                .release
                .as_ref()
                .and_then(|r| r.id.clone())
                .unwrap_or_default(),
            release_routes,
            canaries: NameMap::default(),
        });
        self.ve_by_name.insert(ve.metadata.name.clone(), ve_id);
    }

    /// app → released deployment; a release that breaks a rule is left out.
    fn release(
        &mut self,
        id: &str,
        env: EnvironmentId,
        release: &Release,
    ) -> BTreeMap<String, DeploymentId> {
        let mut released = BTreeMap::new();
        for (app, dep_name) in &release.apps {
            let field = format!("spec.release.apps.{app}");
            let Some(&dep) = self.dep_by_name.get(dep_name) else {
                self.err(id, &field, rules::missing("AppDeployment", dep_name));
                continue;
            };
            let (d, e) = (&self.deployments[dep], &self.environments[env]);
            let rule = rules::deployment_of_app(dep_name, &d.app, app, false).and_then(|()| {
                rules::stable_release(e.policy, &e.name, dep_name, d.version.as_deref())
            });
            match rule {
                Ok(()) => {
                    released.insert(app.clone(), dep);
                }
                Err(reason) => self.err(id, &field, reason),
            }
        }
        released
    }

    /// The routes of every released deployment, longest prefix first.
    fn release_routes(&self, release: &BTreeMap<String, DeploymentId>) -> ReleaseRoutes {
        let mut routes: Vec<DeploymentRoute> = release
            .values()
            .flat_map(|&deployment| {
                (0..self.deployments[deployment].routes.len()).map(move |r| DeploymentRoute {
                    deployment,
                    route: RouteId::from_position(r),
                })
            })
            .collect();
        let prefix = |at: &DeploymentRoute| {
            self.deployments[at.deployment]
                .route(at.route)
                .prefix
                .as_str()
        };
        routes.sort_by_key(|at| std::cmp::Reverse(prefix(at).len()));
        ReleaseRoutes::new(routes.into_iter().map(|at| (at, prefix(&at))))
    }
}
