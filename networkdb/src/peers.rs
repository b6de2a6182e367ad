//! The set of nodes gossip picks its targets from.

use indexmap::IndexSet;
use rand::Rng;
use rand::seq::index::sample;

use crate::NodeName;

/// Node names with insertion, removal and uniform sampling in constant time.
///
/// Gossip samples targets from the active nodes many times a second, and while a cluster
/// forms their set changes as often: a list rebuilt at every change would cost each node the
/// square of the cluster's size during formation (the cube for the whole cluster). The order
/// is that of insertion, with removals filled from the end: deterministic for a given history.
#[derive(Clone, Debug, Default)]
pub(crate) struct PeerSet(IndexSet<NodeName, hashbrown::DefaultHashBuilder>);

impl PeerSet {
    /// Makes `name` a member or not.
    pub(crate) fn set(&mut self, name: &NodeName, member: bool) {
        if member {
            if !self.0.contains(name) {
                self.0.insert(name.clone());
            }
        } else {
            self.0.swap_remove(name);
        }
    }

    /// How many members.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Every member, in the set's order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &NodeName> {
        self.0.iter()
    }

    /// `min(count, len)` distinct members picked uniformly (moby's `mRandomNodes`).
    pub(crate) fn sample(&self, rng: &mut impl Rng, count: usize) -> Vec<NodeName> {
        sample_indices(rng, self.0.len(), count)
            .filter_map(|i| self.0.get_index(i).cloned())
            .collect()
    }
}

/// `min(count, len)` distinct indices below `len`, picked uniformly: the one sampling every
/// gossip target choice goes through.
pub(crate) fn sample_indices(
    rng: &mut impl Rng,
    len: usize,
    count: usize,
) -> impl Iterator<Item = usize> {
    sample(rng, len, count.min(len)).into_iter()
}
