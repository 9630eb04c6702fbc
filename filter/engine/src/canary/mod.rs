//! Canary routing (DESIGN.md `Canary`, step 5): exclude → match entries → weight.
//!
//! Everything is parsed when the canary is compiled (header names lower-cased,
//! CIDRs into integers, the weight into parts per million, JWT keys into key
//! objects); [`CompiledCanary::decide`] only borrows from the request, computes the
//! client address, country and JWT claims lazily and at most once, and allocates
//! only for JWT claims and for a new stickiness cookie.
//!
//! Semantics:
//! - `exclude` entries win over everything: the request stays on stable
//!   ([`DecisionKind::CanaryStable`]).
//! - `match` entries are tried in order; the first that matches sends the request
//!   to the canary with [`DecisionKind::CanaryMatch`]`(index)`. Inside one entry
//!   every key must match (AND); entries are OR'ed.
//!   - `headers` / `query`: exact, case-sensitive values (one, or any of a list);
//!     header names are case-insensitive, any line of a repeated header may match;
//!     query values are percent-decoded, the first occurrence counts.
//!   - `claims`: the JWT claim equals the value (string, number or bool, types
//!     must agree), or any of a list; a claim that is an array (`roles`, `aud`)
//!     matches when it contains the value. See [`jwt`] for when a token counts.
//!   - `sourceCidrs`: the client address (see [`ProxyTrust`]) is in one of them.
//!   - `countries`: the client's country (see [`GeoSource`]) is one of them.
//! - Otherwise `weight` (parts per million) decides: without stickiness a fresh
//!   random draw; with a stickiness key, `bucket(canary name, key) < weight`, so a
//!   user stays on one side while the weight is unchanged and raising the weight
//!   only moves users from stable to canary ([`DecisionKind::CanaryWeight`]).
//!   A missing key falls back to a random draw; for `cookie:NAME` a random id is
//!   generated, used, and returned in [`CanaryDecision::set_cookie`].
//! - Anything else: stable.

pub mod addr;
mod budget;
pub mod jwt;
mod trust;
pub mod weight;

use std::net::IpAddr;
use std::sync::Arc;

pub use trust::{EnvironmentTrust, GeoSource, ProxyTrust};

use self::addr::Cidr;
use self::jwt::Claims;
use self::trust::country_code;
use self::weight::{bucket, parse_weight, PPM_SCALE};
use crate::decision::DecisionKind;
use crate::error::ValidationError;
use crate::request::Request;
use crate::resources::{Canary, ClaimValue, MatchRule, OneOrMany};

/// Max-Age of the stickiness cookie the canary sets: 30 days.
pub const STICKY_COOKIE_MAX_AGE: u32 = 2_592_000;

/// A claim value to compare with.
#[derive(Debug, Clone, PartialEq)]
enum Scalar {
    Str(String),
    Num(serde_json::Number),
    Bool(bool),
}

impl Scalar {
    fn matches(&self, v: &serde_json::Value) -> bool {
        use serde_json::Value;
        match (self, v) {
            (Scalar::Str(a), Value::String(b)) => a == b,
            (Scalar::Bool(a), Value::Bool(b)) => a == b,
            (Scalar::Num(a), Value::Number(b)) => num_eq(a, b),
            (_, Value::Array(items)) => items.iter().any(|i| !i.is_array() && self.matches(i)),
            _ => false,
        }
    }
}

fn num_eq(a: &serde_json::Number, b: &serde_json::Number) -> bool {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return x == y;
    }
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// One compiled match / exclude entry: every non-empty part must match.
#[derive(Debug, Clone, Default)]
struct Rule {
    headers: Vec<(String, Vec<String>)>,
    query: Vec<(String, Vec<String>)>,
    cidrs: Vec<Cidr>,
    countries: Vec<[u8; 2]>,
    claims: Vec<(String, Vec<Scalar>)>,
}

/// How a sticky user is identified (`spec.stickiness.key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StickyKey {
    /// `claim:NAME`: a string or number claim of the verified JWT.
    Claim(String),
    /// `header:NAME` (lower-case).
    Header(String),
    /// `cookie:NAME`; set on the response when missing.
    Cookie(String),
    /// `source-ip`: the client address (see [`ProxyTrust`]).
    SourceIp,
}

