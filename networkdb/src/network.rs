//! Network attachments: remote nodes' and this node's.

use std::time::Instant;

use crate::queue::BroadcastQueue;
use crate::{Key, LTime, TableName};

/// A remote node's attachment to a network.
#[derive(Clone, Debug)]
pub(crate) struct Attachment {
    pub(crate) ltime: LTime,
    pub(crate) leaving: bool,
    pub(crate) reap_at: Option<Instant>,
    /// The digests' hash of this record ([`attachment_hash`](crate::digest::attachment_hash)),
    /// kept with it so that a summary only adds numbers: recomputed whenever `ltime` or
    /// `leaving` changes.
    pub(crate) hash: u64,
}

/// Invalidation key of a table queue: one queued event per (table, key).
pub(crate) type TableKey = (TableName, Key);

/// This node's attachment to a network, with its gossip queues.
#[derive(Debug)]
pub(crate) struct LocalNetwork {
    pub(crate) ltime: LTime,
    pub(crate) leaving: bool,
    pub(crate) reap_at: Option<Instant>,
    /// The join bulk sync completed: only then are received events relayed
    /// (moby/libnetwork#2216).
    pub(crate) in_sync: bool,
    /// Events this node originated: drained first.
    pub(crate) local: BroadcastQueue<TableKey>,
    /// Events relayed for others: drained into the space left.
    pub(crate) relay: BroadcastQueue<TableKey>,
    /// Messages sent by gossip since the network was joined.
    pub(crate) messages_sent: u64,
    /// The join had no peer to bulk-sync with (none known yet): the first peer learnt to be
    /// attached is asked instead.
    pub(crate) joined_alone: bool,
}

impl LocalNetwork {
    pub(crate) fn new(ltime: LTime, max_queue_len: usize) -> Self {
        Self {
            ltime,
            leaving: false,
            reap_at: None,
            in_sync: false,
            local: BroadcastQueue::new(max_queue_len),
            relay: BroadcastQueue::new(max_queue_len),
            messages_sent: 0,
            joined_alone: false,
        }
    }
}

/// Per-network statistics (`/networkstats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetworkStats {
    /// Entries of the network held locally, tombstones and hidden entries included.
    pub entries: usize,
    /// Events queued for gossip, local and relayed.
    pub queue_len: usize,
    /// Of which relayed for other nodes.
    pub relay_queue_len: usize,
    /// Gossip messages sent for this network since it was joined.
    pub messages_sent: u64,
    /// Whether this node is leaving the network.
    pub leaving: bool,
    /// Active peers attached to the network, this node excluded.
    pub peers: usize,
}
