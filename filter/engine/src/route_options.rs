//! Per-route load-balancing options with Cloud Foundry's rules and wording
//! (seed 002): Cloud Controller's `RouteOptionsMessage`, `OptionsValidator` and
//! `Route` model, as its v3 API applies them to `POST`/`PATCH /v3/routes`.
//!
//! Two steps, as in Cloud Controller:
//! - [`check`] is the message validation: `options` must be an object of the keys
//!   `loadbalancing`, `hash_header`, `hash_balance`; every problem is reported.
//!   `hash_header`/`hash_balance` without `loadbalancing` are accepted; only an
//!   explicit non-hash `loadbalancing` makes them an error. A `null` (or blank)
//!   value is an unset key, `loadbalancing: null` included (the API's reading; CF's
//!   manifest path refuses it).
//! - [`Options::policy`] is the model: `loadbalancing: hash` needs a `hash_header`;
//!   any other (or no) `loadbalancing` drops the hash options, so `hash_header`
//!   or `hash_balance` with no `hash` in effect keep the default, round-robin.
//!
//! A route's options are merged over its component's as Cloud Controller's
//! `RouteUpdate` merges a `PATCH` over a stored route's options: key by key, a
//! route's `null` unsets the component's value ([`Options::patched`]). So under a
//! component's `{loadbalancing: hash, hash_header: a}`, a route's `{hash_header: b}`
//! hashes that route on `b`, and a route's `{}` keeps the component's policy.

use std::fmt;

use serde_json::{Map, Value};

/// The load-balancing policy of a distilled cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum LbPolicy {
    #[default]
    RoundRobin,
    LeastConnection,
    /// Maglev on `header`; `balance_factor` = round(hash_balance × 100), 0 = off.
    Hash {
        header: String,
        balance_factor: u32,
    },
}

impl LbPolicy {
    /// A short tag used in cluster names.
    pub fn tag(&self) -> String {
        match self {
            LbPolicy::RoundRobin => "round-robin".to_string(),
            LbPolicy::LeastConnection => "least-connection".to_string(),
            LbPolicy::Hash {
                header,
                balance_factor,
            } => format!("hash-{header}-{balance_factor}"),
        }
    }
}

impl fmt::Display for LbPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.tag())
    }
}

const KNOWN_KEYS: [&str; 3] = ["loadbalancing", "hash_header", "hash_balance"];
const ALGORITHMS: [&str; 3] = ["round-robin", "least-connection", "hash"];

/// Ruby's `blank?`: `nil`, `false`, whitespace-only strings, empty lists and maps.
fn blank(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(_) => false,
        Value::String(s) => s.chars().all(char::is_whitespace),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// Ruby's `to_s` of a value, as far as lengths and messages need it.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Ruby's `Float(value)`: numbers, and strings that are a decimal number (with
/// optional sign, fraction, exponent and surrounding blanks); anything else is
/// not numeric.
fn float(v: &Value) -> Option<f64> {
    let f = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => {
            let s = s.trim();
            let decimal = s.chars().any(|c| c.is_ascii_digit())
                && s.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c))
                && !s.ends_with('.');
            decimal.then(|| s.parse::<f64>().ok()).flatten()
        }
        _ => None,
    };
    f.filter(|f| f.is_finite())
}

/// Options that passed [`check`]: the keys as written, blank ones included (a
/// blank value unsets a key when patched over a component's options).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Options(Map<String, Value>);

impl Options {
    /// A present (not blank) value of a key.
    fn present(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !blank(v))
    }

    /// `self` with `route`'s keys written over it: the route's options as Cloud
    /// Controller's `RouteUpdate` merges a `PATCH` over the stored options.
    pub fn patched(&self, route: &Options) -> Options {
        let mut merged = self.0.clone();
        merged.extend(route.0.iter().map(|(k, v)| (k.clone(), v.clone())));
        Options(merged)
    }

    /// The policy these options give, by the `Route` model's rules: `hash` needs a
    /// `hash_header`; without `hash`, `hash_header` and `hash_balance` are dropped.
    pub fn policy(&self) -> Result<LbPolicy, String> {
        match self.present("loadbalancing").and_then(Value::as_str) {
            Some("least-connection") => Ok(LbPolicy::LeastConnection),
            Some("hash") => {
                let header = self.present("hash_header").map(text).ok_or_else(|| {
                    // app/actions/route_create.rb, route_update.rb (:hash_header_missing)
                    "Hash header must be present when loadbalancing is set to hash.".to_string()
                })?;
                let balance = self.present("hash_balance").and_then(float).unwrap_or(0.0);
                Ok(LbPolicy::Hash {
                    // Header names are matched lower-case, as Envoy stores them.
                    header: header.to_ascii_lowercase(),
                    balance_factor: (balance * 100.0).round() as u32,
                })
            }
            _ => Ok(LbPolicy::RoundRobin),
        }
    }
}

