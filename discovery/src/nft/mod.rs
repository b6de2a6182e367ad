//! A sandbox's VIP balancer in nf_tables terms, sans-IO: the netlink messages that program it
//! ([`Batch`], written by hand after the kernel's ABI), the per-sandbox state that decides
//! which transaction brings the kernel to a [`ServiceTable`](crate::ServiceTable)
//! ([`SandboxBalancer`]), the conntrack messages that forget a withdrawn backend's UDP flows
//! ([`conntrack`]), and a fake kernel that reads the same bytes ([`FakeNftables`]) for the
//! simulator and the tests. The agent sends the bytes on a netlink socket inside the
//! sandbox's namespace.

pub mod batch;
pub mod conntrack;
mod fake;
pub mod nlmsg;
mod sandbox;

pub use batch::{BASE_CHAIN, Batch, TABLE, acks, vip_chain};
pub use fake::{FakeNftError, FakeNftables};
pub use sandbox::{Prepared, SandboxBalancer, transaction};
