//! The NetworkDB state machine: state, construction, the run loop and the local API.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::clock::LamportClock;
use crate::deferred::Deferred;
use crate::entry::Entry;
use crate::network::{Attachment, LocalNetwork};
use crate::node::Node;
use crate::peers::PeerSet;
use crate::queue::BroadcastQueue;
use crate::seen::SeenParts;
use crate::timer::{Timer, TimerTable};
use crate::wire::{Message, NetworkEvent, NetworkEventKind, TableEvent, TableEventKind};
use crate::{
    Channel, Config, ConfigError, Error, Key, LTime, NetworkId, NetworkStats, NodeName, NodeState,
    Output, PeerInfo, Stats, TableElem, TableName, Transmit, WatchEvent, WatchFilter, WatchId,
};

/// Entries by network, then table, then key: one ordered index (libnetwork keeps two radix
/// trees over the same entries; every query here is a range of this one).
pub(crate) type Tables = BTreeMap<NetworkId, BTreeMap<TableName, BTreeMap<Key, Entry>>>;

/// Invalidation key of the cluster queue: one queued attachment event per (network, node).
pub(crate) type ClusterKey = (NetworkId, NodeName);

/// A bulk-sync request waiting for its reply.
#[derive(Clone, Debug)]
pub(crate) struct PendingSync {
    pub(crate) peer: NodeName,
    /// The request's table time; any bulk sync from `peer` with a greater time answers it.
    pub(crate) ltime: LTime,
    pub(crate) deadline: Instant,
    /// When the request was sent.
    pub(crate) sent: Instant,
    pub(crate) networks: Vec<NetworkId>,
    /// Sent by `join_network`: the networks become in-sync when it completes.
    pub(crate) join: bool,
    /// Periodic syncs try a second random peer when the first does not answer.
    pub(crate) fallback: Option<NodeName>,
    /// What was sent.
    pub(crate) kind: SyncKind,
}

/// The kinds of sync request that wait for a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SyncKind {
    /// A [`BulkSync`](crate::wire::BulkSync): every entry of the networks.
    Full,
    /// A [`SyncDigest`](crate::wire::SyncDigest): summaries first.
    Digest,
    /// A [`PartialSync`](crate::wire::PartialSync): the buckets two digests disagree on.
    Partial,
}

