//! The node core: everything one node decides, sans-IO.
//!
//! [`NodeCore`] holds the Container Network Model (networks, endpoints, sandboxes, join and
//! leave, enable and disable), the cluster-wide network catalogue, IPAM (the `ipam` crate's
//! allocators, one per network and one for VNIs, whose entries travel through NetworkDB),
//! the records each joined endpoint publishes, and the feeds of the overlay driver and of
//! service discovery. Inputs: operations, NetworkDB watch events, membership changes and
//! time. Outputs: NetworkDB writes (carried out by the core on the node's NetworkDB, in
//! order, after the saves they depend on) and [`Event`]s: state to save, peer-table changes
//! for the overlay driver, name changes for service discovery and the answers of operations
//! that waited for another node. [`Stack`] drives a core with its `cluster::Node`; the agent's
//! daemon and every host of the simulator run a `Stack`.
//!
//! * **Networks are cluster-wide.** Every node joins the NetworkDB network
//!   [`GLOBAL_NETWORK`]; its table [`NETWORKS_TABLE`] is the catalogue (name -> JSON
//!   [`NetworkSpec`]). Two nodes creating one name at the same moment converge on one of the
//!   two by NetworkDB's (Lamport time, owner) rule; the loser's creator marks its network
//!   removed (its endpoints can leave and be removed). A network whose catalogue entry
//!   disappears because its owner left or crashed is published again by its creator or by
//!   any node with endpoints on it, after [`ADOPT_AFTER`].
//! * **Endpoints and sandboxes are local** and kept in the node's [`LocalState`]. A node
//!   attaches to a network's NetworkDB network (whose ID is the network's ID) with its first
//!   endpoint there and detaches with its last, as libnetwork does.
//! * **Addresses and VNIs** are unique cluster-wide (`docs/IPAM.md`): an endpoint's address
//!   comes from the network's pool, at once from blocks the node owns, else from another
//!   node; a network's VNI from the VNI pool, whose origin is the cluster's founder.
//! * **Joining** an endpoint to a sandbox publishes libnetwork's two records
//!   ([`Records`]); leaving withdraws them.
//! * **Service discovery has one feed**: every change of `endpoint_table` in the networks it
//!   resolves on, the node's own writes included (a NetworkDB watch with `own`), as
//!   [`NamesChange`]s.

mod addressing;
mod catalogue;
mod core;
mod endpoints;
mod error;
mod event;
mod model;
mod networks;
mod outbox;
mod pending;
mod pools;
mod reconcile;
mod records;
mod reservations;
mod sandboxes;
mod stack;
mod state;

pub use crate::addressing::{
    FIRST_AUTO_VNI, MAX_PREFIX_LEN, MAX_VNI, MIN_PREFIX_LEN, check_address, check_vni, gateway,
    parse_ip, parse_subnet,
};
pub use crate::catalogue::{GLOBAL_NETWORK, NETWORKS_TABLE};
pub use crate::core::{
    ADOPT_AFTER, CoreStats, DEFAULT_ALLOCATION_TIMEOUT, FOUNDERS_TABLE, MEMBERS_BURST,
    MEMBERS_DEBOUNCE, NodeCore, RECONCILE_INTERVAL, Settings,
};
pub use crate::endpoints::JoinPlan;
pub use crate::error::CoreError;
pub use crate::event::{Answer, Event, NamesChange, RequestId, Started};
pub use crate::model::{
    DEFAULT_IFNAME, DRIVER_OVERLAY, DnsAnswer, DnsQuery, Endpoint, EndpointCreate, Engine, Info,
    JoinRequest, MAX_ALIAS_LEN, MAX_ALIASES, MAX_IFNAME_LEN, MAX_NAME_LEN, NetworkCreate,
    NetworkSpec, PoolInfo, ReclaimAnswer, ReclaimRequest, Sandbox, SandboxCreate, SandboxInfo,
    ServiceCreate, ServiceInfo, check_aliases, check_ifname, check_name,
};
pub use crate::pools::IPAM_TABLES;
pub use crate::records::{Records, service_id};
pub use crate::sandboxes::HOST_RESOLV_CONF;
pub use crate::stack::{Stack, Step};
pub use crate::state::{FORMAT_VERSION, KnownNetwork, LocalState, OLDEST_FORMAT_VERSION, VNI_POOL};
