//! Address management, pure: subnets, gateways, endpoint addresses and VNIs.
//!
//! There is no cluster-wide allocator (libnetwork's swarm manager has one; an agent here
//! does not). Each agent allocates from what it sees: its own endpoints and the network's
//! `overlay_peer_table` and `endpoint_table`. To make two agents allocating at the same time
//! unlikely to pick the same address, each starts its search at an offset derived from a
//! hash of its node name.

use std::collections::{BTreeSet, HashSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::error::CnmError;
use crate::stable_hash::fnv1a_32;

/// The shortest subnet prefix length.
pub const MIN_PREFIX_LEN: u8 = 8;

/// The longest subnet prefix length (a /30 has two host addresses: gateway and one more).
pub const MAX_PREFIX_LEN: u8 = 30;

/// The largest VNI (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;

/// The first VNI given to a network created without one (libnetwork's swarm manager range
/// starts here).
pub const FIRST_AUTO_VNI: u32 = 4096;

/// Parses a subnet: IPv4 CIDR text, prefix length
/// [`MIN_PREFIX_LEN`]..=[`MAX_PREFIX_LEN`], written as its network address.
pub(crate) fn parse_subnet(text: &str) -> Result<Ipv4Net, CnmError> {
    let net: Ipv4Net = text.trim().parse().map_err(|_| {
        CnmError::Invalid(format!(
            "invalid subnet {text:?}: not an IPv4 CIDR like 198.18.10.0/24"
        ))
    })?;
    if !(MIN_PREFIX_LEN..=MAX_PREFIX_LEN).contains(&net.prefix_len()) {
        return Err(CnmError::Invalid(format!(
            "invalid subnet {net}: the prefix length must be {MIN_PREFIX_LEN} to {MAX_PREFIX_LEN}"
        )));
    }
    if net.addr() != net.network() {
        // Docker's wording.
        return Err(CnmError::Invalid(format!(
            "invalid subnet {net}: it should be {}",
            net.trunc()
        )));
    }
    Ok(net)
}

/// The gateway of a subnet: its first host address.
pub(crate) fn gateway(net: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()).wrapping_add(1))
}

/// Checks an address given for an endpoint (or a VIP): inside the subnet, neither its
/// network, broadcast nor gateway address. `what` names it in the error.
pub(crate) fn check_address(net: Ipv4Net, ip: Ipv4Addr, what: &str) -> Result<(), CnmError> {
    let reserved = if ip == net.network() {
        Some("network")
    } else if ip == net.broadcast() {
        Some("broadcast")
    } else if ip == gateway(net) {
        Some("gateway")
    } else {
        None
    };
    if !net.contains(&ip) {
        return Err(CnmError::Invalid(format!(
            "invalid {what} {ip}: not in the network's subnet {net}"
        )));
    }
    if let Some(kind) = reserved {
        return Err(CnmError::Invalid(format!(
            "invalid {what} {ip}: it is the {kind} address of {net}"
        )));
    }
    Ok(())
}

/// Parses an IPv4 address; `what` names it in the error.
pub(crate) fn parse_ip(text: &str, what: &str) -> Result<Ipv4Addr, CnmError> {
    text.trim()
        .parse()
        .map_err(|_| CnmError::Invalid(format!("invalid {what} {text:?}: not an IPv4 address")))
}

/// The lowest free host address at or after an offset derived from `seed` (wrapping around
/// once), skipping the network, broadcast and gateway addresses and every address in `used`.
/// `None` when the subnet is full.
pub(crate) fn allocate(net: Ipv4Net, used: &HashSet<Ipv4Addr>, seed: &str) -> Option<Ipv4Addr> {
    // Allocatable: gateway + 1 ..= broadcast - 1.
    let first = u32::from(gateway(net)).checked_add(1)?;
    let last = u32::from(net.broadcast()).checked_sub(1)?;
    if last < first {
        return None;
    }
    let count = last - first + 1;
    let start = fnv1a_32(seed.as_bytes()) % count;
    (0..count)
        .map(|i| Ipv4Addr::from(first + (start + i) % count))
        .find(|ip| !used.contains(ip))
}

