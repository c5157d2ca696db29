//! IPv4 prefixes: enough to validate subnets against their VNet and to judge IP rules.

use std::net::Ipv4Addr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub base: u32,
    pub len: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/16` or a bare address (`/32`). The base is masked so `10.0.0.5/24` is `10.0.0.0/24`.
    pub fn parse(s: &str) -> Option<Cidr> {
        let s = s.trim();
        let (ip, len) = match s.split_once('/') {
            Some((ip, l)) => (ip, l.parse::<u8>().ok()?),
            None => (s, 32),
        };
        if len > 32 {
            return None;
        }
        let ip: Ipv4Addr = ip.parse().ok()?;
        let base = u32::from(ip) & mask(len);
        Some(Cidr { base, len })
    }

    pub fn last(&self) -> u32 {
        self.base | !mask(self.len)
    }

    pub fn contains(&self, other: &Cidr) -> bool {
        other.len >= self.len && (other.base & mask(self.len)) == self.base
    }

    pub fn contains_ip(&self, ip: u32) -> bool {
        (ip & mask(self.len)) == self.base
    }

    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.base <= other.last() && other.base <= self.last()
    }

    /// RFC 1918 (plus loopback and link-local): addresses never seen as "the internet".
    pub fn is_private(&self) -> bool {
        [
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "127.0.0.0/8",
            "169.254.0.0/16",
        ]
        .iter()
        .any(|p| Cidr::parse(p).is_some_and(|c| c.contains(self)))
    }
}

fn mask(len: u8) -> u32 {
    if len == 0 { 0 } else { u32::MAX << (32 - len) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containment_and_overlap_table() {
        let c = |s| Cidr::parse(s).unwrap();
        let cases = [
            ("10.20.0.0/16", "10.20.1.0/24", true, true),
            ("10.20.0.0/16", "10.21.0.0/24", false, false),
            ("10.20.1.0/24", "10.20.1.128/25", true, true),
            ("10.20.1.0/25", "10.20.1.128/25", false, false),
            ("0.0.0.0/0", "8.8.8.8", true, true),
            ("10.20.1.0/24", "10.20.0.0/16", false, true),
        ];
        for (a, b, contains, overlaps) in cases {
            assert_eq!(c(a).contains(&c(b)), contains, "{a} contains {b}");
            assert_eq!(c(a).overlaps(&c(b)), overlaps, "{a} overlaps {b}");
        }
    }

    #[test]
    fn parse_rejects_garbage_and_masks_host_bits() {
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("nope").is_none());
        assert_eq!(
            Cidr::parse("10.0.0.5/24").unwrap(),
            Cidr::parse("10.0.0.0/24").unwrap()
        );
        assert!(Cidr::parse("10.1.2.3/32").unwrap().is_private());
        assert!(!Cidr::parse("203.0.113.0/24").unwrap().is_private());
    }
}
