//! [`NodeCore`]: the state of one node and how it is driven.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use data_encoding::HEXLOWER;
use networkdb::{NetworkDb, WatchEvent, WatchFilter, WatchId};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::catalogue::GLOBAL_NETWORK;
use crate::event::{NamesChange, RequestId};
use crate::outbox::{Deferred, Next, Outbox};
use crate::pending::Pending;
use crate::pools::{IPAM_TABLES, PoolOutput, Pools};
use crate::{Event, LocalState};

/// How often the core brings NetworkDB in line with its state (joins, records, catalogue).
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(1);

/// The interval over which the allocators' candidates follow at most [`MEMBERS_BURST`]
/// membership changes at once; further changes within it are applied together at its end.
pub const MEMBERS_DEBOUNCE: Duration = Duration::from_millis(250);

/// Membership changes followed at once per [`MEMBERS_DEBOUNCE`].
pub const MEMBERS_BURST: u32 = 8;

/// How long a network this node created or has endpoints on must be missing from the
/// catalogue (its owner left or crashed) before this node publishes it again. Long enough
/// for a restarted node to receive the catalogue by bulk sync first.
pub const ADOPT_AFTER: Duration = Duration::from_secs(3);

/// How long an operation may wait for space from another node before it is refused.
pub const DEFAULT_ALLOCATION_TIMEOUT: Duration = Duration::from_secs(20);

/// The table of [`GLOBAL_NETWORK`] where every node publishes the name of the cluster's
/// founder it knows (key: its own name), so the VNI pool's origin is known to every node
/// even while the founder is away.
pub const FOUNDERS_TABLE: &str = "founders";

/// Who the node is.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The configured node name: `created_by` of its networks, and its identity as an owner
    /// of address space (the same across restarts).
    pub node_name: String,
    /// The data-path address published as the VTEP of its endpoints.
    pub vtep: IpAddr,
    /// This node started the cluster (it joined no one): it is the origin of the VNI pool.
    pub founder: bool,
    /// The seed of the node's generator (network and endpoint IDs).
    pub seed: u64,
    /// How long an operation may wait for space ([`DEFAULT_ALLOCATION_TIMEOUT`]).
    pub allocation_timeout: Duration,
}

impl Settings {
    /// Settings with the default allocation timeout.
    pub fn new(node_name: impl Into<String>, vtep: IpAddr, founder: bool, seed: u64) -> Self {
        Self {
            node_name: node_name.into(),
            vtep,
            founder,
            seed,
            allocation_timeout: DEFAULT_ALLOCATION_TIMEOUT,
        }
    }
}

/// What the core counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CoreStats {
    /// Operations answered at once.
    pub answered_at_once: u64,
    /// Operations that waited for the cluster.
    pub waited: u64,
    /// Operations refused after [`Settings::allocation_timeout`].
    pub timed_out: u64,
    /// Two different founders seen (two clusters merged): no automatic VNIs.
    pub founder_conflicts: u64,
    /// Values of a restored state (format 1) found held elsewhere.
    pub restore_conflicts: u64,
}

