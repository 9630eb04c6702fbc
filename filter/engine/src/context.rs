//! The signed routing context `kf-context` (DESIGN.md, "Component to component").
//!
//! Issued at genesis and re-issued at every internal hop, it names where a request
//! belongs (environment, VE, app, deployment, release) and the component it is
//! delivered to. It is a compact HS256 JWT (jwt-simple) with a `kid`, so keys can be
//! rotated: every configured key verifies, the signing key signs. Its expiry is set
//! once at genesis and never extended: each hop gets the request's remaining time.

use std::collections::HashMap;
use std::fmt;

use base64::Engine as _;
use jwt_simple::prelude::*;
use serde::{Deserialize as De, Serialize as Ser};

use crate::error::ValidationError;

/// A context-signing key as configured (`settings.contextKeys`).
#[derive(Clone, PartialEq, Eq, Ser, De)]
#[serde(deny_unknown_fields)]
pub struct ContextKey {
    pub kid: String,
    /// Base64 of at least 32 random bytes.
    pub secret: String,
}

/// Secrets never reach logs.
impl fmt::Debug for ContextKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ContextKey {{ kid: {:?}, secret: <redacted> }}",
            self.kid
        )
    }
}

/// What the context says about a request.
#[derive(Debug, Clone, PartialEq, Eq, Ser, De)]
pub struct RoutingContext {
    #[serde(rename = "env")]
    pub environment: String,
    #[serde(rename = "ve")]
    pub virtual_env: String,
    pub app: String,
    #[serde(rename = "dep")]
    pub deployment: String,
    /// The component the request was delivered to (the caller of the next hop).
    #[serde(rename = "comp")]
    pub component: String,
    /// The release the request entered through (empty for explicit deployments).
    #[serde(rename = "rel", default, skip_serializing_if = "String::is_empty")]
    pub release: String,
}

/// Why a context was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextRefusal {
    Malformed,
    UnknownKey,
    BadSignature,
    Expired,
}

/// The compiled keys: all verify, one signs.
pub struct ContextKeys {
    verifying: HashMap<String, HS256Key>,
    signing: Option<HS256Key>,
    pub ttl_seconds: u64,
}

impl fmt::Debug for ContextKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kids: Vec<&String> = self.verifying.keys().collect();
        kids.sort();
        write!(f, "ContextKeys {{ kids: {kids:?} }}")
    }
}

/// Longest context accepted (a real one is a few hundred bytes).
const MAX_CONTEXT_LEN: usize = 4096;

impl ContextKeys {
    /// Compiles keys; `signing_kid` defaults to the first key.
    pub fn compile(
        keys: &[ContextKey],
        signing_kid: Option<&str>,
        ttl_seconds: u64,
    ) -> Result<Self, Vec<ValidationError>> {
        let mut errors = Vec::new();
        let mut verifying = HashMap::new();
        for (i, k) in keys.iter().enumerate() {
            let field = format!("contextKeys[{i}]");
            if k.kid.is_empty() {
                errors.push(ValidationError::new(
                    "settings",
                    format!("{field}.kid"),
                    "must not be empty",
                ));
            }
            match base64::engine::general_purpose::STANDARD.decode(k.secret.trim()) {
                Ok(bytes) if bytes.len() >= 32 => {
                    if verifying
                        .insert(
                            k.kid.clone(),
                            HS256Key::from_bytes(&bytes).with_key_id(&k.kid),
                        )
                        .is_some()
                    {
                        errors.push(ValidationError::new(
                            "settings",
                            format!("{field}.kid"),
                            format!("kid '{}' is used twice", k.kid),
                        ));
                    }
                }
                Ok(_) => errors.push(ValidationError::new(
                    "settings",
                    format!("{field}.secret"),
                    "must be at least 32 bytes",
                )),
                Err(_) => errors.push(ValidationError::new(
                    "settings",
                    format!("{field}.secret"),
                    "must be base64",
                )),
            }
        }
        let signing_kid = signing_kid.or_else(|| keys.first().map(|k| k.kid.as_str()));
        let signing = signing_kid.and_then(|kid| verifying.get(kid).cloned());
        if let (Some(kid), None) = (signing_kid, &signing) {
            if errors.is_empty() {
                errors.push(ValidationError::new(
                    "settings",
                    "signingKid",
                    format!("no context key has kid '{kid}'"),
                ));
            }
        }
        if ttl_seconds == 0 {
            errors.push(ValidationError::new(
                "settings",
                "contextTtlSeconds",
                "must be at least 1",
            ));
        }
        if errors.is_empty() {
            Ok(Self {
                verifying,
                signing,
                ttl_seconds,
            })
        } else {
            Err(errors)
        }
    }

    pub fn can_sign(&self) -> bool {
        self.signing.is_some()
    }

    /// Signs `context`, valid until `expires_at` (Unix seconds).
    pub fn sign(&self, context: &RoutingContext, expires_at: u64) -> Option<String> {
        let key = self.signing.as_ref()?;
        let mut claims = Claims::with_custom_claims(context.clone(), Duration::from_secs(0));
        claims.issued_at = None;
        claims.invalid_before = None;
        claims.expires_at = Some(UnixTimeStamp::from_secs(expires_at));
        key.authenticate(claims).ok()
    }