/// A NetworkDB node: a sans-IO state machine.
///
/// # I/O contract
///
/// The core never reads a clock, touches a socket or draws OS randomness: every call takes
/// `now`, randomness comes from the seed given to [`new`](Self::new), and everything the node
/// wants done comes out of [`poll_output`](Self::poll_output).
///
/// **Drain rule**: after any input (`handle_*`, a membership callback, an API call), call
/// [`poll_output`](Self::poll_output) until it returns `None`, then sleep until
/// [`poll_timeout`](Self::poll_timeout) or the next input, and call
/// [`handle_timeout`](Self::handle_timeout) when the deadline passes.
///
/// ```no_run
/// # use std::time::Instant;
/// # use networkdb::{Config, NetworkDb, Output, Channel};
/// # fn recv() -> Option<(Channel, Vec<u8>)> { None }
/// # fn send(_: networkdb::Transmit) {}
/// let now = Instant::now();
/// let addr = "127.0.0.1:7946".parse().unwrap();
/// let mut db = NetworkDb::new(now, "node-a".into(), addr, 42, Config::default()).unwrap();
/// loop {
///     let now = Instant::now();
///     if let Some((channel, payload)) = recv() {
///         let _ = db.handle_message(now, channel, &payload);
///     }
///     if now >= db.poll_timeout() {
///         db.handle_timeout(now);
///     }
///     while let Some(out) = db.poll_output() {
///         match out {
///             Output::Transmit(t) => send(t),
///             Output::Watch { .. } | Output::Reconnect { .. } | Output::RejoinBootstrap { .. } => {}
///         }
///     }
/// }
/// ```
#[derive(Debug)]
pub struct NetworkDb {
    pub(crate) config: Config,
    pub(crate) me: NodeName,
    pub(crate) addr: SocketAddr,
    pub(crate) rng: Xoshiro256PlusPlus,
    /// Orders node and network events.
    pub(crate) network_clock: LamportClock,
    /// Orders table entries.
    pub(crate) table_clock: LamportClock,
    /// Every node known, this one included (always active).
    pub(crate) nodes: BTreeMap<NodeName, Node>,
    /// Remote nodes' attachments, by network.
    pub(crate) attachments: BTreeMap<NetworkId, BTreeMap<NodeName, Attachment>>,
    /// This node's attachments.
    pub(crate) local: BTreeMap<NetworkId, LocalNetwork>,
    pub(crate) tables: Tables,
    /// Node and network events, gossiped to random cluster nodes.
    pub(crate) cluster_queue: BroadcastQueue<ClusterKey>,
    pub(crate) pending_syncs: Vec<PendingSync>,
    /// Owners whose attachment this node missed, asked for a bulk sync: not asked again
    /// before the time given.
    pub(crate) attachment_repairs: hashbrown::HashMap<NodeName, Instant>,
    pub(crate) bootstrap: Vec<SocketAddr>,
    pub(crate) watches: BTreeMap<WatchId, WatchFilter>,
    pub(crate) next_watch: u64,
    pub(crate) timers: TimerTable,
    /// When the fresh events queued since the last eager push leave (see
    /// [`Config::eager_push`]); `None` when none wait.
    pub(crate) eager_at: Option<Instant>,
    /// Table events waiting for their owner's attachment.
    pub(crate) deferred: Deferred,
    /// [`network_peers`](Self::network_peers) per network: the gossip paths ask for it on
    /// every tick and every eager push. An entry is removed when an attachment of its network
    /// or the state of a node attached to it changes (`node_changed`).
    pub(crate) peer_cache: hashbrown::HashMap<NetworkId, Arc<[NodeName]>>,
    /// Every active node but this one, kept up to date by `node_changed`.
    pub(crate) active: PeerSet,
    /// Every failed node, kept up to date by `node_changed`.
    pub(crate) failed: PeerSet,
    /// Gossip parts settled recently, skipped undecoded when they come again.
    pub(crate) seen: SeenParts,
    /// Counts changes of the set of nodes or of their states ([`nodes_version`](Self::nodes_version)).
    pub(crate) nodes_version: u64,
    pub(crate) outputs: VecDeque<Output>,
    pub(crate) stats: Stats,
}

impl NetworkDb {
    /// Creates a node named `name`, reachable at `addr`, drawing randomness from `seed`.
    ///
    /// Fails, constructing nothing, when `config` does not [`validate`](Config::validate).
    pub fn new(
        now: Instant,
        name: NodeName,
        addr: SocketAddr,
        seed: u64,
        config: Config,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut timers = TimerTable::new(now);
        for timer in Timer::ALL {
            let period = period(&config, timer);
            // libnetwork staggers each periodic task by a random delay in [0, period).
            let nanos = u64::try_from(period.as_nanos()).unwrap_or(u64::MAX).max(1);
            timers.set(
                timer,
                now + Duration::from_nanos(rng.random_range(0..nanos)),
            );
        }
        let seen_seed = rng.random();
        let mut nodes = BTreeMap::new();
        nodes.insert(
            name.clone(),
            Node {
                addr,
                state: NodeState::Active,
                ltime: LTime(0),
                reap_at: None,
            },
        );
        Ok(Self {
            cluster_queue: BroadcastQueue::new(config.max_queue_len),
            config,
            me: name,
            addr,
            rng,
            network_clock: LamportClock::default(),
            table_clock: LamportClock::default(),
            nodes,
            attachments: BTreeMap::new(),
            local: BTreeMap::new(),
            tables: BTreeMap::new(),
            pending_syncs: Vec::new(),
            attachment_repairs: hashbrown::HashMap::new(),
            bootstrap: Vec::new(),
            watches: BTreeMap::new(),
            next_watch: 0,
            timers,
            eager_at: None,
            deferred: Deferred::default(),
            peer_cache: hashbrown::HashMap::new(),
            seen: SeenParts::new(seen_seed),
            active: PeerSet::default(),
            failed: PeerSet::default(),
            nodes_version: 0,
            outputs: VecDeque::new(),
            stats: Stats::default(),
        })
    }

