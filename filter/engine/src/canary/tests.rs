//! Decision tests: every matcher, precedence, malformed canaries, the weighted
//! split and monotonic stickiness.

use serde_json::{json, Value};

use super::jwt::tests::{claims, hs256_token, hs_settings, NOW};
use super::*;
use crate::resources::{Environment, GeoSettings, JwtSettings, TrustedProxies};

fn env(
    jwt: Option<JwtSettings>,
    trusted: Option<TrustedProxies>,
    geo: Option<GeoSettings>,
) -> Environment {
    let mut e: Environment =
        serde_json::from_value(json!({"metadata": {"name": "prod"}, "spec": {"subPath": "prod"}}))
            .unwrap();
    e.spec.jwt = jwt;
    e.spec.trusted_proxies = trusted;
    e.spec.geo = geo;
    e
}

fn full_trust() -> Arc<EnvironmentTrust> {
    let geo = GeoSettings {
        header: Some("cf-ipcountry".into()),
        cidrs: [("198.51.100.0/24".to_string(), "AU".to_string())]
            .into_iter()
            .collect(),
    };
    let e = env(
        Some(hs_settings()),
        Some(TrustedProxies::Cidrs(vec!["10.0.0.0/8".into()])),
        Some(geo),
    );
    Arc::new(EnvironmentTrust::compile(&e).unwrap())
}

