//! Newtypes for the names NetworkDB keys its state by.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The first eight bytes of `s`, zero-padded, as a big-endian number: comparing two of them
/// orders names as comparing the strings would, up to their eighth byte.
fn head_of(s: &str) -> u64 {
    let bytes = s.as_bytes();
    let n = bytes.len().min(8);
    let mut head = [0u8; 8];
    head[..n].copy_from_slice(&bytes[..n]);
    u64::from_be_bytes(head)
}

macro_rules! name_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        ///
        /// Cheap to clone (shared). Ordered as its string, but compared by a number holding its
        /// first eight bytes first: the maps keyed by names find most keys without reading
        /// the strings.
        #[derive(Clone)]
        pub struct $name {
            head: u64,
            name: Arc<str>,
        }

        impl $name {
            /// Wraps a string.
            pub fn new(name: impl Into<Arc<str>>) -> Self {
                let name = name.into();
                Self {
                    head: head_of(&name),
                    name,
                }
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.name
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.head == other.head && self.name == other.name
            }
        }

        impl Eq for $name {}

        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
                Some(self.cmp(other))
            }
        }

        impl Ord for $name {
            fn cmp(&self, other: &Self) -> Ordering {
                self.head
                    .cmp(&other.head)
                    .then_with(|| self.name.cmp(&other.name))
            }
        }

        impl Hash for $name {
            // As the string hashes: maps keyed by names are searched with `&str`.
            fn hash<H: Hasher>(&self, state: &mut H) {
                self.as_str().hash(state);
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.name)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                Arc::<str>::deserialize(deserializer).map(Self::new)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self::new(s)
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self::new(s)
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.name
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.name
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.name
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.name)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.name, f)
            }
        }
    };
}

name_type!(
    /// A node's unique name in the cluster (libnetwork: `NodeID`, 12 hex characters per start).
    NodeName
);
name_type!(
    /// An opaque network identifier; must not be empty.
    NetworkId
);
name_type!(
    /// The name of a table, such as `overlay_peer_table` or `endpoint_table`.
    TableName
);
name_type!(
    /// The key of an entry inside a table and network.
    Key
);

/// A Lamport timestamp (serf semantics, see [`LamportClock`](crate::LamportClock)).
#[derive(
    Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct LTime(pub u64);

impl fmt::Display for LTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_order_as_their_strings() {
        let names = [
            "",
            "\0",
            "a",
            "a\0",
            "a\0b",
            "ab",
            "node1",
            "node10",
            "node100000",
            "node100001",
            "node2",
            "nodf",
            "z",
            "\u{e9}t\u{e9}",
        ];
        for a in names {
            for b in names {
                let (x, y) = (NodeName::from(a), NodeName::from(b));
                assert_eq!(x.cmp(&y), a.cmp(b), "{a:?} vs {b:?}");
                assert_eq!(x == y, a == b, "{a:?} vs {b:?}");
            }
        }
    }
}
