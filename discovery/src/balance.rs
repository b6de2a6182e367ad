//! What a sandbox's load balancer holds for service VIPs, and the changes that bring it there.
//!
//! A container reaches a service through its VIP; the kernel inside the container's network
//! namespace spreads the connections over the service's enabled tasks anywhere in the
//! cluster (libnetwork programs IPVS in each sandbox). The wanted state of one sandbox is a
//! [`ServiceTable`] computed from the [`NetworkRecords`] of its networks, the same records its
//! DNS server answers from, so the balancer and the names never disagree. [`plan`] turns the
//! difference between two tables into [`BalancerOp`]s, one per VIP that changes; the agent
//! carries them out with nftables, and the simulator on a [`ServiceTable`] that stands for the
//! kernel ([`ServiceTable::apply`]).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use crate::NetworkRecords;

/// Each VIP with the addresses of its enabled tasks (never empty). IPv4 only: the VIPs and
/// task addresses of libnetwork's overlay networks are IPv4.
///
/// Shared, not copied: a clone costs nothing and two clones compare equal without a walk, so
/// the table of a network that did not change is handed to every sandbox on it and found
/// unchanged by each in constant time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceTable {
    services: Arc<BTreeMap<Ipv4Addr, BTreeSet<Ipv4Addr>>>,
}

impl ServiceTable {
    /// No service.
    pub fn new() -> Self {
        Self::default()
    }

    /// The services of a sandbox joined to `networks`: every VIP with at least one enabled
    /// task. A VIP found on two networks (which a sandbox's non-overlapping subnets rule out)
    /// gets the backends of both.
    pub fn of<'a>(networks: impl IntoIterator<Item = &'a NetworkRecords>) -> Self {
        let mut services: BTreeMap<Ipv4Addr, BTreeSet<Ipv4Addr>> = BTreeMap::new();
        for records in networks {
            for (vip, tasks) in records.services() {
                let IpAddr::V4(vip) = vip else { continue };
                let v4 = tasks.into_iter().filter_map(|ip| match ip {
                    IpAddr::V4(ip) => Some(ip),
                    IpAddr::V6(_) => None,
                });
                services.entry(vip).or_default().extend(v4);
            }
        }
        services.retain(|_, b| !b.is_empty());
        Self {
            services: Arc::new(services),
        }
    }

    /// The services of a sandbox joined to networks whose tables are `tables`: one table is
    /// shared as it is; several are merged as [`of`](Self::of) merges networks.
    pub fn union<'a>(tables: impl IntoIterator<Item = &'a ServiceTable>) -> Self {
        let mut tables = tables.into_iter();
        let Some(first) = tables.next() else {
            return Self::new();
        };
        let mut merged = first.clone();
        for table in tables {
            if table.is_empty() {
                continue;
            }
            if merged.is_empty() {
                merged = table.clone();
                continue;
            }
            let services = Arc::make_mut(&mut merged.services);
            for (vip, backends) in table.iter() {
                services.entry(vip).or_default().extend(backends);
            }
        }
        merged
    }

    /// The backends of `vip`, if it is a service here.
    pub fn backends(&self, vip: Ipv4Addr) -> Option<&BTreeSet<Ipv4Addr>> {
        self.services.get(&vip)
    }

    /// Every VIP with its backends, in address order.
    pub fn iter(&self) -> impl Iterator<Item = (Ipv4Addr, &BTreeSet<Ipv4Addr>)> + '_ {
        self.services.iter().map(|(vip, b)| (*vip, b))
    }

    /// How many VIPs.
    pub fn len(&self) -> usize {
        self.services.len()
    }

    /// Whether there is no VIP.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// How many backends, over all VIPs.
    pub fn backend_count(&self) -> usize {
        self.services.values().map(BTreeSet::len).sum()
    }

    /// Applies one op as a balancer would: `Set` replaces (or creates) the VIP's backends,
    /// `Remove` drops the VIP. Returns `false`, changing nothing, for an op a balancer must
    /// refuse: a `Set` without backends or a `Remove` of an unknown VIP.
    pub fn apply(&mut self, op: &BalancerOp) -> bool {
        match op {
            BalancerOp::Set { vip, backends } if !backends.is_empty() => {
                Arc::make_mut(&mut self.services).insert(*vip, backends.iter().copied().collect());
                true
            }
            BalancerOp::Set { .. } => false,
            BalancerOp::Remove { vip } => {
                self.services.contains_key(vip)
                    && Arc::make_mut(&mut self.services).remove(vip).is_some()
            }
        }
    }
}

/// One change of a sandbox's balancer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BalancerOp {
    /// Spread new connections to `vip` evenly over `backends` (in address order, never
    /// empty), replacing what the VIP had.
    Set {
        /// The service's virtual IP.
        vip: Ipv4Addr,
        /// Its enabled tasks' addresses.
        backends: Vec<Ipv4Addr>,
    },
    /// `vip` is no longer a service here: its connections are no longer translated.
    Remove {
        /// The service's virtual IP.
        vip: Ipv4Addr,
    },
}

