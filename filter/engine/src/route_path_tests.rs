//! Hostile paths through genesis routing: a path is routed by, and forwarded as,
//! its normalized form, or refused with `invalid_path`.

use super::*;
use crate::path::normalize;
use crate::test_fixtures::{index, with_staging};

fn req(path: &str) -> Request<'_> {
    Request {
        method: "GET",
        path,
        headers: &[],
        source_address: None,
        now_unix_seconds: 1_800_000_000,
    }
}

/// (environment, deployment, component, forwarded `:path` if rewritten), or the refusal.
type Outcome = Result<(&'static str, &'static str, &'static str, Option<String>), ErrorCode>;

fn ok(
    env: &'static str,
    dep: &'static str,
    comp: &'static str,
    forwarded: Option<&str>,
) -> Outcome {
    Ok((env, dep, comp, forwarded.map(str::to_string)))
}

const MAIN: &str = "hello-world-main";
const V3: &str = "hello-world-v3";
const FRONT: &str = "frontend";
const BACK: &str = "backend";

#[test]
fn hostile_paths() {
    use ErrorCode::{EnvironmentNotFound, InvalidPath, RouteNotFound};
    let index = index(&with_staging());
    let deep = |unit: &str, n: usize, tail: &str| format!("/dev/hello{}{tail}", unit.repeat(n));
    let cases: Vec<(String, Outcome)> = vec![
        // dot segments cross environments: the resolved path decides and is forwarded
        (
            "/stg/hello/../../dev/hello".into(),
            ok("dev", MAIN, FRONT, Some("/dev/hello")),
        ),
        (
            "/stg/../dev/hello".into(),
            ok("dev", MAIN, FRONT, Some("/dev/hello")),
        ),
        (
            "/dev/hello/../../stg/hello".into(),
            ok("stg", V3, FRONT, Some("/stg/hello")),
        ),
        (
            "/dev/./hello/./backend".into(),
            ok("dev", MAIN, BACK, Some("/dev/hello/backend")),
        ),
        (
            "/dev/hello/backend/..".into(),
            ok("dev", MAIN, FRONT, Some("/dev/hello/")),
        ),
        (
            "/dev/hello/x/..".into(),
            ok("dev", MAIN, FRONT, Some("/dev/hello/")),
        ),
        (
            "/dev/../prod/./hello?kf-ve=live&q=1".into(),
            ok("prod", "hello-world-v2", FRONT, Some("/hello?q=1")),
        ),
        // encoded dots (any case) are dots
        (
            "/stg/%2e%2e/dev/hello".into(),
            ok("dev", MAIN, FRONT, Some("/dev/hello")),
        ),
        (
            "/stg/%2E%2E/dev/hello".into(),
            ok("dev", MAIN, FRONT, Some("/dev/hello")),
        ),
        (
            "/stg/.%2e/dev/hello".into(),
            ok("dev", MAIN, FRONT, Some("/dev/hello")),
        ),
        (
            "/dev/hello/%2e%2e/%2E%2e/stg/hello".into(),
            ok("stg", V3, FRONT, Some("/stg/hello")),
        ),
        // other unreserved escapes are decoded; reserved ones stay
        (
            "/d%65v/%68ello".into(),
            ok("dev", MAIN, FRONT, Some("/dev/hello")),
        ),
        (
            "/dev/hello/caf%C3%A9%20x".into(),
            ok("dev", MAIN, FRONT, None),
        ),
        // double encoding is decoded once only: %252e is not a dot
        (
            "/stg/hello/%252e%252e/..".into(),
            ok("stg", V3, FRONT, Some("/stg/hello/")),
        ),
        // climbing above the root
        ("/../dev/hello".into(), Err(InvalidPath)),
        ("/stg/hello/../../../dev/hello".into(), Err(InvalidPath)),
        ("/%2e%2e/dev/hello".into(), Err(InvalidPath)),
        ("/dev/..".into(), Err(EnvironmentNotFound)),
        // encoded slashes and backslashes, raw backslashes
        ("/stg%2f..%2fdev/hello".into(), Err(InvalidPath)),
        ("/stg/hello%2F..%2F..%2Fdev/hello".into(), Err(InvalidPath)),
        ("/dev/hello%5c..%5cbackend".into(), Err(InvalidPath)),
        ("/dev/hello%5C".into(), Err(InvalidPath)),
        ("/stg/hello\\..\\..\\dev/hello".into(), Err(InvalidPath)),
        // double slashes
        (
            "//dev//hello".into(),
            ok("dev", MAIN, FRONT, Some("/dev/hello")),
        ),
        (
            "/dev//hello/backend".into(),
            ok("dev", MAIN, BACK, Some("/dev/hello/backend")),
        ),
        // `..` removes the empty segment (as Envoy and WHATWG URLs do): still stg
        ("/stg//../dev/hello".into(), Err(RouteNotFound)),
        (
            "/stg//../hello".into(),
            ok("stg", V3, FRONT, Some("/stg/hello")),
        ),
        // ; path parameters: a dot segment with parameters is refused, others are data
        ("/stg/..;/dev/hello".into(), Err(InvalidPath)),
        ("/stg/hello/..;x=1/../dev/hello".into(), Err(InvalidPath)),
        ("/stg/.;/hello".into(), Err(InvalidPath)),
        ("/stg/..%3B/dev/hello".into(), Err(InvalidPath)),
        ("/stg/%2e%2e;/dev/hello".into(), Err(InvalidPath)),
        ("/dev;x/hello".into(), Err(EnvironmentNotFound)),
        ("/dev/hello;jsessionid=1".into(), Err(RouteNotFound)),
        ("/dev/hello/x;p=1/y".into(), ok("dev", MAIN, FRONT, None)),
        // ? and # tricks: the query is not the path; a raw # is refused
        (
            "/stg/hello?/../../dev/hello".into(),
            ok("stg", V3, FRONT, None),
        ),
        (
            "/stg/hello/..%3F/../dev/hello".into(),
            ok("stg", V3, FRONT, Some("/stg/hello/dev/hello")),
        ),
        ("/dev/hello#/../../stg/hello".into(), Err(InvalidPath)),
        (
            "/dev/hello/%23/../backend".into(),
            ok("dev", MAIN, BACK, Some("/dev/hello/backend")),
        ),
        // invalid escapes, control characters, invalid or overlong UTF-8
        ("/dev/hello/%zz".into(), Err(InvalidPath)),
        ("/dev/hello/%".into(), Err(InvalidPath)),
        ("/dev/hello/%2".into(), Err(InvalidPath)),
        ("/dev/hello/%00".into(), Err(InvalidPath)),
        ("/dev/hello/a%0d%0aX-Injected:1".into(), Err(InvalidPath)),
        ("/stg/%c0%ae%c0%ae/dev/hello".into(), Err(InvalidPath)),
        ("/stg/%e0%80%ae%e0%80%ae/dev/hello".into(), Err(InvalidPath)),
        ("/stg/%c0%af../dev/hello".into(), Err(InvalidPath)),
        ("/dev/hello/%c3".into(), Err(InvalidPath)),
        ("/dev/hello/%ed%a0%80".into(), Err(InvalidPath)),
        ("dev/hello".into(), Err(InvalidPath)),
        // very long paths (linear time)
        (deep("/a", 10_000, ""), ok("dev", MAIN, FRONT, None)),
        (
            deep("/a/..", 10_000, ""),
            ok("dev", MAIN, FRONT, Some("/dev/hello/")),
        ),
        (
            deep("/a", 5_000, &"/..".repeat(5_000)),
            ok("dev", MAIN, FRONT, Some("/dev/hello/")),
        ),
        (
            deep("/", 10_000, "/backend"),
            ok("dev", MAIN, BACK, Some("/dev/hello/backend")),
        ),
        (format!("/dev{}", "/..".repeat(10_000)), Err(InvalidPath)),
    ];
    assert!(cases.len() >= 25);
    for (path, want) in cases {
        let got = index
            .route(&req(&path))
            .map(|d| (d.environment, d.deployment, d.component, d.rewritten_path))
            .map_err(|e| e.code);
        let shown = &path[..path.len().min(80)];
        match (&got, &want) {
            (Ok((e, d, c, f)), Ok((we, wd, wc, wf))) => {
                assert_eq!((e, d, c, f), (we, wd, wc, wf), "{shown}");
            }
            (Err(g), Err(w)) => assert_eq!(g, w, "{shown}"),
            _ => panic!("{shown}: got {got:?}, want {want:?}"),
        }
    }
}

/// A small deterministic generator (xorshift) of hostile-looking paths.
fn generated_paths(n: usize) -> impl Iterator<Item = String> {
    const TOKENS: [&str; 28] = [
        "/", "/", "/", "a", "dev", "stg", "hello", ".", "..", "%2e", "%2E", "%41", "%7e", "%20",
        "%3B", ";", "x;y", "~", "%C3%A9", "é", "%", "%zz", "\\", "%2f", "%c0%ae", "#", "%25", "?",
    ];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..n).map(move |_| {
        let len = (next() % 24) as usize;
        let mut path = String::from("/");
        for _ in 0..len {
            path.push_str(TOKENS[(next() % TOKENS.len() as u64) as usize]);
        }
        path
    })
}

