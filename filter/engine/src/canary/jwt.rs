//! JWT verification for canary claim rules and `claim:` stickiness.
//!
//! Keys are parsed once, when the Environment is compiled; a request's token is
//! verified at most once per decision, and only when some rule needs claims.
//!
//! A token yields claims only if all of these hold, otherwise the request simply
//! has no claims and the returned note says why (it then goes to stable unless
//! a rule without claims matches):
//! - it is at most [`MAX_TOKEN_LEN`] bytes (`jwt_oversized`) and well formed
//!   (`jwt_malformed`), and its `alg` is not `none` (`jwt_alg_none`);
//! - its `kid`, when present, names a configured key (`jwt_unknown_kid`); without a
//!   `kid`, every configured key of the token's `alg` is tried;
//! - the key's algorithm is the token's `alg` (`jwt_alg_mismatch`): the algorithm
//!   comes from the configuration, never from the token;
//! - the signature verifies (`jwt_bad_signature`);
//! - `exp` is not past and `nbf` / `iat` are not in the future, both with the
//!   Environment's clock skew (`jwt_expired`, `jwt_not_yet_valid`), measured with
//!   the request's clock;
//! - `iss` is one of `issuers` and `aud` contains one of `audiences`, when those
//!   lists are set (`jwt_bad_issuer`, `jwt_bad_audience`).
//!
//! No token at all gives `jwt_missing`.
//!
//! **Forged tokens are not a CPU amplifier.** A signature check costs up to a
//! hundred times a whole request (inside Envoy: ES384 37.7 M instructions, ES256
//! 13.6 M, PS256 8.7 M, RS256 7.6 M, EdDSA 1.7 M, HS256 0.1 M, against 0.31 M for
//! a request without a token), and a client can send a fresh forged token with
//! every request, so no cache helps. Two defences, both before the signature:
//! - **Cheap checks** on the unverified payload: `exp`, `nbf`, `iat`, `iss` and
//!   `aud` (same rules, skew and notes as after the signature). They only ever
//!   *refuse*: unauthenticated claims are a filter, never a grant; the verified
//!   claims are checked again after the signature.
//! - **A verification budget** per verifier — per worker, since each Envoy
//!   worker runs its own VM and compiles its own index ([`super::budget`]):
//!   every uncached token earns a third of a request's cost, a token that
//!   fails spends the measured cost of each check it failed ([`Key::cost`]),
//!   a token that verifies spends nothing; a token is checked only when the budget holds every check
//!   it may need (all keys of its `alg` without a `kid`). When it does not, the
//!   request has no claims (`jwt_unverified`, so it goes to stable, never
//!   fails), and the token is remembered: when it comes back it may use a
//!   reserve that refills with time only, which distinct forged tokens never
//!   reach.
//!   So a flood of forged tokens costs at most a third of a request per
//!   request on average plus one burst; tokens verified before stay cached and
//!   keep routing by their claims, and a new valid token is verified on its
//!   next request within a second, flood or not.
//!
//! Header and payload must each be one JSON object (RFC 7515 §5.2, RFC 7519
//! §7.2): an array or any other JSON value is `jwt_malformed`.
//!
//! `trustedPayloadHeader` (off by default): when set and the header is present, its
//! value — the base64url JSON payload that Envoy's `jwt_authn` filter writes with
//! `forward_payload_header` after *it* verified the token — is trusted as the claims
//! without verifying anything again. Only enable it when `jwt_authn` runs before
//! this filter and that header cannot reach the filter from a client unverified
//! (e.g. `jwt_authn` rejects requests with failed tokens, or a route strips the
//! header). When the header is absent, the token is verified with the keys as usual.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};

use super::budget::{Budget, Pool};
pub use super::budget::{BUDGET_EARN, BUDGET_REFILL_SECONDS, RESERVE_REFILL_SECONDS};

