//! The JWT attack list, with tokens made in the tests from real keys.

use base64::Engine;
use jwt_simple::algorithms::{
    ECDSAP256KeyPairLike, ECDSAP384KeyPairLike, EdDSAKeyPairLike, MACLike, RSAKeyPairLike,
};
use jwt_simple::claims::Claims as JwtClaims;
use serde_json::json;

use super::*;
use crate::resources::JwtKey;

pub(crate) const NOW: u64 = 1_700_000_000;
pub(crate) const SECRET: &str = "an-hs256-test-secret-of-32-bytes!";
const RSA_PRIVATE: &str = include_str!("testdata/rsa2048.pem");
const RSA_PUBLIC: &str = include_str!("testdata/rsa2048.pub.pem");

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Claims valid at [`NOW`] for ten minutes, with `custom` merged in.
pub(crate) fn claims(custom: Value) -> JWTClaims<Claims> {
    let custom = match custom {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let mut c = JwtClaims::with_custom_claims(custom, Duration::from_secs(600));
    c.issued_at = Some(UnixTimeStamp::from_secs(NOW));
    c.invalid_before = Some(UnixTimeStamp::from_secs(NOW));
    c.expires_at = Some(UnixTimeStamp::from_secs(NOW + 600));
    c
}

pub(crate) fn hs256_token(kid: Option<&str>, c: JWTClaims<Claims>) -> String {
    let mut key = HS256Key::from_bytes(SECRET.as_bytes());
    if let Some(kid) = kid {
        key = key.with_key_id(kid);
    }
    key.authenticate(c).unwrap()
}

pub(crate) fn key(kid: Option<&str>, alg: &str, pem: Option<&str>, secret: Option<&str>) -> JwtKey {
    JwtKey {
        kid: kid.map(str::to_string),
        alg: alg.to_string(),
        pem: pem.map(str::to_string),
        secret: secret.map(str::to_string),
        secret_base64: None,
    }
}

pub(crate) fn settings(keys: Vec<JwtKey>) -> JwtSettings {
    JwtSettings {
        header: "authorization".into(),
        issuers: vec![],
        audiences: vec![],
        keys,
        trusted_payload_header: None,
        clock_skew_seconds: None,
    }
}

pub(crate) fn hs_settings() -> JwtSettings {
    settings(vec![key(Some("hs"), "HS256", None, Some(SECRET))])
}

fn verifier(s: &JwtSettings) -> JwtVerifier {
    JwtVerifier::compile("Environment/prod", s).unwrap()
}

fn bearer(token: &str) -> Vec<(String, String)> {
    vec![("authorization".to_string(), format!("Bearer {token}"))]
}

fn req(headers: &[(String, String)]) -> Request<'_> {
    Request {
        method: "GET",
        path: "/",
        headers,
        source_address: Some("10.0.0.1:1"),
        now_unix_seconds: NOW,
    }
}

#[test]
fn verifies_hs256_and_exposes_claims() {
    let v = verifier(&hs_settings());
    let c = claims(json!({"role": "beta-tester", "roles": ["a", "b"], "n": 7}))
        .with_subject("user-17")
        .with_issuer("https://issuer")
        .with_audience("api");
    let t = hs256_token(Some("hs"), c);
    let got = v.claims(&req(&bearer(&t))).unwrap();
    assert_eq!(got["sub"], json!("user-17"));
    assert_eq!(got["iss"], json!("https://issuer"));
    assert_eq!(got["aud"], json!("api"));
    assert_eq!(got["role"], json!("beta-tester"));
    assert_eq!(got["roles"], json!(["a", "b"]));
    assert_eq!(got["n"], json!(7));
    // Tokens without a kid try the keys of their alg.
    let t = hs256_token(None, claims(json!({})).with_subject("u"));
    assert!(v.claims(&req(&bearer(&t))).is_ok());
    // The scheme is case-insensitive.
    let hs = vec![("authorization".to_string(), format!("bearer  {t}"))];
    assert!(v.claims(&req(&hs)).is_ok());
}

