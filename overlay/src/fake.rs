//! An in-memory dataplane for tests and the simulator, and the checker comparing it with a
//! peer DB.

use std::collections::BTreeMap;

use networkdb::NetworkId;

use crate::{Dataplane, DataplaneError, KernelState, NeighOp, PeerDb};

/// In-memory VXLAN devices, one per network, holding permanent neighbour and FDB entries.
///
/// Stricter than the kernel so planner bugs show: every add fails if the IP (neighbour) or
/// MAC (FDB) already has an entry, and every delete fails unless the exact entry exists.
#[derive(Clone, Debug, Default)]
pub struct FakeKernel {
    networks: BTreeMap<NetworkId, KernelState>,
    ops_applied: u64,
}

impl FakeKernel {
    /// No networks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates `network`'s device, empty; an existing one is left as it is.
    pub fn create_network(&mut self, network: &NetworkId) {
        self.networks.entry(network.clone()).or_default();
    }

    /// Destroys `network`'s device and its entries, as deleting the namespace does.
    pub fn delete_network(&mut self, network: &NetworkId) {
        self.networks.remove(network);
    }

    /// Whether `network` has a device.
    pub fn has_network(&self, network: &NetworkId) -> bool {
        self.networks.contains_key(network)
    }

    /// Every device's entries, by network.
    pub fn networks(&self) -> &BTreeMap<NetworkId, KernelState> {
        &self.networks
    }

    /// How many ops were applied successfully, in total.
    pub fn ops_applied(&self) -> u64 {
        self.ops_applied
    }
}

impl Dataplane for FakeKernel {
    fn apply(&mut self, network: &NetworkId, ops: &[NeighOp]) -> Result<(), DataplaneError> {
        let state = self
            .networks
            .get_mut(network)
            .ok_or_else(|| DataplaneError::NoNetwork(network.clone()))?;
        for (index, &op) in ops.iter().enumerate() {
            let ok = match op {
                NeighOp::AddNeigh { ip, mac } => {
                    let absent = !state.neighbours.contains_key(&ip);
                    if absent {
                        state.neighbours.insert(ip, mac);
                    }
                    absent
                }
                NeighOp::DelNeigh { ip, mac } => {
                    let present = state.neighbours.get(&ip) == Some(&mac);
                    if present {
                        state.neighbours.remove(&ip);
                    }
                    present
                }
                NeighOp::AddFdb { mac, vtep } => {
                    let absent = !state.fdb.contains_key(&mac);
                    if absent {
                        state.fdb.insert(mac, vtep);
                    }
                    absent
                }
                NeighOp::DelFdb { mac, vtep } => {
                    let present = state.fdb.get(&mac) == Some(&vtep);
                    if present {
                        state.fdb.remove(&mac);
                    }
                    present
                }
            };
            if !ok {
                let reason = match op {
                    NeighOp::AddNeigh { .. } | NeighOp::AddFdb { .. } => "entry exists",
                    NeighOp::DelNeigh { .. } | NeighOp::DelFdb { .. } => "no such entry",
                };
                return Err(DataplaneError::Op {
                    index,
                    op,
                    reason: reason.into(),
                });
            }
            self.ops_applied += 1;
        }
        Ok(())
    }

    fn state(&self, network: &NetworkId) -> Result<KernelState, DataplaneError> {
        self.networks
            .get(network)
            .cloned()
            .ok_or_else(|| DataplaneError::NoNetwork(network.clone()))
    }
}

/// Checks that `kernel` holds exactly what `db` wants: for every ready network, the
/// neighbour `ip -> mac` of each IP's chosen remote claimant and the FDB `mac -> vtep` of
/// each chosen remote endpoint, nothing for local endpoints; for every other network, no
/// entries. Also checks the peer DB's incremental bookkeeping against a recomputation from
/// its endpoints. The error describes the first difference.
pub fn check(kernel: &FakeKernel, db: &PeerDb) -> Result<(), String> {
    for (id, peers) in db.networks() {
        let recomputed = db.recompute(peers);
        if *peers.desired() != recomputed {
            return Err(format!(
                "network {id}: peer DB wants {:?} but its endpoints call for {recomputed:?}",
                peers.desired()
            ));
        }
        let programmed = kernel.networks.get(id);
        if peers.is_ready() {
            match programmed {
                Some(state) if state == peers.desired() => {}
                Some(state) => {
                    return Err(format!(
                        "network {id}: kernel holds {state:?}, peer DB wants {:?}",
                        peers.desired()
                    ));
                }
                None => return Err(format!("network {id} is ready but has no device")),
            }
        } else if programmed.is_some_and(|s| !s.is_empty()) {
            return Err(format!("network {id} is not ready but has entries"));
        }
    }
    for (id, state) in &kernel.networks {
        if db.wanted(id).is_none() && !state.is_empty() {
            return Err(format!(
                "network {id} is not ready in the peer DB but has entries"
            ));
        }
    }
    Ok(())
}
