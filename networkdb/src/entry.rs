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
}

impl Entry {
    /// Whether readers see the entry.
    pub(crate) fn visible(&self) -> bool {
        !self.deleting && !self.hidden
    }

    /// The value readers see.
    pub(crate) fn visible_value(&self) -> Option<&Bytes> {
        self.visible().then_some(&self.value)
    }

    /// Whole seconds left before reaping (at least 1 while not yet due), for the wire.
    pub(crate) fn residual_secs(&self, now: Instant) -> u32 {
        match self.reap_at {
            Some(at) if at > now => {
                let secs = at.duration_since(now).as_secs();
                u32::try_from(secs).unwrap_or(u32::MAX).max(1)
            }
            _ => 0,
        }
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
