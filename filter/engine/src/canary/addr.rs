//! Addresses and CIDRs: parsed once at compile time into integers, compared per
//! request without allocating.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A parsed CIDR block; the network has no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cidr {
    V4 { net: u32, prefix: u8 },
    V6 { net: u128, prefix: u8 },
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `x::y/n`, or a bare address (a /32 or /128 host route).
    /// Host bits must be zero (`10.1.2.3/8` is refused, naming the network meant).
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let ip: IpAddr = addr.parse().map_err(|_| {
            format!("'{text}' is not a CIDR (expected e.g. 203.0.113.0/24 or 2001:db8::/32)")
        })?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => {
                if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!("'{text}': prefix length '{p}' is not a number"));
                }
                let n: u8 = p
                    .parse()
                    .map_err(|_| format!("'{text}': prefix length '{p}' is not a number"))?;
                if n > max {
                    return Err(format!("'{text}': prefix length {n} is longer than {max}"));
                }
                n
            }
        };
        let cidr = match ip {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                let net = bits & mask32(prefix);
                if net != bits {
                    return Err(format!(
                        "'{text}' has host bits set; the network is {}/{prefix}",
                        Ipv4Addr::from(net)
                    ));
                }
                Cidr::V4 { net, prefix }
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                let net = bits & mask128(prefix);
                if net != bits {
                    return Err(format!(
                        "'{text}' has host bits set; the network is {}/{prefix}",
                        Ipv6Addr::from(net)
                    ));
                }
                Cidr::V6 { net, prefix }
            }
        };
        Ok(cidr)
    }

    /// Whether `ip` lies in the block. IPv4-mapped IPv6 addresses are compared as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (*self, canonical(ip)) {
            (Cidr::V4 { net, prefix }, IpAddr::V4(v4)) => u32::from(v4) & mask32(prefix) == net,
            (Cidr::V6 { net, prefix }, IpAddr::V6(v6)) => u128::from(v6) & mask128(prefix) == net,
            _ => false,
        }
    }

    pub fn prefix(&self) -> u8 {
        match *self {
            Cidr::V4 { prefix, .. } | Cidr::V6 { prefix, .. } => prefix,
        }
    }
}

fn mask32(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

fn mask128(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix.min(128)))
    }
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) becomes IPv4; everything else is unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Parses an address as Envoy and proxies write it: `ip`, `ip:port`, `v6`,
/// `[v6]` or `[v6]:port` (surrounding spaces ignored). The result is canonical.
pub fn parse_addr(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return inside
            .parse::<Ipv6Addr>()
            .ok()
            .map(|v6| canonical(IpAddr::V6(v6)));
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    let (host, port) = text.rsplit_once(':')?;
    if !is_port(port) {
        return None;
    }
    host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_v4_and_v6_cidrs() {
        let c = Cidr::parse("203.0.113.0/24").unwrap();
        assert!(c.contains(ip("203.0.113.0")));
        assert!(c.contains(ip("203.0.113.255")));
        assert!(!c.contains(ip("203.0.114.0")));
        assert!(!c.contains(ip("2001:db8::1")));
        let c = Cidr::parse("2001:db8::/32").unwrap();
        assert!(c.contains(ip("2001:db8:ffff::1")));
        assert!(!c.contains(ip("2001:db9::1")));
        assert!(!c.contains(ip("203.0.113.1")));
        assert_eq!(Cidr::parse("0.0.0.0/0").unwrap().prefix(), 0);
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Cidr::parse("::/0").unwrap().contains(ip("2001:db8::1")));
        let host = Cidr::parse("10.0.0.7").unwrap();
        assert_eq!(
            host,
            Cidr::V4 {
                net: 0x0a00_0007,
                prefix: 32
            }
        );
        assert!(host.contains(ip("10.0.0.7")));
        assert!(!host.contains(ip("10.0.0.8")));
        assert_eq!(Cidr::parse("::1").unwrap().prefix(), 128);
    }

    #[test]
    fn v4_mapped_v6_matches_v4_blocks() {
        let c = Cidr::parse("203.0.113.0/24").unwrap();
        assert!(c.contains(ip("::ffff:203.0.113.9")));
    }

    #[test]
    fn rejects_malformed_cidrs() {
        for bad in [
            "",
            "/24",
            "203.0.113.0/",
            "203.0.113.0/33",
            "2001:db8::/129",
            "203.0.113.0/+8",
            "203.0.113.0/-1",
            "203.0.113.0/2a",
            "203.0.113/24",
            "203.0.113.0.1/24",
            "256.0.0.0/8",
            "example.com/8",
            "10.1.2.3/8",
            "2001:db8::1/32",
            " 10.0.0.0/8",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        let err = Cidr::parse("10.1.2.3/8").unwrap_err();
        assert!(err.contains("10.0.0.0/8"), "{err}");
    }

    #[test]
    fn parses_addresses_with_and_without_ports() {
        assert_eq!(parse_addr("10.0.0.1:443"), Some(ip("10.0.0.1")));
        assert_eq!(parse_addr("10.0.0.1"), Some(ip("10.0.0.1")));
        assert_eq!(parse_addr(" 10.0.0.1 "), Some(ip("10.0.0.1")));
        assert_eq!(parse_addr("[2001:db8::1]:8080"), Some(ip("2001:db8::1")));
        assert_eq!(parse_addr("[2001:db8::1]"), Some(ip("2001:db8::1")));
        assert_eq!(parse_addr("2001:db8::1"), Some(ip("2001:db8::1")));
        assert_eq!(parse_addr("[::ffff:10.0.0.1]:1"), Some(ip("10.0.0.1")));
        for bad in [
            "",
            "unknown",
            "10.0.0.1:",
            "10.0.0.1:port",
            "[2001:db8::1",
            "[2001:db8::1]x",
            "[10.0.0.1]:80",
            "10.0.0:80",
            "host:80",
        ] {
            assert_eq!(parse_addr(bad), None, "{bad:?}");
        }
    }
}
