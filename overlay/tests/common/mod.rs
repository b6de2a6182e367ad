//! Helpers shared by the integration tests.

#![allow(dead_code, reason = "each test file uses a different subset")]
#![allow(unreachable_pub, missing_docs, reason = "test helpers, not an API")]
#![allow(clippy::unwrap_used, reason = "test helpers unwrap known-good values")]

use std::net::{IpAddr, Ipv4Addr};

use bytes::Bytes;
use networkdb::{Key, NetworkId, TableName, WatchEvent};
use overlay::{Dataplane, FakeKernel, Mac, PEER_TABLE, PeerDb, PeerRecord, check, plan};

/// This host's data-path address in every test.
pub const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

pub fn vtep(d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, d))
}

pub fn ip(d: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, d)
}

pub fn mac(d: u8) -> Mac {
    Mac([2, 0x42, 10, 0, 0, d])
}

pub fn net(n: &str) -> NetworkId {
    NetworkId::from(n)
}

pub fn record(ip_d: u8, mac_d: u8, vtep_d: u8) -> PeerRecord {
    PeerRecord {
        endpoint_ip: format!("10.0.0.{ip_d}/24").parse().unwrap(),
        endpoint_mac: mac(mac_d),
        tunnel_endpoint_ip: vtep(vtep_d),
    }
}

pub fn bytes(r: &PeerRecord) -> Bytes {
    Bytes::from(r.encode())
}

pub fn event(network: &str, key: &str, prev: Option<Bytes>, value: Option<Bytes>) -> WatchEvent {
    WatchEvent {
        table: TableName::from(PEER_TABLE),
        network: net(network),
        key: Key::from(key),
        prev,
        value,
    }
}

pub fn create(network: &str, key: &str, r: &PeerRecord) -> WatchEvent {
    event(network, key, None, Some(bytes(r)))
}

pub fn update(network: &str, key: &str, prev: &PeerRecord, r: &PeerRecord) -> WatchEvent {
    event(network, key, Some(bytes(prev)), Some(bytes(r)))
}

pub fn delete(network: &str, key: &str, prev: &PeerRecord) -> WatchEvent {
    event(network, key, Some(bytes(prev)), None)
}

/// A host's overlay core: a peer DB and a fake kernel driven the way the shell will be.
pub struct Node {
    pub db: PeerDb,
    pub kernel: FakeKernel,
}

impl Node {
    pub fn new() -> Self {
        Self {
            db: PeerDb::new(LOCAL),
            kernel: FakeKernel::new(),
        }
    }

    /// Creates the network's device and tells the peer DB, then syncs.
    pub fn ready(&mut self, network: &str) {
        self.kernel.create_network(&net(network));
        self.db.network_ready(&net(network));
        self.sync();
    }

    pub fn apply(&mut self, ev: &WatchEvent) {
        self.db.apply(ev);
        self.sync();
    }

    /// Drains the changed networks, plans and applies, then checks the kernel.
    pub fn sync(&mut self) {
        while let Some(nid) = self.db.poll_changed() {
            let wanted = self.db.wanted(&nid).expect("changed network is ready");
            let programmed = self.kernel.state(&nid).expect("ready network has a device");
            let ops = plan(wanted, &programmed);
            self.kernel.apply(&nid, &ops).expect("plan applies");
        }
        check(&self.kernel, &self.db).expect("kernel matches peer DB");
    }
}