impl StickyKey {
    fn parse(text: &str) -> Result<StickyKey, String> {
        let usage = "expected claim:NAME, header:NAME, cookie:NAME or source-ip";
        if text == "source-ip" {
            return Ok(StickyKey::SourceIp);
        }
        let Some((kind, name)) = text.split_once(':') else {
            return Err(format!("'{text}': {usage}"));
        };
        if name.is_empty() {
            return Err(format!("'{text}' names no {kind}: {usage}"));
        }
        match kind {
            "claim" => Ok(StickyKey::Claim(name.to_string())),
            "header" => {
                let name = name.to_ascii_lowercase();
                if jwt::valid_header_name(&name) {
                    Ok(StickyKey::Header(name))
                } else {
                    Err(format!("'{text}': '{name}' is not a header name"))
                }
            }
            "cookie" => {
                if jwt::valid_header_name(name) {
                    Ok(StickyKey::Cookie(name.to_string()))
                } else {
                    Err(format!("'{text}': '{name}' is not a cookie name"))
                }
            }
            _ => Err(format!("'{text}': {usage}")),
        }
    }
}

/// A canary compiled for fast per-request decisions.
#[derive(Debug)]
pub struct CompiledCanary {
    pub name: String,
    exclude: Vec<Rule>,
    rules: Vec<Rule>,
    weight_ppm: Option<u32>,
    sticky: Option<StickyKey>,
    trust: Arc<EnvironmentTrust>,
}

/// The canary's verdict for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanaryDecision {
    pub to_canary: bool,
    pub kind: DecisionKind,
    /// A `set-cookie` value for a `cookie:NAME` stickiness key the client lacked.
    pub set_cookie: Option<String>,
    /// Why the request's JWT gave no claims (one of [`jwt::ALL_NOTES`]), when a
    /// rule or the stickiness key needed them.
    pub note: Option<&'static str>,
}

/// Per-request lazily computed facts.
struct Facts<'t, 'r> {
    trust: &'t EnvironmentTrust,
    request: &'t Request<'r>,
    client: Option<Option<IpAddr>>,
    country: Option<Option<[u8; 2]>>,
    claims: Option<Option<Claims>>,
    note: Option<&'static str>,
}

impl<'t, 'r> Facts<'t, 'r> {
    fn client(&mut self) -> Option<IpAddr> {
        *self
            .client
            .get_or_insert_with(|| self.trust.client_ip(self.request))
    }

    fn country(&mut self) -> Option<[u8; 2]> {
        if let Some(c) = self.country {
            return c;
        }
        let client = self.client();
        let c = self.trust.country(self.request, client);
        self.country = Some(c);
        c
    }

    fn claims(&mut self) -> Option<&Claims> {
        if self.claims.is_none() {
            let claims = match self.trust.claims(self.request) {
                Ok(c) => Some(c),
                Err(note) => {
                    self.note = Some(note);
                    None
                }
            };
            self.claims = Some(claims);
        }
        self.claims.as_ref().and_then(Option::as_ref)
    }
}