fn canary_json(name: &str, spec: Value) -> Canary {
    let mut spec = spec;
    let base =
        json!({"virtualEnvironment": "prod", "app": "hello-world", "deployment": "hello-world-v3"});
    for (k, v) in base.as_object().unwrap() {
        spec[k] = v.clone();
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

fn compile(spec: Value) -> CompiledCanary {
    CompiledCanary::compile(&canary_json("c", spec), full_trust()).unwrap()
}

fn compile_err(spec: Value) -> Vec<(String, String)> {
    CompiledCanary::compile(&canary_json("c", spec), full_trust())
        .unwrap_err()
        .into_iter()
        .map(|e| {
            assert_eq!(e.resource, "Canary/c");
            (e.field, e.reason)
        })
        .collect()
}

struct R {
    path: String,
    headers: Vec<(String, String)>,
    source: Option<String>,
}

impl R {
    fn new() -> R {
        R {
            path: "/prod/hello".into(),
            headers: vec![],
            source: Some("198.51.100.7:40000".into()),
        }
    }
    fn path(mut self, p: &str) -> R {
        self.path = p.into();
        self
    }
    fn h(mut self, k: &str, v: &str) -> R {
        self.headers.push((k.into(), v.into()));
        self
    }
    fn from(mut self, s: Option<&str>) -> R {
        self.source = s.map(str::to_string);
        self
    }
    fn jwt(self, mut custom: Value) -> R {
        let sub = custom.as_object_mut().and_then(|m| m.remove("sub"));
        let sub = sub.and_then(|s| s.as_str().map(str::to_string));
        let mut c = claims(custom);
        if let Some(sub) = sub {
            c = c.with_subject(sub);
        }
        let t = hs256_token(Some("hs"), c);
        self.h("authorization", &format!("Bearer {t}"))
    }
    fn run(&self, c: &CompiledCanary) -> CanaryDecision {
        c.decide(&Request {
            method: "GET",
            path: &self.path,
            headers: &self.headers,
            source_address: self.source.as_deref(),
            now_unix_seconds: NOW,
        })
    }
}

fn kind(c: &CompiledCanary, r: &R) -> DecisionKind {
    let d = r.run(c);
    assert_eq!(
        d.to_canary,
        !matches!(d.kind, DecisionKind::CanaryStable),
        "{d:?}"
    );
    d.kind
}

const STABLE: DecisionKind = DecisionKind::CanaryStable;
const M0: DecisionKind = DecisionKind::CanaryMatch(0);
const M1: DecisionKind = DecisionKind::CanaryMatch(1);

#[test]
fn header_matches() {
    let c = compile(json!({"match": [
        {"headers": {"X-Version": "v3"}},
        {"headers": {"x-canary": ["true", "yes"]}},
    ]}));
    assert_eq!(kind(&c, &R::new().h("x-version", "v3")), M0);
    assert_eq!(
        kind(&c, &R::new().h("x-version", "V3")),
        STABLE,
        "values are case-sensitive"
    );
    assert_eq!(kind(&c, &R::new().h("x-version", "v2")), STABLE);
    assert_eq!(kind(&c, &R::new().h("x-canary", "yes")), M1);
    assert_eq!(kind(&c, &R::new().h("x-canary", "true")), M1);
    assert_eq!(kind(&c, &R::new().h("x-canary", "no")), STABLE);
    assert_eq!(
        kind(&c, &R::new().h("x-canary", "no").h("x-canary", "true")),
        M1
    );
    assert_eq!(kind(&c, &R::new()), STABLE);
}

#[test]
fn query_matches() {
    let c = compile(json!({"match": [{"query": {"use_canary": "true", "team": ["a b", "c"]}}]}));
    assert_eq!(
        kind(&c, &R::new().path("/prod/hello?use_canary=true&team=a%20b")),
        M0
    );
    assert_eq!(
        kind(&c, &R::new().path("/prod/hello?team=a+b&use_canary=true")),
        M0
    );
    assert_eq!(
        kind(&c, &R::new().path("/prod/hello?use_canary=true&team=c")),
        M0
    );
    assert_eq!(
        kind(&c, &R::new().path("/prod/hello?use_canary=true")),
        STABLE,
        "AND"
    );
    assert_eq!(
        kind(&c, &R::new().path("/prod/hello?use_canary=false&team=c")),
        STABLE
    );
    assert_eq!(kind(&c, &R::new().path("/prod/hello")), STABLE);
}

#[test]
fn claim_matches() {
    let c = compile(json!({"match": [
        {"claims": {"role": "beta-tester"}},
        {"claims": {"sub": ["user-17", "user-42"]}},
        {"claims": {"roles": "admin"}},
        {"claims": {"tier": 3, "staff": true}},
        {"claims": {"aud": "web"}},
    ]}));
    let k = |claims: Value| kind(&c, &R::new().jwt(claims));
    assert_eq!(k(json!({"role": "beta-tester"})), M0);
    assert_eq!(k(json!({"role": "tester"})), STABLE);
    assert_eq!(k(json!({"sub": "user-42"})), M1);
    assert_eq!(k(json!({"sub": "user-43"})), STABLE);
    assert_eq!(
        k(json!({"roles": ["user", "admin"]})),
        DecisionKind::CanaryMatch(2)
    );
    assert_eq!(k(json!({"roles": ["user"]})), STABLE);
    assert_eq!(k(json!({"roles": "admin"})), DecisionKind::CanaryMatch(2));
    assert_eq!(
        k(json!({"tier": 3, "staff": true})),
        DecisionKind::CanaryMatch(3)
    );
    assert_eq!(
        k(json!({"tier": 3.0, "staff": true})),
        DecisionKind::CanaryMatch(3)
    );
    assert_eq!(
        k(json!({"tier": "3", "staff": true})),
        STABLE,
        "types must agree"
    );
    assert_eq!(k(json!({"tier": 3, "staff": "true"})), STABLE);
    assert_eq!(k(json!({"tier": 3})), STABLE, "AND");
    assert_eq!(
        k(json!({"aud": ["api", "web"]})),
        DecisionKind::CanaryMatch(4)
    );
    // A list inside a claim array does not count as the value.
    assert_eq!(k(json!({"roles": [["admin"]]})), STABLE);
}

#[test]
fn bad_tokens_give_no_claims_and_a_note() {
    let c = compile(json!({"match": [
        {"headers": {"x-canary": "true"}},
        {"claims": {"role": "beta-tester"}},
    ]}));
    let d = R::new().run(&c);
    assert_eq!((d.kind, d.note), (STABLE, Some(jwt::NOTE_MISSING)));
    let d = R::new().h("authorization", "Bearer garbage").run(&c);
    assert_eq!((d.kind, d.note), (STABLE, Some(jwt::NOTE_MALFORMED)));
    let mut old = claims(json!({"role": "beta-tester"}));
    old.expires_at = Some(jwt_simple::prelude::UnixTimeStamp::from_secs(NOW - 3600));
    let t = hs256_token(Some("hs"), old);
    let d = R::new().h("authorization", &format!("Bearer {t}")).run(&c);
    assert_eq!((d.kind, d.note), (STABLE, Some(jwt::NOTE_EXPIRED)));
    // Another rule can still match; no JWT is looked at before it is needed.
    let d = R::new()
        .h("x-canary", "true")
        .h("authorization", "Bearer garbage")
        .run(&c);
    assert_eq!((d.kind, d.note), (M0, None));
    let d = R::new().jwt(json!({"role": "beta-tester"})).run(&c);
    assert_eq!((d.kind, d.note), (M1, None));
}

#[test]
fn source_cidr_matches() {
    let c = compile(json!({"match": [{"sourceCidrs": ["203.0.113.0/24", "2001:db8::/32"]}]}));
    assert_eq!(kind(&c, &R::new().from(Some("203.0.113.9:1"))), M0);
    assert_eq!(kind(&c, &R::new().from(Some("[2001:db8::9]:1"))), M0);
    assert_eq!(kind(&c, &R::new().from(Some("198.51.100.7:1"))), STABLE);
    assert_eq!(kind(&c, &R::new().from(None)), STABLE);
    // Via a trusted proxy's XFF…
    let r = R::new()
        .from(Some("10.1.1.1:1"))
        .h("x-forwarded-for", "203.0.113.9");
    assert_eq!(kind(&c, &r), M0);
    // …but not from an untrusted peer.
    let r = R::new()
        .from(Some("198.51.100.7:1"))
        .h("x-forwarded-for", "203.0.113.9");
    assert_eq!(kind(&c, &r), STABLE);
}

#[test]
fn country_matches() {
    let c = compile(json!({"match": [{"countries": ["nz", "AU"]}]}));
    // From the CIDR table (198.51.100.0/24 → AU).
    assert_eq!(kind(&c, &R::new()), M0);
    assert_eq!(kind(&c, &R::new().from(Some("8.8.8.8:1"))), STABLE);
    // The header only counts from a trusted proxy.
    let r = R::new().from(Some("10.1.1.1:1")).h("cf-ipcountry", "NZ");
    assert_eq!(kind(&c, &r), M0);
    let r = R::new().from(Some("8.8.8.8:1")).h("cf-ipcountry", "NZ");
    assert_eq!(kind(&c, &r), STABLE);
    let r = R::new().from(Some("10.1.1.1:1")).h("cf-ipcountry", "FR");
    assert_eq!(kind(&c, &r), STABLE);
}

#[test]
fn precedence_exclude_match_weight() {
    let c = compile(json!({
        "match": [
            {"headers": {"x-canary": "true"}},
            {"headers": {"x-version": "v3"}},
            {"headers": {"x-canary": "true", "x-version": "v3"}},
        ],
        "exclude": [{"headers": {"x-canary": "never"}}, {"claims": {"role": "bot"}}],
        "weight": "100%",
    }));
    assert_eq!(kind(&c, &R::new()), DecisionKind::CanaryWeight);
    assert_eq!(kind(&c, &R::new().h("x-version", "v3")), M1);
    // Entry order: the first matching entry is reported.
    assert_eq!(
        kind(&c, &R::new().h("x-version", "v3").h("x-canary", "true")),
        M0
    );
    // Exclude wins over match and weight.
    assert_eq!(
        kind(&c, &R::new().h("x-canary", "never").h("x-version", "v3")),
        STABLE
    );
    assert_eq!(kind(&c, &R::new().jwt(json!({"role": "bot"}))), STABLE);
    assert_eq!(
        kind(&c, &R::new().jwt(json!({"role": "human"}))),
        DecisionKind::CanaryWeight
    );

    let zero = compile(json!({"match": [{"headers": {"x-canary": "true"}}], "weight": "0%"}));
    for _ in 0..1000 {
        assert_eq!(kind(&zero, &R::new()), STABLE);
    }
    let no_weight = compile(json!({"match": [{"headers": {"x-canary": "true"}}]}));
    assert_eq!(kind(&no_weight, &R::new()), STABLE);
}

#[test]
fn malformed_canaries_are_rejected() {
    let errs = compile_err(json!({
        "match": [
            {},
            {"sourceCidrs": ["203.0.113.0/33", "10.0.0.1/8", "nope"]},
            {"countries": ["NZL", "1A", " NZ"]},
            {"headers": {"bad header": "x", "X-A": "1", "x-a": "2", "x-empty": []}},
            {"claims": {"role": {"nested": true}, "sub": [], "ok": [1, null]}},
            {"query": {"": "x", "q": []}},
        ],
        "exclude": [{"sourceCidrs": ["::1/200"]}],
        "weight": "150%",
        "stickiness": {"key": "cookie"},
    }));
    let fields: Vec<&str> = errs.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.exclude[0].sourceCidrs[0]",
            "spec.match[0]",
            "spec.match[1].sourceCidrs[0]",
            "spec.match[1].sourceCidrs[1]",
            "spec.match[1].sourceCidrs[2]",
            "spec.match[2].countries[0]",
            "spec.match[2].countries[1]",
            "spec.match[2].countries[2]",
            "spec.match[3].headers.bad header",
            "spec.match[3].headers.x-a",
            "spec.match[3].headers.x-empty",
            "spec.match[4].claims.ok[1]",
            "spec.match[4].claims.role",
            "spec.match[4].claims.sub",
            "spec.match[5].query.",
            "spec.match[5].query.q",
            "spec.weight",
            "spec.stickiness.key",
        ],
        "{errs:#?}"
    );
    let reason = |f: &str| {
        errs.iter()
            .find(|(x, _)| x == f)
            .map(|(_, r)| r.clone())
            .unwrap()
    };
    assert!(reason("spec.weight").contains("more than 100%"));
    assert!(reason("spec.match[1].sourceCidrs[1]").contains("10.0.0.0/8"));
    assert!(reason("spec.match[3].headers.x-a").contains("twice"));

    for (w, why) in [
        ("-5%", "negative"),
        ("5", "percentage"),
        ("0.00001%", "4 decimals"),
    ] {
        let errs = compile_err(json!({"weight": w}));
        assert_eq!(errs[0].0, "spec.weight");
        assert!(errs[0].1.contains(why), "{w}: {}", errs[0].1);
    }
    for key in [
        "",
        "claim:",
        "header:bad name",
        "cookie:a;b",
        "ip",
        "session:x",
    ] {
        let errs = compile_err(json!({"weight": "5%", "stickiness": {"key": key}}));
        assert_eq!(errs[0].0, "spec.stickiness.key", "{key}");
    }
    let errs = compile_err(json!({}));
    assert_eq!(errs[0].0, "spec");
}

