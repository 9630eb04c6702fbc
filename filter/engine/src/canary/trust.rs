//! What an Environment contributes to canary decisions: JWT verification, the
//! client address behind trusted proxies, and the client's country.

use std::net::IpAddr;

use super::addr::{parse_addr, Cidr};
use super::jwt::{valid_header_name, Claims, JwtVerifier};
use crate::error::ValidationError;
use crate::request::Request;
use crate::resources::{Environment, TrustedProxies};

const XFF: &str = "x-forwarded-for";

/// How the client address is found (`spec.trustedProxies`).
///
/// The chain is the `X-Forwarded-For` entries followed by the direct peer
/// (`source_address`); several `X-Forwarded-For` lines count as one list in order.
#[derive(Debug, Default, Clone, PartialEq)]
pub enum ProxyTrust {
    /// No `trustedProxies`: the client is the direct peer; `X-Forwarded-For` is
    /// ignored, so nobody can spoof an address with it.
    #[default]
    PeerOnly,
    /// `trustedProxies: N` — the same N as Envoy's `xff_num_trusted_hops` with
    /// `use_remote_address: true`: N proxies in front of this Envoy are trusted, each
    /// appending the address it received the request from. The client is the N-th
    /// address from the right of the `X-Forwarded-For` the peer sent (N = 1: the last
    /// entry, appended by our one trusted edge proxy; N = 0: the peer itself). With
    /// fewer than N entries, or an unparsable one on the way, the client is the peer
    /// (as Envoy falls back to the downstream address).
    ///
    /// With `use_remote_address: true` Envoy has already appended the peer to
    /// `X-Forwarded-For` before this filter runs: a rightmost entry equal to the peer
    /// is that append and is skipped. (If Envoy itself applies
    /// `xff_num_trusted_hops`, `source.address` is already the client: leave
    /// `trustedProxies` unset.)
    Hops(u32),
    /// `trustedProxies: [CIDR...]` — only if the direct peer is in one of these
    /// blocks is `X-Forwarded-For` read at all (a spoofed header from an untrusted
    /// peer is ignored); it is walked right to left, skipping trusted addresses, and
    /// the first untrusted address is the client. If every entry is trusted, the
    /// leftmost is the client; an unparsable entry on the way makes the client the peer.
    Cidrs(Vec<Cidr>),
}

/// Where the client's country comes from (`spec.geo`).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct GeoSource {
    /// A header set by a trusted edge (e.g. `cf-ipcountry`), lower-case. With
    /// `trustedProxies` CIDRs it is only read from a trusted peer; otherwise Envoy's
    /// edge must overwrite or strip it for client requests.
    pub header: Option<String>,
    /// CIDR → ISO code, longest prefix first; used when the header is absent.
    pub table: Vec<(Cidr, [u8; 2])>,
}

/// What an Environment contributes to canary decisions: JWT verification, trusted
/// proxies for the client address, and the country source. Compiled once.
#[derive(Debug, Default)]
pub struct EnvironmentTrust {
    pub jwt: Option<JwtVerifier>,
    pub proxies: ProxyTrust,
    pub geo: Option<GeoSource>,
}

/// Parses a two-letter ISO 3166-1 alpha-2 code (any case) into upper-case bytes.
pub(crate) fn country_code(text: &str) -> Option<[u8; 2]> {
    match text.trim().as_bytes() {
        [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
            Some([a.to_ascii_uppercase(), b.to_ascii_uppercase()])
        }
        _ => None,
    }
}

