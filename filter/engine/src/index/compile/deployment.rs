//! Compiling an AppDeployment: its components (each with its own cluster) and
//! their routes (each with the cluster its options give), longest prefix first.

use super::clusters::Served;
use super::Builder;
use crate::index::ids::{ComponentId, Id};
use crate::index::rules::{self, FirstDefinition, UpstreamField};
use crate::index::table::{ComponentEntry, DeploymentEntry, RouteEntry};
use crate::resources::{AppDeployment, Component, RouteSpec};
use crate::route_options::Options;
use crate::validate;

/// Where in which deployment a component is being compiled.
struct At<'a> {
    /// `AppDeployment/NAME`, the resource problems are reported on.
    id: &'a str,
    dep: &'a AppDeployment,
    component: &'a str,
    component_id: ComponentId,
    /// `spec.components.NAME`.
    field: String,
}

impl Builder {
    pub(super) fn add_deployment(&mut self, dep: &AppDeployment) {
        let id = format!("AppDeployment/{}", dep.metadata.name);
        let spec = &dep.spec;
        self.check(&id, "spec.app", validate::check_name(&spec.app));
        let rule = rules::deployment_version(spec.version.as_deref());
        self.check(&id, "spec.version", rule);
        self.check(
            &id,
            "spec.components",
            rules::has_components(&spec.components),
        );
        let mut components = Vec::new();
        let mut routes = Vec::new();
        for (i, (name, comp)) in spec.components.iter().enumerate() {
            let at = At {
                id: &id,
                dep,
                component: name,
                component_id: ComponentId::from_position(i),
                field: format!("spec.components.{name}"),
            };
            components.push(self.add_component(&at, comp, &mut routes));
        }
        // Longest prefix first; the sort is stable, so ties keep component-name order
        // (BTreeMap) and then the order routes were written.
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        let dep_id = self.deployments.push(DeploymentEntry {
            name: dep.metadata.name.clone(),
            app: spec.app.clone(),
            version: spec.version.clone(),
            components,
            routes,
        });
        self.dep_by_name.insert(dep.metadata.name.clone(), dep_id);
    }

    /// One component: checks it, distills its clusters, and adds its routes.
    fn add_component(
        &mut self,
        at: &At<'_>,
        comp: &Component,
        routes: &mut Vec<RouteEntry>,
    ) -> ComponentEntry {
        let (id, field) = (at.id, &at.field);
        self.check(id, field.as_str(), validate::check_name(at.component));
        let version = rules::component_version(&comp.version);
        self.check(id, || format!("{field}.version"), version);
        let endpoints = rules::has_endpoints(&comp.endpoints);
        self.check(id, || format!("{field}.endpoints"), endpoints);
        for (i, e) in comp.endpoints.iter().enumerate() {
            let endpoint = validate::check_endpoint(e);
            self.check(id, || format!("{field}.endpoints[{i}]"), endpoint);
        }
        self.share_upstream(at, comp);
        for (i, v) in comp.vars.iter().enumerate() {
            self.check(id, || format!("{field}.vars[{i}]"), rules::var_name(v));
        }
        for (i, d) in comp.dependencies.iter().enumerate() {
            let rule = rules::dependency(d, at.component, &at.dep.spec.components);
            self.check(id, || format!("{field}.dependencies[{i}]"), rule);
        }
        let ofield = format!("{field}.options");
        let options = self.checked_options(id, &ofield, comp.options.as_ref());
        let policy = self.policy(id, &ofield, options.as_ref());
        let app = &at.dep.spec.app;
        let served = self.served_by(app, at.component, comp, policy);
        for (i, route) in comp.routes.iter().enumerate() {
            routes.push(self.add_route(at, comp, i, route, options.as_ref(), &served));
        }
        ComponentEntry {
            name: at.component.to_string(),
            version: comp.version.clone(),
            vars: comp.vars.clone(),
            dependencies: comp.dependencies.clone(),
            cluster: served.cluster,
            hash: served.hash,
        }
    }

    /// Equal component versions share one upstream: the first definition is
    /// recorded, later ones must agree with it.
    fn share_upstream(&mut self, at: &At<'_>, comp: &Component) {
        let key = (
            at.dep.spec.app.clone(),
            at.component.to_string(),
            comp.version.clone(),
        );
        let Some(first) = self.upstreams.get(&key) else {
            let first = FirstDefinition {
                deployment: at.dep.metadata.name.clone(),
                endpoints: comp.endpoints.clone(),
                protocol: comp.protocol,
            };
            self.upstreams.insert(key, first);
            return;
        };
        if let Err((differs, reason)) = rules::one_upstream(first, comp) {
            let field = match differs {
                UpstreamField::Protocol => format!("{}.protocol", at.field),
                UpstreamField::Endpoints => format!("{}.endpoints", at.field),
            };
            self.err(at.id, field, reason);
        }
    }

    /// Route `i` of a component: its match, and the cluster of its options
    /// patched over the component's (see `route_options`); refused options leave
    /// the route on the component's cluster.
    fn add_route(
        &mut self,
        at: &At<'_>,
        comp: &Component,
        i: usize,
        route: &RouteSpec,
        component_options: Option<&Options>,
        component_served: &Served,
    ) -> RouteEntry {
        let (id, rfield) = (at.id, format!("{}.routes[{i}]", at.field));
        let prefix = &route.route_match.path_prefix;
        let rule = validate::check_path_prefix(prefix);
        self.check(id, || format!("{rfield}.match.pathPrefix"), rule);
        for (mi, m) in route.route_match.methods.iter().enumerate() {
            let rule = validate::check_method(m);
            self.check(id, || format!("{rfield}.match.methods[{mi}]"), rule);
        }
        let rofield = format!("{rfield}.options");
        let served = match self.checked_options(id, &rofield, route.options.as_ref()) {
            Some(opts) => {
                let merged = component_options
                    .cloned()
                    .unwrap_or_default()
                    .patched(&opts);
                let policy = self.policy(id, &rofield, Some(&merged));
                self.served_by(&at.dep.spec.app, at.component, comp, policy)
            }
            None => component_served.clone(),
        };
        RouteEntry {
            prefix: prefix.clone(),
            methods: route.route_match.methods.clone(),
            component: at.component_id,
            cluster: served.cluster,
            hash: served.hash,
        }
    }
}
