//! One network's DNS names, as multisets of claims.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::claims::{Claims, normalize};

/// The names of one network: for each lower-case name, the addresses it maps to with the
/// number of endpoint records claiming each; for each address, the names its PTR can give,
/// counted the same way.
///
/// A pair stays while its count is above zero: libnetwork's `SetMatrix` semantics, so two
/// endpoints that briefly claim one IP, or every task of a service claiming its VIP, release
/// it only when the last of them goes.
///
/// The same multisets hold each VIP's load-balancer backends: the enabled tasks' addresses
/// ([`Claims::backend`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkRecords {
    names: BTreeMap<String, BTreeMap<IpAddr, u32>>,
    ptrs: BTreeMap<IpAddr, BTreeMap<String, u32>>,
    backends: BTreeMap<IpAddr, BTreeMap<IpAddr, u32>>,
}

impl NetworkRecords {
    /// Adds one record's claims.
    pub fn add(&mut self, c: &Claims) {
        for (name, ip) in &c.names {
            *self
                .names
                .entry(name.clone())
                .or_default()
                .entry(*ip)
                .or_insert(0) += 1;
        }
        if let Some((ip, name)) = &c.ptr {
            *self
                .ptrs
                .entry(*ip)
                .or_default()
                .entry(name.clone())
                .or_insert(0) += 1;
        }
        if let Some((vip, ip)) = &c.backend {
            *self
                .backends
                .entry(*vip)
                .or_default()
                .entry(*ip)
                .or_insert(0) += 1;
        }
    }

    /// Removes one record's claims, which must have been added.
    pub fn remove(&mut self, c: &Claims) {
        for (name, ip) in &c.names {
            release(&mut self.names, name, ip);
        }
        if let Some((ip, name)) = &c.ptr {
            release(&mut self.ptrs, ip, name);
        }
        if let Some((vip, ip)) = &c.backend {
            release(&mut self.backends, vip, ip);
        }
    }

    /// Every VIP with the addresses of its enabled tasks (at least one), in address order:
    /// what a sandbox's load balancer spreads connections to the VIP over.
    pub fn services(&self) -> impl Iterator<Item = (IpAddr, Vec<IpAddr>)> + '_ {
        self.backends
            .iter()
            .map(|(vip, ips)| (*vip, ips.keys().copied().collect()))
    }

    /// The addresses of `name` (any case, trailing dot or not), in address order; empty when
    /// the network does not know the name.
    pub fn addrs(&self, name: &str) -> impl Iterator<Item = IpAddr> + '_ {
        self.names
            .get(&normalize(name))
            .into_iter()
            .flat_map(|ips| ips.keys().copied())
    }

    /// Whether the network knows `name` (any address family).
    pub fn knows(&self, name: &str) -> bool {
        self.names.contains_key(&normalize(name))
    }

    /// The name a PTR query for `ip` gives: the first in name order when several endpoints
    /// claim the address.
    pub fn ptr(&self, ip: IpAddr) -> Option<&str> {
        self.ptrs
            .get(&ip.to_canonical())
            .and_then(|names| names.keys().next())
            .map(String::as_str)
    }

    /// Every name with its addresses, in name order.
    pub fn names(&self) -> impl Iterator<Item = (&str, Vec<IpAddr>)> + '_ {
        self.names
            .iter()
            .map(|(n, ips)| (n.as_str(), ips.keys().copied().collect()))
    }

    /// Every address with a PTR entry and the names claiming it, in address order.
    pub fn reverse_entries(&self) -> impl Iterator<Item = (IpAddr, Vec<&str>)> + '_ {
        self.ptrs
            .iter()
            .map(|(ip, names)| (*ip, names.keys().map(String::as_str).collect()))
    }

    /// How many names the network has.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the network has no name, no PTR entry and no VIP backend.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.ptrs.is_empty() && self.backends.is_empty()
    }
}

/// Decrements the count of `(outer, inner)`, dropping entries that reach zero.
fn release<K: Ord + Clone, V: Ord + Clone>(
    map: &mut BTreeMap<K, BTreeMap<V, u32>>,
    outer: &K,
    inner: &V,
) {
    let Some(set) = map.get_mut(outer) else {
        return;
    };
    if let Some(n) = set.get_mut(inner) {
        *n -= 1;
        if *n == 0 {
            set.remove(inner);
        }
    }
    if set.is_empty() {
        map.remove(outer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EndpointRecord;
    use crate::claims::claims;

    fn task(name: &str, ip: &str, vip: &str) -> Claims {
        claims(&EndpointRecord {
            name: name.into(),
            service_name: "web".into(),
            service_id: "sid".into(),
            virtual_ip: vip.into(),
            endpoint_ip: ip.into(),
            ..Default::default()
        })
        .unwrap()
        .unwrap()
    }

    fn services(r: &NetworkRecords) -> Vec<(String, Vec<String>)> {
        r.services()
            .map(|(vip, ips)| {
                (
                    vip.to_string(),
                    ips.iter().map(ToString::to_string).collect(),
                )
            })
            .collect()
    }

    fn addrs(r: &NetworkRecords, name: &str) -> Vec<String> {
        r.addrs(name).map(|a| a.to_string()).collect()
    }

    #[test]
    fn vip_goes_with_the_last_task() {
        let mut r = NetworkRecords::default();
        let (a, b) = (
            task("a", "10.0.0.3", "10.0.0.2"),
            task("b", "10.0.0.4", "10.0.0.2"),
        );
        r.add(&a);
        r.add(&b);
        assert_eq!(addrs(&r, "WEB."), ["10.0.0.2"]);
        assert_eq!(addrs(&r, "tasks.web"), ["10.0.0.3", "10.0.0.4"]);
        assert_eq!(
            services(&r),
            [(
                "10.0.0.2".into(),
                vec!["10.0.0.3".into(), "10.0.0.4".into()]
            )]
        );
        r.remove(&a);
        assert_eq!(addrs(&r, "web"), ["10.0.0.2"]);
        assert_eq!(addrs(&r, "tasks.web"), ["10.0.0.4"]);
        assert_eq!(services(&r), [("10.0.0.2".into(), vec!["10.0.0.4".into()])]);
        r.remove(&b);
        assert!(r.is_empty());
    }

    #[test]
    fn a_shared_ip_survives_its_first_claimant() {
        let mut r = NetworkRecords::default();
        let (old, new) = (task("old", "10.0.0.3", ""), task("new", "10.0.0.3", ""));
        r.add(&old);
        r.add(&new);
        assert_eq!(r.ptr("10.0.0.3".parse().unwrap()), Some("new"));
        r.remove(&new);
        assert_eq!(addrs(&r, "web"), ["10.0.0.3"]);
        assert_eq!(r.ptr("10.0.0.3".parse().unwrap()), Some("old"));
        assert!(r.knows("OLD"));
        assert!(!r.knows("new"));
    }
}