#[test]
fn rules_needing_environment_settings() {
    let bare = Arc::new(EnvironmentTrust::compile(&env(None, None, None)).unwrap());
    let canary = canary_json(
        "c",
        json!({"match": [{"claims": {"role": "x"}}, {"countries": ["NZ"]}], "weight": "1%", "stickiness": {"key": "claim:sub"}}),
    );
    let errs = CompiledCanary::compile(&canary, bare).unwrap_err();
    let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.match[0].claims",
            "spec.match[1].countries",
            "spec.stickiness.key"
        ]
    );
}

#[test]
fn weight_split_is_within_half_a_percent() {
    let c = compile(json!({"weight": "5%"}));
    let r = R::new();
    let n = 100_000;
    let hits = (0..n).filter(|_| r.run(&c).to_canary).count();
    let share = hits as f64 / n as f64;
    assert!((share - 0.05).abs() <= 0.005, "{share}");
    assert_eq!(c.weight_ppm(), Some(50_000));
}

#[test]
fn sticky_weight_split_is_within_half_a_percent() {
    let c = compile(json!({"weight": "5%", "stickiness": {"key": "header:x-user"}}));
    let n = 100_000;
    let hits = (0..n)
        .filter(|i| R::new().h("x-user", &format!("user-{i}")).run(&c).to_canary)
        .count();
    let share = hits as f64 / n as f64;
    assert!((share - 0.05).abs() <= 0.005, "{share}");
}

