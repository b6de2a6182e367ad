//! Why an allocation was refused.

use ipnet::Ipv4Net;

use crate::NodeId;

/// Why an allocation or a request was refused. None of them changes the allocator's state.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IpamError {
    /// A subnet an address pool cannot be made of (prefix length outside 8..=30, or host bits
    /// set).
    #[error("invalid subnet {0}: an IPv4 network address with a prefix length of 8 to 30")]
    BadSubnet(Ipv4Net),
    /// The value is not one the pool hands out (outside it, or reserved such as the gateway).
    #[error("{0} is not in the pool or is reserved")]
    NotInPool(u32),
    /// The value is held by an endpoint somewhere in the cluster.
    #[error("{0} is already in use")]
    Taken(u32),
    /// Every value of the pool is held, or every node that owns space refused: the pool has
    /// `capacity` values.
    #[error("no free value: all {capacity} values are in use or owned by unreachable nodes")]
    Exhausted {
        /// How many values the pool has in all.
        capacity: u64,
    },
    /// The value's block belongs to a node that is not reachable now.
    #[error("the owner of {value}'s block, {owner}, is not reachable")]
    OwnerUnreachable {
        /// The value asked for.
        value: u32,
        /// The node that owns its block.
        owner: NodeId,
    },
    /// The node is alive (a live member, or this node): its space is not reclaimed.
    #[error("{0} is alive: only the space of a node gone for good is reclaimed")]
    Alive(NodeId),
    /// A table entry that does not decode; it is ignored.
    #[error("malformed {table} entry {key:?}")]
    Malformed {
        /// The table.
        table: &'static str,
        /// The entry's key.
        key: String,
    },
}
