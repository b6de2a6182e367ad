//! Test hosts in network namespaces, built from Rust: the labs of the end-to-end tests, the
//! demo and the benchmarks, with nothing from iproute2 or iputils.
//!
//! Everything here is synchronous and blocks the caller for at most [`LAB_TIMEOUT`] per
//! call: each operation runs on a short-lived OS thread that enters the namespace (and, for
//! netlink, drives one request on a current-thread runtime of its own), so it is safe from
//! plain threads and, briefly, from async code. Only 198.18.0.0/15 should be given to it.
//!
//! * [`add_netns`] / [`del_netns`]: named namespaces in `/run/netns` (as `ip netns add`
//!   and `ip netns del` make them), loopback up;
//! * [`add_bridge`], [`add_veth`], [`set_master`], [`add_addr`], [`link_up`]: the wiring
//!   of an underlay (a bridge and one veth per host);
//! * [`ipv4_addrs`], [`link_names`], [`link_facts`], [`vxlan_state`]: what a namespace
//!   holds;
//! * [`spawn_in`], [`output_in`]: a process in a namespace (with a container's own
//!   `resolv.conf` bind-mounted over `/etc/resolv.conf` in a private mount namespace, as
//!   `ip netns exec` does);
//! * [`spawn_in_private_mounts`], [`spawn_in_mounts_of`]: processes of one host sharing a
//!   private mount namespace (an agent and the dockerd it serves a plugin to);
//! * [`ping`]: one ICMP echo from a namespace (a raw socket: root).
//!
//! Root is required ([`missing_privileges`] says why a caller cannot use it).

mod exec;
mod icmp;
mod links;

use std::time::Duration;

pub use exec::{output_in, spawn_in, spawn_in_mounts_of, spawn_in_private_mounts};
pub use icmp::ping;
pub use links::{
    LinkFacts, VxlanFacts, add_addr, add_bridge, add_netns, add_veth, del_netns, ipv4_addrs,
    link_facts, link_names, link_up, set_master, vxlan_state,
};

/// The longest one lab operation may take (a netlink request or a namespace change).
pub const LAB_TIMEOUT: Duration = Duration::from_secs(10);

/// Why this process cannot build a lab (`None` when it can): namespaces, veths, VXLAN
/// devices and raw ICMP sockets need root.
pub fn missing_privileges() -> Option<&'static str> {
    if nix::unistd::geteuid().is_root() {
        None
    } else {
        Some("needs root (network namespaces, veth and VXLAN devices, raw ICMP sockets)")
    }
}