fn canary_users(weight: &str, key: &str, users: &[R]) -> Vec<bool> {
    let c = CompiledCanary::compile(
        &canary_json(
            "hello-world-v3-canary",
            json!({"weight": weight, "stickiness": {"key": key}}),
        ),
        full_trust(),
    )
    .unwrap();
    users
        .iter()
        .map(|r| {
            let first = r.run(&c);
            // Sticky: the same answer every time while the weight is unchanged.
            for _ in 0..3 {
                assert_eq!(r.run(&c).to_canary, first.to_canary);
            }
            assert_eq!(first.set_cookie, None);
            first.to_canary
        })
        .collect()
}

fn assert_monotonic(key: &str, users: &[R]) {
    let at1 = canary_users("1%", key, users);
    let at10 = canary_users("10%", key, users);
    let at50 = canary_users("50%", key, users);
    let count = |v: &[bool]| v.iter().filter(|b| **b).count();
    for i in 0..users.len() {
        assert!(!at1[i] || at10[i], "{key}: user {i} left the canary at 10%");
        assert!(
            !at10[i] || at50[i],
            "{key}: user {i} left the canary at 50%"
        );
    }
    let n = users.len() as f64;
    for (v, expect) in [(&at1, 0.01), (&at10, 0.10), (&at50, 0.50)] {
        let share = count(v) as f64 / n;
        assert!((share - expect).abs() < 0.04, "{key}: {share} vs {expect}");
    }
}

