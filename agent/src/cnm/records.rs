//! The NetworkDB values libnetwork publishes for a joined endpoint, wire-compatible with
//! libnetwork's protobuf encodings:
//!
//! * [`PeerRecord`] (`drivers/overlay/overlay.proto`), table [`PEER_TABLE`]: where an
//!   endpoint's IP and MAC live (its VTEP); the overlay crate's.
//! * [`EndpointRecord`] (`agent.proto`), table [`ENDPOINT_TABLE`]: the endpoint's names for
//!   service discovery; the discovery crate's.
//!
//! Both are keyed by the endpoint ID in the NetworkDB network whose ID is the network's ID.

pub use discovery::{DecodeError, ENDPOINT_TABLE, EndpointRecord, PortConfig, Protocol};
pub use overlay::{PEER_TABLE, PeerRecord};
