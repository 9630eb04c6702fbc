//! Canary routing (DESIGN.md `Canary`, step 5): exclude → match entries → weight.
//!
//! PLACEHOLDER: compiled and decided by the canary work (issue 4).

use std::sync::Arc;

use crate::decision::DecisionKind;
use crate::error::ValidationError;
use crate::request::Request;
use crate::resources::{Canary, Environment};

/// What an Environment contributes to canary decisions: JWT verification,
/// trusted proxies for the client address, and the country source. Compiled once.
#[derive(Debug, Default)]
pub struct EnvironmentTrust {}

impl EnvironmentTrust {
    pub fn compile(env: &Environment) -> Result<Self, Vec<ValidationError>> {
        let _ = env;
        Ok(Self {})
    }
}

/// A canary compiled for fast per-request decisions.
#[derive(Debug)]
pub struct CompiledCanary {
    pub name: String,
}

/// The canary's verdict for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanaryDecision {
    pub to_canary: bool,
    pub kind: DecisionKind,
    pub set_cookie: Option<String>,
    pub note: Option<&'static str>,
}

impl CompiledCanary {
    /// Checks the canary's own fields (weights, CIDRs, stickiness key...). References to
    /// other resources (VE, deployment, app) are checked by the index.
    pub fn compile(
        canary: &Canary,
        trust: Arc<EnvironmentTrust>,
    ) -> Result<Self, Vec<ValidationError>> {
        let _ = trust;
        Ok(Self {
            name: canary.metadata.name.clone(),
        })
    }

    pub fn decide(&self, request: &Request<'_>) -> CanaryDecision {
        let _ = request;
        CanaryDecision {
            to_canary: false,
            kind: DecisionKind::CanaryStable,
            set_cookie: None,
            note: None,
        }
    }
}