impl EnvironmentTrust {
    pub fn compile(env: &Environment) -> Result<Self, Vec<ValidationError>> {
        let resource = format!("Environment/{}", env.metadata.name);
        let mut errors = Vec::new();
        let jwt = match &env.spec.jwt {
            None => None,
            Some(s) => match JwtVerifier::compile(&resource, s) {
                Ok(v) => Some(v),
                Err(e) => {
                    errors.extend(e);
                    None
                }
            },
        };
        let proxies = match &env.spec.trusted_proxies {
            None => ProxyTrust::PeerOnly,
            Some(TrustedProxies::Hops(n)) => {
                if *n > 64 {
                    errors.push(ValidationError::new(
                        &resource,
                        "spec.trustedProxies",
                        format!("{n} hops is more than the 64 allowed"),
                    ));
                }
                ProxyTrust::Hops(*n)
            }
            Some(TrustedProxies::Cidrs(list)) => {
                if list.is_empty() {
                    errors.push(ValidationError::new(
                        &resource,
                        "spec.trustedProxies",
                        "an empty list trusts no proxy; remove it or list the proxies' CIDRs",
                    ));
                }
                let mut cidrs = Vec::with_capacity(list.len());
                for (i, c) in list.iter().enumerate() {
                    match Cidr::parse(c) {
                        Ok(c) => cidrs.push(c),
                        Err(reason) => errors.push(ValidationError::new(
                            &resource,
                            format!("spec.trustedProxies[{i}]"),
                            reason,
                        )),
                    }
                }
                ProxyTrust::Cidrs(cidrs)
            }
        };
        let geo = env.spec.geo.as_ref().map(|g| {
            let header = g.header.as_ref().map(|h| h.to_ascii_lowercase());
            if let Some(h) = &header {
                if !valid_header_name(h) {
                    errors.push(ValidationError::new(
                        &resource,
                        "spec.geo.header",
                        format!("'{h}' is not a header name"),
                    ));
                }
            }
            if header.is_none() && g.cidrs.is_empty() {
                errors.push(ValidationError::new(
                    &resource,
                    "spec.geo",
                    "set a header or a cidrs table",
                ));
            }
            let mut table = Vec::with_capacity(g.cidrs.len());
            for (cidr, country) in &g.cidrs {
                let field = format!("spec.geo.cidrs.{cidr}");
                let c = match Cidr::parse(cidr) {
                    Ok(c) => c,
                    Err(reason) => {
                        errors.push(ValidationError::new(&resource, field, reason));
                        continue;
                    }
                };
                match country_code(country) {
                    Some(code) if country.trim() == country => table.push((c, code)),
                    _ => errors.push(ValidationError::new(
                        &resource,
                        field,
                        format!("'{country}' is not a two-letter ISO country code"),
                    )),
                }
            }
            table.sort_by_key(|(c, _)| std::cmp::Reverse(c.prefix()));
            GeoSource { header, table }
        });
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(EnvironmentTrust { jwt, proxies, geo })
    }

    /// The direct peer (`source_address`).
    pub fn peer(&self, request: &Request<'_>) -> Option<IpAddr> {
        request.source_address.and_then(parse_addr)
    }

    fn peer_is_trusted_proxy(&self, peer: Option<IpAddr>) -> bool {
        match (&self.proxies, peer) {
            (ProxyTrust::Cidrs(cidrs), Some(p)) => cidrs.iter().any(|c| c.contains(p)),
            _ => false,
        }
    }

    /// The client address, per [`ProxyTrust`]. Allocation-free.
    pub fn client_ip(&self, request: &Request<'_>) -> Option<IpAddr> {
        let peer = self.peer(request);
        match &self.proxies {
            ProxyTrust::PeerOnly | ProxyTrust::Hops(0) => peer,
            ProxyTrust::Hops(n) => {
                let mut remaining = *n;
                let mut first = true;
                for entry in xff_rev(request) {
                    let Some(ip) = parse_addr(entry) else {
                        return peer;
                    };
                    if first && Some(ip) == peer {
                        first = false;
                        continue;
                    }
                    first = false;
                    remaining -= 1;
                    if remaining == 0 {
                        return Some(ip);
                    }
                }
                peer
            }
            ProxyTrust::Cidrs(cidrs) => {
                let p = peer?;
                if !self.peer_is_trusted_proxy(peer) {
                    return Some(p);
                }
                let mut last = p;
                for entry in xff_rev(request) {
                    let Some(ip) = parse_addr(entry) else {
                        return Some(p);
                    };
                    if !cidrs.iter().any(|c| c.contains(ip)) {
                        return Some(ip);
                    }
                    last = ip;
                }
                Some(last)
            }
        }
    }

    /// The client's country (upper-case ISO code): the trusted geo header, else the
    /// CIDR table looked up with `client` (the address from [`Self::client_ip`]).
    pub fn country(&self, request: &Request<'_>, client: Option<IpAddr>) -> Option<[u8; 2]> {
        let geo = self.geo.as_ref()?;
        if let Some(h) = &geo.header {
            let trusted = match self.proxies {
                ProxyTrust::Cidrs(_) => self.peer_is_trusted_proxy(self.peer(request)),
                _ => true,
            };
            if trusted {
                if let Some(code) = request.header(h).and_then(country_code) {
                    return Some(code);
                }
            }
        }
        let ip = client?;
        geo.table
            .iter()
            .find(|(c, _)| c.contains(ip))
            .map(|(_, code)| *code)
    }

