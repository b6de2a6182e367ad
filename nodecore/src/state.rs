//! What a node keeps across restarts: its networks, endpoints and sandboxes, and its share of
//! every address and VNI pool. The shell saves it whenever the core says so
//! ([`Event::Persist`](crate::Event::Persist)), before anything that depends on it happens.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::model::{Endpoint, NetworkSpec, Sandbox};

/// The version of the state's format this code writes.
pub const FORMAT_VERSION: u32 = 2;

/// The oldest version of the format this code reads: version 1 had no IPAM state (the
/// addresses of its endpoints are claimed again at start).
pub const OLDEST_FORMAT_VERSION: u32 = 1;

/// The pool ID of the VNI pool in [`LocalState::ipam`]; address pools are named by their
/// network's ID.
pub const VNI_POOL: &str = "vni";

/// A network this node keeps a copy of: one it created, or one it has endpoints on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownNetwork {
    /// The network.
    pub spec: NetworkSpec,
    /// Whether this node created it (it re-publishes it if the catalogue loses it).
    pub created_here: bool,
    /// Whether the catalogue showed it removed or replaced by another network of that name
    /// while this node still had endpoints on it. Such a network is never re-published;
    /// its endpoints can still leave and be removed.
    pub removed: bool,
}

/// Everything a node keeps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalState {
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// Networks by ID.
    pub networks: BTreeMap<String, KnownNetwork>,
    /// Endpoints by ID.
    pub endpoints: BTreeMap<String, Endpoint>,
    /// Sandboxes by name.
    pub sandboxes: BTreeMap<String, Sandbox>,
    /// This node's allocator state of every pool it took part in: the network's ID for an
    /// address pool, [`VNI_POOL`] for VNIs.
    #[serde(default)]
    pub ipam: BTreeMap<String, ipam::Snapshot>,
    /// Addresses reserved for a container engine's IPAM driver, by network ID (see
    /// [`NodeCore::reserve_address`](crate::NodeCore::reserve_address)).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reserved: BTreeMap<String, BTreeSet<Ipv4Addr>>,
    /// The name of the cluster's founder (the origin of the VNI pool), once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub founder: Option<String>,
}

impl Default for LocalState {
    fn default() -> Self {
        Self {
            version: FORMAT_VERSION,
            networks: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            sandboxes: BTreeMap::new(),
            ipam: BTreeMap::new(),
            reserved: BTreeMap::new(),
            founder: None,
        }
    }
}

impl LocalState {
    /// The endpoints on the network with ID `network_id`.
    pub fn endpoints_on<'a>(&'a self, network_id: &'a str) -> impl Iterator<Item = &'a Endpoint> {
        self.endpoints
            .values()
            .filter(move |e| e.network_id == network_id)
    }

    /// The endpoint named `name` on the network with ID `network_id`.
    pub fn endpoint(&self, network_id: &str, name: &str) -> Option<&Endpoint> {
        self.endpoints
            .values()
            .find(|e| e.network_id == network_id && e.name == name)
    }

    /// The networks this node knows that were not removed.
    pub fn live_networks(&self) -> impl Iterator<Item = &NetworkSpec> {
        self.networks
            .values()
            .filter(|k| !k.removed)
            .map(|k| &k.spec)
    }
}
