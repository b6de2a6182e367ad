//! Seeds derived from the master seed: one stream per purpose and per index, so that adding
//! a consumer of randomness never shifts another's.

/// The network model's stream (loss, duplication, latency).
pub(crate) const NETWORK: u64 = 1;
/// The workload's stream.
pub(crate) const WORKLOAD: u64 = 2;
/// The scenario script's stream (attachments, random faults).
pub(crate) const SCRIPT: u64 = 3;
/// Each node start's stream; the index is `host << 20 | incarnation`.
pub(crate) const NODE: u64 = 4;
/// Clock offsets.
pub(crate) const CLOCK: u64 = 5;
/// Stream of the node cores' generators (network and endpoint IDs).
pub(crate) const CORE: u64 = 6;
/// The IPAM workload's stream.
pub(crate) const IPAM: u64 = 7;

/// A seed for `(purpose, index)` under `master` (SplitMix64 finalizer over the three).
pub(crate) fn derive(master: u64, purpose: u64, index: u64) -> u64 {
    let mut x = master;
    for v in [purpose, index] {
        x = mix(x ^ mix(v.wrapping_add(0x9e37_79b9_7f4a_7c15)));
    }
    x
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_differ() {
        assert_ne!(derive(1, NETWORK, 0), derive(1, WORKLOAD, 0));
        assert_ne!(derive(1, NODE, 0), derive(1, NODE, 1));
        assert_ne!(derive(1, NODE, 0), derive(2, NODE, 0));
        assert_eq!(derive(7, NODE, 3), derive(7, NODE, 3));
    }
}