    /// Claims of the request's JWT (see [`super::jwt`]); `jwt_missing` without `spec.jwt`.
    pub fn claims(&self, request: &Request<'_>) -> Result<Claims, &'static str> {
        match &self.jwt {
            Some(j) => j.claims(request),
            None => Err(super::jwt::NOTE_MISSING),
        }
    }
}

/// `X-Forwarded-For` entries from right to left, across several header lines.
fn xff_rev<'r>(request: &Request<'r>) -> impl Iterator<Item = &'r str> {
    request
        .headers
        .iter()
        .rev()
        .filter(|(k, _)| k == XFF)
        .flat_map(|(_, v)| v.rsplit(','))
        .map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{EnvironmentSpec, GeoSettings, Metadata};

    fn env(trusted: Option<TrustedProxies>, geo: Option<GeoSettings>) -> Environment {
        Environment {
            metadata: Metadata {
                name: "prod".into(),
            },
            spec: EnvironmentSpec {
                sub_path: "prod".into(),
                default_virtual_environment: None,
                release_policy: None,
                strip_sub_path: false,
                jwt: None,
                trusted_proxies: trusted,
                geo,
            },
            vars: Default::default(),
        }
    }

    fn req<'a>(headers: &'a [(String, String)], source: Option<&'a str>) -> Request<'a> {
        Request {
            method: "GET",
            path: "/",
            headers,
            source_address: source,
            now_unix_seconds: 1_700_000_000,
        }
    }

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn without_trusted_proxies_xff_is_ignored() {
        let t = EnvironmentTrust::compile(&env(None, None)).unwrap();
        let hs = h(&[("x-forwarded-for", "203.0.113.7")]);
        assert_eq!(
            t.client_ip(&req(&hs, Some("198.51.100.1:5555"))),
            ip("198.51.100.1")
        );
        assert_eq!(
            t.client_ip(&req(&hs, Some("[2001:db8::5]:443"))),
            ip("2001:db8::5")
        );
        assert_eq!(t.client_ip(&req(&hs, None)), None);
        assert_eq!(t.client_ip(&req(&hs, Some("garbage"))), None);
    }

    #[test]
    fn hops_pick_the_nth_entry_from_the_right() {
        let t = EnvironmentTrust::compile(&env(Some(TrustedProxies::Hops(1)), None)).unwrap();
        let peer = Some("10.0.0.2:1234");
        // Envoy did not append: the last entry was added by our trusted edge.
        let hs = h(&[("x-forwarded-for", "1.1.1.1, 203.0.113.7")]);
        assert_eq!(t.client_ip(&req(&hs, peer)), ip("203.0.113.7"));
        // Envoy (use_remote_address) appended the peer: skipped.
        let hs = h(&[("x-forwarded-for", "1.1.1.1, 203.0.113.7, 10.0.0.2")]);
        assert_eq!(t.client_ip(&req(&hs, peer)), ip("203.0.113.7"));
        // No XFF, or only Envoy's own append: the peer.
        assert_eq!(t.client_ip(&req(&[], peer)), ip("10.0.0.2"));
        let hs = h(&[("x-forwarded-for", "10.0.0.2")]);
        assert_eq!(t.client_ip(&req(&hs, peer)), ip("10.0.0.2"));
        // Garbage on the way: the peer.
        let hs = h(&[("x-forwarded-for", "1.1.1.1, unknown")]);
        assert_eq!(t.client_ip(&req(&hs, peer)), ip("10.0.0.2"));

        let t = EnvironmentTrust::compile(&env(Some(TrustedProxies::Hops(2)), None)).unwrap();
        let hs = h(&[("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.9.9.9")]);
        assert_eq!(t.client_ip(&req(&hs, peer)), ip("203.0.113.7"));
        // Split across header lines: the later line is further right.
        let hs = h(&[
            ("x-forwarded-for", "6.6.6.6, 203.0.113.7"),
            ("x-forwarded-for", "10.9.9.9"),
        ]);
        assert_eq!(t.client_ip(&req(&hs, peer)), ip("203.0.113.7"));
        // Fewer entries than hops: the peer.
        let hs = h(&[("x-forwarded-for", "203.0.113.7")]);
        assert_eq!(t.client_ip(&req(&hs, peer)), ip("10.0.0.2"));

        let t = EnvironmentTrust::compile(&env(Some(TrustedProxies::Hops(0)), None)).unwrap();
        let hs = h(&[("x-forwarded-for", "203.0.113.7")]);
        assert_eq!(t.client_ip(&req(&hs, peer)), ip("10.0.0.2"));
    }

    #[test]
    fn cidrs_walk_xff_only_from_a_trusted_peer() {
        let trusted = TrustedProxies::Cidrs(vec!["10.0.0.0/8".into(), "fd00::/8".into()]);
        let t = EnvironmentTrust::compile(&env(Some(trusted), None)).unwrap();
        let hs = h(&[(
            "x-forwarded-for",
            "6.6.6.6, 203.0.113.7, 10.1.1.1, 10.2.2.2",
        )]);
        assert_eq!(
            t.client_ip(&req(&hs, Some("10.0.0.2:80"))),
            ip("203.0.113.7")
        );
        assert_eq!(
            t.client_ip(&req(&hs, Some("[fd00::1]:80"))),
            ip("203.0.113.7")
        );
        // Spoofed XFF from an untrusted peer is ignored.
        assert_eq!(
            t.client_ip(&req(&hs, Some("198.51.100.9:80"))),
            ip("198.51.100.9")
        );
        // All trusted: the leftmost.
        let hs = h(&[("x-forwarded-for", "10.3.3.3, 10.1.1.1")]);
        assert_eq!(t.client_ip(&req(&hs, Some("10.0.0.2:80"))), ip("10.3.3.3"));
        // Unparsable: the peer.
        let hs = h(&[("x-forwarded-for", "203.0.113.7, bogus, 10.1.1.1")]);
        assert_eq!(t.client_ip(&req(&hs, Some("10.0.0.2:80"))), ip("10.0.0.2"));
        // XFF entries with ports / IPv6.
        let hs = h(&[("x-forwarded-for", "[2001:db8::7]:9999, 10.1.1.1:80")]);
        assert_eq!(
            t.client_ip(&req(&hs, Some("10.0.0.2:80"))),
            ip("2001:db8::7")
        );
        assert_eq!(t.client_ip(&req(&hs, None)), None);
    }

    #[test]
    fn rejects_bad_proxy_and_geo_settings() {
        let e = EnvironmentTrust::compile(&env(
            Some(TrustedProxies::Cidrs(vec![
                "10.0.0.0/8".into(),
                "10.0.0.1/8".into(),
            ])),
            Some(GeoSettings {
                header: Some("bad header".into()),
                cidrs: [
                    ("203.0.113.0/24".to_string(), "NZL".to_string()),
                    ("nope".to_string(), "NZ".to_string()),
                ]
                .into_iter()
                .collect(),
            }),
        ))
        .unwrap_err();
        let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.trustedProxies[1]",
                "spec.geo.header",
                "spec.geo.cidrs.203.0.113.0/24",
                "spec.geo.cidrs.nope"
            ]
        );
        assert!(e.iter().all(|e| e.resource == "Environment/prod"));
        let e = EnvironmentTrust::compile(&env(Some(TrustedProxies::Cidrs(vec![])), None));
        assert!(e.is_err());
        let e = EnvironmentTrust::compile(&env(Some(TrustedProxies::Hops(65)), None));
        assert!(e.is_err());
        let e = EnvironmentTrust::compile(&env(
            None,
            Some(GeoSettings {
                header: None,
                cidrs: Default::default(),
            }),
        ));
        assert!(e.is_err());
    }

    #[test]
    fn country_from_header_or_table() {
        let geo = GeoSettings {
            header: Some("CF-IPCountry".into()),
            cidrs: [
                ("203.0.113.0/24".to_string(), "nz".to_string()),
                ("203.0.113.128/25".to_string(), "AU".to_string()),
                ("2001:db8::/32".to_string(), "DE".to_string()),
            ]
            .into_iter()
            .collect(),
        };
        let t = EnvironmentTrust::compile(&env(None, Some(geo.clone()))).unwrap();
        let hs = h(&[("cf-ipcountry", "fr")]);
        let r = req(&hs, Some("203.0.113.5:1"));
        assert_eq!(t.country(&r, t.client_ip(&r)), Some(*b"FR"));
        let r = req(&[], Some("203.0.113.5:1"));
        assert_eq!(t.country(&r, t.client_ip(&r)), Some(*b"NZ"));
        // Longest prefix wins.
        let r = req(&[], Some("203.0.113.200:1"));
        assert_eq!(t.country(&r, t.client_ip(&r)), Some(*b"AU"));
        let r = req(&[], Some("[2001:db8::1]:1"));
        assert_eq!(t.country(&r, t.client_ip(&r)), Some(*b"DE"));
        let r = req(&[], Some("8.8.8.8:1"));
        assert_eq!(t.country(&r, t.client_ip(&r)), None);
        // A malformed header falls back to the table.
        let hs = h(&[("cf-ipcountry", "XYZ")]);
        let r = req(&hs, Some("203.0.113.5:1"));
        assert_eq!(t.country(&r, t.client_ip(&r)), Some(*b"NZ"));

        // With trusted proxy CIDRs, the header counts only from a trusted peer.
        let t = EnvironmentTrust::compile(&env(
            Some(TrustedProxies::Cidrs(vec!["10.0.0.0/8".into()])),
            Some(geo),
        ))
        .unwrap();
        let hs = h(&[("cf-ipcountry", "FR"), ("x-forwarded-for", "203.0.113.5")]);
        let r = req(&hs, Some("10.0.0.1:1"));
        assert_eq!(t.country(&r, t.client_ip(&r)), Some(*b"FR"));
        let r = req(&hs, Some("8.8.8.8:1"));
        assert_eq!(t.country(&r, t.client_ip(&r)), None);
        let hs = h(&[("cf-ipcountry", "FR")]);
        let r = req(&hs, Some("203.0.113.5:1"));
        assert_eq!(t.country(&r, t.client_ip(&r)), Some(*b"NZ"));
    }
}
