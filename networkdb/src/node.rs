//! What the core knows about each node of the cluster.

use std::net::SocketAddr;
use std::time::Instant;

use crate::LTime;

/// A node's membership state (libnetwork keeps three maps; here one map holds the state).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NodeState {
    /// Reachable: part of every network it is attached to.
    Active,
    /// Unreachable without a goodbye: its entries are hidden until it returns or is reaped.
    Failed,
    /// Left gracefully: its attachments and entries are gone.
    Left,
}

/// One node as this node sees it.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub(crate) addr: SocketAddr,
    pub(crate) state: NodeState,
    /// The latest node-event time seen from it.
    pub(crate) ltime: LTime,
    /// When a failed or left node is forgotten.
    pub(crate) reap_at: Option<Instant>,
}

/// A participant of a network or the cluster, as [`NetworkDb::peers`](crate::NetworkDb::peers)
/// and [`NetworkDb::cluster_peers`](crate::NetworkDb::cluster_peers) list it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// The node's name.
    pub name: crate::NodeName,
    /// Its address, or `None` when it is not active (libnetwork shows "unknown").
    pub addr: Option<SocketAddr>,
}
