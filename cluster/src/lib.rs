//! Cluster membership and the node core.
//!
//! [`Node`] is a sans-IO state machine combining SWIM membership (the `foca` crate) with a
//! [`networkdb::NetworkDb`]: SWIM's notifications become NetworkDB node events (up; down ->
//! failed), NetworkDB gossips node, network and table events in its own datagrams on the same
//! socket (a kind byte tells them apart), and bulk sync and push/pull travel the stream path.
//! Every datagram, SWIM or NetworkDB, fits `packet_size` once sealed in the AEAD envelope of
//! [`crypto`].
//!
//! # I/O contract
//!
//! `handle_datagram(now, from, plaintext)`, `handle_stream(now, authenticated_name, bytes)`,
//! `handle_timeout(now)` and API calls go in; [`Output`]s come out of `poll_output()` and the
//! next deadline out of `poll_timeout()`. The shell (feature `shell`) owns sockets, TLS, the
//! clock and nonces.

#![deny(missing_docs)]

mod config;
pub mod crypto;
mod engine;
mod identity;
mod membership_digest;
mod node;
#[cfg(feature = "shell")]
pub mod shell;
mod swim_scale;

pub use config::{DATAGRAM_OVERHEAD, NodeConfig, NodeConfigError};
pub use engine::Engine;
pub use identity::{NodeIdentity, base_name};
pub use node::{
    DEFERRED_MAX_BYTES, DEFERRED_TTL, FRAME_OVERHEAD, InputError, KIND_MEMBERSHIP_DIGEST,
    KIND_NETWORKDB, KIND_SWIM, MemberEvent, Node, NodeStats, Output, STREAM_MEMBERSHIP,
};
