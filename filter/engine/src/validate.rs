//! Field-level checks shared by the index and the control plane: names, sub paths,
//! endpoints, route prefixes, methods. Each returns the reason a value is wrong.

/// DNS label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
}

pub fn check_name(name: &str) -> Result<(), String> {
    if is_dns_label(name) {
        Ok(())
    } else {
        Err(format!(
            "'{name}' is not a DNS label ([a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63 characters)"
        ))
    }
}

/// A sub path is one URL path segment: no `/`, `?`, `#`, `%` or spaces.
pub fn check_sub_path(sub_path: &str) -> Result<(), String> {
    if sub_path.is_empty() {
        return Err("must not be empty".to_string());
    }
    if let Some(c) = sub_path
        .chars()
        .find(|c| matches!(c, '/' | '?' | '#' | '%') || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "'{sub_path}' must be a single path segment (found {c:?})"
        ));
    }
    Ok(())
}

/// `host:port` where host is an IPv4 address, `[IPv6]`, or a DNS name.
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("'{endpoint}' is not host:port: {why}"));
    let Some((host, port)) = endpoint.rsplit_once(':') else {
        return bad("missing :port");
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return bad("port must be 1-65535"),
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return match v6.parse::<std::net::Ipv6Addr>() {
            Ok(_) => Ok(()),
            Err(_) => bad("invalid IPv6 address"),
        };
    }
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return Ok(());
    }
    let dns_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if dns_ok {
        Ok(())
    } else {
        bad("host must be an IP address or DNS name")
    }
}

/// Splits an endpoint into (host, port); call after [`check_endpoint`].
pub fn split_endpoint(endpoint: &str) -> (&str, u16) {
    let (host, port) = endpoint.rsplit_once(':').unwrap_or((endpoint, "0"));
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (host, port.parse().unwrap_or(0))
}

pub fn check_path_prefix(prefix: &str) -> Result<(), String> {
    if !prefix.starts_with('/') {
        return Err(format!("'{prefix}' must start with '/'"));
    }
    if prefix.contains(['?', '#']) || prefix.chars().any(char::is_whitespace) {
        return Err(format!("'{prefix}' must be a plain path"));
    }
    Ok(())
}

pub fn check_method(method: &str) -> Result<(), String> {
    if !method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(format!("'{method}' is not an upper-case HTTP method"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        assert!(is_dns_label("hello-world-v2"));
        assert!(is_dns_label("a"));
        assert!(!is_dns_label("Hello"));
        assert!(!is_dns_label("-a"));
        assert!(!is_dns_label("a-"));
        assert!(!is_dns_label(""));
        assert!(!is_dns_label(&"a".repeat(64)));
        assert!(is_dns_label(&"a".repeat(63)));
    }

    #[test]
    fn endpoints() {
        assert!(check_endpoint("127.0.0.1:9101").is_ok());
        assert!(check_endpoint("[::1]:80").is_ok());
        assert!(check_endpoint("backend.default.svc:8080").is_ok());
        assert!(check_endpoint("127.0.0.1").is_err());
        assert!(check_endpoint("127.0.0.1:0").is_err());
        assert!(check_endpoint("127.0.0.1:70000").is_err());
        assert!(check_endpoint("bad host:80").is_err());
        assert_eq!(split_endpoint("[::1]:80"), ("::1", 80));
    }

    #[test]
    fn sub_paths_and_prefixes() {
        assert!(check_sub_path("dev").is_ok());
        assert!(check_sub_path("a/b").is_err());
        assert!(check_sub_path("").is_err());
        assert!(check_path_prefix("/hello").is_ok());
        assert!(check_path_prefix("hello").is_err());
        assert!(check_method("GET").is_ok());
        assert!(check_method("get").is_err());
    }
}
