//! The planner: the neighbour and FDB operations that turn what is programmed on a network's
//! VXLAN device into what the peer DB wants.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use crate::{Mac, NetworkPeers};

/// One change to a network's VXLAN device. Every entry is permanent (`NUD_PERMANENT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NeighOp {
    /// Add the neighbour `ip -> mac` on the VXLAN device (`ip neigh add`, AF_INET). The IP
    /// has no neighbour entry when this is planned.
    AddNeigh {
        /// The remote endpoint's IP.
        ip: Ipv4Addr,
        /// The remote endpoint's MAC.
        mac: Mac,
    },
    /// Delete the neighbour `ip -> mac`.
    DelNeigh {
        /// The endpoint's IP.
        ip: Ipv4Addr,
        /// The MAC the entry holds.
        mac: Mac,
    },
    /// Add the FDB entry `mac -> vtep` (`bridge fdb replace <mac> dev vxlan dst <vtep> self
    /// permanent`, AF_BRIDGE, `NTF_SELF`). The MAC has no permanent FDB entry when this is
    /// planned, but the executor must still use replace semantics: VXLAN learning may have
    /// created a dynamic entry for it (moby PR #53663).
    AddFdb {
        /// The remote endpoint's MAC.
        mac: Mac,
        /// The remote host's data-path address.
        vtep: IpAddr,
    },
    /// Delete the FDB entry `mac -> vtep`. The executor also purges the bridge's learned
    /// entry for the MAC (`NTF_MASTER`), as libnetwork does.
    DelFdb {
        /// The MAC.
        mac: Mac,
        /// The VTEP the entry holds.
        vtep: IpAddr,
    },
}

/// The permanent neighbour and FDB entries on one network's VXLAN device.
///
/// The peer DB's wanted view ([`NetworkPeers::desired`]) and an executor's report of what is
/// programmed ([`Dataplane::state`](crate::Dataplane::state)) have this shape. The kernel
/// keeps at most one permanent FDB remote per MAC here because entries are always written
/// with replace semantics; a netlink executor reports only permanent entries on the VXLAN
/// device (not learned ones, not the all-zeros default remotes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelState {
    /// Neighbours: endpoint IP -> MAC.
    pub neighbours: BTreeMap<Ipv4Addr, Mac>,
    /// FDB: MAC -> VTEP.
    pub fdb: BTreeMap<Mac, IpAddr>,
}

impl KernelState {
    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.neighbours.is_empty() && self.fdb.is_empty()
    }
}

/// The operations that turn `programmed` into `wanted`'s desired state.
///
/// Equivalent to [`diff`]`(wanted.desired(), programmed)`.
pub fn plan(wanted: &NetworkPeers, programmed: &KernelState) -> Vec<NeighOp> {
    diff(wanted.desired(), programmed)
}

/// The operations that turn `programmed` into `wanted`.
///
/// Order, fixed so that runs replay: all deletes, then all adds. Deletes are FDB deletes
/// then neighbour deletes (libnetwork's `peerDeleteOp` order); adds are neighbour adds then
/// FDB adds (`peerAddOp` order); within each group entries go in key order (IP, or MAC).
///
/// An entry whose value changes (an IP whose MAC changed, a MAC whose VTEP changed) becomes
/// a delete of the old value and an add of the new one, never an in-place replace: every op
/// then names exactly the entry it touches, which a strict executor (the
/// [`FakeKernel`](crate::FakeKernel)) can verify, and a delete always carries the family and
/// attributes of the add it undoes (moby bug #50236). Applying the result to `programmed`
/// yields `wanted`; an empty result means they are equal.
pub fn diff(wanted: &KernelState, programmed: &KernelState) -> Vec<NeighOp> {
    let mut ops = Vec::new();
    for (&mac, &vtep) in &programmed.fdb {
        if wanted.fdb.get(&mac) != Some(&vtep) {
            ops.push(NeighOp::DelFdb { mac, vtep });
        }
    }
    for (&ip, &mac) in &programmed.neighbours {
        if wanted.neighbours.get(&ip) != Some(&mac) {
            ops.push(NeighOp::DelNeigh { ip, mac });
        }
    }
    for (&ip, &mac) in &wanted.neighbours {
        if programmed.neighbours.get(&ip) != Some(&mac) {
            ops.push(NeighOp::AddNeigh { ip, mac });
        }
    }
    for (&mac, &vtep) in &wanted.fdb {
        if programmed.fdb.get(&mac) != Some(&vtep) {
            ops.push(NeighOp::AddFdb { mac, vtep });
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(d: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, d)
    }

    fn mac(d: u8) -> Mac {
        Mac([2, 0x42, 10, 0, 0, d])
    }

    fn vtep(d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, d))
    }

    fn state(neigh: &[(u8, u8)], fdb: &[(u8, u8)]) -> KernelState {
        KernelState {
            neighbours: neigh.iter().map(|&(i, m)| (ip(i), mac(m))).collect(),
            fdb: fdb.iter().map(|&(m, v)| (mac(m), vtep(v))).collect(),
        }
    }

    #[test]
    fn equal_states_need_nothing() {
        let s = state(&[(1, 1), (2, 2)], &[(1, 1), (2, 1)]);
        assert!(diff(&s, &s).is_empty());
        assert!(diff(&KernelState::default(), &KernelState::default()).is_empty());
    }

    #[test]
    fn deletes_before_adds_and_changes_are_del_plus_add() {
        let programmed = state(&[(1, 1), (3, 3)], &[(1, 1), (3, 3)]);
        let wanted = state(&[(1, 9), (2, 2)], &[(9, 1), (2, 2), (3, 4)]);
        assert_eq!(
            diff(&wanted, &programmed),
            [
                NeighOp::DelFdb {
                    mac: mac(1),
                    vtep: vtep(1)
                },
                NeighOp::DelFdb {
                    mac: mac(3),
                    vtep: vtep(3)
                },
                NeighOp::DelNeigh {
                    ip: ip(1),
                    mac: mac(1)
                },
                NeighOp::DelNeigh {
                    ip: ip(3),
                    mac: mac(3)
                },
                NeighOp::AddNeigh {
                    ip: ip(1),
                    mac: mac(9)
                },
                NeighOp::AddNeigh {
                    ip: ip(2),
                    mac: mac(2)
                },
                NeighOp::AddFdb {
                    mac: mac(2),
                    vtep: vtep(2)
                },
                NeighOp::AddFdb {
                    mac: mac(3),
                    vtep: vtep(4)
                },
                NeighOp::AddFdb {
                    mac: mac(9),
                    vtep: vtep(1)
                },
            ]
        );
    }
}