use base64::Engine;
use jwt_simple::algorithms::{
    ECDSAP256PublicKeyLike, ECDSAP384PublicKeyLike, EdDSAPublicKeyLike, MACLike, RSAPublicKeyLike,
};
use jwt_simple::algorithms::{
    ES256KeyPair, ES256PublicKey, ES384KeyPair, ES384PublicKey, Ed25519KeyPair, Ed25519PublicKey,
    HS256Key, HS384Key, HS512Key, PS256KeyPair, PS256PublicKey, PS384KeyPair, PS384PublicKey,
    PS512KeyPair, PS512PublicKey, RS256KeyPair, RS256PublicKey, RS384KeyPair, RS384PublicKey,
    RS512KeyPair, RS512PublicKey,
};
use jwt_simple::claims::{Audiences, JWTClaims};
use jwt_simple::common::VerificationOptions;
use jwt_simple::prelude::{Duration, UnixTimeStamp};
use jwt_simple::token::Token;
use jwt_simple::JWTError;
use serde_json::{Map, Value};

use crate::error::ValidationError;
use crate::request::Request;
use crate::resources::{JwtKey, JwtSettings};

/// Longer tokens are refused before any parsing (`jwt_oversized`).
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Default allowed clock skew for `exp` / `nbf` / `iat`, in seconds.
pub const DEFAULT_CLOCK_SKEW_SECONDS: u64 = 30;

pub const NOTE_MISSING: &str = "jwt_missing";
pub const NOTE_OVERSIZED: &str = "jwt_oversized";
pub const NOTE_MALFORMED: &str = "jwt_malformed";
pub const NOTE_ALG_NONE: &str = "jwt_alg_none";
pub const NOTE_UNKNOWN_KID: &str = "jwt_unknown_kid";
pub const NOTE_ALG_MISMATCH: &str = "jwt_alg_mismatch";
pub const NOTE_BAD_SIGNATURE: &str = "jwt_bad_signature";
pub const NOTE_EXPIRED: &str = "jwt_expired";
pub const NOTE_NOT_YET_VALID: &str = "jwt_not_yet_valid";
pub const NOTE_BAD_ISSUER: &str = "jwt_bad_issuer";
pub const NOTE_BAD_AUDIENCE: &str = "jwt_bad_audience";
pub const NOTE_UNVERIFIED: &str = "jwt_unverified";

/// Every note a JWT can produce, e.g. to pre-define one stat per note.
pub const ALL_NOTES: [&str; 12] = [
    NOTE_MISSING,
    NOTE_OVERSIZED,
    NOTE_MALFORMED,
    NOTE_ALG_NONE,
    NOTE_UNKNOWN_KID,
    NOTE_ALG_MISMATCH,
    NOTE_BAD_SIGNATURE,
    NOTE_EXPIRED,
    NOTE_NOT_YET_VALID,
    NOTE_BAD_ISSUER,
    NOTE_BAD_AUDIENCE,
    NOTE_UNVERIFIED,
];

/// The claims of a verified token: the registered string claims (`sub`, `iss`,
/// `aud`, `jti`, `nonce`) and every custom claim, by name.
pub type Claims = Map<String, Value>;

/// The algorithms a key may declare.
pub const ALGORITHMS: [&str; 13] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA", "Ed25519",
];

enum KeyKind {
    Hs256(HS256Key),
    Hs384(HS384Key),
    Hs512(HS512Key),
    Rs256(RS256PublicKey),
    Rs384(RS384PublicKey),
    Rs512(RS512PublicKey),
    Ps256(PS256PublicKey),
    Ps384(PS384PublicKey),
    Ps512(PS512PublicKey),
    Es256(ES256PublicKey),
    Es384(ES384PublicKey),
    EdDsa(Ed25519PublicKey),
}

struct Key {
    kid: Option<String>,
    /// The `alg` a token must declare to be checked with this key.
    alg: &'static str,
    kind: KeyKind,
    /// What one signature check costs, in budget units ([`Key::cost`]).
    cost: u64,
}

/// An Environment's compiled JWT settings.
pub struct JwtVerifier {
    header: String,
    bearer: bool,
    issuers: Vec<String>,
    audiences: Vec<String>,
    keys: Vec<Key>,
    payload_header: Option<String>,
    skew: u64,
    /// Tokens that verified, with their validity window (`nbf`, `exp`): a client
    /// sends the same token many times, and a signature check costs 10 µs (HS256)
    /// to 0.7 ms (ES256). Only successes are kept, keyed by the whole token.
    verified: Mutex<HashMap<String, VerifiedToken>>,
    /// Credit for signature checks that fail.
    budget: Budget,
}

struct VerifiedToken {
    not_before: u64,
    expires_at: u64,
    claims: Claims,
}

