//! The identity that owns blocks.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A node's stable identity as an owner of space: the agent's name, the same across its
/// restarts (not NetworkDB's name with its incarnation), so a restarted node keeps its blocks.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(String);

impl NodeId {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for NodeId {
    fn from(name: &str) -> Self {
        Self(name.to_owned())
    }
}

impl From<String> for NodeId {
    fn from(name: String) -> Self {
        Self(name)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
