//! NetworkDB: per-network replicated tables, as a sans-IO state machine.
//!
//! Every node holds tables of `table / network / key -> value` entries, each owned by one node
//! and ordered per key by a Lamport clock; deletes stay as tombstones for
//! [`Config::reap_entry_interval`]. Entries spread among exactly the nodes attached to a
//! network by fast gossip (compound datagrams within [`Config::packet_size`]) and are repaired
//! by periodic bulk syncs on the stream path. Node and network events spread cluster-wide.
//!
//! # I/O contract
//!
//! [`NetworkDb`] never reads a clock, touches a socket or uses OS randomness. Inputs are
//! `handle_message(now, channel, bytes)`, `handle_timeout(now)`, membership callbacks
//! (`node_up`, `node_down`) and API calls (`join_network`, `create_entry`, ...); outputs are
//! drained from `poll_output()` ([`Output::Transmit`], watch events, reconnect and rejoin
//! requests) and the next deadline from `poll_timeout()`. The same code runs under the tokio
//! daemon, the in-memory [`harness`](crate) and the simulator. See [`NetworkDb`] for the
//! drain rule and a driver loop.
//!
//! Semantics follow moby's NetworkDB of 2025-26 (`docs/PROTOCOL.md` lists every rule and the
//! upstream fix behind it): tombstones for every delete, failed nodes' entries hidden then
//! restored, local events before relayed ones, bulk-sync replies correlated by Lamport time,
//! attachments carried in bulk syncs, no eviction of a live peer at a reused address, exact
//! uniform peer sampling.

#![deny(missing_docs)]

mod clock;
mod config;
mod db;
mod deferred;
mod digest;
mod entry;
mod error;
mod gossip;
#[cfg(any(test, feature = "harness"))]
pub mod harness;
mod ids;
mod membership;
mod network;
mod node;
mod output;
mod peers;
mod queue;
mod recv;
mod seen;
mod stats;
mod timer;
mod watch;
pub mod wire;

pub use clock::LamportClock;
pub use config::{
    Config, ConfigError, MAX_INTERVAL, MAX_PACKET_SIZE, MAX_TRANSPORT_OVERHEAD, MIN_PACKET_SIZE,
};
pub use db::{MAX_NAME_LEN, NetworkDb};
pub use deferred::DEFER_WINDOW;
pub use entry::TableElem;
pub use error::Error;
pub use ids::{Key, LTime, NetworkId, NodeName, TableName};
pub use network::NetworkStats;
pub use node::{NodeState, PeerInfo};
pub use output::{Channel, Output, Transmit};
pub use recv::ATTACHMENT_REPAIR_INTERVAL;
pub use stats::Stats;
pub use watch::{NODE_TABLE, WatchEvent, WatchFilter, WatchId};