/// Verified tokens remembered at most (the cache is emptied when full).
const VERIFIED_CACHE_SIZE: usize = 1024;

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<(&Option<String>, &str)> =
            self.keys.iter().map(|k| (&k.kid, k.alg)).collect();
        f.debug_struct("JwtVerifier")
            .field("header", &self.header)
            .field("issuers", &self.issuers)
            .field("audiences", &self.audiences)
            .field("keys", &keys)
            .field("payload_header", &self.payload_header)
            .field("skew", &self.skew)
            .finish()
    }
}

macro_rules! public_key {
    ($pem:expr, $public:ty, $pair:ty) => {
        match <$public>::from_pem($pem) {
            Ok(k) => Ok(k),
            Err(_) => <$pair>::from_pem($pem).map(|kp| kp.public_key()),
        }
    };
}

fn parse_key(alg: &str, pem: &str) -> Result<KeyKind, jwt_simple::Error> {
    Ok(match alg {
        "RS256" => KeyKind::Rs256(public_key!(pem, RS256PublicKey, RS256KeyPair)?),
        "RS384" => KeyKind::Rs384(public_key!(pem, RS384PublicKey, RS384KeyPair)?),
        "RS512" => KeyKind::Rs512(public_key!(pem, RS512PublicKey, RS512KeyPair)?),
        "PS256" => KeyKind::Ps256(public_key!(pem, PS256PublicKey, PS256KeyPair)?),
        "PS384" => KeyKind::Ps384(public_key!(pem, PS384PublicKey, PS384KeyPair)?),
        "PS512" => KeyKind::Ps512(public_key!(pem, PS512PublicKey, PS512KeyPair)?),
        "ES256" => KeyKind::Es256(public_key!(pem, ES256PublicKey, ES256KeyPair)?),
        "ES384" => KeyKind::Es384(public_key!(pem, ES384PublicKey, ES384KeyPair)?),
        _ => KeyKind::EdDsa(public_key!(pem, Ed25519PublicKey, Ed25519KeyPair)?),
    })
}

/// Header names as Envoy hands them over: lower-case HTTP tokens.
pub(crate) fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Checks the settings other than the keys; returns the token header, the
/// trusted payload header (both lower-case) and the clock skew.
fn check_settings(
    resource: &str,
    s: &JwtSettings,
    errors: &mut Vec<ValidationError>,
) -> (String, Option<String>, u64) {
    let mut err = |field: String, reason: String| {
        errors.push(ValidationError::new(resource, field, reason));
    };
    let header = s.header.to_ascii_lowercase();
    if !valid_header_name(&header) {
        err(
            "spec.jwt.header".into(),
            format!("'{}' is not a header name", s.header),
        );
    }
    let payload_header = s
        .trusted_payload_header
        .as_ref()
        .map(|h| h.to_ascii_lowercase());
    if let Some(h) = &payload_header {
        if !valid_header_name(h) {
            err(
                "spec.jwt.trustedPayloadHeader".into(),
                format!("'{h}' is not a header name"),
            );
        }
    }
    if s.keys.is_empty() && payload_header.is_none() {
        err(
            "spec.jwt.keys".into(),
            "at least one key is needed to verify tokens (or set trustedPayloadHeader)".into(),
        );
    }
    for (i, v) in s.issuers.iter().enumerate() {
        if v.is_empty() {
            err(format!("spec.jwt.issuers[{i}]"), "must not be empty".into());
        }
    }
    for (i, v) in s.audiences.iter().enumerate() {
        if v.is_empty() {
            err(
                format!("spec.jwt.audiences[{i}]"),
                "must not be empty".into(),
            );
        }
    }
    let skew = s.clock_skew_seconds.unwrap_or(DEFAULT_CLOCK_SKEW_SECONDS);
    if skew > 3600 {
        err(
            "spec.jwt.clockSkewSeconds".into(),
            format!("{skew} seconds is more than the 3600 allowed"),
        );
    }
    (header, payload_header, skew)
}