    /// Verifies a context at `now`: signature by a known `kid`, not expired.
    /// Returns the context and its expiry.
    pub fn verify(&self, token: &str, now: u64) -> Result<(RoutingContext, u64), ContextRefusal> {
        if token.len() > MAX_CONTEXT_LEN {
            return Err(ContextRefusal::Malformed);
        }
        let meta = Token::decode_metadata(token).map_err(|_| ContextRefusal::Malformed)?;
        if meta.algorithm() != "HS256" {
            return Err(ContextRefusal::Malformed);
        }
        let key = meta
            .key_id()
            .and_then(|kid| self.verifying.get(kid))
            .ok_or(ContextRefusal::UnknownKey)?;
        let options = VerificationOptions {
            artificial_time: Some(UnixTimeStamp::from_secs(now)),
            time_tolerance: Some(Duration::from_secs(0)),
            max_token_length: Some(MAX_CONTEXT_LEN),
            ..Default::default()
        };
        match key.verify_token::<RoutingContext>(token, Some(options)) {
            Ok(claims) => {
                let exp = claims.expires_at.map_or(0, |t| t.as_secs());
                if exp <= now {
                    return Err(ContextRefusal::Expired);
                }
                Ok((claims.custom, exp))
            }
            Err(e) => {
                let text = e.to_string();
                if text.contains("xpired") || text.contains("too old") {
                    Err(ContextRefusal::Expired)
                } else {
                    Err(ContextRefusal::BadSignature)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kid: &str, byte: u8) -> ContextKey {
        ContextKey {
            kid: kid.into(),
            secret: base64::engine::general_purpose::STANDARD.encode([byte; 32]),
        }
    }

    fn ctx() -> RoutingContext {
        RoutingContext {
            environment: "dev".into(),
            virtual_env: "team-a".into(),
            app: "hello-world".into(),
            deployment: "hello-world-v2".into(),
            component: "frontend".into(),
            release: String::new(),
        }
    }

    #[test]
    fn sign_and_verify_round_trip_until_expiry() {
        let keys = ContextKeys::compile(&[key("k1", 1)], None, 30).unwrap();
        let token = keys.sign(&ctx(), 1000).unwrap();
        assert_eq!(keys.verify(&token, 999), Ok((ctx(), 1000)));
        assert_eq!(keys.verify(&token, 1000), Err(ContextRefusal::Expired));
        assert!(format!("{keys:?}").contains("k1"));
        assert!(!format!("{:?}", key("k1", 1)).contains(&key("k1", 1).secret));
    }

    #[test]
    fn tampered_foreign_and_malformed_contexts_are_refused() {
        let keys = ContextKeys::compile(&[key("k1", 1)], None, 30).unwrap();
        let token = keys.sign(&ctx(), 1000).unwrap();
        // Payload of another deployment with the original signature.
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        let mut other = ctx();
        other.deployment = "hello-world-main".into();
        let forged = Claims::with_custom_claims(other, Duration::from_secs(0));
        let forged_token = HS256Key::from_bytes(&[9; 32])
            .with_key_id("k1")
            .authenticate(forged)
            .unwrap();
        parts[1] = forged_token.split('.').nth(1).unwrap().to_string();
        assert_eq!(
            keys.verify(&parts.join("."), 10),
            Err(ContextRefusal::BadSignature)
        );
        // Signed by a key we do not know.
        let foreign = ContextKeys::compile(&[key("k9", 9)], None, 30).unwrap();
        assert_eq!(
            keys.verify(&foreign.sign(&ctx(), 1000).unwrap(), 10),
            Err(ContextRefusal::UnknownKey)
        );
        // Right kid, wrong secret.
        let impostor = ContextKeys::compile(&[key("k1", 7)], None, 30).unwrap();
        assert_eq!(
            keys.verify(&impostor.sign(&ctx(), 1000).unwrap(), 10),
            Err(ContextRefusal::BadSignature)
        );
        assert_eq!(
            keys.verify("not-a-token", 10),
            Err(ContextRefusal::Malformed)
        );
        assert_eq!(
            keys.verify(&"a".repeat(5000), 10),
            Err(ContextRefusal::Malformed)
        );
    }

    #[test]
    fn rotation_old_key_verifies_until_retired() {
        let old = ContextKeys::compile(&[key("old", 1)], None, 30).unwrap();
        let token = old.sign(&ctx(), 1000).unwrap();
        let both = ContextKeys::compile(&[key("old", 1), key("new", 2)], Some("new"), 30).unwrap();
        assert!(both.verify(&token, 10).is_ok(), "old key still verifies");
        assert!(both.sign(&ctx(), 1000).unwrap().len() > 10);
        let retired = ContextKeys::compile(&[key("new", 2)], None, 30).unwrap();
        assert_eq!(retired.verify(&token, 10), Err(ContextRefusal::UnknownKey));
    }

    #[test]
    fn bad_keys_are_validation_errors() {
        let short = ContextKey {
            kid: "k".into(),
            secret: "c2hvcnQ=".into(),
        };
        let errors = ContextKeys::compile(&[short], None, 30).unwrap_err();
        assert_eq!(errors[0].field, "contextKeys[0].secret");
        let errors = ContextKeys::compile(&[key("a", 1)], Some("b"), 30).unwrap_err();
        assert_eq!(errors[0].field, "signingKid");
    }
}
