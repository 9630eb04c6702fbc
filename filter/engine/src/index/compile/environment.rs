//! Compiling an Environment: its subPath, release policy, vars and canary trust;
//! later (once every VE is known) its default VE.

use std::sync::Arc;

use super::Builder;
use crate::canary::EnvironmentTrust;
use crate::index::rules;
use crate::index::table::EnvironmentEntry;
use crate::resources::{Environment, ReleasePolicyType};
use crate::validate;

impl Builder {
    pub(super) fn add_environment(&mut self, env: &Environment) {
        let id = format!("Environment/{}", env.metadata.name);
        let sub_path = env.spec.sub_path.clone();
        self.check(&id, "spec.subPath", validate::check_sub_path(&sub_path));
        let taken_by = self
            .env_by_sub_path
            .get(&sub_path)
            .map(|&other| self.environments[other].name.clone());
        let rule = rules::unique_sub_path(&sub_path, taken_by.as_deref());
        self.check(&id, "spec.subPath", rule);
        let trust = match EnvironmentTrust::compile(env) {
            Ok(t) => t,
            Err(errors) => {
                self.errors.extend(errors);
                EnvironmentTrust::default()
            }
        };
        let env_id = self.environments.push(EnvironmentEntry {
            name: env.metadata.name.clone(),
            strip_sub_path: env.spec.strip_sub_path,
            default_ve: None,
            policy: env
                .spec
                .release_policy
                .as_ref()
                .map(|p| p.policy_type)
                .unwrap_or(ReleasePolicyType::Testing),
            vars: env
                .vars
                .iter()
                .map(|(k, v)| (k.clone(), v.to_text()))
                .collect(),
        });
        self.trust.push(Arc::new(trust));
        self.env_by_name.insert(env.metadata.name.clone(), env_id);
        self.env_by_sub_path.entry(sub_path).or_insert(env_id);
    }

    pub(super) fn resolve_default_ve(&mut self, env: &Environment) {
        let Some(name) = &env.spec.default_virtual_environment else {
            return;
        };
        let id = format!("Environment/{}", env.metadata.name);
        let Some(&env_id) = self.env_by_name.get(&env.metadata.name) else {
            return;
        };
        let field = "spec.defaultVirtualEnvironment";
        let Some(&ve) = self.ve_by_name.get(name) else {
            self.err(&id, field, rules::missing("VirtualEnvironment", name));
            return;
        };
        let same_environment = self.ves[ve].environment == env_id;
        match rules::default_virtual_environment(name, same_environment) {
            Ok(()) => self.environments[env_id].default_ve = Some(ve),
            Err(reason) => self.err(&id, field, reason),
        }
    }
}
