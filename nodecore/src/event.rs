//! What the node core tells its driver, besides the node's own outputs.

use std::collections::BTreeMap;

use networkdb::WatchEvent;

use crate::model::{Endpoint, NetworkSpec};
use crate::{CoreError, LocalState};

/// Names an operation whose answer comes later, as an [`Event::Answer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// The answer to an operation: now, or later under a [`RequestId`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum Started<T> {
    /// Done.
    Done(T),
    /// Waiting for the cluster (space asked of another node); the answer comes as an
    /// [`Event::Answer`] naming this request, within the core's allocation timeout.
    Waiting(RequestId),
}

impl<T> Started<T> {
    /// The same start with the value of `Done` mapped by `f`.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Started<U> {
        match self {
            Self::Done(v) => Started::Done(f(v)),
            Self::Waiting(id) => Started::Waiting(id),
        }
    }
}

/// The answer to an operation that waited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A network was created.
    Network(Result<NetworkSpec, CoreError>),
    /// An endpoint was created.
    Endpoint(Result<Endpoint, CoreError>),
    /// An address was reserved.
    Address(Result<std::net::Ipv4Addr, CoreError>),
}

/// Service discovery's view of the node: which networks it resolves on, what each network
/// and sandbox is called, and every change of `endpoint_table` in those networks, the node's
/// own included, in order. Apply them in order to a `discovery::ServiceDiscovery`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamesChange {
    /// Resolve on this network from now on (its entries follow as changes).
    Attach(String),
    /// Forget this network.
    Detach(String),
    /// A change of `endpoint_table`.
    Record(WatchEvent),
    /// The names of the node's networks (ID -> name) and the networks of each sandbox
    /// (ordered by network name: the order its DNS server resolves in).
    Topology {
        /// Network ID -> name.
        networks: BTreeMap<String, String>,
        /// Sandbox -> network IDs.
        sandboxes: BTreeMap<String, Vec<String>>,
    },
}

/// An event of the node core. Carry them out in order; the core polls them before the node's
/// own outputs.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// Save this state durably now, before carrying out anything after it (the core writes
    /// nothing that the state would contradict before the driver polled past this event).
    Persist(Box<LocalState>),
    /// A change of `overlay_peer_table` seen from another node: feed it to the overlay
    /// driver's peer DB.
    Peer(WatchEvent),
    /// A change for service discovery.
    Names(NamesChange),
    /// The answer to an operation that waited.
    Answer(RequestId, Answer),
}
