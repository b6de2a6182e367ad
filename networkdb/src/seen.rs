//! Gossip parts already settled, recognised before they are decoded.

use hashbrown::HashSet;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Parts remembered per generation; two generations are kept.
///
/// Copies of an event arrive within its retransmissions (a few gossip rounds): a generation
/// holds a few seconds of a busy node's parts. A part that has left both generations is
/// decoded and found stale as before; remembering is only a shortcut.
pub(crate) const SEEN_PER_GENERATION: usize = 4096;

/// The hashes of recent gossip parts that were applied or found stale.
///
/// Most parts a node receives are copies of events it already holds (every event is relayed
/// by every peer several times): decoding each (names, keys, values) to find it stale costs
/// more than everything else a node does. A part whose exact bytes were settled before is
/// settled again, so it is skipped before decoding. Parts that were refused (an owner not yet
/// known as attached, this node's own events) are never remembered: a later copy may apply.
/// Nor does anything outlive a removal of state ([`clear`](Self::clear)).
///
/// The hash is seeded per node with a secret from its random source, so no peer can craft a
/// part that hides another. Two different parts colliding in 64 bits is possible, in theory: the
/// newer would be dropped as a copy, and the next digest round repairs it like a lost datagram.
#[derive(Debug)]
pub(crate) struct SeenParts {
    seed: u64,
    current: HashSet<u64>,
    previous: HashSet<u64>,
}

impl SeenParts {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            seed,
            current: HashSet::new(),
            previous: HashSet::new(),
        }
    }

    /// The hash `part` is remembered under.
    pub(crate) fn hash(&self, part: &[u8]) -> u64 {
        xxh3_64_with_seed(part, self.seed)
    }

    /// Whether a part with this hash was settled recently.
    pub(crate) fn contains(&self, hash: u64) -> bool {
        self.current.contains(&hash) || self.previous.contains(&hash)
    }

    /// Forgets every part: state was removed (entries purged or reaped, attachments or nodes
    /// dropped), and an old event may apply again, as it would have without this shortcut.
    pub(crate) fn clear(&mut self) {
        self.current.clear();
        self.previous.clear();
    }

    /// Remembers a settled part; the older generation is forgotten when the newer is full.
    pub(crate) fn insert(&mut self, hash: u64) {
        if self.current.len() >= SEEN_PER_GENERATION {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_two_generations_then_forgets() {
        let mut seen = SeenParts::new(7);
        let first = seen.hash(b"first");
        seen.insert(first);
        assert!(seen.contains(first));
        for i in 0..SEEN_PER_GENERATION as u64 {
            seen.insert(seen.hash(&i.to_le_bytes()));
        }
        assert!(seen.contains(first), "still in the previous generation");
        for i in 0..SEEN_PER_GENERATION as u64 {
            seen.insert(seen.hash(&(i + 1_000_000).to_le_bytes()));
        }
        assert!(!seen.contains(first), "both generations turned over");
    }

    #[test]
    fn the_seed_changes_the_hash() {
        assert_ne!(SeenParts::new(1).hash(b"x"), SeenParts::new(2).hash(b"x"));
    }
}
