//! IPv4 CIDR arithmetic for the pre-flight checks.

use std::net::Ipv4Addr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub base: u32,
    pub len: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (ip, len) = s.trim().split_once('/')?;
        let ip: Ipv4Addr = ip.parse().ok()?;
        let len: u8 = len.parse().ok()?;
        (len <= 32).then(|| Cidr {
            base: u32::from(ip) & mask(len),
            len,
        })
    }
    pub fn contains(&self, other: &Cidr) -> bool {
        other.len >= self.len && other.base & mask(self.len) == self.base
    }
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other) || other.contains(self)
    }
}

fn mask(len: u8) -> u32 {
    if len == 0 { 0 } else { u32::MAX << (32 - len) }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn containment_and_overlap() {
        let vnet = Cidr::parse("10.20.0.0/16").unwrap();
        let a = Cidr::parse("10.20.1.0/26").unwrap();
        let b = Cidr::parse("10.20.1.32/27").unwrap();
        assert!(vnet.contains(&a) && !a.contains(&vnet));
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&Cidr::parse("10.20.2.0/27").unwrap()));
        assert!(!vnet.contains(&Cidr::parse("10.21.0.0/24").unwrap()));
    }
}
