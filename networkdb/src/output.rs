//! What the core asks its shell to do.

use std::net::SocketAddr;

use crate::{NodeName, WatchEvent, WatchId};

/// The path a payload takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    /// One best-effort datagram, at most `packet_size` bytes once the transport framed it.
    Datagram,
    /// The reliable, authenticated stream path (bulk sync, push/pull, oversized events).
    Stream,
}

/// A payload to send to one node.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct Transmit {
    /// The node to send to.
    pub to: NodeName,
    /// Its address as the membership layer reported it.
    pub addr: SocketAddr,
    /// Datagram or stream.
    pub channel: Channel,
    /// The encoded message, version byte first.
    pub payload: Vec<u8>,
}

/// An output of [`NetworkDb::poll_output`](crate::NetworkDb::poll_output).
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum Output {
    /// Send a payload.
    Transmit(Transmit),
    /// A change seen by a watch.
    Watch {
        /// The watch.
        watch: WatchId,
        /// The change.
        event: WatchEvent,
    },
    /// Ask the membership layer to contact this failed node again (every
    /// `reconnect_interval`, one random failed node).
    Reconnect {
        /// The failed node.
        node: NodeName,
        /// Its last known address.
        addr: SocketAddr,
    },
    /// No bootstrap node is an active peer: ask the membership layer to join these addresses
    /// again, so that islands formed by restarts heal (libnetwork PR #2134).
    RejoinBootstrap {
        /// The bootstrap addresses given to [`NetworkDb::join`](crate::NetworkDb::join).
        addrs: Vec<SocketAddr>,
    },
}
