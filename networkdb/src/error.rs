//! Errors of the public API, with libnetwork's meanings and texts.

use crate::{Key, NetworkId, NodeName, TableName};

/// A refused API call. Unless a variant says otherwise, state is unchanged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `create_entry` over a visible entry.
    #[error(
        "cannot create entry in table {table} with network id {network} and key {key}, already exists"
    )]
    EntryExists {
        /// Table.
        table: TableName,
        /// Network.
        network: NetworkId,
        /// Key.
        key: Key,
    },
    /// `update_entry` of an absent, deleted or hidden entry.
    #[error(
        "cannot update entry as the entry in table {table} with network id {network} and key {key} does not exist"
    )]
    UpdateNotFound {
        /// Table.
        table: TableName,
        /// Network.
        network: NetworkId,
        /// Key.
        key: Key,
    },
    /// `delete_entry` of an absent, deleted or hidden entry.
    #[error(
        "cannot delete entry {table} with network id {network} and key {key} does not exist or is already being deleted"
    )]
    DeleteNotFound {
        /// Table.
        table: TableName,
        /// Network.
        network: NetworkId,
        /// Key.
        key: Key,
    },
    /// `get_entry` of an absent entry.
    #[error("could not get entry in table {table} with network id {network} and key {key}")]
    NotFound {
        /// Table.
        table: TableName,
        /// Network.
        network: NetworkId,
        /// Key.
        key: Key,
    },
    /// `get_entry` of a tombstone.
    #[error(
        "entry in table {table} network id {network} and key {key} deleted and pending garbage collection"
    )]
    Deleted {
        /// Table.
        table: TableName,
        /// Network.
        network: NetworkId,
        /// Key.
        key: Key,
    },
    /// `get_entry` of an entry whose owner failed.
    #[error(
        "entry in table {table} network id {network} and key {key} is owned by a failed node and hidden until it returns"
    )]
    Hidden {
        /// Table.
        table: TableName,
        /// Network.
        network: NetworkId,
        /// Key.
        key: Key,
    },
    /// `join_network` of a network already joined and not being left.
    #[error("networkdb: network {0} is already joined")]
    AlreadyJoined(NetworkId),
    /// `leave_network` of a network not joined (or already being left).
    #[error("could not find self node for network {0} while trying to leave")]
    NotJoined(NetworkId),
    /// A bulk sync was asked of a node this node does not know.
    #[error("cannot bulk sync with unknown node {0}")]
    UnknownNode(NodeName),
    /// A name was empty or contained a character the diagnostic paths reserve.
    #[error("invalid {what} {name:?}: must be 1 to 255 bytes")]
    InvalidName {
        /// What was named ("table", "network id").
        what: &'static str,
        /// The name given.
        name: String,
    },
}