impl Rule {
    fn compile(
        rule: &MatchRule,
        resource: &str,
        field: &str,
        trust: &EnvironmentTrust,
        errors: &mut Vec<ValidationError>,
    ) -> Rule {
        let mut err = |f: String, reason: String| {
            errors.push(ValidationError::new(resource, f, reason));
        };
        let mut out = Rule::default();
        if rule.headers.is_empty()
            && rule.query.is_empty()
            && rule.claims.is_empty()
            && rule.source_cidrs.is_empty()
            && rule.countries.is_empty()
        {
            err(
                field.to_string(),
                "an entry needs at least one of headers, query, claims, sourceCidrs, countries"
                    .into(),
            );
        }
        let values = |v: &OneOrMany| match v {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(list) => list.clone(),
        };
        for (name, v) in &rule.headers {
            let f = format!("{field}.headers.{name}");
            let lower = name.to_ascii_lowercase();
            if !jwt::valid_header_name(&lower) {
                err(f.clone(), format!("'{name}' is not a header name"));
            }
            if out.headers.iter().any(|(n, _)| *n == lower) {
                err(
                    f.clone(),
                    format!("header '{lower}' is listed twice (names are case-insensitive)"),
                );
            }
            let vals = values(v);
            if vals.is_empty() {
                err(f, "an empty list matches nothing".into());
            }
            out.headers.push((lower, vals));
        }
        for (name, v) in &rule.query {
            let f = format!("{field}.query.{name}");
            if name.is_empty() {
                err(f.clone(), "a query parameter needs a name".into());
            }
            let vals = values(v);
            if vals.is_empty() {
                err(f, "an empty list matches nothing".into());
            }
            out.query.push((name.clone(), vals));
        }
        if !rule.claims.is_empty() && trust.jwt.is_none() {
            err(
                format!("{field}.claims"),
                "claim rules need spec.jwt on the VirtualEnvironment's Environment".into(),
            );
        }
        for (name, v) in &rule.claims {
            let f = format!("{field}.claims.{name}");
            if name.is_empty() {
                err(f.clone(), "a claim needs a name".into());
            }
            let list: Vec<&serde_json::Value> = match v {
                ClaimValue::Scalar(s) => vec![s],
                ClaimValue::AnyOf(l) => l.iter().collect(),
            };
            if list.is_empty() {
                err(f.clone(), "an empty list matches nothing".into());
            }
            let mut scalars = Vec::with_capacity(list.len());
            for (i, value) in list.into_iter().enumerate() {
                let s = match value {
                    serde_json::Value::String(s) => Scalar::Str(s.clone()),
                    serde_json::Value::Number(n) => Scalar::Num(n.clone()),
                    serde_json::Value::Bool(b) => Scalar::Bool(*b),
                    other => {
                        let at = match v {
                            ClaimValue::AnyOf(_) => format!("{f}[{i}]"),
                            ClaimValue::Scalar(_) => f.clone(),
                        };
                        err(at, format!("{other} is not a string, number or bool"));
                        continue;
                    }
                };
                scalars.push(s);
            }
            out.claims.push((name.clone(), scalars));
        }
        for (i, c) in rule.source_cidrs.iter().enumerate() {
            match Cidr::parse(c) {
                Ok(c) => out.cidrs.push(c),
                Err(reason) => err(format!("{field}.sourceCidrs[{i}]"), reason),
            }
        }
        if !rule.countries.is_empty() && trust.geo.is_none() {
            err(
                format!("{field}.countries"),
                "country rules need spec.geo on the VirtualEnvironment's Environment".into(),
            );
        }
        for (i, c) in rule.countries.iter().enumerate() {
            match country_code(c) {
                Some(code) if c.trim() == c => out.countries.push(code),
                _ => err(
                    format!("{field}.countries[{i}]"),
                    format!("'{c}' is not a two-letter ISO country code"),
                ),
            }
        }
        out
    }

    fn matches(&self, facts: &mut Facts<'_, '_>) -> bool {
        let req = facts.request;
        for (name, values) in &self.headers {
            let hit = req
                .headers
                .iter()
                .filter(|(k, _)| k == name)
                .any(|(_, v)| values.iter().any(|x| x == v));
            if !hit {
                return false;
            }
        }
        for (name, values) in &self.query {
            match req.query_param(name) {
                Some(v) if values.iter().any(|x| *x == *v) => {}
                _ => return false,
            }
        }
        if !self.cidrs.is_empty() {
            match facts.client() {
                Some(ip) if self.cidrs.iter().any(|c| c.contains(ip)) => {}
                _ => return false,
            }
        }
        if !self.countries.is_empty() {
            match facts.country() {
                Some(code) if self.countries.contains(&code) => {}
                _ => return false,
            }
        }
        if !self.claims.is_empty() {
            let Some(claims) = facts.claims() else {
                return false;
            };
            for (name, expected) in &self.claims {
                match claims.get(name) {
                    Some(v) if expected.iter().any(|e| e.matches(v)) => {}
                    _ => return false,
                }
            }
        }
        true
    }
}

