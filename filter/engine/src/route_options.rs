//! Per-route load-balancing options with Cloud Foundry's rules and wording
//! (seed 002, Cloud Controller's route options validation).

use std::fmt;

use serde_json::Value;

use crate::resources::RawOptions;

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
const VALID_VALUES: &str = "round-robin, least-connection, hash";

/// Validates CF route options. On failure returns every message, in CF's wording.
pub fn parse_options(options: &RawOptions) -> Result<LbPolicy, Vec<String>> {
    let mut errors = Vec::new();
    let unknown: Vec<String> = options
        .keys()
        .filter(|k| !KNOWN_KEYS.contains(&k.as_str()))
        .map(|k| format!("'{k}'"))
        .collect();
    if !unknown.is_empty() {
        errors.push(format!("Unknown field(s): {}", unknown.join(", ")));
    }

    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let loadbalancing = options.get("loadbalancing").map(text);
    let hash_header = options
        .get("hash_header")
        .map(text)
        .filter(|s| !s.is_empty());
    let hash_balance = options
        .get("hash_balance")
        .filter(|v| !v.is_null() && !text(v).is_empty());

    let is_hash = loadbalancing.as_deref() == Some("hash");
    match loadbalancing.as_deref() {
        None | Some("round-robin") | Some("least-connection") | Some("hash") => {}
        Some(other) => errors.push(format!(
            "Cannot use loadbalancing value '{other}'; Valid values are: '{VALID_VALUES}'"
        )),
    }
    if is_hash && hash_header.is_none() {
        errors.push("Hash header must be present when loadbalancing is set to hash.".to_string());
    }
    if !is_hash && hash_header.is_some() {
        errors.push("Hash header can only be set when loadbalancing is hash".to_string());
    }
    if !is_hash && hash_balance.is_some() {
        errors.push("Hash balance can only be set when loadbalancing is hash".to_string());
    }
    if let Some(h) = &hash_header {
        if h.chars().count() > 128 {
            errors.push("Hash header must be at most 128 characters".to_string());
        }
    }
    let mut balance_factor = 0;
    if let Some(v) = hash_balance {
        let number = match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
            _ => None,
        };
        match number {
            None => errors.push("Hash balance must be a numeric value".to_string()),
            Some(b) if b == 0.0 || (1.1..=10.0).contains(&b) => {
                balance_factor = (b * 100.0).round() as u32;
            }
            Some(_) => {
                errors.push("Hash balance must be either 0 or between 1.1 and 10.0".to_string())
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(match loadbalancing.as_deref() {
        Some("least-connection") => LbPolicy::LeastConnection,
        Some("hash") => LbPolicy::Hash {
            // Header names are matched lower-case, as Envoy stores them.
            header: hash_header.unwrap_or_default().to_ascii_lowercase(),
            balance_factor,
        },
        _ => LbPolicy::RoundRobin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn opts(v: Value) -> RawOptions {
        match v {
            Value::Object(m) => m,
            _ => RawOptions::new(),
        }
    }

    fn errors(v: Value) -> Vec<String> {
        parse_options(&opts(v)).err().unwrap_or_default()
    }

    #[test]
    fn valid_policies() {
        assert_eq!(parse_options(&opts(json!({}))), Ok(LbPolicy::RoundRobin));
        assert_eq!(
            parse_options(&opts(json!({"loadbalancing": "least-connection"}))),
            Ok(LbPolicy::LeastConnection)
        );
        assert_eq!(
            parse_options(&opts(
                json!({"loadbalancing": "hash", "hash_header": "Tenant-ID", "hash_balance": 1.25})
            )),
            Ok(LbPolicy::Hash {
                header: "tenant-id".into(),
                balance_factor: 125
            })
        );
        // numeric strings are accepted, 0 switches balancing off
        assert_eq!(
            parse_options(&opts(
                json!({"loadbalancing": "hash", "hash_header": "x", "hash_balance": "2.5"})
            )),
            Ok(LbPolicy::Hash {
                header: "x".into(),
                balance_factor: 250
            })
        );
        assert_eq!(
            parse_options(&opts(
                json!({"loadbalancing": "hash", "hash_header": "x", "hash_balance": "0"})
            )),
            Ok(LbPolicy::Hash {
                header: "x".into(),
                balance_factor: 0
            })
        );
    }

    #[test]
    fn cloud_foundry_messages() {
        assert_eq!(
            errors(json!({"loadbalancing": "hash"})),
            ["Hash header must be present when loadbalancing is set to hash."]
        );
        assert_eq!(
            errors(json!({"loadbalancing": "round-robin", "hash_header": "x"})),
            ["Hash header can only be set when loadbalancing is hash"]
        );
        assert_eq!(
            errors(json!({"hash_balance": 2})),
            ["Hash balance can only be set when loadbalancing is hash"]
        );
        assert_eq!(
            errors(json!({"loadbalancing": "hash", "hash_header": "h".repeat(129)})),
            ["Hash header must be at most 128 characters"]
        );
        assert!(
            errors(json!({"loadbalancing": "hash", "hash_header": "h".repeat(128)})).is_empty()
        );
        assert_eq!(
            errors(json!({"loadbalancing": "hash", "hash_header": "x", "hash_balance": "abc"})),
            ["Hash balance must be a numeric value"]
        );
        for bad in [json!(1.0), json!(10.5), json!("-1"), json!(0.5)] {
            assert_eq!(
                errors(json!({"loadbalancing": "hash", "hash_header": "x", "hash_balance": bad})),
                ["Hash balance must be either 0 or between 1.1 and 10.0"]
            );
        }
        for ok in [json!(1.1), json!(10.0), json!("10")] {
            assert!(errors(
                json!({"loadbalancing": "hash", "hash_header": "x", "hash_balance": ok})
            )
            .is_empty());
        }
        assert_eq!(
            errors(json!({"loadbalancing": "random"})),
            ["Cannot use loadbalancing value 'random'; Valid values are: 'round-robin, least-connection, hash'"]
        );
        assert_eq!(
            errors(json!({"sticky": true, "loadbalancing": "round-robin"})),
            ["Unknown field(s): 'sticky'"]
        );
    }
}
