//! The overlay driver's sans-IO core.
//!
//! Turns `overlay_peer_table` watch events into the neighbour (IP -> MAC) and FDB
//! (MAC -> remote host) entries of each network's VXLAN device:
//!
//! * [`PeerRecord`] / [`Mac`]: the table's value and its protobuf codec (derived by prost),
//!   wire-compatible with libnetwork's `overlay.proto`.
//! * [`PeerDb`]: per network, the endpoints the table holds and the [`KernelState`] they call
//!   for: one programmed claimant per IP chosen deterministically, FDB entries
//!   reference-counted per (MAC, VTEP), local endpoints never programmed, peers of networks
//!   without a device kept and replayed, failed hosts' endpoints withdrawn.
//! * [`plan`] / [`diff`]: the [`NeighOp`]s that turn what is programmed into what is wanted.
//! * [`Dataplane`]: the executor interface; [`FakeKernel`] implements it in memory and
//!   [`check`] compares it with a peer DB.
//!
//! # I/O contract
//!
//! Nothing here reads a clock, touches a socket or netlink, or uses randomness
//! (`clippy.toml` bans them). Inputs are NetworkDB [`WatchEvent`](networkdb::WatchEvent)s and
//! lifecycle calls on [`PeerDb`]; outputs are [`NeighOp`] plans that the shell hands to a
//! [`Dataplane`]. After any input, drain [`PeerDb::poll_changed`] and plan each network it
//! returns:
//!
//! ```no_run
//! use overlay::{Dataplane, FakeKernel, PeerDb, plan};
//! # fn events() -> Vec<networkdb::WatchEvent> { Vec::new() }
//! let mut db = PeerDb::new("192.0.2.1".parse().unwrap());
//! let mut kernel = FakeKernel::new();
//! let net = networkdb::NetworkId::from("net1");
//! // The first local endpoint joined: the namespace and VXLAN device now exist.
//! kernel.create_network(&net);
//! db.network_ready(&net);
//! for ev in events() {
//!     db.apply(&ev);
//!     while let Some(nid) = db.poll_changed() {
//!         let (Some(wanted), Ok(programmed)) = (db.wanted(&nid), kernel.state(&nid)) else {
//!             continue;
//!         };
//!         let ops = plan(wanted, &programmed);
//!         if kernel.apply(&nid, &ops).is_err() {
//!             db.mark_changed(&nid); // re-plan from the device's state next time
//!         }
//!     }
//! }
//! ```
//!
//! See `docs/ARCHITECTURE.md` section "Overlay driver". The real executor is
//! `netlink::NetlinkDataplane`, behind the non-default `netlink` feature (rtnetlink, tokio,
//! nix): per network a namespace with a bridge and a VXLAN device, veths for local
//! endpoints, and batched neighbour and FDB programming. The default build stays sans-IO.
//! The `serde` feature serializes [`Mac`] as its text form (for the agent's API and state).

#![deny(missing_docs)]

mod dataplane;
mod fake;
mod mac;
#[cfg(feature = "netlink")]
pub mod netlink;
mod peerdb;
mod plan;
mod record;

pub use dataplane::{Dataplane, DataplaneError};
pub use fake::{FakeKernel, check};
pub use mac::{Mac, ParseMacError};
pub use peerdb::{NetworkPeers, PeerDb, PeerDbStats};
pub use plan::{KernelState, NeighOp, diff, plan};
pub use record::{PEER_TABLE, PeerRecord, RecordError, WireError};
