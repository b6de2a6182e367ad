//! The syntax and range rules of subnets, gateways, addresses and VNIs. Allocation is the
//! `ipam` crate's, driven by [`crate::pools`].

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::CoreError;

/// The shortest subnet prefix length.
pub const MIN_PREFIX_LEN: u8 = 8;

/// The longest subnet prefix length (a /30 has two host addresses: gateway and one more).
pub const MAX_PREFIX_LEN: u8 = 30;

/// The largest VNI (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;

/// The first VNI given to a network created without one (libnetwork's swarm manager range
/// starts here).
pub const FIRST_AUTO_VNI: u32 = ipam::FIRST_VNI;

/// Parses a subnet: IPv4 CIDR text, prefix length
/// [`MIN_PREFIX_LEN`]..=[`MAX_PREFIX_LEN`], written as its network address.
pub fn parse_subnet(text: &str) -> Result<Ipv4Net, CoreError> {
    let net: Ipv4Net = text.trim().parse().map_err(|_| {
        CoreError::Invalid(format!(
            "invalid subnet {text:?}: not an IPv4 CIDR like 198.18.10.0/24"
        ))
    })?;
    if !(MIN_PREFIX_LEN..=MAX_PREFIX_LEN).contains(&net.prefix_len()) {
        return Err(CoreError::Invalid(format!(
            "invalid subnet {net}: the prefix length must be {MIN_PREFIX_LEN} to {MAX_PREFIX_LEN}"
        )));
    }
    if net.addr() != net.network() {
        // Docker's wording.
        return Err(CoreError::Invalid(format!(
            "invalid subnet {net}: it should be {}",
            net.trunc()
        )));
    }
    Ok(net)
}

/// The gateway of a subnet: its first host address.
pub fn gateway(net: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()).wrapping_add(1))
}

/// Checks an address given for an endpoint (or a VIP): inside the subnet, neither its
/// network, broadcast nor gateway address. `what` names it in the error.
pub fn check_address(net: Ipv4Net, ip: Ipv4Addr, what: &str) -> Result<(), CoreError> {
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
        return Err(CoreError::Invalid(format!(
            "invalid {what} {ip}: not in the network's subnet {net}"
        )));
    }
    if let Some(kind) = reserved {
        return Err(CoreError::Invalid(format!(
            "invalid {what} {ip}: it is the {kind} address of {net}"
        )));
    }
    Ok(())
}

/// Parses an IPv4 address; `what` names it in the error.
pub fn parse_ip(text: &str, what: &str) -> Result<Ipv4Addr, CoreError> {
    text.trim()
        .parse()
        .map_err(|_| CoreError::Invalid(format!("invalid {what} {text:?}: not an IPv4 address")))
}

/// Checks a VNI given for a network.
pub fn check_vni(vni: u32) -> Result<u32, CoreError> {
    if (1..=MAX_VNI).contains(&vni) {
        Ok(vni)
    } else {
        Err(CoreError::Invalid(format!(
            "invalid VNI {vni}: allowed 1 to {MAX_VNI}"
        )))
    }
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
    fn vnis() {
        assert!(check_vni(0).is_err());
        assert!(check_vni(MAX_VNI + 1).is_err());
        assert_eq!(check_vni(MAX_VNI).unwrap(), MAX_VNI);
    }
}
