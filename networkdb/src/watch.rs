//! Watch filters and events.

use bytes::Bytes;

use crate::{Key, NetworkId, TableName};

/// The table of node membership events (libnetwork `NodeTable`): key = node name, value =
/// `{"Addr":"<ip>"}`.
pub const NODE_TABLE: &str = "NodeTable";

/// Identifies a watch registered with [`NetworkDb::watch`](crate::NetworkDb::watch).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WatchId(pub u64);

/// Which entries a watch sees; `None` matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchFilter {
    /// Only this table.
    pub table: Option<TableName>,
    /// Only this network.
    pub network: Option<NetworkId>,
    /// Also this node's own writes (creates, updates and deletes through the API), in the
    /// order they are made, and its own entries in the snapshot; so a consumer builds its view
    /// from this one stream. Off by default, as libnetwork's watches do.
    pub own: bool,
}

impl WatchFilter {
    pub(crate) fn matches(&self, table: &TableName, network: &NetworkId) -> bool {
        self.table.as_ref().is_none_or(|t| t == table)
            && self.network.as_ref().is_none_or(|n| n == network)
    }
}

/// A change as the local node sees it: create (`prev` none), update (both), delete (`value`
/// none, `prev` is the last value seen).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    /// The table.
    pub table: TableName,
    /// The network (empty for [`NODE_TABLE`]).
    pub network: NetworkId,
    /// The key.
    pub key: Key,
    /// The value seen before, if the entry was visible.
    pub prev: Option<Bytes>,
    /// The value seen now, if the entry is visible.
    pub value: Option<Bytes>,
}

impl WatchEvent {
    /// The entry appeared.
    pub fn is_create(&self) -> bool {
        self.prev.is_none() && self.value.is_some()
    }

    /// The entry's value changed.
    pub fn is_update(&self) -> bool {
        self.prev.is_some() && self.value.is_some()
    }

    /// The entry disappeared.
    pub fn is_delete(&self) -> bool {
        self.prev.is_some() && self.value.is_none()
    }
}
