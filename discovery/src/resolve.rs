//! What a container on a list of networks gets for a name or an address.

use std::net::IpAddr;

use crate::claims::normalize;
use crate::network::NetworkRecords;

/// The address family a query asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// A records.
    V4,
    /// AAAA records.
    V6,
}

impl Family {
    fn matches(self, ip: &IpAddr) -> bool {
        match self {
            Self::V4 => ip.is_ipv4(),
            Self::V6 => ip.is_ipv6(),
        }
    }
}

/// The outcome of [`resolve`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The addresses, deduplicated, in address order (the server shuffles them).
    Addrs(Vec<IpAddr>),
    /// The name exists, but not with this family: NOERROR with no answer, not forwarded
    /// (libnetwork's `ipv6Miss`).
    NoData,
    /// No network knows the name: the server forwards the query.
    NotFound,
}

/// Resolves `name` for a container attached to `networks` (name and records, in the
/// sandbox's order), with libnetwork's rules (`sandbox.ResolveName`): the name as a whole on
/// every network in order, then, for `a.b.c`, `a.b` on network `c` and `a` on network `b.c`.
/// The first network that has the name with the asked family answers. Case and a trailing dot
/// do not matter.
pub fn resolve(networks: &[(&str, &NetworkRecords)], name: &str, family: Family) -> Lookup {
    let name = normalize(name);
    let mut exists = false;
    for (candidate, network) in candidates(&name) {
        for (net_name, records) in networks {
            if network.is_some_and(|n| !n.eq_ignore_ascii_case(net_name)) {
                continue;
            }
            if !records.knows(candidate) {
                continue;
            }
            exists = true;
            let addrs: Vec<IpAddr> = records
                .addrs(candidate)
                .filter(|a| family.matches(a))
                .collect();
            if !addrs.is_empty() {
                return Lookup::Addrs(addrs);
            }
        }
    }
    if exists {
        Lookup::NoData
    } else {
        Lookup::NotFound
    }
}

/// The PTR answer for `ip` on `networks`: `<name>.<network>` from the first network that
/// knows the address (libnetwork `ResolveIP`), without the trailing dot.
pub fn reverse(networks: &[(&str, &NetworkRecords)], ip: IpAddr) -> Option<String> {
    networks
        .iter()
        .find_map(|(net_name, records)| records.ptr(ip).map(|n| format!("{n}.{net_name}")))
}

/// `(name, network)` pairs to try for `name`: the whole name on any network, then each split
/// at a dot, right to left.
fn candidates(name: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    std::iter::once((name, None)).chain(
        name.char_indices()
            .rev()
            .filter(|(_, c)| *c == '.')
            .map(move |(i, _)| (&name[..i], Some(&name[i + 1..])))
            .filter(|(n, net)| !n.is_empty() && net.is_some_and(|s| !s.is_empty())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EndpointRecord, claims};

    fn net(records: &[(&str, &str)]) -> NetworkRecords {
        let mut r = NetworkRecords::default();
        for (name, ip) in records {
            let c = claims(&EndpointRecord {
                name: (*name).into(),
                endpoint_ip: (*ip).into(),
                ..Default::default()
            })
            .unwrap()
            .unwrap();
            r.add(&c);
        }
        r
    }

    fn ips(v: &[&str]) -> Lookup {
        Lookup::Addrs(v.iter().map(|s| s.parse().unwrap()).collect())
    }

    #[test]
    fn candidates_split_right_to_left() {
        let c: Vec<_> = candidates("a.b.c").collect();
        assert_eq!(c, [("a.b.c", None), ("a.b", Some("c")), ("a", Some("b.c"))]);
        assert_eq!(candidates("a.").count(), 1);
    }

    #[test]
    fn first_network_wins_and_suffix_selects() {
        let blue = net(&[("web", "10.1.0.5")]);
        let red = net(&[("web", "10.2.0.5"), ("db", "10.2.0.6")]);
        let scope = [("blue", &blue), ("red", &red)];
        assert_eq!(resolve(&scope, "WEB.", Family::V4), ips(&["10.1.0.5"]));
        assert_eq!(resolve(&scope, "web.red", Family::V4), ips(&["10.2.0.5"]));
        assert_eq!(resolve(&scope, "db", Family::V4), ips(&["10.2.0.6"]));
        assert_eq!(resolve(&scope, "db.blue", Family::V4), Lookup::NotFound);
        assert_eq!(resolve(&scope, "web", Family::V6), Lookup::NoData);
        assert_eq!(resolve(&scope, "nope", Family::V4), Lookup::NotFound);
    }

    #[test]
    fn reverse_names_the_network() {
        let blue = net(&[("Web", "10.1.0.5")]);
        let scope = [("blue", &blue)];
        assert_eq!(
            reverse(&scope, "10.1.0.5".parse().unwrap()).as_deref(),
            Some("Web.blue")
        );
        assert_eq!(reverse(&scope, "10.1.0.6".parse().unwrap()), None);
    }
}
