//! The Container Network Model of the agent, as the control API ([`crate::api`]) serves it: a
//! thin shell around the node core ([`nodecore`]), which decides everything (networks,
//! endpoints, sandboxes, the catalogue, IPAM, records). The shell adds what needs I/O: the
//! overlay driver's dataplane before a join publishes and after a leave withdraws, the
//! sandboxes' embedded DNS servers, and the state file (`state_dir/cnm.json`, saved inside
//! the node's task whenever the core says so).

mod attach;
mod error;
mod service;
mod store;

pub use self::attach::{AttachRequest, Attachment, AttachmentQuery, AttachmentStats, DetachQuery};
pub use self::error::CnmError;
pub use self::service::{Cnm, CnmSettings};
pub use self::store::{STATE_FILE, StoreError, load_state, save_json, save_state};
pub use nodecore::{
    ADOPT_AFTER, DRIVER_OVERLAY, DnsAnswer, DnsQuery, Endpoint, EndpointCreate, FIRST_AUTO_VNI,
    FORMAT_VERSION, GLOBAL_NETWORK, Info, JoinRequest, KnownNetwork, LocalState, MAX_ALIAS_LEN,
    MAX_ALIASES, MAX_NAME_LEN, MAX_PREFIX_LEN, MAX_VNI, MIN_PREFIX_LEN, NETWORKS_TABLE,
    NetworkCreate, NetworkSpec, PoolInfo, RECONCILE_INTERVAL, ReclaimAnswer, ReclaimRequest,
    Sandbox, SandboxCreate, SandboxInfo, ServiceCreate, ServiceInfo, check_aliases, check_name,
};