/// Cloud Controller's message validation of one `options` value. On failure
/// returns every message, in CF's order and wording.
pub fn check(options: &Value) -> Result<Options, Vec<String>> {
    let Value::Object(map) = options else {
        // app/messages/validators.rb, OptionsValidator
        return Err(vec!["'options' is not a valid object".to_string()]);
    };
    let options = Options(map.clone());
    let mut errors = Vec::new();
    let unknown: Vec<&str> = map
        .keys()
        .map(String::as_str)
        .filter(|k| !KNOWN_KEYS.contains(k))
        .collect();
    if !unknown.is_empty() {
        errors.push(format!("Unknown field(s): '{}'", unknown.join("', '")));
    }
    let loadbalancing = options.present("loadbalancing");
    if let Some(lb) = loadbalancing {
        if !lb.as_str().is_some_and(|lb| ALGORITHMS.contains(&lb)) {
            errors.push(format!(
                "Loadbalancing must be one of '{}' if present",
                ALGORITHMS.join(", ")
            ));
        }
    }
    let hash_header = options.present("hash_header");
    if hash_header.is_some_and(|h| text(h).chars().count() > 128) {
        errors.push("Hash header must be at most 128 characters".to_string());
    }
    let hash_balance = options.present("hash_balance");
    if let Some(b) = hash_balance {
        if text(b).chars().count() > 16 {
            errors.push("Hash balance must be at most 16 characters".to_string());
        } else {
            match float(b) {
                None => errors.push("Hash balance must be a numeric value".to_string()),
                Some(b) if b == 0.0 || (1.1..=10.0).contains(&b) => {}
                Some(_) => {
                    errors.push("Hash balance must be either 0 or between 1.1 and 10.0".to_string())
                }
            }
        }
    }
    let not_hash = loadbalancing.is_some_and(|lb| lb.as_str() != Some("hash"));
    if not_hash && hash_header.is_some() {
        errors.push("Hash header can only be set when loadbalancing is hash".to_string());
    }
    if not_hash && hash_balance.is_some() {
        errors.push("Hash balance can only be set when loadbalancing is hash".to_string());
    }
    if errors.is_empty() {
        Ok(options)
    } else {
        Err(errors)
    }
}

