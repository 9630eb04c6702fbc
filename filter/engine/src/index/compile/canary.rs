//! Compiling a Canary: it names a VE's release of one app as its stable side and
//! a deployment of that app as its canary side.

use super::Builder;
use crate::canary::CompiledCanary;
use crate::index::rules;
use crate::index::table::CanaryOfApp;
use crate::resources::Canary;

impl Builder {
    pub(super) fn add_canary(&mut self, canary: &Canary) {
        let id = format!("Canary/{}", canary.metadata.name);
        let spec = &canary.spec;
        let Some(&ve) = self.ve_by_name.get(&spec.virtual_environment) else {
            let reason = rules::missing("VirtualEnvironment", &spec.virtual_environment);
            self.err(&id, "spec.virtualEnvironment", reason);
            return;
        };
        let Some(&deployment) = self.dep_by_name.get(&spec.deployment) else {
            let reason = rules::missing("AppDeployment", &spec.deployment);
            self.err(&id, "spec.deployment", reason);
            return;
        };
        let its_app = &self.deployments[deployment].app;
        if let Err(reason) = rules::deployment_of_app(&spec.deployment, its_app, &spec.app, true) {
            self.err(&id, "spec.deployment", reason);
            return;
        }
        let entry = &self.ves[ve];
        let slot = rules::canary_slot(
            &spec.virtual_environment,
            &spec.app,
            entry.release.contains_key(&spec.app),
            entry.canaries.contains_key(&spec.app),
        );
        if let Err(reason) = slot {
            self.err(&id, "spec.app", reason);
            return;
        }
        let trust = self.trust[entry.environment].clone();
        match CompiledCanary::compile(canary, trust) {
            Ok(c) => {
                let canary = self.canaries.push(c);
                let of_app = CanaryOfApp { canary, deployment };
                self.ves[ve].canaries.insert(spec.app.clone(), of_app);
            }
            Err(errors) => self.errors.extend(errors),
        }
    }
}
