//! Every rule the compiler enforces on resources, each written once: names,
//! fields, references between resources, and what resources must agree on.
//! The compiler ([`super::compile`]) calls them where it meets the values and
//! otherwise trusts what it is given.
//!
//! Each rule returns the reason a value is wrong (the compiler adds resource and
//! field). Value syntax (DNS labels, endpoints, prefixes, methods) comes from
//! [`crate::validate`]; the parsers that check while they parse keep their rules
//! beside their types: route options ([`crate::route_options`]), canary matches
//! and Environment trust ([`crate::canary`]), context keys ([`crate::context`]).
//!
//! The control plane may apply a rule earlier (e.g. [`stable_release`] when a
//! release is asked for), by calling it here rather than writing it again.

use std::collections::BTreeMap;

use crate::resources::{Component, Protocol, ReleasePolicyType};

/// `spec.version` of a deployment: absent, or not empty.
pub fn deployment_version(version: Option<&str>) -> Result<(), String> {
    match version {
        Some("") => Err("must not be empty when given".to_string()),
        _ => Ok(()),
    }
}

/// `spec.components`: at least one.
pub fn has_components<T>(components: &BTreeMap<String, T>) -> Result<(), String> {
    match components.is_empty() {
        true => Err("a deployment needs at least one component".to_string()),
        false => Ok(()),
    }
}

/// A component version names an upstream: a token without spaces or `/`.
pub fn component_version(version: &str) -> Result<(), String> {
    let bad = version.is_empty()
        || version
            .chars()
            .any(|c| c.is_whitespace() || c == '/' || c.is_control());
    match bad {
        true => Err("must be a non-empty token without spaces or '/'".to_string()),
        false => Ok(()),
    }
}

/// A component's `endpoints`: at least one.
pub fn has_endpoints(endpoints: &[String]) -> Result<(), String> {
    match endpoints.is_empty() {
        true => Err("at least one host:port is needed".to_string()),
        false => Ok(()),
    }
}

/// A var name (delivered as `kf-var-NAME`): letters, digits, `-`, `_`.
pub fn var_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    match ok {
        true => Ok(()),
        false => Err(format!("'{name}' is not a valid var name")),
    }
}

/// A dependency of `component`: another component of the same deployment.
pub fn dependency(
    dependency: &str,
    component: &str,
    components: &BTreeMap<String, Component>,
) -> Result<(), String> {
    if !components.contains_key(dependency) {
        Err(format!(
            "component '{dependency}' is not part of this deployment"
        ))
    } else if dependency == component {
        Err("a component cannot depend on itself".to_string())
    } else {
        Ok(())
    }
}

/// A component version as first defined (by which deployment, with which
/// endpoints and protocol).
#[derive(Debug, Clone)]
pub(crate) struct FirstDefinition {
    pub deployment: String,
    pub endpoints: Vec<String>,
    pub protocol: Protocol,
}

/// Where two definitions of one component version disagree.
#[derive(Debug, PartialEq, Eq)]
pub enum UpstreamField {
    Protocol,
    Endpoints,
}

/// Equal component versions (of one app) share one upstream: every deployment
/// defining the version must give the endpoints and protocol of the first.
pub(crate) fn one_upstream(
    first: &FirstDefinition,
    component: &Component,
) -> Result<(), (UpstreamField, String)> {
    let differs = |what: &str| {
        format!(
            "component version {} is also defined by AppDeployment/{} with {what}; equal versions share one upstream",
            component.version, first.deployment
        )
    };
    if first.protocol != component.protocol {
        Err((UpstreamField::Protocol, differs("another protocol")))
    } else if first.endpoints != component.endpoints {
        Err((UpstreamField::Endpoints, differs("other endpoints")))
    } else {
        Ok(())
    }
}

/// A reference to a resource that is not there.
pub fn missing(kind: &str, name: &str) -> String {
    format!("{kind}/{name} does not exist")
}

/// A deployment released (or canaried) for `app` must be a deployment of it.
/// `canary` chooses the canary's wording.
pub fn deployment_of_app(
    deployment: &str,
    its_app: &str,
    app: &str,
    canary: bool,
) -> Result<(), String> {
    match (its_app == app, canary) {
        (true, _) => Ok(()),
        (false, false) => Err(format!(
            "AppDeployment/{deployment} belongs to app '{its_app}'"
        )),
        (false, true) => Err(format!(
            "AppDeployment/{deployment} belongs to app '{its_app}', not '{app}'"
        )),
    }
}

/// An Environment with a Stable release policy releases only versioned deployments.
pub fn stable_release(
    policy: ReleasePolicyType,
    environment: &str,
    deployment: &str,
    version: Option<&str>,
) -> Result<(), String> {
    if policy == ReleasePolicyType::Stable && version.is_none() {
        return Err(format!(
            "Environment/{environment} has a Stable release policy: AppDeployment/{deployment} needs a version"
        ));
    }
    Ok(())
}

/// An Environment's default VE must be one of its own.
pub fn default_virtual_environment(name: &str, same_environment: bool) -> Result<(), String> {
    match same_environment {
        true => Ok(()),
        false => Err(format!(
            "VirtualEnvironment/{name} belongs to another environment"
        )),
    }
}

/// Two Environments cannot share a subPath.
pub fn unique_sub_path(sub_path: &str, taken_by: Option<&str>) -> Result<(), String> {
    match taken_by {
        None => Ok(()),
        Some(other) => Err(format!(
            "'{sub_path}' is already the subPath of Environment/{other}"
        )),
    }
}

/// A resource name is defined once per kind.
pub fn unique_name(defined_before: bool) -> Result<(), String> {
    match defined_before {
        true => Err("defined more than once".to_string()),
        false => Ok(()),
    }
}

/// A canary's stable side is the VE's release of the app, and a VE has at most
/// one canary per app.
pub fn canary_slot(ve: &str, app: &str, released: bool, has_canary: bool) -> Result<(), String> {
    if !released {
        return Err(format!(
            "VirtualEnvironment/{ve} has no release of app '{app}'; the release is the canary's stable side"
        ));
    }
    if has_canary {
        return Err(format!(
            "VirtualEnvironment/{ve} already has a canary for app '{app}'"
        ));
    }
    Ok(())
}

/// Internal mode verifies `kf-context`, so it needs context keys, unless they
/// arrive with a pulled table. Checked when the settings give none.
pub fn internal_mode_keys(internal: bool, pulled: bool) -> Result<(), String> {
    match internal && !pulled {
        true => Err("internal mode needs context keys to verify kf-context".to_string()),
        false => Ok(()),
    }
}