impl CompiledCanary {
    /// Checks the canary's own fields (weights, CIDRs, stickiness key...). References to
    /// other resources (VE, deployment, app) are checked by the index.
    pub fn compile(
        canary: &Canary,
        trust: Arc<EnvironmentTrust>,
    ) -> Result<Self, Vec<ValidationError>> {
        let resource = format!("Canary/{}", canary.metadata.name);
        let spec = &canary.spec;
        let mut errors = Vec::new();
        let exclude = spec
            .exclude
            .iter()
            .enumerate()
            .map(|(i, r)| {
                Rule::compile(
                    r,
                    &resource,
                    &format!("spec.exclude[{i}]"),
                    &trust,
                    &mut errors,
                )
            })
            .collect();
        let rules = spec
            .match_rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                Rule::compile(
                    r,
                    &resource,
                    &format!("spec.match[{i}]"),
                    &trust,
                    &mut errors,
                )
            })
            .collect();
        let weight_ppm = match &spec.weight {
            None => None,
            Some(w) => match parse_weight(w) {
                Ok(ppm) => Some(ppm),
                Err(reason) => {
                    errors.push(ValidationError::new(&resource, "spec.weight", reason));
                    None
                }
            },
        };
        let sticky = match &spec.stickiness {
            None => None,
            Some(s) => match StickyKey::parse(&s.key) {
                Ok(k) => {
                    if matches!(k, StickyKey::Claim(_)) && trust.jwt.is_none() {
                        errors.push(ValidationError::new(
                            &resource,
                            "spec.stickiness.key",
                            "claim stickiness needs spec.jwt on the VirtualEnvironment's Environment",
                        ));
                    }
                    Some(k)
                }
                Err(reason) => {
                    errors.push(ValidationError::new(
                        &resource,
                        "spec.stickiness.key",
                        reason,
                    ));
                    None
                }
            },
        };
        if spec.match_rules.is_empty() && spec.weight.is_none() && spec.steps.is_empty() {
            errors.push(ValidationError::new(
                &resource,
                "spec",
                "a canary needs match entries, a weight or steps, else it never sends a request to the canary",
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            name: canary.metadata.name.clone(),
            exclude,
            rules,
            weight_ppm,
            sticky,
            trust,
        })
    }

    /// The weight in parts per million, if the canary has one.
    pub fn weight_ppm(&self) -> Option<u32> {
        self.weight_ppm
    }

    /// The stickiness key, if any.
    pub fn sticky_key(&self) -> Option<&StickyKey> {
        self.sticky.as_ref()
    }

    /// The Environment trust this canary was compiled with.
    pub fn trust(&self) -> &EnvironmentTrust {
        &self.trust
    }

    pub fn decide(&self, request: &Request<'_>) -> CanaryDecision {
        let mut facts = Facts {
            trust: &self.trust,
            request,
            client: None,
            country: None,
            claims: None,
            note: None,
        };
        let stable = |facts: &Facts<'_, '_>, set_cookie| CanaryDecision {
            to_canary: false,
            kind: DecisionKind::CanaryStable,
            set_cookie,
            note: facts.note,
        };
        if self.exclude.iter().any(|r| r.matches(&mut facts)) {
            return stable(&facts, None);
        }
        if let Some(i) = self.rules.iter().position(|r| r.matches(&mut facts)) {
            return CanaryDecision {
                to_canary: true,
                kind: DecisionKind::CanaryMatch(i),
                set_cookie: None,
                note: facts.note,
            };
        }
        let Some(ppm) = self.weight_ppm else {
            return stable(&facts, None);
        };
        let (to_canary, set_cookie) = self.weighted(ppm, &mut facts);
        if to_canary {
            CanaryDecision {
                to_canary,
                kind: DecisionKind::CanaryWeight,
                set_cookie,
                note: facts.note,
            }
        } else {
            stable(&facts, set_cookie)
        }
    }

    fn weighted(&self, ppm: u32, facts: &mut Facts<'_, '_>) -> (bool, Option<String>) {
        let salt = self.name.as_bytes();
        let by_bucket = |key: &[u8]| bucket(salt, key) < ppm;
        let random = || fastrand::u32(0..PPM_SCALE) < ppm;
        match &self.sticky {
            None => (random(), None),
            Some(StickyKey::Header(name)) => match facts.request.header(name) {
                Some(v) if !v.is_empty() => (by_bucket(v.as_bytes()), None),
                _ => (random(), None),
            },
            Some(StickyKey::Cookie(name)) => match facts.request.cookie(name) {
                Some(v) if !v.is_empty() => (by_bucket(v.as_bytes()), None),
                _ => {
                    let id = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
                    let cookie = format!(
                        "{name}={id}; Path=/; Max-Age={STICKY_COOKIE_MAX_AGE}; HttpOnly; SameSite=Lax"
                    );
                    (by_bucket(id.as_bytes()), Some(cookie))
                }
            },
            Some(StickyKey::SourceIp) => match facts.client() {
                Some(IpAddr::V4(v4)) => (by_bucket(&v4.octets()), None),
                Some(IpAddr::V6(v6)) => (by_bucket(&v6.octets()), None),
                None => (random(), None),
            },
            Some(StickyKey::Claim(name)) => {
                let hit = facts
                    .claims()
                    .and_then(|c| c.get(name))
                    .and_then(|v| match v {
                        serde_json::Value::String(s) if !s.is_empty() => {
                            Some(by_bucket(s.as_bytes()))
                        }
                        serde_json::Value::Number(n) => Some(by_bucket(n.to_string().as_bytes())),
                        _ => None,
                    });
                (hit.unwrap_or_else(random), None)
            }
        }
    }
}

#[cfg(test)]
mod tests;