#[test]
fn verifies_every_supported_algorithm() {
    let es256 = ES256KeyPair::generate().with_key_id("es256");
    let es384 = ES384KeyPair::generate().with_key_id("es384");
    let ed = Ed25519KeyPair::generate().with_key_id("ed");
    let rs256 = RS256KeyPair::from_pem(RSA_PRIVATE)
        .unwrap()
        .with_key_id("rs256");
    let rs384 = RS384KeyPair::from_pem(RSA_PRIVATE)
        .unwrap()
        .with_key_id("rs384");
    let rs512 = RS512KeyPair::from_pem(RSA_PRIVATE)
        .unwrap()
        .with_key_id("rs512");
    let ps256 = PS256KeyPair::from_pem(RSA_PRIVATE)
        .unwrap()
        .with_key_id("ps256");
    let hs384_secret = "x".repeat(48);
    let hs512_secret = "y".repeat(64);
    let s = settings(vec![
        key(Some("hs"), "HS256", None, Some(SECRET)),
        key(Some("hs384"), "HS384", None, Some(&hs384_secret)),
        key(Some("hs512"), "HS512", None, Some(&hs512_secret)),
        key(
            Some("es256"),
            "ES256",
            Some(&es256.public_key().to_pem().unwrap()),
            None,
        ),
        key(
            Some("es384"),
            "ES384",
            Some(&es384.public_key().to_pem().unwrap()),
            None,
        ),
        key(Some("ed"), "EdDSA", Some(&ed.public_key().to_pem()), None),
        key(Some("rs256"), "RS256", Some(RSA_PUBLIC), None),
        key(Some("rs384"), "RS384", Some(RSA_PUBLIC), None),
        key(Some("rs512"), "RS512", Some(RSA_PUBLIC), None),
        key(Some("ps256"), "PS256", Some(RSA_PUBLIC), None),
    ]);
    let v = verifier(&s);
    let c = || claims(json!({"role": "beta-tester"})).with_subject("user-1");
    let tokens = [
        hs256_token(Some("hs"), c()),
        HS384Key::from_bytes(hs384_secret.as_bytes())
            .with_key_id("hs384")
            .authenticate(c())
            .unwrap(),
        HS512Key::from_bytes(hs512_secret.as_bytes())
            .with_key_id("hs512")
            .authenticate(c())
            .unwrap(),
        es256.sign(c()).unwrap(),
        es384.sign(c()).unwrap(),
        ed.sign(c()).unwrap(),
        rs256.sign(c()).unwrap(),
        rs384.sign(c()).unwrap(),
        rs512.sign(c()).unwrap(),
        ps256.sign(c()).unwrap(),
    ];
    for t in &tokens {
        let got = v.verify(t, NOW);
        assert_eq!(
            got.map(|c| c["role"].clone()),
            Ok(json!("beta-tester")),
            "{t}"
        );
    }
    // A private key PEM in the config still yields the public key.
    let s = settings(vec![key(
        Some("es256"),
        "ES256",
        Some(&es256.to_pem().unwrap()),
        None,
    )]);
    assert!(verifier(&s).verify(&tokens[3], NOW).is_ok());
}

#[test]
fn attack_alg_none() {
    let v = verifier(&hs_settings());
    let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64(format!(
        r#"{{"sub":"admin","role":"beta-tester","exp":{}}}"#,
        NOW + 60
    )
    .as_bytes());
    for t in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}"),
        format!("{}.{payload}.", b64(br#"{"alg":"None","kid":"hs"}"#)),
    ] {
        assert_eq!(v.verify(&t, NOW), Err(NOTE_ALG_NONE), "{t}");
    }
}