#[test]
fn stickiness_is_monotonic_for_every_key_kind() {
    let n = 2_000;
    let by_header: Vec<R> = (0..n)
        .map(|i| R::new().h("x-user", &format!("u{i}")))
        .collect();
    assert_monotonic("header:X-User", &by_header);
    let by_cookie: Vec<R> = (0..n)
        .map(|i| R::new().h("cookie", &format!("a=b; sy-canary=id{i}; c=d")))
        .collect();
    assert_monotonic("cookie:sy-canary", &by_cookie);
    let by_ip: Vec<R> = (0..n)
        .map(|i| R::new().from(Some(&format!("203.0.{}.{}:5000", i / 256, i % 256))))
        .collect();
    assert_monotonic("source-ip", &by_ip);
    let by_claim: Vec<R> = (0..200)
        .map(|i| R::new().jwt(json!({"sub": format!("user-{i}")})))
        .collect();
    let at10 = canary_users("10%", "claim:sub", &by_claim);
    let at50 = canary_users("50%", "claim:sub", &by_claim);
    assert!(at10.iter().zip(&at50).all(|(a, b)| !a || *b));
    assert!(at50.iter().any(|b| *b) && at50.iter().any(|b| !*b));
}

#[test]
fn source_ip_stickiness_ignores_ports_and_uses_the_trusted_client() {
    let c = compile(json!({"weight": "50%", "stickiness": {"key": "source-ip"}}));
    for i in 0..50 {
        let ip = format!("203.0.113.{i}");
        let direct = R::new().from(Some(&format!("{ip}:1000"))).run(&c).to_canary;
        let other_port = R::new().from(Some(&format!("{ip}:2000"))).run(&c).to_canary;
        let via_proxy = R::new()
            .from(Some("10.0.0.9:3000"))
            .h("x-forwarded-for", &ip)
            .run(&c)
            .to_canary;
        assert_eq!(direct, other_port);
        assert_eq!(direct, via_proxy);
    }
}

#[test]
fn missing_cookie_sets_one_that_sticks() {
    let c = compile(json!({"weight": "50%", "stickiness": {"key": "cookie:sy-canary"}}));
    for _ in 0..100 {
        let d = R::new().run(&c);
        let cookie = d.set_cookie.clone().expect("a cookie is set");
        assert!(cookie.starts_with("sy-canary="), "{cookie}");
        assert!(
            cookie.contains("; Path=/; Max-Age=2592000; HttpOnly"),
            "{cookie}"
        );
        let id = cookie["sy-canary=".len()..].split(';').next().unwrap();
        assert_eq!(id.len(), 32);
        // The next request carries it and lands on the same side.
        let next = R::new().h("cookie", &format!("sy-canary={id}")).run(&c);
        assert_eq!(next.to_canary, d.to_canary);
        assert_eq!(next.set_cookie, None);
    }
    // A request decided by a match rule gets no cookie.
    let c = compile(json!({
        "match": [{"headers": {"x-canary": "true"}}],
        "weight": "50%", "stickiness": {"key": "cookie:sy-canary"},
    }));
    assert_eq!(R::new().h("x-canary", "true").run(&c).set_cookie, None);
}

