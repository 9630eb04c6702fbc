//! Errors as types: configuration problems (reported with resource, field and
//! reason) and routing refusals (the JSON errors and statuses of DESIGN.md).

use std::fmt;

use serde::Serialize;

/// One problem found in the resources, precise enough for a user to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ValidationError {
    /// `Kind/name` of the resource, or `settings` for the plugin settings.
    pub resource: String,
    /// Dotted path of the field, e.g. `spec.components.backend.options.hash_header`.
    pub field: String,
    pub reason: String,
}

impl ValidationError {
    pub fn new(
        resource: impl Into<String>,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            resource: resource.into(),
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.resource, self.field, self.reason)
    }
}

/// Why a configuration was refused. Nothing of it is applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The text is not valid JSON / does not have the expected shape.
    #[error("line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    /// The resources parsed but break rules; every problem is listed.
    #[error("{} problem(s): {}", .0.len(), join(.0))]
    Invalid(Vec<ValidationError>),
}

fn join(errors: &[ValidationError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<serde_json::Error> for ConfigError {
    fn from(e: serde_json::Error) -> Self {
        ConfigError::Syntax {
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        }
    }
}

/// The error codes a request can be refused with (DESIGN.md, "A request's journey").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidContext,
    EnvironmentNotFound,
    VirtualEnvironmentNotFound,
    DeploymentNotFound,
    RouteNotFound,
    NoRelease,
    MissingContext,
    InvalidContextToken,
    ComponentNotInDeployment,
    DependencyNotDeclared,
    /// The path climbs above the root with dot segments, or has an encoded `/` or
    /// `\`, an invalid escape, invalid UTF-8 or a fragment.
    InvalidPath,
    /// The chosen cluster is not known to this Envoy yet (pull or static mode:
    /// the table names a cluster the bootstrap lacks).
    ClusterNotReady,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 12] = [
        ErrorCode::InvalidContext,
        ErrorCode::EnvironmentNotFound,
        ErrorCode::VirtualEnvironmentNotFound,
        ErrorCode::DeploymentNotFound,
        ErrorCode::RouteNotFound,
        ErrorCode::NoRelease,
        ErrorCode::MissingContext,
        ErrorCode::InvalidContextToken,
        ErrorCode::ComponentNotInDeployment,
        ErrorCode::DependencyNotDeclared,
        ErrorCode::InvalidPath,
        ErrorCode::ClusterNotReady,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidContext => "invalid_context",
            ErrorCode::EnvironmentNotFound => "environment_not_found",
            ErrorCode::VirtualEnvironmentNotFound => "virtual_environment_not_found",
            ErrorCode::DeploymentNotFound => "deployment_not_found",
            ErrorCode::RouteNotFound => "route_not_found",
            ErrorCode::NoRelease => "no_release",
            ErrorCode::MissingContext => "missing_context",
            ErrorCode::InvalidContextToken => "invalid_context_token",
            ErrorCode::ComponentNotInDeployment => "component_not_in_deployment",
            ErrorCode::DependencyNotDeclared => "dependency_not_declared",
            ErrorCode::InvalidPath => "invalid_path",
            ErrorCode::ClusterNotReady => "cluster_not_ready",
        }
    }

    pub fn status(self) -> u32 {
        match self {
            ErrorCode::InvalidContext | ErrorCode::InvalidPath => 400,
            ErrorCode::EnvironmentNotFound
            | ErrorCode::VirtualEnvironmentNotFound
            | ErrorCode::DeploymentNotFound
            | ErrorCode::RouteNotFound => 404,
            ErrorCode::NoRelease | ErrorCode::ClusterNotReady => 503,
            ErrorCode::MissingContext | ErrorCode::InvalidContextToken => 401,
            ErrorCode::ComponentNotInDeployment | ErrorCode::DependencyNotDeclared => 403,
        }
    }
}

/// A refused request: the code, and a message that names only what the client sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct RouteError {
    pub code: ErrorCode,
    pub message: String,
}

impl RouteError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The JSON body of DESIGN.md: `{"error": CODE, "message": TEXT}`.
    pub fn body(&self) -> String {
        serde_json::json!({"error": self.code.as_str(), "message": self.message}).to_string()
    }
}
