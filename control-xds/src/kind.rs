//! The kinds of resource, as one enum: parsed from what a user writes at the
//! edge ([`Kind::parse`]: `Canary`, `canaries`, `ve`, …), spelled back the
//! way errors and the CLI name them ([`Kind::as_str`]).

use std::fmt;

use switchyard_engine::Resource;

/// A kind of resource. Declared in the order of their names, so that sorting
/// by kind sorts as the names do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    AppDeployment,
    Canary,
    Environment,
    VirtualEnvironment,
}

impl Kind {
    /// The kind's name, as resource files spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::AppDeployment => "AppDeployment",
            Kind::Canary => "Canary",
            Kind::Environment => "Environment",
            Kind::VirtualEnvironment => "VirtualEnvironment",
        }
    }

    /// The kind of `resource`.
    pub fn of(resource: &Resource) -> Kind {
        match resource {
            Resource::AppDeployment(_) => Kind::AppDeployment,
            Resource::Canary(_) => Kind::Canary,
            Resource::Environment(_) => Kind::Environment,
            Resource::VirtualEnvironment(_) => Kind::VirtualEnvironment,
        }
    }

    /// A kind as a user writes it: its name, plural or short form, any case.
    pub fn parse(text: &str) -> Option<Kind> {
        match text.to_ascii_lowercase().as_str() {
            "environment" | "environments" | "env" => Some(Kind::Environment),
            "virtualenvironment" | "virtualenvironments" | "virtual-env" | "ve" => {
                Some(Kind::VirtualEnvironment)
            }
            "appdeployment" | "appdeployments" | "deployment" | "deployments" | "dep" => {
                Some(Kind::AppDeployment)
            }
            "canary" | "canaries" => Some(Kind::Canary),
            _ => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_from_what_users_write_and_sort_by_name() {
        assert_eq!(Kind::parse("ve"), Some(Kind::VirtualEnvironment));
        assert_eq!(Kind::parse("Canaries"), Some(Kind::Canary));
        assert_eq!(Kind::parse("pods"), None);
        let mut kinds = [
            Kind::VirtualEnvironment,
            Kind::Environment,
            Kind::Canary,
            Kind::AppDeployment,
        ];
        kinds.sort();
        let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
    }
}
