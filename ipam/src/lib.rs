//! Address and VNI allocation, unique cluster-wide without an external service; sans-IO.
//!
//! A [`Pool`] (a network's host addresses, or the VNI range) is cut into fixed, aligned
//! blocks. Every block has one owner at a time, recorded as a [`Claim`] `(owner, epoch)`:
//! the pool's origin (the node that created the network) owns every block at epoch 0, and only
//! a block's owner writes its next claim, when it gives the block away. Replicas keep the
//! highest epoch per block ([`Claims`]), so they agree whatever the order, loss or duplication
//! of the entries that carry claims. A node allocates only in blocks it owns, at once and
//! without a message; a node without free space writes an [`Ask`] to an owner, which answers
//! ([`Answer`]) by granting an empty block or lending one value; a borrower writes a [`Loan`]
//! while it holds a lent value, so the value stays taken whoever owns its block later. The
//! protocol and its guarantees under failures and partitions are in `docs/IPAM.md`.
//!
//! Nothing here touches a socket, the clock or randomness: [`Allocator`] takes `now` and the
//! entries of the IPAM tables, and returns the entries to write and the answers to pending
//! allocations ([`Output`]). The node core carries the entries through NetworkDB.
//!
//! ```no_run
//! use std::time::Instant;
//! use ipam::{Allocation, Allocator, Output, Pool, Request, Snapshot};
//!
//! let pool = Pool::for_subnet("198.18.10.0/24".parse().unwrap()).unwrap();
//! let mut a = Allocator::new("node1".into(), "node1".into(), pool, Snapshot::default());
//! let now = Instant::now();
//! match a.allocate(now, Request::Any).unwrap() {
//!     Allocation::Done(value) => println!("{}", ipam::addr(value)),
//!     Allocation::Pending(ticket) => println!("asked for space: {ticket:?}"),
//! }
//! while let Some(output) = a.poll_output() {
//!     match output {
//!         Output::Persist => { /* save a.snapshot() durably, first */ }
//!         Output::Write(entry) => { /* write entry.table() / entry.key() / entry.encode() */ }
//!         _ => { /* deletes, and the answers to pending allocations */ }
//!     }
//! }
//! ```

mod allocator;
mod claim;
mod error;
mod node;
mod pool;
mod protocol;

pub use allocator::{
    Allocation, Allocator, DEFAULT_ASK_TIMEOUT, IpamStats, MAX_ABANDONED, MAX_BLOCKS_MOVED, Output,
    Request, Snapshot, Ticket,
};
pub use claim::{Claim, Claims, Merge};
pub use error::IpamError;
pub use node::NodeId;
pub use pool::{BlockId, FIRST_VNI, MAX_VNI, Pool, VNI_BLOCK_LEN, addr};
pub use protocol::{
    ANSWERS_TABLE, ASKS_TABLE, Answer, Ask, CLAIMS_TABLE, Entry, LOANS_TABLE, Loan, Outcome, Want,
};