#[test]
fn attack_wrong_key_and_tampering() {
    let v = verifier(&hs_settings());
    let other = HS256Key::from_bytes(b"another-secret-another-secret-xx").with_key_id("hs");
    let forged = other
        .authenticate(claims(json!({"role": "beta-tester"})))
        .unwrap();
    assert_eq!(v.verify(&forged, NOW), Err(NOTE_BAD_SIGNATURE));

    // A genuine token whose payload was swapped.
    let genuine = hs256_token(Some("hs"), claims(json!({"role": "user"})));
    let evil = b64(format!(r#"{{"role":"beta-tester","exp":{}}}"#, NOW + 60).as_bytes());
    let parts: Vec<&str> = genuine.split('.').collect();
    let tampered = format!("{}.{evil}.{}", parts[0], parts[2]);
    assert_eq!(v.verify(&tampered, NOW), Err(NOTE_BAD_SIGNATURE));
    // Signature stripped.
    assert_eq!(
        v.verify(&format!("{}.{}.", parts[0], parts[1]), NOW),
        Err(NOTE_BAD_SIGNATURE)
    );
}

#[test]
fn attack_algorithm_confusion() {
    // RS256 key configured; attacker signs HS256 with the public key PEM as secret.
    let s = settings(vec![key(Some("rsa"), "RS256", Some(RSA_PUBLIC), None)]);
    let v = verifier(&s);
    let hs = HS256Key::from_bytes(RSA_PUBLIC.as_bytes()).with_key_id("rsa");
    let t = hs
        .authenticate(claims(json!({"role": "beta-tester"})))
        .unwrap();
    assert_eq!(v.verify(&t, NOW), Err(NOTE_ALG_MISMATCH));
    let hs = HS256Key::from_bytes(RSA_PUBLIC.as_bytes());
    let t = hs
        .authenticate(claims(json!({"role": "beta-tester"})))
        .unwrap();
    assert_eq!(v.verify(&t, NOW), Err(NOTE_ALG_MISMATCH));
    // An ES256 token checked against an RS256 key of the same kid.
    let es = ES256KeyPair::generate().with_key_id("rsa");
    let t = es.sign(claims(json!({}))).unwrap();
    assert_eq!(v.verify(&t, NOW), Err(NOTE_ALG_MISMATCH));
}

#[test]
fn attack_unknown_kid() {
    let v = verifier(&hs_settings());
    let t = hs256_token(Some("other"), claims(json!({})));
    assert_eq!(v.verify(&t, NOW), Err(NOTE_UNKNOWN_KID));
}

#[test]
fn attack_malformed_and_oversized() {
    let v = verifier(&hs_settings());
    for t in [
        "",
        "abc",
        "a.b.c",
        "a.b.c.d",
        "!!!.???.###",
        &format!("{}.e30.sig", b64(b"not json")),
        &format!("{}.e30.sig", b64(br#"{"typ":"JWT"}"#)),
    ] {
        assert_eq!(v.verify(t, NOW), Err(NOTE_MALFORMED), "{t:?}");
    }
    // A valid signature over claims of the wrong type.
    let mut c = claims(json!({"exp": "soon"}));
    c.expires_at = None;
    let t = hs256_token(Some("hs"), c);
    assert_eq!(v.verify(&t, NOW), Err(NOTE_MALFORMED));

    let big = hs256_token(
        Some("hs"),
        claims(json!({"pad": "x".repeat(MAX_TOKEN_LEN)})),
    );
    assert_eq!(v.verify(&big, NOW), Err(NOTE_OVERSIZED));
    assert_eq!(
        v.verify(&"a".repeat(MAX_TOKEN_LEN + 1), NOW),
        Err(NOTE_OVERSIZED)
    );
}

#[test]
fn expiry_and_not_before_with_clock_skew() {
    let v = verifier(&hs_settings());
    let with_times = |exp: u64, nbf: u64| {
        let mut c = claims(json!({}));
        c.expires_at = Some(UnixTimeStamp::from_secs(exp));
        c.invalid_before = Some(UnixTimeStamp::from_secs(nbf));
        c.issued_at = Some(UnixTimeStamp::from_secs(nbf));
        hs256_token(Some("hs"), c)
    };
    assert_eq!(
        v.verify(&with_times(NOW - 60, NOW - 600), NOW),
        Err(NOTE_EXPIRED)
    );
    assert!(
        v.verify(&with_times(NOW - 10, NOW - 600), NOW).is_ok(),
        "within skew"
    );
    assert_eq!(
        v.verify(&with_times(NOW + 600, NOW + 120), NOW),
        Err(NOTE_NOT_YET_VALID)
    );
    assert!(
        v.verify(&with_times(NOW + 600, NOW + 10), NOW).is_ok(),
        "within skew"
    );
    // The request's clock is used, not the machine's.
    let t = with_times(NOW + 600, NOW);
    assert!(v.verify(&t, NOW + 300).is_ok());
    assert_eq!(v.verify(&t, NOW + 700), Err(NOTE_EXPIRED));
    // A custom skew.
    let mut s = hs_settings();
    s.clock_skew_seconds = Some(0);
    assert_eq!(
        verifier(&s).verify(&with_times(NOW - 10, NOW - 600), NOW),
        Err(NOTE_EXPIRED)
    );
}

#[test]
fn issuers_and_audiences() {
    let mut s = hs_settings();
    s.issuers = vec!["https://good".into()];
    s.audiences = vec!["api".into(), "web".into()];
    let v = verifier(&s);
    let ok = claims(json!({}))
        .with_issuer("https://good")
        .with_audience("web");
    assert!(v.verify(&hs256_token(Some("hs"), ok), NOW).is_ok());
    let set: std::collections::HashSet<String> = ["x".to_string(), "api".to_string()].into();
    let ok = claims(json!({}))
        .with_issuer("https://good")
        .with_audiences(set);
    let got = v.verify(&hs256_token(Some("hs"), ok), NOW).unwrap();
    assert_eq!(got["aud"], json!(["api", "x"]));
    let bad_iss = claims(json!({}))
        .with_issuer("https://evil")
        .with_audience("api");
    assert_eq!(
        v.verify(&hs256_token(Some("hs"), bad_iss), NOW),
        Err(NOTE_BAD_ISSUER)
    );
    let no_iss = claims(json!({})).with_audience("api");
    assert_eq!(
        v.verify(&hs256_token(Some("hs"), no_iss), NOW),
        Err(NOTE_BAD_ISSUER)
    );
    let bad_aud = claims(json!({}))
        .with_issuer("https://good")
        .with_audience("other");
    assert_eq!(
        v.verify(&hs256_token(Some("hs"), bad_aud), NOW),
        Err(NOTE_BAD_AUDIENCE)
    );
    let no_aud = claims(json!({})).with_issuer("https://good");
    assert_eq!(
        v.verify(&hs256_token(Some("hs"), no_aud), NOW),
        Err(NOTE_BAD_AUDIENCE)
    );
}

#[test]
fn token_location() {
    let v = verifier(&hs_settings());
    let t = hs256_token(Some("hs"), claims(json!({})));
    assert_eq!(v.claims(&req(&[])), Err(NOTE_MISSING));
    let basic = vec![(
        "authorization".to_string(),
        "Basic dXNlcjpwYXNz".to_string(),
    )];
    assert_eq!(v.claims(&req(&basic)), Err(NOTE_MISSING));
    let empty = vec![("authorization".to_string(), "Bearer ".to_string())];
    assert_eq!(v.claims(&req(&empty)), Err(NOTE_MISSING));
    let raw = vec![("authorization".to_string(), t.clone())];
    assert_eq!(v.claims(&req(&raw)), Err(NOTE_MISSING));

    let mut s = hs_settings();
    s.header = "X-Token".into();
    let v = verifier(&s);
    let hs = vec![("x-token".to_string(), t)];
    assert!(v.claims(&req(&hs)).is_ok());
}

#[test]
fn trusted_payload_header() {
    let mut s = hs_settings();
    s.trusted_payload_header = Some("X-JWT-Payload".into());
    let v = verifier(&s);
    let payload = b64(br#"{"sub":"user-9","roles":["beta-tester"]}"#);
    let hs = vec![("x-jwt-payload".to_string(), payload.clone())];
    let got = v.claims(&req(&hs)).unwrap();
    assert_eq!(got["sub"], json!("user-9"));
    let padded = vec![("x-jwt-payload".to_string(), format!("{payload}=="))];
    assert!(v.claims(&req(&padded)).is_ok());
    let bad = vec![("x-jwt-payload".to_string(), "%%%".to_string())];
    assert_eq!(v.claims(&req(&bad)), Err(NOTE_MALFORMED));
    let not_object = vec![("x-jwt-payload".to_string(), b64(b"[1]"))];
    assert_eq!(v.claims(&req(&not_object)), Err(NOTE_MALFORMED));
    // Without the header, the token is verified as usual.
    let t = hs256_token(Some("hs"), claims(json!({"sub": "u"})));
    assert!(v.claims(&req(&bearer(&t))).is_ok());
    // Off by default: the header is ignored.
    let v = verifier(&hs_settings());
    assert_eq!(v.claims(&req(&hs)), Err(NOTE_MISSING));
    // A payload header alone (no keys) is a valid configuration.
    let mut s = settings(vec![]);
    s.trusted_payload_header = Some("x-jwt-payload".into());
    assert!(JwtVerifier::compile("Environment/prod", &s).is_ok());
}

#[test]
fn key_errors_are_validation_errors() {
    let s = settings(vec![
        key(Some("a"), "HS256", None, Some("short")),
        key(
            Some("a"),
            "RS256",
            Some("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----"),
            None,
        ),
        key(None, "none", None, None),
        key(None, "HS999", None, Some(SECRET)),
        key(None, "RS256", None, Some(SECRET)),
        key(None, "HS256", Some(RSA_PUBLIC), None),
        key(None, "ES256", None, None),
        key(None, "ES256", Some(RSA_PUBLIC), None),
        key(Some(""), "HS384", None, Some(SECRET)),
    ]);
    let errors = JwtVerifier::compile("Environment/prod", &s).unwrap_err();
    let got: Vec<(&str, &str)> = errors
        .iter()
        .map(|e| (e.field.as_str(), e.reason.as_str()))
        .collect();
    let fields: Vec<&str> = got.iter().map(|(f, _)| *f).collect();
    assert_eq!(
        fields,
        [
            "spec.jwt.keys[0].secret",
            "spec.jwt.keys[1].kid",
            "spec.jwt.keys[1].pem",
            "spec.jwt.keys[2].alg",
            "spec.jwt.keys[3].alg",
            "spec.jwt.keys[4].secret",
            "spec.jwt.keys[5].pem",
            "spec.jwt.keys[6].pem",
            "spec.jwt.keys[7].pem",
            "spec.jwt.keys[8].kid",
            "spec.jwt.keys[8].secret",
        ],
        "{got:?}"
    );
    assert!(got[0].1.contains("at least 32 bytes"), "{}", got[0].1);
    assert!(got[3].1.contains("never trusted"), "{}", got[3].1);
    assert!(errors.iter().all(|e| e.resource == "Environment/prod"));

    let errors = JwtVerifier::compile("Environment/prod", &settings(vec![])).unwrap_err();
    assert_eq!(errors[0].field, "spec.jwt.keys");
}

#[test]
fn a_remembered_token_still_expires() {
    let v = verifier(&hs_settings());
    let t = hs256_token(Some("hs"), claims(json!({"role": "beta-tester"})));
    assert!(v.verify(&t, NOW).is_ok());
    assert!(v.verify(&t, NOW + 10).is_ok(), "served from the cache");
    // claims(): valid for 600 s from NOW, 30 s skew
    assert_eq!(v.verify(&t, NOW + 600 + 31), Err(NOTE_EXPIRED));
    // a tampered copy is not the remembered token
    let last = if t.ends_with('A') { 'B' } else { 'A' };
    let tampered = format!("{}{last}", &t[..t.len() - 1]);
    assert!(v.verify(&tampered, NOW + 10).is_err());
}

/// A token with `c` as claims under `kid`/`alg` and a random signature of `len` bytes.
fn forged(kid: &str, alg: &str, c: &Value, len: usize) -> String {
    let header = b64(json!({"alg": alg, "typ": "JWT", "kid": kid})
        .to_string()
        .as_bytes());
    let sig: Vec<u8> = (0..len).map(|_| fastrand::u8(..)).collect();
    format!("{header}.{}.{}", b64(c.to_string().as_bytes()), b64(&sig))
}

/// A fresh ES256 key (`kid: es`) and a verifier that trusts only it.
fn es256_verifier() -> (ES256KeyPair, JwtVerifier) {
    let es = ES256KeyPair::generate().with_key_id("es");
    let s = settings(vec![key(
        Some("es"),
        "ES256",
        Some(&es.public_key().to_pem().unwrap()),
        None,
    )]);
    let v = verifier(&s);
    (es, v)
}

fn plausible(sub: &str) -> Value {
    json!({"sub": sub, "role": "beta-tester", "iat": NOW, "nbf": NOW, "exp": NOW + 600})
}

#[test]
fn a_flood_of_forged_tokens_spends_the_budget_not_the_cpu() {
    let (es, v) = es256_verifier();
    // A user's token verified before the flood stays cached and keeps its claims.
    let before = es.sign(claims(json!({"sub": "user-17"}))).unwrap();
    assert!(v.verify(&before, NOW).is_ok());
    let flood = 2000;
    let (mut checked, mut skipped) = (0, 0);
    for i in 0..flood {
        let t = forged("es", "ES256", &plausible(&format!("u{i}")), 64);
        match v.verify(&t, NOW) {
            Err(NOTE_BAD_SIGNATURE) => checked += 1,
            Err(NOTE_UNVERIFIED) => skipped += 1,
            other => panic!("{other:?}"),
        }
        if i % 100 == 0 {
            assert_eq!(v.verify(&before, NOW).unwrap()["sub"], "user-17");
        }
    }
    // One burst (the cap: one ES256 check) plus what the flood itself earned.
    let es_cost = 13_600;
    let bound = 1 + flood * BUDGET_EARN / es_cost;
    assert!(checked <= bound, "{checked} checks > {bound}");
    assert!(
        checked >= 10,
        "the budget still verifies now and then: {checked}"
    );
    assert_eq!(checked + skipped, flood);
    // A new valid token, deferred on first sight, is verified when it comes
    // back (the reserve, which distinct forged tokens never reach).
    let fresh = es.sign(claims(json!({"sub": "user-42"}))).unwrap();
    assert_eq!(v.verify(&fresh, NOW), Err(NOTE_UNVERIFIED));
    assert_eq!(v.verify(&fresh, NOW).unwrap()["sub"], "user-42");
    // Once requests have earned the credit back (expired tokens earn too),
    // verified tokens spend nothing: valid tokens alone never run out.
    for i in 0..es_cost / BUDGET_EARN + 1 {
        let mut c = claims(json!({"sub": format!("old{i}")}));
        c.expires_at = Some(UnixTimeStamp::from_secs(NOW - 3600));
        let _ = v.verify(&es.sign(c).unwrap(), NOW);
    }
    for i in 0..50 {
        let t = es.sign(claims(json!({"sub": format!("ok{i}")}))).unwrap();
        assert!(v.verify(&t, NOW).is_ok());
    }
}

#[test]
fn every_algorithm_is_bounded_by_its_cost() {
    let ed = Ed25519KeyPair::generate().with_key_id("ed");
    let es384 = ES384KeyPair::generate().with_key_id("es384");
    let s = settings(vec![
        key(Some("hs"), "HS256", None, Some(SECRET)),
        key(Some("rs"), "RS256", Some(RSA_PUBLIC), None),
        key(Some("ps"), "PS256", Some(RSA_PUBLIC), None),
        key(
            Some("es384"),
            "ES384",
            Some(&es384.public_key().to_pem().unwrap()),
            None,
        ),
        key(Some("ed"), "EdDSA", Some(&ed.public_key().to_pem()), None),
    ]);
    let v = verifier(&s);
    let costs: Vec<(&str, u64)> = v.keys.iter().map(|k| (k.alg, k.cost)).collect();
    assert_eq!(
        costs,
        [
            ("HS256", 100),
            ("RS256", 7_600),
            ("PS256", 8_700),
            ("ES384", 37_700),
            ("EdDSA", 1_700)
        ]
    );
    for (kid, alg, len, cost) in [
        ("rs", "RS256", 256, 7_600),
        ("ps", "PS256", 256, 8_700),
        ("es384", "ES384", 96, 37_700),
        ("ed", "EdDSA", 64, 1_700),
    ] {
        let flood = 1000;
        let checked = (0..flood)
            .filter(|i| {
                let t = forged(kid, alg, &plausible(&format!("{alg}{i}")), len);
                v.verify(&t, NOW) != Err(NOTE_UNVERIFIED)
            })
            .count() as u64;
        // The burst is the dearest key (ES384); the rest is earned.
        assert!(
            checked <= 1 + (37_700 + flood * BUDGET_EARN) / cost,
            "{alg}: {checked}"
        );
    }
    // HMAC checks cost less than a request earns: never skipped.
    for i in 0..100 {
        let t = forged("hs", "HS256", &plausible(&format!("h{i}")), 32);
        assert_eq!(v.verify(&t, NOW), Err(NOTE_BAD_SIGNATURE));
    }
}

#[test]
fn cheap_checks_refuse_before_the_signature_and_spend_nothing() {
    let mut s = settings(vec![key(Some("rs"), "RS256", Some(RSA_PUBLIC), None)]);
    s.issuers = vec!["https://auth.example.com".into()];
    s.audiences = vec!["hello-world".into()];
    let v = verifier(&s);
    let good = json!({"iss": "https://auth.example.com", "aud": "hello-world", "exp": NOW + 60});
    let with = |k: &str, val: Value| {
        let mut c = good.clone();
        c[k] = val;
        forged("rs", "RS256", &c, 256)
    };
    let expect = [
        (with("exp", json!(NOW - 31)), NOTE_EXPIRED),
        (with("nbf", json!(NOW + 31)), NOTE_NOT_YET_VALID),
        (with("iat", json!(NOW + 31)), NOTE_NOT_YET_VALID),
        (
            with("iss", json!("https://evil.example.com")),
            NOTE_BAD_ISSUER,
        ),
        (with("aud", json!("other")), NOTE_BAD_AUDIENCE),
        (with("aud", json!(["other", "more"])), NOTE_BAD_AUDIENCE),
        (
            forged("rs", "RS256", &json!({"aud": "hello-world"}), 256),
            NOTE_BAD_ISSUER,
        ),
    ];
    for _ in 0..100 {
        for (t, note) in &expect {
            assert_eq!(v.verify(t, NOW), Err(*note), "{t}");
        }
    }
    // None of those spent credit: a forged token that passes them is still checked.
    assert_eq!(
        v.verify(&with("exp", json!(NOW + 60)), NOW),
        Err(NOTE_BAD_SIGNATURE)
    );
    // Within the skew, or in a type the full check reads otherwise, they do not refuse.
    for t in [
        with("exp", json!(NOW - 29)),
        with("nbf", json!("soon")),
        with("aud", json!(["hello-world", 1])),
    ] {
        assert_ne!(v.verify(&t, NOW), Err(NOTE_EXPIRED), "{t}");
        assert_ne!(v.verify(&t, NOW), Err(NOTE_BAD_AUDIENCE), "{t}");
    }
    // A payload that is not JSON is malformed before any signature check.
    let header = b64(br#"{"alg":"RS256","kid":"rs"}"#);
    assert_eq!(
        v.verify(&format!("{header}.bm90IGpzb24.c2ln"), NOW),
        Err(NOTE_MALFORMED)
    );
}

#[test]
fn the_budget_refills_with_time_after_a_flood() {
    let (es, v) = es256_verifier();
    for i in 0..500 {
        let _ = v.verify(
            &forged("es", "ES256", &plausible(&format!("u{i}")), 64),
            NOW,
        );
    }
    let fresh = es.sign(claims(json!({"sub": "user-42"}))).unwrap();
    // Right after the flood the credit is spent…
    let spent = v.verify(&fresh, NOW);
    // …a minute later it is back whatever the traffic.
    let later = NOW + BUDGET_REFILL_SECONDS;
    let mut c = claims(json!({"sub": "user-43"}));
    c.expires_at = Some(UnixTimeStamp::from_secs(later + 600));
    let next = es.sign(c).unwrap();
    assert_eq!(v.verify(&next, later).unwrap()["sub"], "user-43");
    assert!(spent.is_ok() || spent == Err(NOTE_UNVERIFIED), "{spent:?}");
}
