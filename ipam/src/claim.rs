//! Who owns each block: claims `(owner, epoch)` merged by the highest epoch.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{BlockId, NodeId};

/// The owner of a block from some epoch on. Only the owner of a block at epoch `e` writes its
/// claim of epoch `e + 1`, so every epoch of a block has one claim and replicas that keep the
/// highest epoch agree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The node that owns the block.
    pub owner: NodeId,
    /// How many times the block changed owner since the pool's origin owned it (epoch 0).
    pub epoch: u64,
}

/// What merging a claim into a [`Claims`] replica did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merge {
    /// The claim is newer than what the replica held: it now holds it.
    Newer,
    /// The replica already held this claim or a newer one: nothing changed.
    Stale,
    /// The replica holds a different claim of the same epoch. This breaks the one-writer rule
    /// (a donor that lost state it had not saved, or reclaims racing each other); the claim of
    /// the smaller owner name is kept on every node, so replicas still agree, and the conflict
    /// is counted.
    Conflict,
}

/// A node's replica of every block's claim. A block without a claim belongs to the pool's
/// origin at epoch 0. Claims are never removed: a delete in the table that carries them (its
/// writer failed or left) says nothing about who owns the block.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    claims: BTreeMap<BlockId, Claim>,
}

impl Claims {
    /// The claim of `block`, or `None` while the origin still owns it at epoch 0.
    pub fn get(&self, block: BlockId) -> Option<&Claim> {
        self.claims.get(&block)
    }

    /// The owner of `block`: its claim's, else `origin`.
    pub fn owner<'a>(&'a self, block: BlockId, origin: &'a NodeId) -> &'a NodeId {
        self.claims.get(&block).map_or(origin, |c| &c.owner)
    }

    /// The epoch of `block`'s newest known claim (0 for the origin's).
    pub fn epoch(&self, block: BlockId) -> u64 {
        self.claims.get(&block).map_or(0, |c| c.epoch)
    }

    /// Merges `claim` of `block`: the highest epoch wins.
    pub fn merge(&mut self, block: BlockId, claim: Claim) -> Merge {
        match self.claims.get(&block) {
            Some(held) if held.epoch > claim.epoch || *held == claim => Merge::Stale,
            Some(held) if held.epoch == claim.epoch => {
                if claim.owner < held.owner {
                    self.claims.insert(block, claim);
                }
                Merge::Conflict
            }
            None if claim.epoch == 0 => Merge::Stale,
            _ => {
                self.claims.insert(block, claim);
                Merge::Newer
            }
        }
    }

    /// Every claim, by block.
    pub fn iter(&self) -> impl Iterator<Item = (BlockId, &Claim)> {
        self.claims.iter().map(|(b, c)| (*b, c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(owner: &str, epoch: u64) -> Claim {
        Claim {
            owner: NodeId::from(owner),
            epoch,
        }
    }

    #[test]
    fn the_highest_epoch_wins_in_any_order() {
        let origin = NodeId::from("a");
        let updates = [claim("b", 1), claim("c", 2), claim("b", 3)];
        let mut orders = vec![];
        for i in 0..3 {
            for j in 0..3 {
                for k in 0..3 {
                    if i != j && j != k && i != k {
                        orders.push([i, j, k]);
                    }
                }
            }
        }
        for order in orders {
            let mut r = Claims::default();
            for i in order {
                r.merge(BlockId(7), updates[i].clone());
                r.merge(BlockId(7), updates[i].clone());
            }
            assert_eq!(r.owner(BlockId(7), &origin), &NodeId::from("b"));
            assert_eq!(r.epoch(BlockId(7)), 3);
        }
        assert_eq!(Claims::default().owner(BlockId(7), &origin), &origin);
    }

    #[test]
    fn a_same_epoch_conflict_resolves_the_same_everywhere() {
        let mut x = Claims::default();
        let mut y = Claims::default();
        assert_eq!(x.merge(BlockId(1), claim("c", 4)), Merge::Newer);
        assert_eq!(x.merge(BlockId(1), claim("b", 4)), Merge::Conflict);
        assert_eq!(y.merge(BlockId(1), claim("b", 4)), Merge::Newer);
        assert_eq!(y.merge(BlockId(1), claim("c", 4)), Merge::Conflict);
        assert_eq!(x, y);
    }
}
