//! Pools of values cut into fixed, aligned blocks.

use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::IpamError;

/// The first VNI the VNI pool hands out (libnetwork's swarm manager starts there; lower VNIs
/// stay free for networks created with an explicit VNI).
pub const FIRST_VNI: u32 = 4096;

/// The largest VNI (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;

/// Values per VNI block.
pub const VNI_BLOCK_LEN: u32 = 64;

/// The longest block prefix of an address pool: 16 addresses. A subnet is cut into at least 16
/// blocks when it can be ...
const MAX_BLOCK_PREFIX: u8 = 28;

/// ... and into blocks of 64 addresses (a /26) when it is larger.
const MIN_BLOCK_PREFIX: u8 = 26;

/// The index of a block in its pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BlockId(pub u32);

/// A range of values (IPv4 addresses as `u32`, or VNIs) cut into aligned blocks of one length,
/// with some values reserved (never handed out).
///
/// Two nodes build the same pool from the same spec (a subnet, or the VNI range), so block
/// numbers mean the same everywhere.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    /// The first value of block 0.
    base: u32,
    /// Values per block (a power of two).
    block_len: u32,
    /// How many blocks.
    blocks: u32,
    /// The values that may be handed out: within `base..base + block_len * blocks`.
    usable: RangeInclusive<u32>,
    /// Values inside `usable` never handed out (an address pool's gateway).
    reserved: Vec<u32>,
}

impl Pool {
    /// The host addresses of `subnet`: its network and broadcast addresses are outside the
    /// usable range and its gateway (the first host address) is reserved. A /24 has 16 blocks
    /// of 16 addresses; a /22 or larger subnet has blocks of 64. Prefix lengths 8..=30.
    pub fn for_subnet(subnet: Ipv4Net) -> Result<Self, IpamError> {
        let prefix = subnet.prefix_len();
        if !(8..=30).contains(&prefix) || subnet.addr() != subnet.network() {
            return Err(IpamError::BadSubnet(subnet));
        }
        let block_prefix = (prefix + 4)
            .clamp(MIN_BLOCK_PREFIX, MAX_BLOCK_PREFIX)
            .max(prefix);
        let block_len = 1u32 << (32 - block_prefix);
        let base = u32::from(subnet.network());
        let gateway = base + 1;
        Ok(Self {
            base,
            block_len,
            blocks: 1 << (block_prefix - prefix),
            usable: gateway..=u32::from(subnet.broadcast()) - 1,
            reserved: vec![gateway],
        })
    }

    /// The VNI range [`FIRST_VNI`]..=[`MAX_VNI`] in blocks of [`VNI_BLOCK_LEN`].
    pub fn vnis() -> Self {
        Self {
            base: FIRST_VNI,
            block_len: VNI_BLOCK_LEN,
            blocks: (MAX_VNI - FIRST_VNI + 1).div_ceil(VNI_BLOCK_LEN),
            usable: FIRST_VNI..=MAX_VNI,
            reserved: Vec::new(),
        }
    }

    /// How many blocks the pool has.
    pub fn blocks(&self) -> u32 {
        self.blocks
    }

    /// How many values the pool can hand out in all.
    pub fn capacity(&self) -> u64 {
        let span = u64::from(*self.usable.end()) - u64::from(*self.usable.start()) + 1;
        span - self.reserved.len() as u64
    }

    /// The block holding `value`, if the value may be handed out.
    pub fn block_of(&self, value: u32) -> Option<BlockId> {
        self.is_usable(value)
            .then(|| BlockId((value - self.base) / self.block_len))
    }

    /// Whether `value` may be handed out: in the usable range and not reserved.
    pub fn is_usable(&self, value: u32) -> bool {
        self.usable.contains(&value) && !self.reserved.contains(&value)
    }

    /// The values of `block` that may be handed out, in order.
    pub fn values(&self, block: BlockId) -> impl Iterator<Item = u32> + '_ {
        let start = self.base + block.0 * self.block_len;
        let end = start + (self.block_len - 1);
        (start..=end).filter(|v| self.is_usable(*v))
    }

    /// Every block id, in order.
    pub fn block_ids(&self) -> impl Iterator<Item = BlockId> {
        (0..self.blocks).map(BlockId)
    }
}

/// The address a pool value stands for.
pub fn addr(value: u32) -> Ipv4Addr {
    Ipv4Addr::from(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn a_slash_24_has_16_blocks_of_16_and_reserves_network_gateway_broadcast() {
        let pool = Pool::for_subnet(net("198.18.10.0/24")).unwrap();
        assert_eq!(pool.blocks(), 16);
        assert_eq!(pool.capacity(), 253);
        let first: Vec<Ipv4Addr> = pool.values(BlockId(0)).map(addr).collect();
        assert_eq!(first.len(), 14, "network and gateway are not handed out");
        assert_eq!(first[0], Ipv4Addr::new(198, 18, 10, 2));
        let last: Vec<u32> = pool.values(BlockId(15)).collect();
        assert_eq!(last.len(), 15, "the broadcast address is not handed out");
        assert_eq!(
            pool.block_of(u32::from(Ipv4Addr::new(198, 18, 10, 17))),
            Some(BlockId(1))
        );
        assert_eq!(
            pool.block_of(u32::from(Ipv4Addr::new(198, 18, 10, 1))),
            None
        );
        assert_eq!(
            pool.block_of(u32::from(Ipv4Addr::new(198, 18, 10, 255))),
            None
        );
        assert_eq!(
            pool.block_of(u32::from(Ipv4Addr::new(198, 18, 11, 5))),
            None
        );
    }

    #[test]
    fn block_sizes_follow_the_subnet() {
        let len = |s| {
            let p = Pool::for_subnet(net(s)).unwrap();
            (p.blocks(), p.block_len)
        };
        assert_eq!(len("198.18.0.0/16"), (1024, 64));
        assert_eq!(len("198.18.0.0/22"), (16, 64));
        assert_eq!(len("198.18.0.0/26"), (4, 16));
        assert_eq!(len("198.18.0.0/29"), (1, 8));
        assert_eq!(len("198.18.0.0/30"), (1, 4));
        let tiny = Pool::for_subnet(net("198.18.0.0/30")).unwrap();
        assert_eq!(
            tiny.capacity(),
            1,
            "a /30 has one address besides its gateway"
        );
        assert!(Pool::for_subnet(net("198.18.0.0/31")).is_err());
        assert!(Pool::for_subnet(net("198.18.0.1/24")).is_err());
    }

    #[test]
    fn the_vni_pool_covers_its_range() {
        let pool = Pool::vnis();
        assert_eq!(pool.block_of(FIRST_VNI), Some(BlockId(0)));
        assert_eq!(pool.block_of(FIRST_VNI - 1), None);
        assert_eq!(pool.block_of(MAX_VNI), Some(BlockId(pool.blocks() - 1)));
        assert_eq!(pool.capacity(), u64::from(MAX_VNI - FIRST_VNI + 1));
    }
}