/// Checks a VNI given for a network.
pub(crate) fn check_vni(vni: u32) -> Result<u32, CnmError> {
    if (1..=MAX_VNI).contains(&vni) {
        Ok(vni)
    } else {
        Err(CnmError::Invalid(format!(
            "invalid VNI {vni}: allowed 1 to {MAX_VNI}"
        )))
    }
}

/// The lowest VNI from [`FIRST_AUTO_VNI`] not in `used`.
pub(crate) fn allocate_vni(used: &BTreeSet<u32>) -> Option<u32> {
    (FIRST_AUTO_VNI..=MAX_VNI).find(|vni| !used.contains(vni))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn subnets() {
        assert_eq!(
            parse_subnet("198.18.10.0/24").unwrap(),
            net("198.18.10.0/24")
        );
        let msg = |s: &str| parse_subnet(s).unwrap_err().to_string();
        assert!(msg("198.18.10.0").contains("not an IPv4 CIDR"));
        assert!(msg("fd00::/64").contains("not an IPv4 CIDR"));
        assert!(msg("198.18.10.0/33").contains("not an IPv4 CIDR"));
        assert!(msg("198.18.10.0/31").contains("8 to 30"));
        assert!(msg("10.0.0.0/7").contains("8 to 30"));
        assert_eq!(
            msg("198.18.10.5/24"),
            "invalid subnet 198.18.10.5/24: it should be 198.18.10.0/24"
        );
        assert_eq!(
            gateway(net("198.18.10.0/24")),
            Ipv4Addr::new(198, 18, 10, 1)
        );
    }

    #[test]
    fn addresses() {
        let n = net("198.18.10.0/24");
        check_address(n, Ipv4Addr::new(198, 18, 10, 2), "address").unwrap();
        for (ip, needle) in [
            ([198, 18, 11, 2], "not in the network's subnet"),
            ([198, 18, 10, 0], "network address"),
            ([198, 18, 10, 255], "broadcast address"),
            ([198, 18, 10, 1], "gateway address"),
        ] {
            let err = check_address(n, Ipv4Addr::from(ip), "address").unwrap_err();
            assert!(err.to_string().contains(needle), "{err}");
        }
    }

    #[test]
    fn allocation_skips_used_and_wraps() {
        let n = net("198.18.10.0/30"); // .0 net, .1 gw, .2 only host, .3 broadcast
        let mut used = HashSet::new();
        assert_eq!(allocate(n, &used, "a"), Some(Ipv4Addr::new(198, 18, 10, 2)));
        used.insert(Ipv4Addr::new(198, 18, 10, 2));
        assert_eq!(allocate(n, &used, "a"), None);

        let n = net("198.18.10.0/24");
        let used = HashSet::new();
        let a = allocate(n, &used, "node-a").unwrap();
        assert_eq!(allocate(n, &used, "node-a"), Some(a), "stable");
        let b = allocate(n, &used, "node-b").unwrap();
        assert_ne!(a, b, "different nodes start at different offsets");
        // Everything taken but one address below the start: found by wrapping around.
        let all: HashSet<Ipv4Addr> = (2..=254)
            .map(|i| Ipv4Addr::new(198, 18, 10, i))
            .filter(|ip| *ip != Ipv4Addr::new(198, 18, 10, 2))
            .collect();
        assert_eq!(
            allocate(n, &all, "node-a"),
            Some(Ipv4Addr::new(198, 18, 10, 2))
        );
    }

    #[test]
    fn vnis() {
        assert!(check_vni(0).is_err());
        assert!(check_vni(MAX_VNI + 1).is_err());
        assert_eq!(check_vni(MAX_VNI).unwrap(), MAX_VNI);
        let mut used = BTreeSet::from([1, 4096, 4097, 4099]);
        assert_eq!(allocate_vni(&used), Some(4098));
        used.insert(4098);
        assert_eq!(allocate_vni(&used), Some(4100));
    }
}