    /// This node's name.
    pub fn name(&self) -> &NodeName {
        &self.me
    }

    /// This node's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The next output, if any. See the drain rule on [`NetworkDb`].
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Instant {
        let timers = [self.eager_at, self.deferred.next_deadline()]
            .into_iter()
            .flatten()
            .fold(self.timers.next(), Instant::min);
        self.pending_syncs
            .iter()
            .map(|p| p.deadline)
            .fold(timers, Instant::min)
    }

    /// Runs every timer that is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.eager_at.is_some_and(|at| at <= now) {
            self.eager_at = None;
            self.eager_push(now);
        }
        for timer in Timer::ALL {
            if self.timers.get(timer) > now {
                continue;
            }
            self.timers.set(timer, now + period(&self.config, timer));
            match timer {
                Timer::Gossip => self.gossip(now),
                Timer::BulkSync => self.periodic_bulk_sync(now),
                Timer::PushPull => self.periodic_push_pull(now),
                Timer::Reap => self.reap(now),
                Timer::Reconnect => self.offer_reconnect(),
                Timer::Rejoin => self.check_bootstrap(),
            }
        }
        self.expire_syncs(now);
        self.expire_deferred(now);
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    // ---- networks ----

    /// Attaches this node to `network`: announces it cluster-wide and bulk-syncs the network
    /// with up to [`Config::join_sync_peers`] random active peers attached to it.
    ///
    /// Fails with [`Error::AlreadyJoined`] if the network is joined and not being left.
    /// Rejoining a network being left keeps its queues and restarts the join sync.
    pub fn join_network(&mut self, now: Instant, network: NetworkId) -> Result<(), Error> {
        check_name("network id", &network)?;
        if self.local.get(&network).is_some_and(|n| !n.leaving) {
            return Err(Error::AlreadyJoined(network));
        }
        let ltime = self.network_clock.increment();
        let max_queue_len = self.config.max_queue_len;
        let local = self
            .local
            .entry(network.clone())
            .or_insert_with(|| LocalNetwork::new(ltime, max_queue_len));
        local.ltime = ltime;
        local.leaving = false;
        local.reap_at = None;
        local.in_sync = false;
        self.queue_network_event(now, NetworkEventKind::Join, ltime, &network);
        let peers = self.cached_peers(&network);
        for peer in self.sample(&peers, self.config.join_sync_peers) {
            let networks = self.common_networks(&peer);
            self.send_bulk_sync(now, &peer, networks, true, true, None);
        }
        if let Some(local) = self.local.get_mut(&network) {
            local.joined_alone = peers.is_empty();
        }
        self.update_in_sync();
        Ok(())
    }

    /// Detaches this node from `network`: announces it, turns its own entries into tombstones
    /// and forgets the others' (they come back by bulk sync on a rejoin).
    ///
    /// Fails with [`Error::NotJoined`] if the network is not joined or already being left.
    pub fn leave_network(&mut self, now: Instant, network: NetworkId) -> Result<(), Error> {
        if self.local.get(&network).is_none_or(|n| n.leaving) {
            return Err(Error::NotJoined(network));
        }
        let ltime = self.network_clock.increment();
        self.queue_network_event(now, NetworkEventKind::Leave, ltime, &network);
        let reap_at = now + self.config.reap_entry_interval;
        let mut changes = Vec::new();
        // Others' entries are forgotten: their events may apply again after a rejoin.
        self.seen.clear();
        if let Some(tables) = self.tables.get_mut(&network) {
            for (table, entries) in tables.iter_mut() {
                entries.retain(|key, e| {
                    if let Some(v) = e.visible_value() {
                        changes.push((table.clone(), key.clone(), v.clone()));
                    }
                    if e.owner != self.me {
                        return false;
                    }
                    if !e.deleting {
                        // A fresh time, so the tombstone beats every earlier event (moby#47728).
                        e.ltime = self.table_clock.increment();
                        e.deleting = true;
                        e.hidden = false;
                        e.reap_at = Some(reap_at);
                        e.rehash();
                    }
                    true
                });
            }
            tables.retain(|_, entries| !entries.is_empty());
        }
        for (table, key, prev) in changes {
            self.notify(&table, &network, &key, Some(prev), None);
        }
        if let Some(local) = self.local.get_mut(&network) {
            local.ltime = ltime;
            local.leaving = true;
            local.in_sync = false;
            local.reap_at = Some(now + self.config.reap_network_interval());
        }
        self.pending_syncs.retain_mut(|p| {
            p.networks.retain(|n| n != &network);
            !p.networks.is_empty()
        });
        Ok(())
    }

    /// The networks this node is attached to (not being left), in order.
    pub fn networks(&self) -> Vec<NetworkId> {
        self.local
            .iter()
            .filter(|(_, n)| !n.leaving)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Whether `node` (this node included) is attached to `network` and not leaving it.
    pub fn is_attached(&self, network: &str, node: &str) -> bool {
        if node == self.me.as_str() {
            return self.local.get(network).is_some_and(|n| !n.leaving);
        }
        self.attachments
            .get(network)
            .and_then(|a| a.get(node))
            .is_some_and(|a| !a.leaving)
    }

    /// Whether the join bulk sync of `network` completed (events received are relayed only
    /// then).
    pub fn is_in_sync(&self, network: &str) -> bool {
        self.local.get(network).is_some_and(|n| n.in_sync)
    }

    // ---- entries ----

    /// Creates an entry owned by this node and gossips it if the network is joined.
    ///
    /// Fails with [`Error::EntryExists`] if a visible entry holds the key; a tombstone or an
    /// entry hidden because its owner failed is replaced.
    pub fn create_entry(
        &mut self,
        now: Instant,
        table: TableName,
        network: NetworkId,
        key: Key,
        value: impl Into<Bytes>,
    ) -> Result<(), Error> {
        check_name("table", &table)?;
        check_name("network id", &network)?;
        if self
            .entry(&network, &table, &key)
            .is_some_and(Entry::visible)
        {
            return Err(Error::EntryExists {
                table,
                network,
                key,
            });
        }
        self.write_local(
            now,
            TableEventKind::Create,
            table,
            network,
            key,
            value.into(),
        );
        Ok(())
    }

    /// Replaces the value of a visible entry, taking ownership of it.
    ///
    /// Fails with [`Error::UpdateNotFound`] if the entry is absent, deleted or hidden.
    pub fn update_entry(
        &mut self,
        now: Instant,
        table: TableName,
        network: NetworkId,
        key: Key,
        value: impl Into<Bytes>,
    ) -> Result<(), Error> {
        if !self
            .entry(&network, &table, &key)
            .is_some_and(Entry::visible)
        {
            return Err(Error::UpdateNotFound {
                table,
                network,
                key,
            });
        }
        self.write_local(
            now,
            TableEventKind::Update,
            table,
            network,
            key,
            value.into(),
        );
        Ok(())
    }

    /// Deletes a visible entry: it becomes a tombstone owned by this node for
    /// `reap_entry_interval`, keeping its last value.
    ///
    /// Fails with [`Error::DeleteNotFound`] if the entry is absent, deleted or hidden.
    pub fn delete_entry(
        &mut self,
        now: Instant,
        table: TableName,
        network: NetworkId,
        key: Key,
    ) -> Result<(), Error> {
        let Some(value) = self
            .entry(&network, &table, &key)
            .and_then(Entry::visible_value)
        else {
            return Err(Error::DeleteNotFound {
                table,
                network,
                key,
            });
        };
        let value = value.clone();
        self.write_local(now, TableEventKind::Delete, table, network, key, value);
        Ok(())
    }

    /// The value of a visible entry.
    pub fn get_entry(&self, table: &str, network: &str, key: &str) -> Result<Bytes, Error> {
        let names = || {
            (
                TableName::from(table),
                NetworkId::from(network),
                Key::from(key),
            )
        };
        match self.entry(network, table, key) {
            None => {
                let (table, network, key) = names();
                Err(Error::NotFound {
                    table,
                    network,
                    key,
                })
            }
            Some(e) if e.deleting => {
                let (table, network, key) = names();
                Err(Error::Deleted {
                    table,
                    network,
                    key,
                })
            }
            Some(e) if e.hidden => {
                let (table, network, key) = names();
                Err(Error::Hidden {
                    table,
                    network,
                    key,
                })
            }
            Some(e) => Ok(e.value.clone()),
        }
    }

    /// The visible entries of one table in one network, by key.
    pub fn table_by_network(&self, table: &str, network: &str) -> BTreeMap<Key, TableElem> {
        let Some(entries) = self.tables.get(network).and_then(|t| t.get(table)) else {
            return BTreeMap::new();
        };
        entries
            .iter()
            .filter(|(_, e)| e.visible())
            .map(|(k, e)| {
                (
                    k.clone(),
                    TableElem {
                        value: e.value.clone(),
                        owner: e.owner.clone(),
                    },
                )
            })
            .collect()
    }

    /// The visible entries of `table` in `network`, in key order, as `(key, value, owner)`,
    /// borrowed: [`table_by_network`](Self::table_by_network) without the copy.
    pub fn visible_entries<'a>(
        &'a self,
        table: &str,
        network: &str,
    ) -> impl Iterator<Item = (&'a Key, &'a Bytes, &'a NodeName)> + 'a {
        self.tables
            .get(network)
            .and_then(|t| t.get(table))
            .into_iter()
            .flatten()
            .filter(|(_, e)| e.visible())
            .map(|(k, e)| (k, &e.value, &e.owner))
    }

    /// Calls `f(network, key, value, deleted)` for every entry of `table` in every network, in
    /// order, tombstones and hidden entries reported as deleted, until `f` returns true.
    pub fn walk_table(
        &self,
        table: &str,
        mut f: impl FnMut(&NetworkId, &Key, &Bytes, bool) -> bool,
    ) {
        for (network, tables) in &self.tables {
            let Some(entries) = tables.get(table) else {
                continue;
            };
            for (key, e) in entries {
                if f(network, key, &e.value, !e.visible()) {
                    return;
                }
            }
        }
    }

    /// The tables holding entries (tombstones included) in `network`, in order.
    pub fn tables(&self, network: &str) -> Vec<TableName> {
        self.tables
            .get(network)
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default()
    }

    // ---- watches ----

    /// Registers a watch. Returns its id and a snapshot of the visible entries owned by other
    /// nodes that match; later changes arrive as [`Output::Watch`].
    pub fn watch(&mut self, filter: WatchFilter) -> (WatchId, Vec<WatchEvent>) {
        let id = WatchId(self.next_watch);
        self.next_watch += 1;
        let mut snapshot = Vec::new();
        for (network, tables) in &self.tables {
            for (table, entries) in tables {
                if !filter.matches(table, network) {
                    continue;
                }
                for (key, e) in entries {
                    if (e.owner == self.me && !filter.own) || !e.visible() {
                        continue;
                    }
                    snapshot.push(WatchEvent {
                        table: table.clone(),
                        network: network.clone(),
                        key: key.clone(),
                        prev: None,
                        value: Some(e.value.clone()),
                    });
                }
            }
        }
        self.watches.insert(id, filter);
        (id, snapshot)
    }

    /// Removes a watch; returns whether it existed.
    pub fn unwatch(&mut self, id: WatchId) -> bool {
        self.watches.remove(&id).is_some()
    }

    // ---- peers and stats ----

    /// The participants of `network`: this node if attached, then every active remote node
    /// attached and not leaving.
    pub fn peers(&self, network: &str) -> Vec<PeerInfo> {
        let mut out = Vec::new();
        if self.local.get(network).is_some_and(|n| !n.leaving) {
            out.push(PeerInfo {
                name: self.me.clone(),
                addr: Some(self.addr),
            });
        }
        for name in self.network_peers(network) {
            let addr = self.nodes.get(&name).map(|n| n.addr);
            out.push(PeerInfo { name, addr });
        }
        out
    }

    /// Every active node, this one included.
    pub fn cluster_peers(&self) -> Vec<PeerInfo> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.state == NodeState::Active)
            .map(|(name, n)| PeerInfo {
                name: name.clone(),
                addr: Some(n.addr),
            })
            .collect()
    }

    /// A number that changes whenever a node is added, removed or changes state: a reader of
    /// [`cluster_peers`](Self::cluster_peers) can skip the work when it has not changed.
    pub fn nodes_version(&self) -> u64 {
        self.nodes_version
    }

    /// The state of a node, if known.
    pub fn node_state(&self, name: &str) -> Option<NodeState> {
        self.nodes.get(name).map(|n| n.state)
    }

    /// How many known nodes are in `state` (this node counts as active).
    pub fn node_count(&self, state: NodeState) -> usize {
        self.nodes.values().filter(|n| n.state == state).count()
    }

    /// Statistics of a joined network (`None` if never joined or already reaped).
    pub fn network_stats(&self, network: &str) -> Option<NetworkStats> {
        let local = self.local.get(network)?;
        let entries = self
            .tables
            .get(network)
            .map_or(0, |t| t.values().map(BTreeMap::len).sum());
        Some(NetworkStats {
            entries,
            queue_len: local.local.len() + local.relay.len(),
            relay_queue_len: local.relay.len(),
            messages_sent: local.messages_sent,
            leaving: local.leaving,
            peers: self.network_peers(network).len(),
        })
    }

    /// Events queued for cluster-wide gossip (node and network events).
    pub fn cluster_queue_len(&self) -> usize {
        self.cluster_queue.len()
    }

    /// The current network and table clocks.
    pub fn clocks(&self) -> (LTime, LTime) {
        (self.network_clock.time(), self.table_clock.time())
    }

    // ---- helpers shared by the other modules ----

    pub(crate) fn entry(&self, network: &str, table: &str, key: &str) -> Option<&Entry> {
        self.tables.get(network)?.get(table)?.get(key)
    }

    /// Stores `entry` (setting its hashes), returning the previous one.
    pub(crate) fn put_entry(
        &mut self,
        network: &NetworkId,
        table: &TableName,
        key: &Key,
        mut entry: Entry,
    ) -> Option<Entry> {
        entry.key_hash = crate::digest::key_hash(table, key);
        entry.rehash();
        self.tables
            .entry(network.clone())
            .or_default()
            .entry(table.clone())
            .or_default()
            .insert(key.clone(), entry)
    }

    /// [`network_peers`](Self::network_peers), cached until an attachment of the network or
    /// the state of a node attached to it changes.
    pub(crate) fn cached_peers(&mut self, network: &NetworkId) -> Arc<[NodeName]> {
        if let Some(peers) = self.peer_cache.get(network) {
            return peers.clone();
        }
        let peers: Arc<[NodeName]> = self.network_peers(network).into();
        if self.peer_cache.len() > 4 * self.local.len() + 16 {
            // Networks this node left long ago: start over.
            self.peer_cache.clear();
        }
        self.peer_cache.insert(network.clone(), peers.clone());
        peers
    }

    /// The state of `name` changed, it was added or removed, or its attachments are about to
    /// be dropped: the active and failed sets follow, and the cached peers of its networks are
    /// recomputed when next asked for. Called after every such change.
    pub(crate) fn node_changed(&mut self, name: &NodeName) {
        self.nodes_version += 1;
        if *name != self.me {
            let state = self.nodes.get(name).map(|n| n.state);
            self.active.set(name, state == Some(NodeState::Active));
            self.failed.set(name, state == Some(NodeState::Failed));
        }
        // Only local networks' peers are cached.
        let attachments = &self.attachments;
        self.peer_cache.retain(|network, _| {
            attachments
                .get(network)
                .is_none_or(|attached| !attached.contains_key(name))
        });
    }

    /// `min(count, active)` distinct active nodes picked uniformly.
    pub(crate) fn sample_active(&mut self, count: usize) -> Vec<NodeName> {
        self.active.sample(&mut self.rng, count)
    }

    /// Active remote nodes attached to `network` and not leaving, in name order.
    pub(crate) fn network_peers(&self, network: &str) -> Vec<NodeName> {
        let Some(attached) = self.attachments.get(network) else {
            return Vec::new();
        };
        attached
            .iter()
            .filter(|(name, a)| {
                !a.leaving
                    && self
                        .nodes
                        .get(*name)
                        .is_some_and(|n| n.state == NodeState::Active)
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Local attachments (not leaving) that `peer` is attached to and not leaving.
    pub(crate) fn common_networks(&self, peer: &NodeName) -> Vec<NetworkId> {
        self.local
            .iter()
            .filter(|(id, n)| {
                !n.leaving
                    && self
                        .attachments
                        .get(*id)
                        .and_then(|a| a.get(peer))
                        .is_some_and(|a| !a.leaving)
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Emits a watch event for a change of what readers see (nothing if nothing changed).
    pub(crate) fn notify(
        &mut self,
        table: &TableName,
        network: &NetworkId,
        key: &Key,
        prev: Option<Bytes>,
        value: Option<Bytes>,
    ) {
        self.emit(table, network, key, prev, value, false);
    }

    /// Emits a watch event of this node's own write to the watches that asked for them
    /// (`WatchFilter::own`).
    fn notify_own(
        &mut self,
        table: &TableName,
        network: &NetworkId,
        key: &Key,
        prev: Option<Bytes>,
        value: Option<Bytes>,
    ) {
        self.emit(table, network, key, prev, value, true);
    }

    fn emit(
        &mut self,
        table: &TableName,
        network: &NetworkId,
        key: &Key,
        prev: Option<Bytes>,
        value: Option<Bytes>,
        own_write: bool,
    ) {
        if prev == value {
            return;
        }
        for (id, filter) in &self.watches {
            if (filter.own || !own_write) && filter.matches(table, network) {
                self.outputs.push_back(Output::Watch {
                    watch: *id,
                    event: WatchEvent {
                        table: table.clone(),
                        network: network.clone(),
                        key: key.clone(),
                        prev: prev.clone(),
                        value: value.clone(),
                    },
                });
            }
        }
    }

    /// Queues a transmit to a known node; unknown nodes are skipped.
    pub(crate) fn send(&mut self, to: &NodeName, channel: Channel, payload: Vec<u8>) -> bool {
        let Some(node) = self.nodes.get(to) else {
            return false;
        };
        match channel {
            Channel::Datagram => self.stats.datagrams_out += 1,
            Channel::Stream => self.stats.streams_out += 1,
        }
        self.stats.bytes_out += payload.len() as u64;
        self.outputs.push_back(Output::Transmit(Transmit {
            to: to.clone(),
            addr: node.addr,
            channel,
            payload,
        }));
        true
    }

    pub(crate) fn queue_network_event(
        &mut self,
        now: Instant,
        kind: NetworkEventKind,
        ltime: LTime,
        network: &NetworkId,
    ) {
        let msg = Message::NetworkEvent(NetworkEvent {
            kind,
            ltime,
            node: self.me.clone(),
            network: network.clone(),
        });
        self.push_cluster(
            now,
            Some((network.clone(), self.me.clone())),
            Bytes::from(msg.encode_part()),
        );
    }

    /// Queues a node or network event for cluster-wide gossip. One that can never fit a
    /// datagram is not queued (it would never leave the queue) and is counted; push/pull and
    /// bulk sync carry the state it describes.
    pub(crate) fn push_cluster(&mut self, now: Instant, key: Option<ClusterKey>, bytes: Bytes) {
        let max_part = self
            .config
            .payload_budget()
            .saturating_sub(crate::wire::COMPOUND_HEADER_BYTES);
        if crate::wire::part_cost(bytes.len()) > max_part {
            self.stats.oversized_cluster_events += 1;
            return;
        }
        let dropped = self.cluster_queue.push(key, bytes);
        self.stats.queue_overflow += dropped as u64;
        self.arm_eager(now);
    }

    /// Arms the eager push (see [`Config::eager_push`]) unless it is off or already armed.
    pub(crate) fn arm_eager(&mut self, now: Instant) {
        if self.config.eager_push && self.eager_at.is_none() {
            self.eager_at = Some(now + self.config.eager_push_delay);
        }
    }

    /// Marks joined networks in-sync once no join bulk sync for them is pending.
    pub(crate) fn update_in_sync(&mut self) {
        for (id, local) in self.local.iter_mut() {
            if local.in_sync || local.leaving {
                continue;
            }
            let waiting = self
                .pending_syncs
                .iter()
                .any(|p| p.join && p.networks.contains(id));
            if !waiting {
                local.in_sync = true;
            }
        }
    }

    /// Applies a local create/update/delete and queues its event.
    pub(crate) fn write_local(
        &mut self,
        now: Instant,
        kind: TableEventKind,
        table: TableName,
        network: NetworkId,
        key: Key,
        value: Bytes,
    ) {
        let ltime = self.table_clock.increment();
        let deleting = kind == TableEventKind::Delete;
        let entry = Entry::new(
            self.me.clone(),
            ltime,
            value.clone(),
            deleting,
            false,
            deleting.then(|| now + self.config.reap_entry_interval),
        );
        let residual = entry.residual_secs(now);
        let prev = self
            .put_entry(&network, &table, &key, entry)
            .and_then(|e| e.visible_value().cloned());
        self.notify_own(
            &table,
            &network,
            &key,
            prev,
            (!deleting).then(|| value.clone()),
        );
        // Like libnetwork, an entry of a network this node has not joined stays local.
        if !self.local.contains_key(&network) {
            return;
        }
        let event = TableEvent {
            kind,
            ltime,
            owner: self.me.clone(),
            network,
            table,
            key,
            value,
            residual_reap_secs: residual,
        };
        self.queue_table_event(now, event, None, true);
    }

    /// Queues a table event on its network's local or relay queue; an event too large for a
    /// datagram goes to every peer of the network on the stream path instead.
    pub(crate) fn queue_table_event(
        &mut self,
        now: Instant,
        event: TableEvent,
        raw: Option<&[u8]>,
        local: bool,
    ) {
        let bytes = match raw {
            Some(raw) => Bytes::copy_from_slice(raw),
            None => Bytes::from(Message::TableEvent(event.clone()).encode_part()),
        };
        let max_part = self
            .config
            .payload_budget()
            .saturating_sub(crate::wire::COMPOUND_HEADER_BYTES);
        if crate::wire::part_cost(bytes.len()) > max_part {
            if local {
                self.stats.oversized_via_stream += 1;
                let payload = Message::TableEvent(event.clone()).encode();
                for peer in self.cached_peers(&event.network).iter() {
                    self.send(peer, Channel::Stream, payload.clone());
                }
            }
            // A relayed oversized event reached every peer directly from its owner.
            return;
        }
        let Some(net) = self.local.get_mut(&event.network) else {
            return;
        };
        let key = Some((event.table, event.key));
        let dropped = if local {
            net.local.push(key, bytes)
        } else {
            net.relay.push(key, bytes)
        };
        self.stats.queue_overflow += dropped as u64;
        self.arm_eager(now);
    }
}

/// The period of a timer under `config`.
pub(crate) fn period(config: &Config, timer: Timer) -> Duration {
    match timer {
        Timer::Gossip => config.gossip_interval,
        Timer::BulkSync if config.digest_sync => config.digest_sync_interval,
        Timer::BulkSync => config.bulk_sync_interval,
        Timer::PushPull => config.push_pull_interval,
        Timer::Reap => config.reap_period,
        Timer::Reconnect => config.reconnect_interval,
        Timer::Rejoin => config.rejoin_interval,
    }
}

/// The longest table name or network id, in bytes: far more than any real one, and short
/// enough that every event about them fits a datagram.
pub const MAX_NAME_LEN: usize = 255;

fn check_name(what: &'static str, name: &impl AsRef<str>) -> Result<(), Error> {
    let name = name.as_ref();
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(Error::InvalidName {
            what,
            name: name.to_owned(),
        });
    }
    Ok(())
}