/// Compiles `keys[i]` (its kid checked against the keys before it), or
/// reports why it cannot be used.
fn compile_key(
    resource: &str,
    keys: &[JwtKey],
    i: usize,
    errors: &mut Vec<ValidationError>,
) -> Option<Key> {
    let k = &keys[i];
    let mut err = |f: &str, reason: String| {
        errors.push(ValidationError::new(
            resource,
            format!("spec.jwt.keys[{i}].{f}"),
            reason,
        ));
    };
    if let Some(kid) = &k.kid {
        if kid.is_empty() {
            err("kid", "must not be empty".into());
        } else if keys[..i].iter().any(|o| o.kid.as_deref() == Some(kid)) {
            err("kid", format!("kid '{kid}' is used by another key"));
        }
    }
    let Some(alg) = ALGORITHMS.iter().find(|a| **a == k.alg).copied() else {
        let reason = if k.alg.eq_ignore_ascii_case("none") {
            "'none' is not allowed: unsigned tokens are never trusted".to_string()
        } else {
            format!("'{}' is not one of {}", k.alg, ALGORITHMS.join(", "))
        };
        err("alg", reason);
        return None;
    };
    // `Ed25519` is the newer name of `EdDSA` with Ed25519 keys; both verify the same.
    let alg = if alg == "Ed25519" { "EdDSA" } else { alg };
    match key_kind(alg, k) {
        Ok(kind) => Some(Key {
            kid: k.kid.clone(),
            alg,
            cost: Key::cost(&kind),
            kind,
        }),
        Err((f, reason)) => {
            err(f, reason);
            None
        }
    }
}

/// The verifying key of `k` for `alg` (a known algorithm), or the field at
/// fault and why.
fn key_kind(alg: &'static str, k: &JwtKey) -> Result<KeyKind, (&'static str, String)> {
    let min = match alg {
        "HS256" => Some(32),
        "HS384" => Some(48),
        "HS512" => Some(64),
        _ => None,
    };
    if let Some(min) = min {
        let bytes = hmac_secret(alg, min, k)?;
        return Ok(match alg {
            "HS256" => KeyKind::Hs256(HS256Key::from_bytes(&bytes)),
            "HS384" => KeyKind::Hs384(HS384Key::from_bytes(&bytes)),
            _ => KeyKind::Hs512(HS512Key::from_bytes(&bytes)),
        });
    }
    if let Some(f) = [
        ("secret", k.secret.is_some()),
        ("secretBase64", k.secret_base64.is_some()),
    ]
    .into_iter()
    .find_map(|(f, set)| set.then_some(f))
    {
        return Err((f, format!("{alg} keys take a 'pem', not a '{f}'")));
    }
    let Some(pem) = &k.pem else {
        return Err(("pem", format!("{alg} needs a public key 'pem'")));
    };
    parse_key(alg, pem).map_err(|e| ("pem", format!("not a valid {alg} key: {e}")))
}

impl JwtVerifier {
    /// Parses the keys; `resource` is `Environment/name`. Every problem is
    /// reported, not just the first.
    pub fn compile(resource: &str, s: &JwtSettings) -> Result<Self, Vec<ValidationError>> {
        let mut errors = Vec::new();
        let (header, payload_header, skew) = check_settings(resource, s, &mut errors);
        let keys: Vec<Key> = (0..s.keys.len())
            .filter_map(|i| compile_key(resource, &s.keys, i, &mut errors))
            .collect();
        if !errors.is_empty() {
            return Err(errors);
        }
        // One burst: every check the dearest token may need (all keys of its alg).
        let cap = ALGORITHMS
            .iter()
            .map(|alg| keys.iter().filter(|k| k.alg == *alg).map(|k| k.cost).sum())
            .max()
            .unwrap_or(0);
        Ok(JwtVerifier {
            verified: Mutex::default(),
            budget: Budget::new(cap),
            bearer: header == "authorization",
            header,
            issuers: s.issuers.clone(),
            audiences: s.audiences.clone(),
            keys,
            payload_header,
            skew,
        })
    }

