//! The Container Network Model of the agent: networks, endpoints and sandboxes, as the
//! control API ([`crate::api`]) serves them.
//!
//! * **Networks are cluster-wide.** Every agent joins the NetworkDB network
//!   [`GLOBAL_NETWORK`]; its table [`NETWORKS_TABLE`] is the catalogue (name -> JSON
//!   [`NetworkSpec`]). A network created on any agent is listed on every agent. Creating a
//!   name the local view already holds is refused; two agents creating one name at the same
//!   moment converge on one of the two by NetworkDB's (Lamport time, owner) rule. A network
//!   whose catalogue entry disappears because its owner left or crashed is published again by
//!   the agent that created it or by any agent with endpoints on it, after [`ADOPT_AFTER`].
//! * **Endpoints and sandboxes are local** to the agent and kept in `state_dir/cnm.json`
//!   ([`LocalState`]). An agent attaches to a network's NetworkDB network (whose ID is the
//!   network's ID) with its first endpoint there and detaches with its last, as libnetwork
//!   does when it has a container on the network.
//! * **Joining** an endpoint to a sandbox publishes libnetwork's two records, keyed by the
//!   endpoint ID: an [`overlay::PeerRecord`] in [`overlay::PEER_TABLE`] (address/prefix, MAC,
//!   VTEP) and a [`discovery::EndpointRecord`] in [`discovery::ENDPOINT_TABLE`] (names for
//!   service discovery), protobuf-encoded so libnetwork's tools decode them (both crates
//!   follow libnetwork's `.proto` files). Leaving deletes them.
//! * **Restarts**: a restarted agent loads `cnm.json`, re-joins the NetworkDB network of
//!   every network it has endpoints on and re-publishes the records of its joined endpoints
//!   under its new incarnation ([`Cnm::reconcile`], also run every [`RECONCILE_INTERVAL`]).
//!
//! Addresses are allocated by each agent from what it sees (within
//! [`MIN_PREFIX_LEN`]..=[`MAX_PREFIX_LEN`] subnets); there is no
//! cluster-wide allocator, so two agents allocating at the same moment can pick one address
//! (made unlikely by a per-node starting offset). The same holds for VNIs chosen by default.

mod catalogue;
mod error;
mod ipam;
mod model;
mod service;
mod store;

pub use self::catalogue::{GLOBAL_NETWORK, NETWORKS_TABLE};
pub use self::error::CnmError;
pub use self::ipam::{FIRST_AUTO_VNI, MAX_PREFIX_LEN, MAX_VNI, MIN_PREFIX_LEN};
pub use self::model::{
    DRIVER_OVERLAY, DnsAnswer, DnsQuery, Endpoint, EndpointCreate, Info, JoinRequest,
    MAX_ALIAS_LEN, MAX_ALIASES, MAX_NAME_LEN, NetworkCreate, NetworkSpec, Sandbox, SandboxCreate,
    SandboxInfo, ServiceCreate, ServiceInfo, check_aliases, check_name,
};
pub use self::service::{ADOPT_AFTER, Cnm, CnmSettings, RECONCILE_INTERVAL};
pub use self::store::{FORMAT_VERSION, KnownNetwork, LocalState, STATE_FILE, StoreError};
