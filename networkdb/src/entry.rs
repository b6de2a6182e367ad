//! Table entries.

use std::time::Instant;

use bytes::Bytes;

use crate::{LTime, NodeName};

/// One entry of a table, stored under `(network, table, key)`.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    /// The node that made the last change (libnetwork: `node`).
    pub(crate) owner: NodeName,
    /// Table-clock time of the last change.
    pub(crate) ltime: LTime,
    /// The value; a tombstone keeps the last one.
    pub(crate) value: Bytes,
    /// A tombstone: deleted, kept to stop older events from bringing it back.
    pub(crate) deleting: bool,
    /// Its owner failed: kept but invisible until the owner returns or it is reaped.
    pub(crate) hidden: bool,
    /// When a tombstone or hidden entry is removed.
    pub(crate) reap_at: Option<Instant>,
    /// The digests' hash of its table and key ([`key_hash`](crate::digest::key_hash)), set
    /// when it is stored.
    pub(crate) key_hash: u64,
    /// The digests' hash of its version (owner, time, tombstone): kept with the entry, so a
    /// summary sums numbers instead of hashing every entry. Set when it is stored; changing
    /// the owner, the time or `deleting` of a stored entry calls [`rehash`](Self::rehash).
    pub(crate) version: u64,
}

impl Entry {
    /// A new entry; its hashes are set when [`NetworkDb::put_entry`](crate::NetworkDb) stores
    /// it.
    pub(crate) fn new(
        owner: NodeName,
        ltime: LTime,
        value: Bytes,
        deleting: bool,
        hidden: bool,
        reap_at: Option<Instant>,
    ) -> Self {
        Self {
            owner,
            ltime,
            value,
            deleting,
            hidden,
            reap_at,
            key_hash: 0,
            version: 0,
        }
    }

    /// Recomputes [`version`](Self::version) after a change of the owner, time or tombstone.
    pub(crate) fn rehash(&mut self) {
        self.version = crate::digest::entry_hash(self.key_hash, self);
    }

    /// Whether readers see the entry.
    pub(crate) fn visible(&self) -> bool {
        !self.deleting && !self.hidden
    }

    /// The value readers see.
    pub(crate) fn visible_value(&self) -> Option<&Bytes> {
        self.visible().then_some(&self.value)
    }

    /// Whole seconds left before reaping, for the wire: never 0 for an entry with a deadline,
    /// because 0 means "unknown" and the receiver would give an expired tombstone a full new
    /// life (moby/libnetwork#1944).
    pub(crate) fn residual_secs(&self, now: Instant) -> u32 {
        match self.reap_at {
            Some(at) => {
                let secs = at.saturating_duration_since(now).as_secs();
                u32::try_from(secs).unwrap_or(u32::MAX).max(1)
            }
            None => 0,
        }
    }

    /// A tombstone or hidden entry past its deadline, waiting for the reaper: logically gone.
    pub(crate) fn expired(&self, now: Instant) -> bool {
        !self.visible() && self.reap_at.is_some_and(|at| at <= now)
    }
}

/// One element of [`NetworkDb::table_by_network`](crate::NetworkDb::table_by_network).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableElem {
    /// The value.
    pub value: Bytes,
    /// The node that owns the entry.
    pub owner: NodeName,
}
