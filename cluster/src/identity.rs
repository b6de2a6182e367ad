//! The SWIM identity of a node: name, address, incarnation.

use std::net::SocketAddr;
use std::sync::Arc;

use networkdb::NodeName;
use serde::{Deserialize, Serialize};

/// A node's identity in the membership protocol.
///
/// `name` is the configured node name (the name its TLS certificate carries); `incarnation`
/// is chosen at each start (later starts get greater values, e.g. boot time in milliseconds),
/// so a restarted node is a new member; `bump` counts automatic rejoins within one run (after
/// the cluster declared this node down by mistake).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeIdentity {
    /// The configured node name.
    pub name: Arc<str>,
    /// The address SWIM and NetworkDB datagrams and streams reach it at.
    pub addr: SocketAddr,
    /// Chosen at start; greater for a later start.
    pub incarnation: u64,
    /// Rejoins within this run.
    pub bump: u16,
}

impl NodeIdentity {
    /// A first identity for a start.
    pub fn new(name: impl Into<Arc<str>>, addr: SocketAddr, incarnation: u64) -> Self {
        Self {
            name: name.into(),
            addr,
            incarnation,
            bump: 0,
        }
    }

    /// An identity usable only to announce to an address whose member is unknown: SWIM
    /// accepts an announce addressed to its own address whatever the identity.
    pub fn probe(addr: SocketAddr) -> Self {
        Self {
            name: "".into(),
            addr,
            incarnation: 0,
            bump: 0,
        }
    }

    /// The NetworkDB name of this run: `name@incarnation`. Stable across automatic rejoins,
    /// new at each start, so a restarted node never inherits the entries of its previous run.
    pub fn db_name(&self) -> NodeName {
        NodeName::from(format!("{}@{}", self.name, self.incarnation))
    }
}

/// The configured node name inside a NetworkDB name (`name@incarnation`).
pub fn base_name(db_name: &str) -> &str {
    db_name.rsplit_once('@').map_or(db_name, |(base, _)| base)
}

impl foca::Identity for NodeIdentity {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Self {
            bump: self.bump.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.incarnation, self.bump) > (adversary.incarnation, adversary.bump)
    }
}

#[cfg(test)]
mod tests {
    use foca::Identity;

    use super::*;

    #[test]
    fn renewal_wins_and_keeps_db_name() {
        let a = NodeIdentity::new("node-a", "127.0.0.1:7946".parse().unwrap(), 5);
        let b = a.renew().unwrap();
        assert!(b.win_addr_conflict(&a));
        assert!(!a.win_addr_conflict(&b));
        assert_eq!(a.db_name(), b.db_name());
        let restarted = NodeIdentity::new("node-a", a.addr, 6);
        assert!(restarted.win_addr_conflict(&b));
        assert_ne!(restarted.db_name(), a.db_name());
        assert_eq!(base_name(restarted.db_name().as_str()), "node-a");
        assert_eq!(base_name("plain"), "plain");
    }
}
