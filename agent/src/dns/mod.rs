//! Service discovery on the host: the names of every attached network ([`directory`]), kept
//! equal to the node's view of `endpoint_table`, and the embedded DNS server ([`server`]) that
//! answers from them inside each container sandbox at 127.0.0.11, forwarding other names to
//! the upstream resolvers ([`resolv_conf`]).

use std::net::Ipv4Addr;

/// The embedded DNS server's address inside every container sandbox (libnetwork
/// `resolverIPSandbox`).
pub const SANDBOX_DNS_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

/// Where the embedded DNS server listens in a Docker container's namespace: dockerd's own
/// resolver holds 127.0.0.11:53 there (its iptables rules redirect it), answers the names of
/// this host's containers and forwards every other name to the container's `--dns`
/// servers, from inside the namespace; `docker run --dns 127.0.0.12` makes that this server.
pub const DOCKER_DNS_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 12);

/// The address the embedded DNS server listens at in a sandbox of `engine`.
pub fn listen_ip(engine: Option<nodecore::Engine>) -> Ipv4Addr {
    match engine {
        Some(nodecore::Engine::Docker) => DOCKER_DNS_IP,
        None | Some(nodecore::Engine::Cni) => SANDBOX_DNS_IP,
    }
}

/// At most this many upstream resolvers are used (libnetwork `maxExtDNS`).
pub const MAX_UPSTREAMS: usize = 3;

/// TTL of local answers in seconds (libnetwork `respTTL`).
pub const DEFAULT_TTL: u32 = 600;

pub mod directory;
pub mod resolv_conf;
pub mod sandbox;
pub mod server;