    /// The request's claims, or why it has none.
    pub fn claims(&self, request: &Request<'_>) -> Result<Claims, &'static str> {
        if let Some(h) = &self.payload_header {
            if let Some(payload) = request.header(h) {
                return decode_payload(payload);
            }
        }
        let token = self.token(request).ok_or(NOTE_MISSING)?;
        self.verify(token, request.now_unix_seconds)
    }

    fn token<'r>(&self, request: &Request<'r>) -> Option<&'r str> {
        let value = request.header(&self.header)?.trim();
        let token = if self.bearer {
            let (scheme, rest) = value.split_once(' ')?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return None;
            }
            rest.trim()
        } else {
            value
        };
        (!token.is_empty()).then_some(token)
    }

    /// Verifies `token` at time `now` (Unix seconds).
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, &'static str> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(NOTE_OVERSIZED);
        }
        // RFC 7515 §5.2: the header is one JSON object (serde would read an array too).
        json_object(token.split('.').next().unwrap_or_default())?;
        let meta = Token::decode_metadata(token).map_err(|_| NOTE_MALFORMED)?;
        let alg = meta.algorithm();
        if alg.eq_ignore_ascii_case("none") {
            return Err(NOTE_ALG_NONE);
        }
        let kid = meta.key_id();
        if let Some(kid) = kid {
            if !self.keys.iter().any(|k| k.kid.as_deref() == Some(kid)) {
                return Err(NOTE_UNKNOWN_KID);
            }
        }
        let alg = if alg == "Ed25519" { "EdDSA" } else { alg };
        let options = VerificationOptions {
            time_tolerance: Some(Duration::from_secs(self.skew)),
            artificial_time: Some(UnixTimeStamp::from_secs(now)),
            max_token_length: Some(MAX_TOKEN_LEN),
            ..VerificationOptions::default()
        };
        if let Some(claims) = self.cached(token, now) {
            return Ok(claims);
        }
        self.budget.earn(now);
        let candidates = || {
            self.keys
                .iter()
                .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
                .filter(|k| k.alg == alg)
        };
        if candidates().next().is_none() {
            return Err(NOTE_ALG_MISMATCH);
        }
        self.precheck(token, now)?;
        let cost = candidates().map(|k| k.cost).sum();
        let pool = self.budget.grant(token, cost, now).ok_or(NOTE_UNVERIFIED)?;
        self.check(token, candidates(), pool, options)
    }

    /// Checks `token` with each key in turn until one verifies. A token that
    /// verifies spends nothing (not even the keys tried before); otherwise
    /// `pool` pays for every signature check that failed.
    fn check<'k>(
        &self,
        token: &str,
        keys: impl Iterator<Item = &'k Key>,
        pool: Pool,
        options: VerificationOptions,
    ) -> Result<Claims, &'static str> {
        let mut outcome = Err(NOTE_ALG_MISMATCH);
        let mut failed_cost = 0;
        for key in keys {
            match key.verify(token, options.clone()) {
                Ok(claims) => {
                    let not_before = claims.invalid_before.map_or(0, |t| t.as_secs());
                    let expires_at = claims.expires_at.map_or(u64::MAX, |t| t.as_secs());
                    let claims = self.accept(claims)?;
                    self.remember(token, not_before, expires_at, &claims);
                    return Ok(claims);
                }
                Err(e) => {
                    let note = note_for(&e);
                    if note == NOTE_BAD_SIGNATURE {
                        failed_cost += key.cost;
                    }
                    // Another key might still verify; keep the most telling failure.
                    if outcome == Err(NOTE_ALG_MISMATCH) || outcome == Err(NOTE_BAD_SIGNATURE) {
                        outcome = Err(note);
                    }
                }
            }
        }
        self.budget.spend(pool, failed_cost);
        outcome
    }

    /// The checks the unverified payload can fail before any signature is
    /// checked: expiry, not-before, issued-at, issuer, audience — each only when
    /// the payload states it in the type the full check reads, so this never
    /// refuses a token the full check would accept.
    fn precheck(&self, token: &str, now: u64) -> Result<(), &'static str> {
        let Some(payload) = token.split('.').nth(1) else {
            return Err(NOTE_MALFORMED);
        };
        let claims = json_object(payload)?;
        let skew = self.skew;
        if let Some(exp) = claims.get("exp").and_then(Value::as_u64) {
            if !(now >= skew && now - skew <= exp) {
                return Err(NOTE_EXPIRED);
            }
        }
        for name in ["nbf", "iat"] {
            if let Some(t) = claims.get(name).and_then(Value::as_u64) {
                if now.saturating_add(skew) < t {
                    return Err(NOTE_NOT_YET_VALID);
                }
            }
        }
        if !self.issuers.is_empty() {
            match claims.get("iss") {
                None => return Err(NOTE_BAD_ISSUER),
                Some(Value::String(iss)) if !self.issuers.contains(iss) => {
                    return Err(NOTE_BAD_ISSUER)
                }
                _ => {}
            }
        }
        if !self.audiences.is_empty() {
            let named = |a: &Value| {
                a.as_str()
                    .is_some_and(|a| self.audiences.iter().any(|x| x == a))
            };
            match claims.get("aud") {
                None => return Err(NOTE_BAD_AUDIENCE),
                Some(a @ Value::String(_)) if !named(a) => return Err(NOTE_BAD_AUDIENCE),
                Some(Value::Array(list))
                    if list.iter().all(Value::is_string) && !list.iter().any(named) =>
                {
                    return Err(NOTE_BAD_AUDIENCE)
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The claims of a token verified before, if it is still inside its window.
    fn cached(&self, token: &str, now: u64) -> Option<Claims> {
        let cache = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        let hit = cache.get(token)?;
        let valid = now.saturating_add(self.skew) >= hit.not_before
            && now < hit.expires_at.saturating_add(self.skew);
        valid.then(|| hit.claims.clone())
    }

    fn remember(&self, token: &str, not_before: u64, expires_at: u64, claims: &Claims) {
        let mut cache = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= VERIFIED_CACHE_SIZE {
            cache.clear();
        }
        cache.insert(
            token.to_string(),
            VerifiedToken {
                not_before,
                expires_at,
                claims: claims.clone(),
            },
        );
    }

    fn accept(&self, c: JWTClaims<Claims>) -> Result<Claims, &'static str> {
        if !self.issuers.is_empty() {
            match &c.issuer {
                Some(iss) if self.issuers.iter().any(|i| i == iss) => {}
                _ => return Err(NOTE_BAD_ISSUER),
            }
        }
        if !self.audiences.is_empty() {
            let ok = match &c.audiences {
                Some(Audiences::AsString(a)) => self.audiences.iter().any(|x| x == a),
                Some(Audiences::AsSet(set)) => self.audiences.iter().any(|x| set.contains(x)),
                None => false,
            };
            if !ok {
                return Err(NOTE_BAD_AUDIENCE);
            }
        }
        let mut claims = c.custom;
        let registered = [
            ("sub", c.subject),
            ("iss", c.issuer),
            ("jti", c.jwt_id),
            ("nonce", c.nonce),
        ];
        for (name, value) in registered {
            if let Some(v) = value {
                claims.insert(name.to_string(), Value::String(v));
            }
        }
        match c.audiences {
            Some(Audiences::AsString(a)) => {
                claims.insert("aud".to_string(), Value::String(a));
            }
            Some(Audiences::AsSet(set)) => {
                let mut list: Vec<String> = set.into_iter().collect();
                list.sort();
                claims.insert(
                    "aud".to_string(),
                    Value::Array(list.into_iter().map(Value::String).collect()),
                );
            }
            None => {}
        }
        Ok(claims)
    }
}

impl Key {
    /// One signature check inside Envoy, in thousands of instructions (the
    /// failing checks of `bench/forged_tokens.py` minus a request without a
    /// token; RSA grows with the square of the modulus, measured at 2048 bits).
    fn cost(kind: &KeyKind) -> u64 {
        let rsa = |bits: usize, at_2048: u64| {
            let scale = (bits.max(1024) as u64).pow(2);
            at_2048.saturating_mul(scale) / (2048 * 2048)
        };
        match kind {
            KeyKind::Hs256(_) | KeyKind::Hs384(_) | KeyKind::Hs512(_) => 100,
            KeyKind::Rs256(k) => rsa(k.to_components().n.len() * 8, 7_600),
            KeyKind::Rs384(k) => rsa(k.to_components().n.len() * 8, 7_600),
            KeyKind::Rs512(k) => rsa(k.to_components().n.len() * 8, 7_600),
            KeyKind::Ps256(k) => rsa(k.to_components().n.len() * 8, 8_700),
            KeyKind::Ps384(k) => rsa(k.to_components().n.len() * 8, 8_700),
            KeyKind::Ps512(k) => rsa(k.to_components().n.len() * 8, 8_700),
            KeyKind::Es256(_) => 13_600,
            KeyKind::Es384(_) => 37_700,
            KeyKind::EdDsa(_) => 1_700,
        }
    }

    fn verify(
        &self,
        token: &str,
        o: VerificationOptions,
    ) -> Result<JWTClaims<Claims>, jwt_simple::Error> {
        let o = Some(o);
        match &self.kind {
            KeyKind::Hs256(k) => k.verify_token(token, o),
            KeyKind::Hs384(k) => k.verify_token(token, o),
            KeyKind::Hs512(k) => k.verify_token(token, o),
            KeyKind::Rs256(k) => k.verify_token(token, o),
            KeyKind::Rs384(k) => k.verify_token(token, o),
            KeyKind::Rs512(k) => k.verify_token(token, o),
            KeyKind::Ps256(k) => k.verify_token(token, o),
            KeyKind::Ps384(k) => k.verify_token(token, o),
            KeyKind::Ps512(k) => k.verify_token(token, o),
            KeyKind::Es256(k) => k.verify_token(token, o),
            KeyKind::Es384(k) => k.verify_token(token, o),
            KeyKind::EdDsa(k) => k.verify_token(token, o),
        }
    }
}

fn note_for(e: &jwt_simple::Error) -> &'static str {
    match e.downcast_ref::<JWTError>() {
        Some(JWTError::InvalidSignature | JWTError::InvalidAuthenticationTag) => NOTE_BAD_SIGNATURE,
        Some(JWTError::TokenHasExpired) => NOTE_EXPIRED,
        Some(JWTError::TokenNotValidYet | JWTError::ClockDrift) => NOTE_NOT_YET_VALID,
        Some(JWTError::TokenTooLong) => NOTE_OVERSIZED,
        Some(JWTError::AlgorithmMismatch) => NOTE_ALG_MISMATCH,
        _ => NOTE_MALFORMED,
    }
}

