//! The executor interface: something that holds per-network VXLAN neighbour and FDB tables
//! and applies [`NeighOp`]s to them.

use networkdb::NetworkId;

use crate::{KernelState, NeighOp};

/// Applies planned operations to networks' VXLAN devices and reports what they hold.
///
/// Implemented by [`FakeKernel`](crate::FakeKernel) for tests and the simulator. The netlink
/// executor (a later `overlay::netlink` module, the only code importing `rtnetlink`) will
/// mirror this trait with `async fn`s on a tokio task: `apply` sends the ops as one batch of
/// RTM_NEWNEIGH / RTM_DELNEIGH requests on the network's VXLAN device (FDB adds with
/// `NLM_F_REPLACE`, deletes with the family and flags of the add, plus the `NTF_MASTER`
/// purge after an FDB delete) and `state` dumps the device's permanent entries. The shell
/// drives either the same way: `plan(wanted, &dp.state(nid)?)`, then `dp.apply(nid, &ops)`.
pub trait Dataplane {
    /// Applies `ops` to `network`'s device, in order, stopping at the first failure.
    fn apply(&mut self, network: &NetworkId, ops: &[NeighOp]) -> Result<(), DataplaneError>;

    /// The permanent neighbour and FDB entries on `network`'s device.
    fn state(&self, network: &NetworkId) -> Result<KernelState, DataplaneError>;
}

/// Why a [`Dataplane`] call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DataplaneError {
    /// The network has no VXLAN device. Nothing was changed.
    #[error("network {0} has no dataplane")]
    NoNetwork(NetworkId),
    /// Operation `index` of the batch failed: the ops before it were applied, it and the ops
    /// after it were not. Re-planning from [`Dataplane::state`] repairs the device.
    #[error("op {index} ({op:?}) failed: {reason}")]
    Op {
        /// The failed op's position in the batch.
        index: usize,
        /// The failed op.
        op: NeighOp,
        /// Why it failed (for the fake: the entry existed or was missing; for netlink: the
        /// errno).
        reason: String,
    },
}
