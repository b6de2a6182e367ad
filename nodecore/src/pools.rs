//! The node's allocators, one per pool (every network's addresses, and the VNIs), and how
//! their entries travel: in the catalogue's NetworkDB network, which every node joins, under
//! the keys `<pool>/<entry key>` of the `ipam` tables. So the origin of a pool (the creator
//! of a network) is reachable whether or not it has endpoints on the network, and a node
//! learns the claims of a pool before its first endpoint there.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use ipam::{Allocation, Allocator, Entry, IpamError, NodeId, Pool, Request, Ticket};
use networkdb::NetworkDb;

use crate::catalogue::GLOBAL_NETWORK;

/// The tables of the IPAM entries.
pub const IPAM_TABLES: [&str; 4] = [
    ipam::CLAIMS_TABLE,
    ipam::ASKS_TABLE,
    ipam::ANSWERS_TABLE,
    ipam::LOANS_TABLE,
];

/// What the pools ask of the core.
#[derive(Debug)]
pub(crate) enum PoolOutput {
    /// Save the state (the snapshots changed) before what follows.
    Persist,
    /// Write an entry in [`GLOBAL_NETWORK`].
    Put {
        table: &'static str,
        key: String,
        value: Vec<u8>,
    },
    /// Delete an entry of [`GLOBAL_NETWORK`].
    Delete { table: &'static str, key: String },
    /// A pending allocation of `pool` got `value`.
    Allocated {
        pool: String,
        ticket: Ticket,
        value: u32,
    },
    /// A pending allocation of `pool` was refused.
    Refused {
        pool: String,
        ticket: Ticket,
        error: IpamError,
    },
}

/// Every allocator of the node.
pub(crate) struct Pools {
    me: NodeId,
    members: BTreeSet<NodeId>,
    pools: BTreeMap<String, Allocator>,
    /// The network name of each address pool, as its catalogue entry is keyed.
    names: BTreeMap<String, String>,
}

impl Pools {
    pub(crate) fn new(me: &str) -> Self {
        Self {
            me: NodeId::from(me),
            members: BTreeSet::new(),
            pools: BTreeMap::new(),
            names: BTreeMap::new(),
        }
    }

    /// Whether `pool` has an allocator.
    pub(crate) fn contains(&self, pool: &str) -> bool {
        self.pools.contains_key(pool)
    }

    /// The allocator of `pool`.
    pub(crate) fn get(&self, pool: &str) -> Option<&Allocator> {
        self.pools.get(pool)
    }

    /// The pool IDs.
    pub(crate) fn ids(&self) -> impl Iterator<Item = &String> {
        self.pools.keys()
    }

    /// The address pools with the name of their network.
    pub(crate) fn named(&self) -> impl Iterator<Item = (&String, &String)> {
        self.names.iter()
    }

    /// Records the network name of an address pool.
    pub(crate) fn set_name(&mut self, pool_id: &str, name: &str) {
        self.names.insert(pool_id.to_owned(), name.to_owned());
    }

    /// Starts the allocator of `pool` unless running: resumes from `snapshot` and takes in
    /// the entries of the pool NetworkDB holds already.
    pub(crate) fn ensure(
        &mut self,
        db: &NetworkDb,
        now: Instant,
        pool_id: &str,
        origin: &str,
        pool: Pool,
        snapshot: Option<ipam::Snapshot>,
    ) {
        if self.pools.contains_key(pool_id) {
            return;
        }
        let mut allocator = Allocator::new(
            self.me.clone(),
            NodeId::from(origin),
            pool,
            snapshot.unwrap_or_default(),
        );
        allocator.set_members(now, self.members.clone());
        let prefix = format!("{pool_id}/");
        for table in IPAM_TABLES {
            for (key, elem) in db.table_by_network(table, GLOBAL_NETWORK) {
                if let Some(rest) = key.as_str().strip_prefix(&prefix) {
                    allocator.handle_raw(now, table, rest, &elem.value);
                }
            }
        }
        self.pools.insert(pool_id.to_owned(), allocator);
    }