/// [`check`], then [`Options::policy`]: the policy of one options value on its own.
pub fn parse_options(options: &Value) -> Result<LbPolicy, Vec<String>> {
    check(options)?.policy().map_err(|e| vec![e])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors(v: Value) -> Vec<String> {
        parse_options(&v).err().unwrap_or_default()
    }

    fn hash(header: &str, balance_factor: u32) -> LbPolicy {
        LbPolicy::Hash {
            header: header.into(),
            balance_factor,
        }
    }

    /// A route's effective policy as the index derives it: the route's options
    /// patched over the component's.
    fn effective(component: Option<Value>, route: Option<Value>) -> Result<LbPolicy, Vec<String>> {
        let component = component.map(|c| check(&c)).transpose()?;
        let base = component.unwrap_or_default();
        let options = match route {
            Some(r) => base.patched(&check(&r)?),
            None => base,
        };
        options.policy().map_err(|e| vec![e])
    }

    const LB: &str =
        "Loadbalancing must be one of 'round-robin, least-connection, hash' if present";
    const NOT_OBJECT: &str = "'options' is not a valid object";
    const HEADER_ONLY_HASH: &str = "Hash header can only be set when loadbalancing is hash";
    const BALANCE_ONLY_HASH: &str = "Hash balance can only be set when loadbalancing is hash";
    const HEADER_128: &str = "Hash header must be at most 128 characters";
    const BALANCE_16: &str = "Hash balance must be at most 16 characters";
    const NUMERIC: &str = "Hash balance must be a numeric value";
    const RANGE: &str = "Hash balance must be either 0 or between 1.1 and 10.0";
    const HEADER_MISSING: &str = "Hash header must be present when loadbalancing is set to hash.";

    #[test]
    fn valid_policies() {
        assert_eq!(parse_options(&json!({})), Ok(LbPolicy::RoundRobin));
        assert_eq!(
            parse_options(&json!({"loadbalancing": "least-connection"})),
            Ok(LbPolicy::LeastConnection)
        );
        assert_eq!(
            parse_options(
                &json!({"loadbalancing": "hash", "hash_header": "Tenant-ID", "hash_balance": 1.25})
            ),
            Ok(hash("tenant-id", 125))
        );
        // numeric strings are accepted, 0 switches balancing off
        assert_eq!(
            parse_options(
                &json!({"loadbalancing": "hash", "hash_header": "x", "hash_balance": "2.5"})
            ),
            Ok(hash("x", 250))
        );
        assert_eq!(
            parse_options(
                &json!({"loadbalancing": "hash", "hash_header": "x", "hash_balance": "0"})
            ),
            Ok(hash("x", 0))
        );
    }

    #[test]
    fn cloud_foundry_messages() {
        assert_eq!(errors(json!({"loadbalancing": "hash"})), [HEADER_MISSING]);
        assert_eq!(
            errors(json!({"loadbalancing": "round-robin", "hash_header": "x"})),
            [HEADER_ONLY_HASH]
        );
        assert_eq!(
            errors(json!({"loadbalancing": "hash", "hash_header": "h".repeat(129)})),
            [HEADER_128]
        );
        assert!(
            errors(json!({"loadbalancing": "hash", "hash_header": "h".repeat(128)})).is_empty()
        );
        assert_eq!(
            errors(json!({"loadbalancing": "hash", "hash_header": "x", "hash_balance": "abc"})),
            [NUMERIC]
        );
        for bad in [
            json!(1.0),
            json!(10.5),
            json!("-1"),
            json!(0.5),
            json!("inf"),
        ] {
            let e =
                errors(json!({"loadbalancing": "hash", "hash_header": "x", "hash_balance": bad}));
            assert!(e == [RANGE] || e == [NUMERIC], "{bad}: {e:?}");
        }
        for ok in [json!(1.1), json!(10.0), json!("10"), json!(" 2.5 ")] {
            assert!(errors(
                json!({"loadbalancing": "hash", "hash_header": "x", "hash_balance": ok})
            )
            .is_empty());
        }
        assert_eq!(errors(json!({"loadbalancing": "random"})), [LB]);
        assert_eq!(errors(json!({"loadbalancing": 5})), [LB]);
        assert_eq!(
            errors(json!({"sticky": true, "loadbalancing": "round-robin"})),
            ["Unknown field(s): 'sticky'"]
        );
        // Every message of one options value, in Cloud Controller's order.
        assert_eq!(
            errors(
                json!({"zone": 1, "loadbalancing": "random", "hash_header": "h".repeat(129),
                "hash_balance": "x"})
            ),
            [
                "Unknown field(s): 'zone'",
                LB,
                HEADER_128,
                NUMERIC,
                HEADER_ONLY_HASH,
                BALANCE_ONLY_HASH
            ]
        );
        // The model's rule is checked only once the message is valid (as CC's
        // action runs only after the message validated).
        assert_eq!(
            errors(json!({"loadbalancing": "hash", "hash_balance": 0.5})),
            [RANGE]
        );
    }

    /// Rule 1: `hash_header` / `hash_balance` without `loadbalancing` are accepted
    /// and, with no `hash` to apply to, keep the default algorithm.
    #[test]
    fn hash_options_without_loadbalancing_are_accepted() {
        // manifest_routes_update_message_spec.rb:475-489 "returns true (loadbalancing is omitted)"
        assert_eq!(
            parse_options(&json!({"hash_header": "X-User-ID"})),
            Ok(LbPolicy::RoundRobin)
        );
        // manifest_routes_update_message_spec.rb:532-548 "returns true (loadbalancing is omitted)"
        assert_eq!(
            parse_options(&json!({"hash_header": "X-User-ID", "hash_balance": "2.0"})),
            Ok(LbPolicy::RoundRobin)
        );
        // route_options_message_spec.rb:128-131 'allows hash_balance option'
        assert_eq!(
            parse_options(&json!({"hash_balance": "1.5"})),
            Ok(LbPolicy::RoundRobin)
        );
        // An explicit non-hash loadbalancing makes them an error:
        // route_options_message_spec.rb:107-111, 133-137
        assert_eq!(
            errors(json!({"loadbalancing": "least-connection", "hash_balance": "1.5"})),
            [BALANCE_ONLY_HASH]
        );
        // They still are validated (manifest_routes_update_message_spec.rb:591-607).
        assert_eq!(errors(json!({"hash_balance": "not-a-number"})), [NUMERIC]);
        // Over a component's `loadbalancing: hash` they apply, as a PATCH of only
        // hash_header applies over a stored hash route (route_update_spec.rb:221-235).
        assert_eq!(
            effective(
                Some(
                    json!({"loadbalancing": "hash", "hash_header": "foobar", "hash_balance": "2"})
                ),
                Some(json!({"hash_header": "X-New-Header"}))
            ),
            Ok(hash("x-new-header", 200))
        );
        // Over a component's non-hash loadbalancing they are dropped, as the Route
        // model drops them (route_spec.rb:1316-1327, route.rb remove_hash_options_…).
        assert_eq!(
            effective(
                Some(json!({"loadbalancing": "least-connection"})),
                Some(json!({"hash_header": "x"}))
            ),
            Ok(LbPolicy::LeastConnection)
        );
    }

    /// Rule 2: `options: null` (or any non-object) is refused.
    #[test]
    fn options_must_be_an_object() {
        // route_create_message_spec.rb:395-410; route_update_message_spec.rb:36-40
        // (full message "Options 'options' is not a valid object"; the field is ours).
        // The manifest path words it "Route '…': options must be an object"
        // (manifest_routes_update_message_spec.rb:228-243).
        for v in [
            json!(null),
            json!(5),
            json!("hash"),
            json!(["loadbalancing"]),
        ] {
            assert_eq!(errors(v.clone()), [NOT_OBJECT], "{v}");
        }
    }

    /// Rule 3: `hash_balance` longer than 16 characters, in range or not.
    #[test]
    fn hash_balance_is_at_most_16_characters() {
        // manifest_routes_update_message_spec.rb:752-771: "2." + "1" * 15 is in range
        let in_range = format!("2.{}", "1".repeat(15));
        assert_eq!(
            errors(
                json!({"loadbalancing": "hash", "hash_header": "X-User-ID", "hash_balance": in_range})
            ),
            [BALANCE_16]
        );
        // route_options_message_spec.rb:184-188
        assert_eq!(
            errors(
                json!({"loadbalancing": "hash", "hash_header": "X-User-ID", "hash_balance": "12345678901234567"})
            ),
            [BALANCE_16]
        );
        // A number's text counts too.
        assert_eq!(
            errors(
                json!({"loadbalancing": "hash", "hash_header": "X", "hash_balance": 2.111111111111111})
            ),
            [BALANCE_16]
        );
        // manifest_routes_update_message_spec.rb:773-790: exactly 16 is fine
        let sixteen = format!("2.{}", "1".repeat(14));
        assert_eq!(
            parse_options(
                &json!({"loadbalancing": "hash", "hash_header": "X-User-ID", "hash_balance": sixteen})
            ),
            Ok(hash("x-user-id", 211))
        );
        // manifest_routes_update_message_spec.rb:793-812 "returns false and prints all errors"
        assert_eq!(
            errors(
                json!({"loadbalancing": "hash", "hash_header": "X".repeat(129),
                "hash_balance": format!("2.{}", "1".repeat(15))})
            ),
            [HEADER_128, BALANCE_16]
        );
    }

    /// Rule 4: `loadbalancing: null` is unset, as on Cloud Controller's API path.
    #[test]
    fn null_loadbalancing_is_unset() {
        // route_options_message_spec.rb:22-25; route_create_message_spec.rb:464-479;
        // route_update_message_spec.rb:42-45 'accepts loadbalancing: nil to unset …'.
        // (The manifest path refuses it: manifest_routes_update_message_spec.rb:281-297.)
        assert_eq!(
            parse_options(&json!({"loadbalancing": null})),
            Ok(LbPolicy::RoundRobin)
        );
        // Over a component's hash it unsets it, and the hash options go with it
        // (route_update_spec.rb:199-213 "removes this option and hash options").
        assert_eq!(
            effective(
                Some(
                    json!({"loadbalancing": "hash", "hash_header": "foobar", "hash_balance": "2"})
                ),
                Some(json!({"loadbalancing": null}))
            ),
            Ok(LbPolicy::RoundRobin)
        );
    }

    enum Expect {
        Ok(LbPolicy),
        Refused(&'static [&'static str]),
    }
    use Expect::{Ok as Accept, Refused};

    /// Cloud Controller's route-option spec cases (cloud_controller_ng 3bbba90,
    /// spec/unit/…), translated: (spec:line, component's options — the stored
    /// route for `RouteUpdate` cases —, the route's options, expected).
    /// Cases with the `hash_based_routing` flag disabled, the options size limit
    /// and hash_balance's stored rounding have no counterpart in Switchyard.
    /// Where CC's manifest path words a refusal differently from its API path,
    /// the API's message is expected (noted "manifest:").
    #[test]
    fn cloud_controller_spec_cases() {
        let x129 = "X".repeat(129);
        let x128 = "X".repeat(128);
        let b17 = format!("2.{}", "1".repeat(15));
        let b16 = format!("2.{}", "1".repeat(14));
        let rr = || Accept(LbPolicy::RoundRobin);
        let lc = || Accept(LbPolicy::LeastConnection);
        let stored_hash =
            json!({"loadbalancing": "hash", "hash_header": "foobar", "hash_balance": "2"});
        let stored_rr = json!({"loadbalancing": "round-robin"});
        #[rustfmt::skip]
        let cases: Vec<(&str, Option<Value>, Option<Value>, Expect)> = vec![
            // messages/route_options_message_spec.rb
            ("route_options_message_spec.rb:7", None, Some(json!({"loadbalancing": "round-robin"})), rr()),
            ("route_options_message_spec.rb:12", None, Some(json!({"loadbalancing": "least-connection"})), lc()),
            ("route_options_message_spec.rb:17", None, Some(json!({})), rr()),
            ("route_options_message_spec.rb:22", None, Some(json!({"loadbalancing": null})), rr()),
            ("route_options_message_spec.rb:27", None, Some(json!({"loadbalancing": "donuts"})), Refused(&[LB])),
            ("route_options_message_spec.rb:33", None, Some(json!({"cookies": "round-robin"})), Refused(&["Unknown field(s): 'cookies'"])),
            ("route_options_message_spec.rb:39", None, Some(json!({"route_policy_scope": "org"})), Refused(&["Unknown field(s): 'route_policy_scope'"])),
            ("route_options_message_spec.rb:45", None, Some(json!({"route_policy_sources": "cf:any"})), Refused(&["Unknown field(s): 'route_policy_sources'"])),
            ("route_options_message_spec.rb:85", None, Some(json!({"loadbalancing": "hash", "hash_header": "X-User-ID"})), Accept(hash("x-user-id", 0))),
            ("route_options_message_spec.rb:102", None, Some(json!({"hash_header": "X-User-ID"})), rr()),
            ("route_options_message_spec.rb:107", None, Some(json!({"loadbalancing": "round-robin", "hash_header": "X-User-ID"})), Refused(&[HEADER_ONLY_HASH])),
            ("route_options_message_spec.rb:114", None, Some(json!({"loadbalancing": "hash", "hash_header": x129})), Refused(&[HEADER_128])),
            ("route_options_message_spec.rb:120", None, Some(json!({"loadbalancing": "hash", "hash_header": x128})), Accept(hash(&x128.to_ascii_lowercase(), 0))),
            ("route_options_message_spec.rb:128", None, Some(json!({"hash_balance": "1.5"})), rr()),
            ("route_options_message_spec.rb:133", None, Some(json!({"loadbalancing": "round-robin", "hash_balance": "1.5"})), Refused(&[BALANCE_ONLY_HASH])),
            ("route_options_message_spec.rb:140", None, Some(json!({"hash_balance": "not-a-number"})), Refused(&[NUMERIC])),
            ("route_options_message_spec.rb:146", None, Some(json!({"hash_balance": 0})), rr()),
            ("route_options_message_spec.rb:151", None, Some(json!({"hash_balance": 1.1})), rr()),
            ("route_options_message_spec.rb:156", None, Some(json!({"hash_balance": 2.5})), rr()),
            ("route_options_message_spec.rb:161", None, Some(json!({"hash_balance": 0.5})), Refused(&[RANGE])),
            ("route_options_message_spec.rb:167", None, Some(json!({"hash_balance": "2.5"})), rr()),
            ("route_options_message_spec.rb:172", None, Some(json!({"hash_balance": "3"})), rr()),
            ("route_options_message_spec.rb:177", None, Some(json!({"hash_balance": 1.5})), rr()),
            ("route_options_message_spec.rb:184", None, Some(json!({"loadbalancing": "hash", "hash_header": "X-User-ID", "hash_balance": "12345678901234567"})), Refused(&[BALANCE_16])),
            ("route_options_message_spec.rb:190", None, Some(json!({"loadbalancing": "hash", "hash_header": "X-User-ID", "hash_balance": "9.9"})), Accept(hash("x-user-id", 990))),
            ("route_options_message_spec.rb:197", None, Some(json!({"loadbalancing": "hash", "hash_header": "X-User-ID", "hash_balance": 10.1})), Refused(&[RANGE])),
            ("route_options_message_spec.rb:203", None, Some(json!({"loadbalancing": "hash", "hash_header": "X-User-ID", "hash_balance": 10.0})), Accept(hash("x-user-id", 1000))),
            ("route_options_message_spec.rb:211", None, Some(json!({"loadbalancing": "hash", "hash_header": "X-User-ID", "hash_balance": "2.5"})), Accept(hash("x-user-id", 250))),
            // messages/route_create_message_spec.rb
            ("route_create_message_spec.rb:362", None, None, rr()),
            ("route_create_message_spec.rb:378", None, Some(json!({})), rr()),
            ("route_create_message_spec.rb:395", None, Some(json!(null)), Refused(&[NOT_OBJECT])),
            ("route_create_message_spec.rb:413", None, Some(json!({"foobar": "baz"})), Refused(&["Unknown field(s): 'foobar'"])),
            ("route_create_message_spec.rb:431", None, Some(json!({"loadbalancing": "round-robin"})), rr()),
            ("route_create_message_spec.rb:447", None, Some(json!({"loadbalancing": "least-connection"})), lc()),
            ("route_create_message_spec.rb:464", None, Some(json!({"loadbalancing": null})), rr()),
            ("route_create_message_spec.rb:481", None, Some(json!({"loadbalancing": "random"})), Refused(&[LB])),
            ("route_create_message_spec.rb:505", None, Some(json!({"loadbalancing": "hash", "hash_header": x129})), Refused(&[HEADER_128])),
            ("route_create_message_spec.rb:526", None, Some(json!({"loadbalancing": "hash", "hash_header": x128})), Accept(hash(&x128.to_ascii_lowercase(), 0))),
            ("route_create_message_spec.rb:546", None, Some(json!({"loadbalancing": "hash", "hash_header": "X-User-ID", "hash_balance": "12345678901234567"})), Refused(&[BALANCE_16])),
            ("route_create_message_spec.rb:568", None, Some(json!({"loadbalancing": "hash", "hash_header": "X-User-ID", "hash_balance": "9.9"})), Accept(hash("x-user-id", 990))),
            ("route_create_message_spec.rb:589", None, Some(json!({"loadbalancing": "hash", "hash_header": "X-User-ID", "hash_balance": 10.1})), Refused(&[RANGE])),
            ("route_create_message_spec.rb:611", None, Some(json!({"loadbalancing": "hash", "hash_header": "X-User-ID", "hash_balance": 10.0})), Accept(hash("x-user-id", 1000))),
            // messages/route_update_message_spec.rb
            ("route_update_message_spec.rb:21", None, Some(json!({})), rr()),
            ("route_update_message_spec.rb:26", None, Some(json!({"loadbalancing": "round-robin"})), rr()),
            ("route_update_message_spec.rb:31", None, Some(json!({"loadbalancing": "least-connection"})), lc()),
            ("route_update_message_spec.rb:36", None, Some(json!(null)), Refused(&[NOT_OBJECT])),
            ("route_update_message_spec.rb:42", None, Some(json!({"loadbalancing": null})), rr()),
            ("route_update_message_spec.rb:53", None, Some(json!({"loadbalancing": "cheesecake"})), Refused(&[LB])),
            ("route_update_message_spec.rb:59", None, Some(json!({"gorgonzola": "gouda"})), Refused(&["Unknown field(s): 'gorgonzola'"])),
            ("route_update_message_spec.rb:70", None, Some(json!({"loadbalancing": "hash", "hash_header": x129})), Refused(&[HEADER_128])),
            ("route_update_message_spec.rb:76", None, Some(json!({"loadbalancing": "hash", "hash_header": x128})), Accept(hash(&x128.to_ascii_lowercase(), 0))),
            ("route_update_message_spec.rb:81", None, Some(json!({"loadbalancing": "hash", "hash_header": "X-User-ID", "hash_balance": "12345678901234567"})), Refused(&[BALANCE_16])),
            ("route_update_message_spec.rb:87", None, Some(json!({"loadbalancing": "hash", "hash_header": "X-User-ID", "hash_balance": "9.9"})), Accept(hash("x-user-id", 990))),
            ("route_update_message_spec.rb:92", None, Some(json!({"loadbalancing": "hash", "hash_header": "X-User-ID", "hash_balance": 10.1})), Refused(&[RANGE])),
            ("route_update_message_spec.rb:98", None, Some(json!({"loadbalancing": "hash", "hash_header": "X-User-ID", "hash_balance": 10.0})), Accept(hash("x-user-id", 1000))),
            // messages/manifest_routes_update_message_spec.rb (hash_based_routing enabled)
            ("manifest_routes_update_message_spec.rb:212", None, Some(json!({})), rr()),
            // manifest: "Route 'existing.example.com': options must be an object"
            ("manifest_routes_update_message_spec.rb:228", None, Some(json!(null)), Refused(&[NOT_OBJECT])),
            // manifest: "Route '…' contains invalid route option 'invalid'. Valid keys: '…'"
            ("manifest_routes_update_message_spec.rb:245", None, Some(json!({"invalid": "invalid"})), Refused(&["Unknown field(s): 'invalid'"])),
            ("manifest_routes_update_message_spec.rb:263", None, Some(json!({"loadbalancing": "round-robin"})), rr()),
            // manifest refuses ("Invalid value for 'loadbalancing' …"); the API path, followed here, accepts
            ("manifest_routes_update_message_spec.rb:281", None, Some(json!({"loadbalancing": null})), rr()),
            // manifest: "Cannot use loadbalancing value 'sushi' for Route '…'; Valid values are: '…'"
            ("manifest_routes_update_message_spec.rb:300", None, Some(json!({"loadbalancing": "sushi"})), Refused(&[LB])),
            ("manifest_routes_update_message_spec.rb:436", None, Some(json!({"loadbalancing": "hash", "hash_header": "X-User-ID"})), Accept(hash("x-user-id", 0))),
            ("manifest_routes_update_message_spec.rb:455", None, Some(json!({"loadbalancing": "hash", "hash_header": "X-User-ID", "hash_balance": "1.5"})), Accept(hash("x-user-id", 150))),
            ("manifest_routes_update_message_spec.rb:475", None, Some(json!({"hash_header": "X-User-ID"})), rr()),
            ("manifest_routes_update_message_spec.rb:493", None, Some(json!({"loadbalancing": "hash", "hash_header": x129})), Refused(&[HEADER_128])),
            ("manifest_routes_update_message_spec.rb:513", None, Some(json!({"loadbalancing": "hash", "hash_header": x128})), Accept(hash(&x128.to_ascii_lowercase(), 0))),
            ("manifest_routes_update_message_spec.rb:532", None, Some(json!({"hash_header": "X-User-ID", "hash_balance": "2.0"})), rr()),
            ("manifest_routes_update_message_spec.rb:551", None, Some(json!({"loadbalancing": "round-robin", "hash_header": "X-User-ID"})), Refused(&[HEADER_ONLY_HASH])),
            ("manifest_routes_update_message_spec.rb:571", None, Some(json!({"loadbalancing": "least-connection", "hash_balance": "1.5"})), Refused(&[BALANCE_ONLY_HASH])),
            ("manifest_routes_update_message_spec.rb:591", None, Some(json!({"hash_balance": "not-a-number"})), Refused(&[NUMERIC])),
            ("manifest_routes_update_message_spec.rb:610", None, Some(json!({"loadbalancing": "hash", "hash_header": "X-User-ID", "hash_balance": 0})), Accept(hash("x-user-id", 0))),
            ("manifest_routes_update_message_spec.rb:630", None, Some(json!({"loadbalancing": "hash", "hash_header": "X-User-ID", "hash_balance": 0.5})), Refused(&[RANGE])),
            ("manifest_routes_update_message_spec.rb:651", None, Some(json!({"loadbalancing": "hash", "hash_header": "X-User-ID", "hash_balance": 1.1})), Accept(hash("x-user-id", 110))),
            ("manifest_routes_update_message_spec.rb:671", None, Some(json!({"loadbalancing": "hash", "hash_header": "X-User-ID", "hash_balance": 10.1})), Refused(&[RANGE])),
            ("manifest_routes_update_message_spec.rb:692", None, Some(json!({"loadbalancing": "hash", "hash_header": "X-User-ID", "hash_balance": 10.0})), Accept(hash("x-user-id", 1000))),
            ("manifest_routes_update_message_spec.rb:712", None, Some(json!({"loadbalancing": "hash", "hash_header": "X-User-ID", "hash_balance": "2.5"})), Accept(hash("x-user-id", 250))),
            ("manifest_routes_update_message_spec.rb:732", None, Some(json!({"loadbalancing": "hash", "hash_header": "X-User-ID", "hash_balance": 1.5})), Accept(hash("x-user-id", 150))),
            ("manifest_routes_update_message_spec.rb:752", None, Some(json!({"loadbalancing": "hash", "hash_header": "X-User-ID", "hash_balance": b17})), Refused(&[BALANCE_16])),
            ("manifest_routes_update_message_spec.rb:773", None, Some(json!({"loadbalancing": "hash", "hash_header": "X-User-ID", "hash_balance": b16})), Accept(hash("x-user-id", 211))),
            ("manifest_routes_update_message_spec.rb:793", None, Some(json!({"loadbalancing": "hash", "hash_header": x129, "hash_balance": b17})), Refused(&[HEADER_128, BALANCE_16])),
            // (manifest_routes_update_message_spec.rb:815, several routes: index.rs and load.rs tests)
            // actions/route_create_spec.rb
            ("route_create_spec.rb:113", None, Some(json!({"loadbalancing": "hash", "hash_header": "X-User-ID"})), Accept(hash("x-user-id", 0))),
            ("route_create_spec.rb:141", None, Some(json!({"loadbalancing": "hash", "hash_header": "X-Session-ID", "hash_balance": "2"})), Accept(hash("x-session-id", 200))),
            ("route_create_spec.rb:170", None, Some(json!({"loadbalancing": "hash"})), Refused(&[HEADER_MISSING])),
            ("route_create_spec.rb:226", None, Some(json!({"loadbalancing": "round-robin"})), rr()),
            // actions/route_update_spec.rb: the stored options are the component's
            ("route_update_spec.rb:152", None, None, rr()),
            ("route_update_spec.rb:170", None, Some(json!({"loadbalancing": "round-robin"})), rr()),
            ("route_update_spec.rb:199", Some(stored_hash.clone()), Some(json!({"loadbalancing": null})), rr()),
            ("route_update_spec.rb:221", Some(stored_hash.clone()), Some(json!({"hash_header": "X-New-Header"})), Accept(hash("x-new-header", 200))),
            ("route_update_spec.rb:243", Some(stored_hash.clone()), Some(json!({"hash_balance": "3.5"})), Accept(hash("foobar", 350))),
            ("route_update_spec.rb:265", Some(stored_hash.clone()), Some(json!({"hash_header": "X-Updated-Header", "hash_balance": "5.0"})), Accept(hash("x-updated-header", 500))),
            ("route_update_spec.rb:288", Some(stored_hash.clone()), Some(json!({"hash_balance": null})), Accept(hash("foobar", 0))),
            ("route_update_spec.rb:311", Some(stored_hash.clone()), Some(json!({"loadbalancing": "round-robin"})), rr()),
            ("route_update_spec.rb:335", Some(stored_hash.clone()), Some(json!({"loadbalancing": "least-connection"})), lc()),
            ("route_update_spec.rb:359", Some(stored_hash.clone()), Some(json!({"hash_header": null})), Refused(&[HEADER_MISSING])),
            ("route_update_spec.rb:382", Some(stored_rr.clone()), None, rr()),
            ("route_update_spec.rb:405", Some(stored_rr.clone()), Some(json!({"loadbalancing": "hash"})), Refused(&[HEADER_MISSING])),
            ("route_update_spec.rb:422", Some(stored_rr.clone()), Some(json!({"loadbalancing": "hash", "hash_header": "X-User-ID"})), Accept(hash("x-user-id", 0))),
            ("route_update_spec.rb:445", Some(stored_rr.clone()), Some(json!({"loadbalancing": "hash", "hash_header": "X-Session-ID", "hash_balance": "2.5"})), Accept(hash("x-session-id", 250))),
            ("route_update_spec.rb:470", Some(stored_rr.clone()), Some(json!({"loadbalancing": "least-connection"})), lc()),
            ("route_update_spec.rb:492", Some(stored_rr.clone()), Some(json!({"loadbalancing": null})), rr()),
            // models/runtime/route_spec.rb
            ("route_spec.rb:1233", None, Some(json!({"loadbalancing": "hash", "hash_header": "X-User-ID", "hash_balance": "1.5"})), Accept(hash("x-user-id", 150))),
            ("route_spec.rb:1336", None, Some(json!({"loadbalancing": "hash", "hash_header": "X-User-ID"})), Accept(hash("x-user-id", 0))),
            ("route_spec.rb:1349", None, Some(json!({"loadbalancing": "hash"})), Refused(&[HEADER_MISSING])),
            ("route_spec.rb:1363", None, Some(json!({"loadbalancing": "hash", "hash_header": ""})), Refused(&[HEADER_MISSING])),
            ("route_spec.rb:1377", None, Some(json!({"loadbalancing": "hash", "hash_header": "X-User-ID", "hash_balance": "1.5"})), Accept(hash("x-user-id", 150))),
            ("route_spec.rb:1391", None, Some(json!({"loadbalancing": "round-robin"})), rr()),
            ("route_spec.rb:1404", None, Some(json!({"loadbalancing": "least-connection"})), lc()),
            ("route_spec.rb:1430", None, Some(json!({})), rr()),
        ];
        let mut failures = Vec::new();
        for (case, component, route, expect) in cases {
            let got = effective(component, route);
            let want = match expect {
                Accept(p) => Ok(p),
                Refused(m) => Err(m.iter().map(|s| s.to_string()).collect()),
            };
            if got != want {
                failures.push(format!("{case}: got {got:?}, want {want:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}