/// The ops that turn a balancer holding `have` into one holding `want`, in VIP order: a
/// `Set` for each VIP that is new or whose backends differ, a `Remove` for each VIP gone.
/// Empty when they are equal.
pub fn plan(want: &ServiceTable, have: &ServiceTable) -> Vec<BalancerOp> {
    let set = |vip: Ipv4Addr, backends: &BTreeSet<Ipv4Addr>| BalancerOp::Set {
        vip,
        backends: backends.iter().copied().collect(),
    };
    let mut ops = Vec::new();
    let mut w = want.services.iter().peekable();
    let mut h = have.services.iter().peekable();
    loop {
        let order = match (w.peek(), h.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((wv, _)), Some((hv, _))) => wv.cmp(hv),
        };
        match order {
            Ordering::Less => {
                if let Some((vip, backends)) = w.next() {
                    ops.push(set(*vip, backends));
                }
            }
            Ordering::Greater => {
                if let Some((vip, _)) = h.next() {
                    ops.push(BalancerOp::Remove { vip: *vip });
                }
            }
            Ordering::Equal => {
                if let (Some((vip, wb)), Some((_, hb))) = (w.next(), h.next())
                    && wb != hb
                {
                    ops.push(set(*vip, wb));
                }
            }
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EndpointRecord, claims};

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn task(ip: &str, vip: &str, disabled: bool) -> EndpointRecord {
        EndpointRecord {
            name: format!("t-{ip}"),
            service_name: "web".into(),
            service_id: "sid".into(),
            virtual_ip: vip.into(),
            endpoint_ip: ip.into(),
            service_disabled: disabled,
            ..Default::default()
        }
    }

    fn records(tasks: &[EndpointRecord]) -> NetworkRecords {
        let mut r = NetworkRecords::default();
        for t in tasks {
            if let Some(c) = claims(t).unwrap() {
                r.add(&c);
            }
        }
        r
    }

    #[test]
    fn enabled_tasks_with_a_vip_are_backends() {
        let r = records(&[
            task("10.0.0.3", "10.0.0.2", false),
            task("10.0.0.4", "10.0.0.2", true),
            task("10.0.0.5", "10.0.0.2", false),
            task("10.0.0.6", "", false),
            task("10.0.0.7", "10.0.0.9", true),
        ]);
        let t = ServiceTable::of([&r]);
        assert_eq!(t.len(), 1);
        let want: BTreeSet<_> = [ip("10.0.0.3"), ip("10.0.0.5")].into();
        assert_eq!(t.backends(ip("10.0.0.2")), Some(&want));
        assert_eq!(t.backend_count(), 2);
    }

    #[test]
    fn plan_sets_changed_and_removes_gone_vips() {
        let have = ServiceTable::of([&records(&[
            task("10.0.0.3", "10.0.0.2", false),
            task("10.0.1.3", "10.0.1.2", false),
            task("10.0.2.3", "10.0.2.2", false),
        ])]);
        let want = ServiceTable::of([&records(&[
            task("10.0.0.3", "10.0.0.2", false),
            task("10.0.1.3", "10.0.1.2", false),
            task("10.0.1.4", "10.0.1.2", false),
            task("10.0.3.3", "10.0.3.2", false),
        ])]);
        let ops = plan(&want, &have);
        assert_eq!(
            ops,
            [
                BalancerOp::Set {
                    vip: ip("10.0.1.2"),
                    backends: vec![ip("10.0.1.3"), ip("10.0.1.4")]
                },
                BalancerOp::Remove {
                    vip: ip("10.0.2.2")
                },
                BalancerOp::Set {
                    vip: ip("10.0.3.2"),
                    backends: vec![ip("10.0.3.3")]
                },
            ]
        );
        let mut fake = have.clone();
        assert!(ops.iter().all(|op| fake.apply(op)));
        assert_eq!(fake, want);
        assert!(plan(&want, &fake).is_empty());
    }

    #[test]
    fn union_merges_networks_as_of_does() {
        let a = records(&[
            task("10.0.0.3", "10.0.0.2", false),
            task("10.0.0.4", "10.0.0.2", false),
        ]);
        let b = records(&[
            task("10.0.0.5", "10.0.0.2", false),
            task("10.1.0.3", "10.1.0.2", false),
        ]);
        let (ta, tb) = (ServiceTable::of([&a]), ServiceTable::of([&b]));
        assert_eq!(ServiceTable::union([&ta, &tb]), ServiceTable::of([&a, &b]));
        assert_eq!(ServiceTable::union([&ta]), ta);
        assert_eq!(ServiceTable::union([&ServiceTable::new(), &tb]), tb);
        assert!(ServiceTable::union([]).is_empty());
        // Merging never changes the tables merged.
        assert_eq!(ta, ServiceTable::of([&a]));
    }

    #[test]
    fn refused_ops_change_nothing() {
        let mut t = ServiceTable::new();
        assert!(!t.apply(&BalancerOp::Remove {
            vip: ip("10.0.0.2")
        }));
        assert!(!t.apply(&BalancerOp::Set {
            vip: ip("10.0.0.2"),
            backends: vec![]
        }));
        assert!(t.is_empty());
    }
}