/// A base64url (no padding) part of a token that must be one JSON object.
fn json_object(part: &str) -> Result<Map<String, Value>, &'static str> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| NOTE_MALFORMED)?;
    serde_json::from_slice::<Map<String, Value>>(&bytes).map_err(|_| NOTE_MALFORMED)
}

/// An HMAC key's bytes from `secret` (text) or `secretBase64`, exactly one of
/// them, at least `min` bytes; or the field at fault and why.
fn hmac_secret(alg: &str, min: usize, k: &JwtKey) -> Result<Vec<u8>, (&'static str, String)> {
    if k.pem.is_some() {
        return Err((
            "pem",
            format!("{alg} keys take a 'secret' or 'secretBase64', not a 'pem'"),
        ));
    }
    let (field, bytes) = match (&k.secret, &k.secret_base64) {
        (Some(_), Some(_)) => {
            return Err((
                "secretBase64",
                "give either 'secret' or 'secretBase64', not both".into(),
            ))
        }
        (None, None) => {
            return Err((
                "secret",
                format!("{alg} needs a 'secret' or 'secretBase64'"),
            ))
        }
        (Some(text), None) => ("secret", text.as_bytes().to_vec()),
        (None, Some(b64)) => {
            let b64 = b64.trim().trim_end_matches('=');
            let decoded = base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(b64)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(b64));
            match decoded {
                Ok(bytes) => ("secretBase64", bytes),
                Err(_) => {
                    return Err((
                        "secretBase64",
                        "is not base64 (standard or URL-safe alphabet)".into(),
                    ))
                }
            }
        }
    };
    if bytes.len() < min {
        return Err((
            field,
            format!(
                "{alg} needs a secret of at least {min} bytes (RFC 7518 3.2); this one has {}",
                bytes.len()
            ),
        ));
    }
    Ok(bytes)
}

/// Claims from the trusted payload header: base64url (padding optional) of a JSON object.
fn decode_payload(value: &str) -> Result<Claims, &'static str> {
    let value = value.trim().trim_end_matches('=');
    if value.len() > MAX_TOKEN_LEN {
        return Err(NOTE_OVERSIZED);
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| NOTE_MALFORMED)?;
    serde_json::from_slice::<Claims>(&bytes).map_err(|_| NOTE_MALFORMED)
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
pub(crate) mod tests;

#[cfg(test)]
#[path = "jwt_edge_tests.rs"]
mod edge_tests;