#[test]
fn normalizing_twice_changes_nothing() {
    let index = index(&with_staging());
    let (mut normalized, mut refused) = (0, 0);
    for raw in generated_paths(20_000) {
        let path = crate::request::split_query(&raw).0;
        let Ok(once) = normalize(path) else {
            refused += 1;
            continue;
        };
        normalized += 1;
        // a fixed point, and borrowed the second time (already normal)
        assert!(
            matches!(normalize(&once), Ok(Cow::Borrowed(p)) if p == once),
            "{raw:?} -> {once:?} -> {:?}",
            normalize(&once)
        );
        assert!(!once.contains("//"), "{raw:?} -> {once:?}");
        assert!(
            once.split('/').all(|s| s != "." && s != ".."),
            "{raw:?} -> {once:?}"
        );
        // routing the raw path and its normalized form decides the same
        let query = crate::request::split_query(&raw).1.map(|q| format!("?{q}"));
        let again = format!("{once}{}", query.unwrap_or_default());
        let first = index
            .route(&req(&raw))
            .map(|d| (d.environment, d.deployment, d.component));
        let second = index
            .route(&req(&again))
            .map(|d| (d.environment, d.deployment, d.component));
        assert_eq!(first, second, "{raw:?} vs {again:?}");
    }
    assert!(
        normalized > 2_000 && refused > 2_000,
        "{normalized} / {refused}"
    );
}