/// Everything one node decides: the CNM (networks, endpoints, sandboxes, join and leave,
/// enable and disable), the catalogue, IPAM, the records it publishes, and the feeds of the
/// overlay driver and service discovery. Sans-IO: `now` and a seed come in; NetworkDB
/// writes, [`Event`]s and answers come out.
///
/// # Driving it
///
/// Build it with [`NodeCore::new`] on the node's NetworkDB. Hand every watch event of
/// [`watches`](Self::owns_watch) to [`handle_watch`](Self::handle_watch), membership changes
/// to [`members_changed`](Self::members_changed), run
/// [`handle_timeout`](Self::handle_timeout) at [`poll_timeout`](Self::poll_timeout), and
/// after every input drain [`poll_event`](Self::poll_event) (which also carries out the
/// core's NetworkDB writes, after the saves they depend on). [`crate::Stack`] does all of
/// this for a `cluster::Node`.
pub struct NodeCore {
    pub(crate) settings: Settings,
    pub(crate) state: LocalState,
    pub(crate) rng: Xoshiro256PlusPlus,
    pub(crate) pools: Pools,
    pub(crate) outbox: Outbox,
    pub(crate) pending: Pending,
    /// Known networks missing from the catalogue, by ID, with when that was first seen.
    pub(crate) absent_since: BTreeMap<String, Instant>,
    /// Networks service discovery resolves on.
    pub(crate) names_attached: BTreeSet<String>,
    /// Networks joined outside the CNM that service discovery resolves on too
    /// ([`resolve_on`](NodeCore::resolve_on)).
    pub(crate) names_external: BTreeSet<String>,
    pub(crate) next_reconcile: Instant,
    /// When the allocators' candidates follow the membership next (see
    /// [`members_changed`](NodeCore::members_changed)); `None` when nothing changed.
    pub(crate) members_due: Option<Instant>,
    /// [`NetworkDb::nodes_version`] when the candidates were last set.
    pub(crate) members_version: Option<u64>,
    /// The current interval of [`MEMBERS_DEBOUNCE`]: its start and the updates made in it.
    pub(crate) members_window: Option<(Instant, u32)>,
    pub(crate) stats: CoreStats,
    /// Claims of restored values in flight (see `claim_restored`), by (pool, ticket).
    pub(crate) restoring: BTreeMap<(String, ipam::Ticket), (String, u32)>,
    /// Restored values taken elsewhere: not asked for again.
    pub(crate) restore_failed: BTreeSet<(String, u32)>,
    names_watch: WatchId,
    peers_watch: WatchId,
    global_watch: WatchId,
}

