//! The two records a joined endpoint publishes, keyed by its ID: an [`overlay::PeerRecord`]
//! in [`overlay::PEER_TABLE`] (address/prefix, MAC, VTEP) and a
//! [`discovery::EndpointRecord`] in [`discovery::ENDPOINT_TABLE`] (names for service
//! discovery), protobuf-encoded as libnetwork's tools decode them.

use std::net::IpAddr;

use bytes::Bytes;
use data_encoding::HEXLOWER;
use discovery::EndpointRecord;
use ipnet::Ipv4Net;
use overlay::PeerRecord;

use crate::model::Endpoint;

/// The encoded records of one joined endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Records {
    /// Its `PeerRecord`.
    pub peer: Bytes,
    /// Its `EndpointRecord`.
    pub endpoint: Bytes,
}

impl Records {
    /// The records of `e`, with `vtep` as its tunnel endpoint; `None` when its prefix length
    /// is beyond 32 (a hand-edited state file): nothing is published.
    pub fn of(e: &Endpoint, vtep: IpAddr) -> Option<Self> {
        let endpoint_ip = Ipv4Net::new(e.ip, e.prefix_len).ok()?;
        let peer = PeerRecord {
            endpoint_ip,
            endpoint_mac: e.mac,
            tunnel_endpoint_ip: vtep,
        };
        let service = e.service.as_ref();
        let record = EndpointRecord {
            name: e.name.clone(),
            service_name: service.map(|s| s.name.clone()).unwrap_or_default(),
            service_id: service.map(|s| s.id.clone()).unwrap_or_default(),
            virtual_ip: service
                .and_then(|s| s.vip)
                .map(|ip| ip.to_string())
                .unwrap_or_default(),
            endpoint_ip: e.ip.to_string(),
            ingress_ports: Vec::new(),
            aliases: service.map(|s| s.aliases.clone()).unwrap_or_default(),
            task_aliases: e.aliases.clone(),
            service_disabled: service.is_some_and(|s| s.disabled),
        };
        Some(Self {
            peer: Bytes::from(peer.encode()),
            endpoint: Bytes::from(record.encode()),
        })
    }

    /// The value of `table` ([`overlay::PEER_TABLE`] or [`discovery::ENDPOINT_TABLE`]).
    pub fn value(&self, table: &str) -> &Bytes {
        if table == overlay::PEER_TABLE {
            &self.peer
        } else {
            &self.endpoint
        }
    }
}

/// A service's ID: SHA-256 of the network ID and the service name, in hex, so every node
/// derives the same ID for one service on one network (the swarm manager gives all the tasks
/// of a service one ID).
pub fn service_id(network_id: &str, service: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(network_id.as_bytes());
    ctx.update(b"/");
    ctx.update(service.as_bytes());
    HEXLOWER.encode(ctx.finish().as_ref())
}
