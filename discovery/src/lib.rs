//! Service discovery, sans-IO: what the `endpoint_table` of each network says about names.
//!
//! Every endpoint joined to a network publishes an [`EndpointRecord`] in NetworkDB's
//! [`ENDPOINT_TABLE`] of that network. This crate turns a node's view of those tables into the
//! DNS names its containers resolve, as libnetwork's service discovery does
//! (`service_common.go`, `network.go`):
//!
//! * [`claims`]: the names one record asserts: its name (with a PTR), its task aliases,
//!   `tasks.<service>` and `tasks.<service alias>`, and `<service>` / `<service alias>` for its
//!   VIP, or for its own IP when the service has no VIP (DNS round robin). A disabled record
//!   asserts nothing.
//! * [`NetworkRecords`]: one network's names as multisets: a name keeps an address as long as
//!   one endpoint still claims it, so the service VIP goes with the last task and a duplicate
//!   IP of two endpoints survives the first one's departure. Names are case-insensitive.
//! * [`ServiceDiscovery`]: the records of every attached network, fed by NetworkDB watch events
//!   (other nodes' writes) and by the node's own writes, which NetworkDB does not echo.
//! * [`ServiceTable`], [`plan`] and [`BalancerOp`]: the VIPs a sandbox's load balancer
//!   serves, each with its enabled tasks, from the same records, and the changes that bring a
//!   balancer from one table to another.
//! * [`nft`]: a sandbox's balancer in nf_tables terms: the netlink transactions that program
//!   it, the per-sandbox state that picks them, and a fake kernel that reads them.
//! * [`resolve`] and [`reverse`]: what a container on a list of networks gets for a name or an
//!   address, with libnetwork's `name.network` suffix rules.
//!
//! Nothing here touches a socket, the clock or randomness: the embedded DNS server in the
//! agent and the simulator's checker drive the same code.

mod balance;
mod claims;
mod network;
pub mod nft;
mod record;
mod registry;
mod resolve;

pub use balance::{BalancerOp, ServiceTable, plan};
pub use claims::{Claims, RecordError, claims};
pub use network::NetworkRecords;
pub use record::{DecodeError, ENDPOINT_TABLE, EndpointRecord, PortConfig, Protocol};
pub use registry::{DiscoveryStats, ServiceDiscovery};
pub use resolve::{Family, Lookup, resolve, reverse};