#[test]
fn missing_sticky_key_falls_back_to_random() {
    let c = compile(json!({"weight": "50%", "stickiness": {"key": "claim:sub"}}));
    let r = R::new();
    let hits = (0..2_000).filter(|_| r.run(&c).to_canary).count();
    assert!((800..1200).contains(&hits), "{hits}");
    assert_eq!(r.run(&c).note, Some(jwt::NOTE_MISSING));
    let c = compile(json!({"weight": "50%", "stickiness": {"key": "header:x-user"}}));
    let hits = (0..2_000).filter(|_| r.run(&c).to_canary).count();
    assert!((800..1200).contains(&hits), "{hits}");
}

#[test]
fn different_canaries_pick_different_cohorts() {
    let users: Vec<R> = (0..1_000)
        .map(|i| R::new().h("x-user", &format!("u{i}")))
        .collect();
    let make = |name: &str| {
        CompiledCanary::compile(
            &canary_json(
                name,
                json!({"weight": "50%", "stickiness": {"key": "header:x-user"}}),
            ),
            full_trust(),
        )
        .unwrap()
    };
    let (a, b) = (make("a"), make("b"));
    let same = users
        .iter()
        .filter(|r| r.run(&a).to_canary == r.run(&b).to_canary)
        .count();
    assert!(same < 700, "{same}");
}

#[test]
fn design_example_compiles() {
    let c = compile(json!({
        "match": [
            {"headers": {"x-version": "v3"}},
            {"headers": {"x-canary": "true"}},
            {"query": {"use_canary": "true"}},
            {"claims": {"role": "beta-tester"}},
            {"claims": {"sub": ["user-17", "user-42"]}},
            {"sourceCidrs": ["203.0.113.0/24", "2001:db8::/32"]},
            {"countries": ["NZ", "AU"]},
        ],
        "exclude": [{"headers": {"x-canary": "never"}}],
        "weight": "5%",
        "stickiness": {"key": "claim:sub"},
    }));
    assert_eq!(c.weight_ppm(), Some(50_000));
    assert_eq!(c.sticky_key(), Some(&StickyKey::Claim("sub".into())));
    assert_eq!(
        kind(&c, &R::new().jwt(json!({"sub": "user-42"}))),
        DecisionKind::CanaryMatch(4)
    );
    assert_eq!(
        kind(&c, &R::new().path("/prod/x?use_canary=true")),
        DecisionKind::CanaryMatch(2)
    );
    let r = R::new()
        .from(Some("10.0.0.1:1"))
        .h("cf-ipcountry", "NZ")
        .h("x-canary", "never");
    assert_eq!(kind(&c, &r), STABLE);
}

/// A quick native cost measurement: `cargo test -p switchyard-engine --release
/// decide_cost -- --ignored --nocapture`.
#[test]
#[ignore]
fn decide_cost() {
    let c = compile(json!({
        "match": [
            {"headers": {"x-version": "v3"}},
            {"query": {"use_canary": "true"}},
            {"sourceCidrs": ["203.0.113.0/24", "2001:db8::/32"]},
            {"claims": {"role": "beta-tester"}},
        ],
        "exclude": [{"headers": {"x-canary": "never"}}],
        "weight": "5%",
        "stickiness": {"key": "header:x-user"},
    }));
    let plain = R::new()
        .path("/prod/hello?a=b")
        .h("x-user", "user-1")
        .h("user-agent", "curl/8")
        .h("accept", "*/*");
    let with_jwt = R::new().jwt(json!({"role": "user"}));
    for (name, r) in [
        ("no-jwt (match miss, sticky weight)", &plain),
        ("hs256 jwt verified", &with_jwt),
    ] {
        let n = 20_000u32;
        let start = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(r.run(&c));
        }
        println!("{name}: {:?}/decision", start.elapsed() / n);
    }
}
