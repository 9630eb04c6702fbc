//! `--store etcd://HOST:PORT[,HOST:PORT…]/PREFIX[?OPTION=VALUE&…]`: the
//! address of the etcd cluster, the key prefix, and the client's options.

use std::path::PathBuf;
use std::time::Duration;

use super::{EtcdError, OP_TIMEOUT};

/// `etcd://HOST:PORT[,HOST:PORT…]/PREFIX[?OPTION=VALUE&…]`, parsed. Options:
/// `timeout=5s` (or `1500ms`): how long one store call may keep trying
/// before it counts as failed (default [`OP_TIMEOUT`]); `compact=off`: the
/// leader does not compact etcd's history (see [`COMPACT_EVERY`](super::COMPACT_EVERY)).
/// Security ([`EtcdCredentials`]): `ca=PEM` (TLS, trusting this CA: the
/// members are then reached over https), `cert=PEM&key=PEM` (a client
/// certificate, TLS too), `user=NAME&password-file=PATH` (etcd's
/// authentication; the password is read from the file, never given in the
/// URL, which shows in logs and errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdUrl {
    /// `http://HOST:PORT` for each member.
    pub endpoints: Vec<String>,
    /// The key prefix, without a trailing `/`.
    pub prefix: String,
    /// How long one call may keep trying (`?timeout=`).
    pub timeout: Duration,
    /// Whether the leader compacts etcd's history (`?compact=off`: not).
    pub compact: bool,
    /// TLS files and etcd user.
    pub credentials: EtcdCredentials,
}

/// How the client proves who it is to etcd and checks etcd's certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdCredentials {
    /// The CA that signed the members' certificates (`ca=`).
    pub ca: Option<PathBuf>,
    /// A client certificate chain and its key (`cert=`, `key=`).
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// An etcd user and the file holding its password (`user=`, `password-file=`).
    pub user: Option<(String, PathBuf)>,
}

impl EtcdCredentials {
    /// Whether the members are reached over TLS.
    pub fn tls(&self) -> bool {
        self.ca.is_some() || self.client_cert.is_some()
    }
}

const OPTIONS: &str =
    "timeout=DURATION, compact=on|off, ca=PEM, cert=PEM, key=PEM, user=NAME, password-file=PATH";

/// `5s`, `1500ms`.
fn parse_duration(text: &str) -> Option<Duration> {
    let (digits, unit) = match text.strip_suffix("ms") {
        Some(d) => (d, 1),
        None => (text.strip_suffix('s')?, 1000),
    };
    let n: u64 = digits.parse().ok()?;
    (n > 0).then(|| Duration::from_millis(n.saturating_mul(unit)))
}

impl std::str::FromStr for EtcdUrl {
    type Err = EtcdError;
    fn from_str(url: &str) -> Result<Self, EtcdError> {
        let bad = |reason: &str| EtcdError::Url {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let rest = url
            .strip_prefix("etcd://")
            .ok_or_else(|| bad("it must start with etcd://"))?;
        let (hosts, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("no /PREFIX after the members"))?;
        let (prefix, query) = path.split_once('?').unwrap_or((path, ""));
        let (mut timeout, mut compact) = (OP_TIMEOUT, true);
        let (mut ca, mut cert, mut key, mut user, mut password) = (None, None, None, None, None);
        for option in query.split('&').filter(|o| !o.is_empty()) {
            let path = |v: &str| Some(PathBuf::from(v)).filter(|_| !v.is_empty());
            match option.split_once('=') {
                Some(("timeout", v)) => {
                    timeout = parse_duration(v)
                        .ok_or_else(|| bad("timeout= takes a duration such as 5s or 1500ms"))?
                }
                Some(("compact", "on")) => compact = true,
                Some(("compact", "off")) => compact = false,
                Some(("ca", v)) => ca = path(v),
                Some(("cert", v)) => cert = path(v),
                Some(("key", v)) => key = path(v),
                Some(("user", v)) if !v.is_empty() => user = Some(v.to_string()),
                Some(("password-file", v)) => password = path(v),
                _ => {
                    return Err(bad(&format!(
                        "unknown option '{option}' (known: {OPTIONS})"
                    )))
                }
            }
        }
        let client_cert = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => return Err(bad("cert= and key= go together")),
        };
        let user = match (user, password) {
            (Some(u), Some(p)) => Some((u, p)),
            (None, None) => None,
            _ => return Err(bad("user= and password-file= go together")),
        };
        let credentials = EtcdCredentials {
            ca,
            client_cert,
            user,
        };
        let scheme = if credentials.tls() { "https" } else { "http" };
        let prefix = prefix.trim_end_matches('/');
        if prefix.is_empty() {
            return Err(bad("the PREFIX is empty"));
        }
        let mut endpoints = Vec::new();
        for h in hosts.split(',') {
            let (host, port) = h
                .rsplit_once(':')
                .ok_or_else(|| bad("every member needs HOST:PORT"))?;
            if host.is_empty() || port.parse::<u16>().is_err() {
                return Err(bad("every member needs HOST:PORT"));
            }
            endpoints.push(format!("{scheme}://{h}"));
        }
        Ok(Self {
            endpoints,
            prefix: prefix.to_string(),
            timeout,
            compact,
            credentials,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_parse_and_bad_ones_are_refused() {
        let u: EtcdUrl = "etcd://127.0.0.1:2379,h2:2380/sy/prod/".parse().unwrap();
        assert_eq!(u.endpoints, vec!["http://127.0.0.1:2379", "http://h2:2380"]);
        assert_eq!(u.prefix, "sy/prod");
        assert_eq!((u.timeout, u.compact), (OP_TIMEOUT, true));
        let u: EtcdUrl = "etcd://h:1/p?compact=off&timeout=1s".parse().unwrap();
        assert_eq!((u.timeout, u.compact), (Duration::from_secs(1), false));
        let u: EtcdUrl = "etcd://h:1/p?timeout=1500ms".parse().unwrap();
        assert_eq!(
            (u.prefix.as_str(), u.timeout),
            ("p", Duration::from_millis(1500))
        );
        let u: EtcdUrl = "etcd://h:1/p?timeout=2s".parse().unwrap();
        assert_eq!(u.timeout, Duration::from_secs(2));
        assert!(!u.credentials.tls() && u.endpoints == ["http://h:1"]);
        let u: EtcdUrl =
            "etcd://h:1,g:2/p?ca=/ca.pem&cert=/c.pem&key=/k.pem&user=sy&password-file=/pw"
                .parse()
                .unwrap();
        assert_eq!(u.endpoints, ["https://h:1", "https://g:2"]);
        assert_eq!(
            u.credentials,
            EtcdCredentials {
                ca: Some("/ca.pem".into()),
                client_cert: Some(("/c.pem".into(), "/k.pem".into())),
                user: Some(("sy".into(), "/pw".into())),
            }
        );
        for bad in [
            "http://h:1/p",
            "etcd://h:1",
            "etcd://h:1/",
            "etcd://h/p",
            "etcd://h:x/p",
            "etcd://:1/p",
            "etcd://h:1/p?timeout=0s",
            "etcd://h:1/p?timeout=fast",
            "etcd://h:1/p?colour=red",
            "etcd://h:1/p?cert=/c.pem",
            "etcd://h:1/p?user=u",
            "etcd://h:1/p?password-file=/pw",
        ] {
            assert!(bad.parse::<EtcdUrl>().is_err(), "{bad}");
        }
    }
}