impl NodeCore {
    /// The core of a node resuming from `state` (`LocalState::default()` for a new one).
    /// Registers its watches on `db`, restores its allocators and schedules the first
    /// reconciliation (which joins the networks of its endpoints and publishes their records)
    /// at once.
    pub fn new(db: &mut NetworkDb, now: Instant, settings: Settings, state: LocalState) -> Self {
        let (names_watch, names) = db.watch(WatchFilter {
            table: Some(discovery::ENDPOINT_TABLE.into()),
            network: None,
            own: true,
        });
        let (peers_watch, peers) = db.watch(WatchFilter {
            table: Some(overlay::PEER_TABLE.into()),
            network: None,
            own: false,
        });
        let (global_watch, global) = db.watch(WatchFilter {
            table: None,
            network: Some(GLOBAL_NETWORK.into()),
            own: false,
        });
        let mut core = Self {
            pools: Pools::new(&settings.node_name),
            rng: Xoshiro256PlusPlus::seed_from_u64(settings.seed),
            settings,
            state,
            outbox: Outbox::default(),
            pending: Pending::default(),
            absent_since: BTreeMap::new(),
            names_attached: BTreeSet::new(),
            names_external: BTreeSet::new(),
            next_reconcile: now,
            members_due: None,
            members_version: None,
            members_window: None,
            stats: CoreStats::default(),
            restoring: BTreeMap::new(),
            restore_failed: BTreeSet::new(),
            names_watch,
            peers_watch,
            global_watch,
        };
        if core.settings.founder && core.state.founder.is_none() {
            core.state.founder = Some(core.settings.node_name.clone());
        }
        core.outbox.push(Deferred::Join(GLOBAL_NETWORK.to_owned()));
        core.topology();
        for event in names.into_iter().chain(peers).chain(global) {
            let watch = match event.table.as_str() {
                discovery::ENDPOINT_TABLE => names_watch,
                overlay::PEER_TABLE => peers_watch,
                _ => global_watch,
            };
            core.handle_watch(db, now, watch, event);
        }
        core.ensure_pools(db, now);
        core.claim_restored(now);
        core.drain_pools(db, now);
        core
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The state (what the last [`Event::Persist`] saved, or newer).
    pub fn state(&self) -> &LocalState {
        &self.state
    }

    /// The counters.
    pub fn stats(&self) -> CoreStats {
        self.stats
    }

    /// The allocator counters of every pool, by pool ID.
    pub fn ipam_stats(&self) -> BTreeMap<String, ipam::IpamStats> {
        self.pools
            .ids()
            .filter_map(|id| Some((id.clone(), self.pools.get(id)?.stats())))
            .collect()
    }

    /// Blocks per owner (configured names) of a pool in this node's replica: a network's ID,
    /// or [`VNI_POOL`](crate::VNI_POOL); `None` for a pool this node does not run.
    pub fn pool_owners(&self, pool: &str) -> Option<BTreeMap<String, u32>> {
        let owners = self.pools.get(pool)?.owners();
        Some(
            owners
                .into_iter()
                .map(|(node, n)| (node.to_string(), n))
                .collect(),
        )
    }

    /// Before a graceful leave: gives every block this node owns and holds nothing in, in
    /// every pool, to an heir (see `ipam::Allocator::hand_back`), so the space stays in use
    /// while the node is away. Blocks holding the node's endpoints stay its own. Returns how
    /// many blocks were given; the driver should let them spread (a gossip round or two)
    /// before the node leaves, since the others drop a leaver's entries.
    pub fn hand_back(&mut self, db: &NetworkDb, now: Instant) -> usize {
        let given = self.pools.hand_back();
        self.drain_pools(db, now);
        given
    }

    /// Takes over the address and VNI blocks of `node`, a node gone for good (see
    /// `ipam::Allocator::reclaim` for the contract: only for a host that will not come back
    /// with its state). Refused while NetworkDB knows the node as active. Returns how many
    /// blocks were claimed.
    pub fn reclaim(
        &mut self,
        db: &NetworkDb,
        now: Instant,
        node: &str,
    ) -> Result<usize, crate::CoreError> {
        crate::model::check_name("node", node)?;
        let active = db
            .cluster_peers()
            .iter()
            .any(|p| cluster::base_name(p.name.as_str()) == node)
            || node == self.settings.node_name;
        if active {
            return Err(crate::CoreError::Conflict(format!(
                "node {node} is alive: only the space of a node gone for good is reclaimed"
            )));
        }
        self.members_changed(db, now);
        let n = self
            .pools
            .reclaim(now, node)
            .map_err(|e| crate::CoreError::Conflict(e.to_string()))?;
        self.drain_pools(db, now);
        Ok(n)
    }

    /// Whether `watch` is one of the core's: its events go to
    /// [`handle_watch`](Self::handle_watch), not to the shell.
    pub fn owns_watch(&self, watch: WatchId) -> bool {
        [self.names_watch, self.peers_watch, self.global_watch].contains(&watch)
    }

    /// Takes in an event of one of the core's watches.
    pub fn handle_watch(
        &mut self,
        db: &NetworkDb,
        now: Instant,
        watch: WatchId,
        event: WatchEvent,
    ) {
        if watch == self.names_watch {
            let network = event.network.as_str();
            if self.names_attached.contains(network) || self.names_external.contains(network) {
                self.outbox.event(Event::Names(NamesChange::Record(event)));
            }
        } else if watch == self.peers_watch {
            self.outbox.event(Event::Peer(event));
        } else if watch == self.global_watch {
            let table = event.table.as_str();
            if IPAM_TABLES.contains(&table) {
                if let Some(value) = &event.value {
                    self.pools
                        .handle_entry(now, table, event.key.as_str(), value);
                    self.drain_pools(db, now);
                } else if matches!(
                    db.get_entry(table, GLOBAL_NETWORK, event.key.as_str()),
                    Err(networkdb::Error::Deleted { .. })
                ) {
                    // Deleted by its writer (a tombstone, not a failed writer's hidden entry).
                    self.pools.handle_withdrawn(table, event.key.as_str());
                    self.drain_pools(db, now);
                }
            } else if table == FOUNDERS_TABLE {
                if let Some(value) = &event.value {
                    self.learn_founder(db, now, value);
                }
            } else if table == crate::catalogue::NETWORKS_TABLE {
                self.ensure_pools(db, now);
            }
        }
    }

    /// The cluster's membership changed: the allocators' candidates follow at once, up to
    /// [`MEMBERS_BURST`] times per [`MEMBERS_DEBOUNCE`]; changes beyond that are applied
    /// together at the end of the interval. A cluster forming (or a partition healing) reports
    /// hundreds of changes in a burst, and each update reads the whole membership.
    pub fn members_changed(&mut self, db: &NetworkDb, now: Instant) {
        if self.members_due.is_some() {
            return;
        }
        let (start, used) = match self.members_window {
            Some((start, used)) if now < start + MEMBERS_DEBOUNCE => (start, used),
            _ => (now, 0),
        };
        if used < MEMBERS_BURST {
            self.members_window = Some((start, used + 1));
            self.update_members(db, now);
        } else {
            self.members_due = Some(start + MEMBERS_DEBOUNCE);
        }
    }

    /// The allocators' candidates become the cluster's members now.
    fn update_members(&mut self, db: &NetworkDb, now: Instant) {
        self.members_due = None;
        if self.members_version == Some(db.nodes_version()) {
            return;
        }
        self.members_version = Some(db.nodes_version());
        let members = db
            .cluster_peers()
            .into_iter()
            .map(|p| ipam::NodeId::from(cluster::base_name(p.name.as_str())))
            .collect();
        self.pools.set_members(now, members);
        self.drain_pools(db, now);
    }

    /// Runs what is due: the reconciliation, the allocators' retries, the operations that
    /// waited too long.
    pub fn handle_timeout(&mut self, db: &NetworkDb, now: Instant) {
        if now >= self.next_reconcile {
            self.next_reconcile = now + RECONCILE_INTERVAL;
            self.update_members(db, now);
            self.reconcile(db, now);
        }
        if self.members_due.is_some_and(|at| at <= now) {
            self.update_members(db, now);
        }
        self.pools.handle_timeout(now);
        self.drain_pools(db, now);
        self.expire_pending(now);
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next run.
    pub fn poll_timeout(&self) -> Instant {
        [
            Some(self.next_reconcile),
            self.members_due,
            self.pools.poll_timeout(),
            self.pending.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(self.next_reconcile)
    }

    /// The next event for the driver; carries out the NetworkDB writes queued before it.
    /// Drain after every input.
    pub fn poll_event(&mut self, db: &mut NetworkDb, now: Instant) -> Option<Event> {
        match self.outbox.next(db, now)? {
            Next::Persist => {
                self.state.ipam = self.pools.snapshots();
                Some(Event::Persist(Box::new(self.state.clone())))
            }
            Next::Event(e) => Some(*e),
        }
    }

    /// Whether effects are queued.
    pub fn has_events(&self) -> bool {
        !self.outbox.is_empty()
    }

    // ---- helpers shared by the operations ----

    /// 64 lower-case hex characters from the node's generator.
    pub(crate) fn random_id(&mut self) -> String {
        let mut bytes = [0u8; 32];
        self.rng.fill_bytes(&mut bytes);
        HEXLOWER.encode(&bytes)
    }

    /// Queues a save, and the new topology for service discovery.
    pub(crate) fn commit(&mut self) {
        self.outbox.push(Deferred::Persist);
        self.topology();
    }

    /// Queues service discovery's topology: network names and the networks of sandboxes.
    pub(crate) fn topology(&mut self) {
        let networks = self
            .state
            .networks
            .iter()
            .map(|(id, k)| (id.clone(), k.spec.name.clone()))
            .collect();
        let sandboxes = sandbox_networks(&self.state);
        self.outbox.event(Event::Names(NamesChange::Topology {
            networks,
            sandboxes,
        }));
    }

    /// Makes service discovery resolve on a NetworkDB network joined outside the CNM (the
    /// simulator's raw workload, the diagnostic API), from the entries NetworkDB holds now.
    pub fn resolve_on(&mut self, db: &NetworkDb, network_id: &str) {
        if self.names_attached.contains(network_id)
            || !self.names_external.insert(network_id.to_owned())
        {
            return;
        }
        self.names_snapshot(db, network_id);
    }

    /// Stops resolving on a network of [`resolve_on`](Self::resolve_on).
    pub fn stop_resolving(&mut self, network_id: &str) {
        if self.names_external.remove(network_id) {
            self.outbox
                .event(Event::Names(NamesChange::Detach(network_id.to_owned())));
        }
    }

    /// Queues the attachment of `network_id` for service discovery and its current entries.
    fn names_snapshot(&mut self, db: &NetworkDb, network_id: &str) {
        self.outbox
            .event(Event::Names(NamesChange::Attach(network_id.to_owned())));
        for (key, elem) in db.table_by_network(discovery::ENDPOINT_TABLE, network_id) {
            self.outbox
                .event(Event::Names(NamesChange::Record(WatchEvent {
                    table: discovery::ENDPOINT_TABLE.into(),
                    network: network_id.into(),
                    key,
                    prev: None,
                    value: Some(elem.value),
                })));
        }
    }

    /// Joins a network's NetworkDB network and makes service discovery resolve on it,
    /// starting from the entries NetworkDB holds already (the network may have been joined
    /// before, by the diagnostic API or a previous endpoint whose leave is not reaped yet).
    pub(crate) fn attach(&mut self, db: &NetworkDb, network_id: &str) {
        self.names_external.remove(network_id);
        if self.names_attached.insert(network_id.to_owned()) {
            self.names_snapshot(db, network_id);
        }
        self.outbox.push(Deferred::Join(network_id.to_owned()));
    }

    /// Leaves a network's NetworkDB network (its entries go, as delete events), then
    /// service discovery forgets it.
    pub(crate) fn detach(&mut self, network_id: &str) {
        self.outbox.push(Deferred::Leave(network_id.to_owned()));
        if self.names_attached.remove(network_id) {
            self.outbox
                .event(Event::Names(NamesChange::Detach(network_id.to_owned())));
        }
    }

    /// Queues a write of an entry owned by this node.
    pub(crate) fn put(&mut self, table: &str, network: &str, key: &str, value: Bytes) {
        self.outbox.push(Deferred::Put {
            table: table.to_owned(),
            network: network.to_owned(),
            key: key.to_owned(),
            value,
        });
    }

    /// Queues a delete of an entry of this node.
    pub(crate) fn delete(&mut self, table: &str, network: &str, key: &str) {
        self.outbox.push(Deferred::Delete {
            table: table.to_owned(),
            network: network.to_owned(),
            key: key.to_owned(),
        });
    }

    /// Moves the allocators' outputs into the outbox and answers the operations they finish.
    pub(crate) fn drain_pools(&mut self, db: &NetworkDb, now: Instant) {
        let mut outs = Vec::new();
        self.pools.drain(&mut outs);
        for o in outs {
            match o {
                PoolOutput::Persist => self.outbox.push(Deferred::Persist),
                PoolOutput::Put { table, key, value } => {
                    self.put(table, GLOBAL_NETWORK, &key, Bytes::from(value));
                }
                PoolOutput::Delete { table, key } => self.delete(table, GLOBAL_NETWORK, &key),
                PoolOutput::Allocated {
                    pool,
                    ticket,
                    value,
                } => self.allocated(db, now, &pool, ticket, Ok(value)),
                PoolOutput::Refused {
                    pool,
                    ticket,
                    error,
                } => self.allocated(db, now, &pool, ticket, Err(error)),
            }
        }
    }

    /// Starts the allocator of every network this node knows (catalogue or state), and of
    /// the VNI pool once the founder is known.
    pub(crate) fn ensure_pools(&mut self, db: &NetworkDb, now: Instant) {
        let mut specs = crate::catalogue::list(db);
        for known in self.state.networks.values() {
            if !specs.iter().any(|s| s.id == known.spec.id) {
                specs.push(known.spec.clone());
            }
        }
        for spec in specs {
            if self.pools.contains(&spec.id) {
                continue;
            }
            let Ok(pool) = ipam::Pool::for_subnet(spec.subnet) else {
                continue;
            };
            let snapshot = self.state.ipam.get(&spec.id).cloned();
            self.pools
                .ensure(db, now, &spec.id, &spec.created_by, pool, snapshot);
            self.pools.set_name(&spec.id, &spec.name);
        }
        if let Some(founder) = self.state.founder.clone()
            && !self.pools.contains(crate::VNI_POOL)
        {
            let snapshot = self.state.ipam.get(crate::VNI_POOL).cloned();
            self.pools.ensure(
                db,
                now,
                crate::VNI_POOL,
                &founder,
                ipam::Pool::vnis(),
                snapshot,
            );
        }
        self.drain_pools(db, now);
    }

    /// A founder named by another node's entry.
    fn learn_founder(&mut self, db: &NetworkDb, now: Instant, value: &[u8]) {
        let Ok(name) = std::str::from_utf8(value) else {
            return;
        };
        if crate::model::check_name("node", name).is_err() {
            return;
        }
        match &self.state.founder {
            Some(known) if known == name => {}
            Some(_) => self.stats.founder_conflicts += 1,
            None => {
                self.state.founder = Some(name.to_owned());
                self.outbox.push(Deferred::Persist);
                self.ensure_pools(db, now);
            }
        }
    }

    /// Claims the values this node's state holds but its allocators do not: the addresses of
    /// its endpoints and the VNIs of the networks it created, from a state file of format 1
    /// (written before IPAM). Run at every reconciliation until each is held: at start the
    /// members (the owners to ask) are not known yet. A value taken elsewhere is given up on
    /// and counted (`restore_conflicts`); one whose owner is unreachable is asked again.
    pub(crate) fn claim_restored(&mut self, now: Instant) {
        let mut wanted: Vec<(String, u32)> = self
            .state
            .endpoints
            .values()
            .map(|e| (e.network_id.clone(), u32::from(e.ip)))
            .collect();
        wanted.extend(
            self.state
                .reserved
                .iter()
                .flat_map(|(net, ips)| ips.iter().map(move |ip| (net.clone(), u32::from(*ip)))),
        );
        wanted.extend(
            self.state
                .networks
                .values()
                .filter(|k| k.created_here && k.spec.vni >= crate::FIRST_AUTO_VNI)
                .map(|k| (crate::VNI_POOL.to_owned(), k.spec.vni)),
        );
        for (pool, value) in wanted {
            let Some(allocator) = self.pools.get(&pool) else {
                continue;
            };
            let key = (pool.clone(), value);
            if allocator.held().contains(&value)
                || self.restoring.values().any(|k| *k == key)
                || self.restore_failed.contains(&key)
            {
                continue;
            }
            match self.pools.allocate(now, &pool, ipam::Request::Value(value)) {
                Some(Ok(ipam::Allocation::Pending(ticket))) => {
                    self.restoring.insert((pool, ticket), key);
                }
                Some(Err(ipam::IpamError::Taken(_))) => {
                    self.stats.restore_conflicts += 1;
                    self.restore_failed.insert(key);
                }
                _ => {}
            }
        }
    }
}

/// Sandbox -> the IDs of its joined endpoints' networks, ordered by network name: the
/// networks its DNS server resolves on.
pub(crate) fn sandbox_networks(state: &LocalState) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for e in state.endpoints.values() {
        if let Some(sb) = &e.sandbox {
            out.entry(sb.clone())
                .or_default()
                .push((e.network.clone(), e.network_id.clone()));
        }
    }
    out.into_iter()
        .map(|(sb, mut nets)| {
            nets.sort();
            nets.dedup();
            (sb, nets.into_iter().map(|(_, id)| id).collect())
        })
        .collect()
}

/// A request ID for an operation that waits.
pub(crate) fn next_request(counter: &mut u64) -> RequestId {
    *counter += 1;
    RequestId(*counter)
}