    /// Stops the allocator of `pool` (its network is gone); its entries written by this node
    /// are deleted.
    pub(crate) fn remove(&mut self, db: &NetworkDb, pool_id: &str, out: &mut Vec<PoolOutput>) {
        self.names.remove(pool_id);
        if self.pools.remove(pool_id).is_none() {
            return;
        }
        let prefix = format!("{pool_id}/");
        for table in IPAM_TABLES {
            for (key, elem) in db.table_by_network(table, GLOBAL_NETWORK) {
                if key.as_str().starts_with(&prefix) && &elem.owner == db.name() {
                    out.push(PoolOutput::Delete {
                        table,
                        key: key.to_string(),
                    });
                }
            }
        }
        out.push(PoolOutput::Persist);
    }

    /// Sets the live members (configured names) every allocator may ask.
    pub(crate) fn set_members(&mut self, now: Instant, members: BTreeSet<NodeId>) {
        if members == self.members {
            return;
        }
        self.members = members;
        for a in self.pools.values_mut() {
            a.set_members(now, self.members.clone());
        }
    }

    /// Allocates in `pool`.
    pub(crate) fn allocate(
        &mut self,
        now: Instant,
        pool: &str,
        request: Request,
    ) -> Option<Result<Allocation, IpamError>> {
        Some(self.pools.get_mut(pool)?.allocate(now, request))
    }

    /// Gives every empty block of every pool to an heir (a graceful leave); returns how many.
    pub(crate) fn hand_back(&mut self) -> usize {
        self.pools.values_mut().map(Allocator::hand_back).sum()
    }

    /// Takes over the blocks of `dead` in every pool; returns how many.
    pub(crate) fn reclaim(&mut self, now: Instant, dead: &str) -> Result<usize, IpamError> {
        let dead = NodeId::from(dead);
        let mut n = 0;
        for a in self.pools.values_mut() {
            n += a.reclaim(now, &dead)?;
        }
        Ok(n)
    }

    /// Releases a value of `pool`.
    pub(crate) fn release(&mut self, now: Instant, pool: &str, value: u32) {
        if let Some(a) = self.pools.get_mut(pool) {
            a.release(now, value);
        }
    }

    /// Takes in an entry of an `ipam` table (key `<pool>/<entry key>`); entries of pools
    /// without an allocator here wait in NetworkDB for [`ensure`](Self::ensure).
    pub(crate) fn handle_entry(&mut self, now: Instant, table: &str, key: &str, value: &[u8]) {
        let Some((pool, rest)) = key.split_once('/') else {
            return;
        };
        if let Some(a) = self.pools.get_mut(pool) {
            a.handle_raw(now, table, rest, value);
        }
    }

    /// An entry of `table` (key `<pool>/<entry key>`) was deleted by its writer (a
    /// tombstone); its pool's allocator takes it in (`Allocator::handle_withdrawn`).
    pub(crate) fn handle_withdrawn(&mut self, table: &str, key: &str) {
        let Some((pool, rest)) = key.split_once('/') else {
            return;
        };
        if let Some(a) = self.pools.get_mut(pool) {
            a.handle_withdrawn(table, rest);
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        for a in self.pools.values_mut() {
            if a.poll_timeout().is_some_and(|t| t <= now) {
                a.handle_timeout(now);
            }
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.pools
            .values()
            .filter_map(Allocator::poll_timeout)
            .min()
    }

    /// The snapshots to save, by pool.
    pub(crate) fn snapshots(&self) -> BTreeMap<String, ipam::Snapshot> {
        self.pools
            .iter()
            .map(|(id, a)| (id.clone(), a.snapshot().clone()))
            .collect()
    }

    /// Drains every allocator's outputs.
    pub(crate) fn drain(&mut self, out: &mut Vec<PoolOutput>) {
        for (id, a) in &mut self.pools {
            while let Some(o) = a.poll_output() {
                out.push(match o {
                    ipam::Output::Persist => PoolOutput::Persist,
                    ipam::Output::Write(entry) => put(id, &entry),
                    ipam::Output::Delete { table, key } => PoolOutput::Delete {
                        table,
                        key: format!("{id}/{key}"),
                    },
                    ipam::Output::Allocated { ticket, value } => PoolOutput::Allocated {
                        pool: id.clone(),
                        ticket,
                        value,
                    },
                    ipam::Output::Refused { ticket, error } => PoolOutput::Refused {
                        pool: id.clone(),
                        ticket,
                        error,
                    },
                    _ => continue,
                });
            }
        }
    }
}

fn put(pool: &str, entry: &Entry) -> PoolOutput {
    PoolOutput::Put {
        table: entry.table(),
        key: format!("{pool}/{}", entry.key()),
        value: entry.encode(),
    }
}
