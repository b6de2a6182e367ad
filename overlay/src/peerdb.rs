//! The peer DB: per network, the endpoints `overlay_peer_table` holds and the neighbour and
//! FDB entries they call for.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use networkdb::{Key, NetworkId, WatchEvent};

use crate::{KernelState, Mac, PEER_TABLE, PeerRecord};

/// The lowest [`IpAddr`] in its `Ord` order (V4 sorts before V6).
const MIN_IP: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// Every network's peers as this host sees them, and the kernel state they call for.
///
/// # Inputs
///
/// * [`apply`](Self::apply) takes every NetworkDB [`WatchEvent`] of [`PEER_TABLE`] (others
///   are counted and ignored). The NetworkDB key is the endpoint ID; a value becomes the
///   endpoint's record (an update `prev -> value` replaces the key's record, i.e. removes
///   the old and adds the new); a delete removes the key's record only if it still equals
///   `prev` (otherwise the delete is stale: a newer value for the key already arrived, and
///   it is counted in [`PeerDbStats::stale_deletes`]). A value that does not decode is
///   counted in [`PeerDbStats::malformed_records`] and treated as absent, so the key's old
///   record goes. Duplicate events change nothing.
/// * [`network_ready`](Self::network_ready) / [`network_gone`](Self::network_gone): the
///   network's VXLAN device was created / destroyed. Peers are kept either way: peers that
///   arrive before the device exists are replayed when it becomes ready, as libnetwork's
///   peer DB replays them when the sandbox appears.
/// * [`host_down`](Self::host_down) / [`host_up`](Self::host_up): a remote host failed /
///   returned; its endpoints are withdrawn while it is down. NetworkDB already hides a
///   failed owner's entries by emitting deletes and restores them with creates, so a node
///   agent fed by NetworkDB need not call these; both paths together are also correct.
///
/// # Output
///
/// After any input, drain [`poll_changed`](Self::poll_changed): for each ready network it
/// returns, [`plan`](crate::plan) from [`wanted`](Self::wanted) and the dataplane's state
/// and apply the ops. Since planning diffs whole states, re-planning a network is always
/// safe (after a failed apply, call [`mark_changed`](Self::mark_changed)).
///
/// # Which claimant is programmed
///
/// Several endpoints may claim one IP (IP reuse with delete and create out of order, moby
/// #1934). Exactly one is chosen: the smallest `(remote, vtep, endpoint id)`, considering
/// only local endpoints and endpoints of hosts that are not down. So a local endpoint beats
/// every remote one (and then nothing is programmed for the IP: local endpoints live on the
/// bridge, and a remote neighbour entry would make proxy ARP answer for them), and otherwise
/// the smallest VTEP, then the smallest endpoint ID, wins. When the chosen claimant goes, the
/// next one is programmed at once, rather than leaving the IP unprogrammed until a later
/// event.
///
/// # FDB
///
/// Each programmed (chosen, remote) endpoint references the FDB entry `mac -> vtep`; an
/// entry lives while its reference count is positive, so two endpoints behind one MAC do not
/// delete each other's entry. If one MAC is
/// referenced with several VTEPs (a user-set MAC reused on two hosts), the kernel can hold
/// only one permanent remote for it: the smallest VTEP wins.
#[derive(Clone, Debug)]
pub struct PeerDb {
    local_vtep: IpAddr,
    networks: BTreeMap<NetworkId, NetworkPeers>,
    down: BTreeSet<IpAddr>,
    changed: BTreeSet<NetworkId>,
    stats: PeerDbStats,
}

/// Counters of a [`PeerDb`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerDbStats {
    /// Values of [`PEER_TABLE`] events that did not decode; each was treated as absent.
    /// A malformed `prev` of a delete is not counted again.
    pub malformed_records: u64,
    /// Events of other tables, ignored.
    pub other_tables: u64,
    /// Deletes whose `prev` was not the key's current record, ignored.
    pub stale_deletes: u64,
}

/// One network's peers and the kernel state they call for.
#[derive(Clone, Debug, Default)]
pub struct NetworkPeers {
    ready: bool,
    endpoints: BTreeMap<Key, PeerRecord>,
    /// Every endpoint claiming an IP, in choice order.
    claims: BTreeMap<Ipv4Addr, BTreeSet<Claim>>,
    /// The chosen claimant of each IP that has an eligible one.
    chosen: BTreeMap<Ipv4Addr, Claim>,
    /// References to `mac -> vtep` from chosen remote claimants.
    fdb_refs: BTreeMap<(Mac, IpAddr), u32>,
    desired: KernelState,
}

/// An endpoint's claim on an IP; the derived order is the choice order (`mac` never
/// decides: keys are unique per IP).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Claim {
    remote: bool,
    vtep: IpAddr,
    key: Key,
    mac: Mac,
}

impl PeerDb {
    /// An empty peer DB for a host whose data-path address (the VTEP it publishes in its own
    /// records) is `local_vtep`. Records with that VTEP are local: kept, never programmed.
    pub fn new(local_vtep: IpAddr) -> Self {
        Self {
            local_vtep: local_vtep.to_canonical(),
            networks: BTreeMap::new(),
            down: BTreeSet::new(),
            changed: BTreeSet::new(),
            stats: PeerDbStats::default(),
        }
    }

    /// This host's data-path address.
    pub fn local_vtep(&self) -> IpAddr {
        self.local_vtep
    }

    /// The counters.
    pub fn stats(&self) -> PeerDbStats {
        self.stats
    }

    /// Applies a NetworkDB watch event (see the type's docs for the rules). Never fails:
    /// bad input is counted and dropped.
    pub fn apply(&mut self, ev: &WatchEvent) {
        if ev.table.as_str() != PEER_TABLE {
            self.stats.other_tables += 1;
            return;
        }
        match (&ev.prev, &ev.value) {
            (_, Some(value)) => match PeerRecord::decode(value) {
                Ok(record) => self.upsert(&ev.network, &ev.key, canonical(record)),
                Err(_) => {
                    self.stats.malformed_records += 1;
                    self.remove(&ev.network, &ev.key, None);
                }
            },
            (Some(prev), None) => {
                // A prev that does not decode was never stored: nothing to remove.
                if let Ok(record) = PeerRecord::decode(prev) {
                    self.remove(&ev.network, &ev.key, Some(canonical(record)));
                }
            }
            (None, None) => {}
        }
    }

    /// The network's VXLAN device exists: its peers are to be programmed from now on, and it
    /// is reported by [`poll_changed`](Self::poll_changed) so all of them are replayed.
    pub fn network_ready(&mut self, network: &NetworkId) {
        let net = self.networks.entry(network.clone()).or_default();
        net.ready = true;
        self.changed.insert(network.clone());
    }

    /// The network's VXLAN device is gone (its namespace was destroyed). Its peers are kept
    /// for a later [`network_ready`](Self::network_ready).
    pub fn network_gone(&mut self, network: &NetworkId) {
        self.changed.remove(network);
        if let Some(net) = self.networks.get_mut(network) {
            net.ready = false;
            if net.endpoints.is_empty() {
                self.networks.remove(network);
            }
        }
    }

    /// Forgets the network and its peers (libnetwork `peerFlush`, on network delete). Events
    /// arriving later for it start it afresh, not ready.
    pub fn remove_network(&mut self, network: &NetworkId) {
        self.changed.remove(network);
        self.networks.remove(network);
    }

    /// The remote host with data-path address `vtep` failed: withdraw its endpoints until
    /// [`host_up`](Self::host_up). Idempotent; the local VTEP is never down.
    pub fn host_down(&mut self, vtep: IpAddr) {
        let vtep = vtep.to_canonical();
        if vtep != self.local_vtep && self.down.insert(vtep) {
            self.refresh_vtep(vtep);
        }
    }

    /// The remote host with data-path address `vtep` returned: its endpoints are eligible
    /// again. Idempotent.
    pub fn host_up(&mut self, vtep: IpAddr) {
        let vtep = vtep.to_canonical();
        if self.down.remove(&vtep) {
            self.refresh_vtep(vtep);
        }
    }

    /// Whether the remote host `vtep` is down.
    pub fn is_host_down(&self, vtep: IpAddr) -> bool {
        self.down.contains(&vtep.to_canonical())
    }

    /// A ready network whose desired state may have changed since it was last returned, in
    /// network-ID order; `None` when there is none. Drain after every input.
    #[must_use]
    pub fn poll_changed(&mut self) -> Option<NetworkId> {
        self.changed.pop_first()
    }

    /// Has [`poll_changed`](Self::poll_changed) report `network` again if it is ready, e.g.
    /// after a failed apply.
    pub fn mark_changed(&mut self, network: &NetworkId) {
        if self.networks.get(network).is_some_and(|n| n.ready) {
            self.changed.insert(network.clone());
        }
    }

    /// The peers of a ready network: what to program. `None` for a network that is not
    /// ready (see [`network`](Self::network)).
    pub fn wanted(&self, network: &NetworkId) -> Option<&NetworkPeers> {
        self.networks.get(network).filter(|n| n.ready)
    }

    /// The peers of a network, ready or not.
    pub fn network(&self, network: &NetworkId) -> Option<&NetworkPeers> {
        self.networks.get(network)
    }

    /// Every known network, ready or not, in ID order.
    pub fn networks(&self) -> impl Iterator<Item = (&NetworkId, &NetworkPeers)> {
        self.networks.iter()
    }

    /// What the network's desired state should be, recomputed from scratch from its
    /// endpoints: a cross-check of the incremental bookkeeping, for checkers.
    pub(crate) fn recompute(&self, peers: &NetworkPeers) -> KernelState {
        peers.recompute(self.local_vtep, &self.down)
    }

    fn upsert(&mut self, network: &NetworkId, key: &Key, record: PeerRecord) {
        let net = self.networks.entry(network.clone()).or_default();
        if net.endpoints.get(key) == Some(&record) {
            return;
        }
        let mut changed = net.remove_endpoint(key, &self.down);
        changed |= net.insert_endpoint(key.clone(), record, self.local_vtep, &self.down);
        if changed && net.ready {
            self.changed.insert(network.clone());
        }
    }

    /// Removes `key`'s record if it equals `expected` (or unconditionally when `None`).
    fn remove(&mut self, network: &NetworkId, key: &Key, expected: Option<PeerRecord>) {
        let Some(net) = self.networks.get_mut(network) else {
            return;
        };
        match (net.endpoints.get(key), expected) {
            (None, _) => return,
            (Some(stored), Some(expected)) if *stored != expected => {
                self.stats.stale_deletes += 1;
                return;
            }
            _ => {}
        }
        if net.remove_endpoint(key, &self.down) && net.ready {
            self.changed.insert(network.clone());
        }
        if !net.ready && net.endpoints.is_empty() {
            self.networks.remove(network);
        }
    }

    fn refresh_vtep(&mut self, vtep: IpAddr) {
        for (id, net) in &mut self.networks {
            if net.refresh_vtep(vtep, &self.down) && net.ready {
                self.changed.insert(id.clone());
            }
        }
    }
}

impl NetworkPeers {
    /// Whether the network's VXLAN device exists.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// The neighbour and FDB entries these peers call for.
    pub fn desired(&self) -> &KernelState {
        &self.desired
    }

    /// Every endpoint of the network, local ones included, by endpoint ID.
    pub fn endpoints(&self) -> impl Iterator<Item = (&Key, &PeerRecord)> {
        self.endpoints.iter()
    }

    /// The endpoint chosen for `ip` (it may be local, and then nothing is programmed for
    /// the IP), or `None` if no eligible endpoint claims it.
    pub fn chosen(&self, ip: Ipv4Addr) -> Option<&Key> {
        self.chosen.get(&ip).map(|c| &c.key)
    }

    /// The remote VTEPs some endpoint of this network lives on, in order (for encryption,
    /// which needs SAs towards every remote host whether or not its endpoints are chosen).
    pub fn remote_vteps(&self) -> BTreeSet<IpAddr> {
        self.claims
            .values()
            .flatten()
            .filter(|c| c.remote)
            .map(|c| c.vtep)
            .collect()
    }

    fn insert_endpoint(
        &mut self,
        key: Key,
        record: PeerRecord,
        local_vtep: IpAddr,
        down: &BTreeSet<IpAddr>,
    ) -> bool {
        let ip = record.endpoint_ip.addr();
        let claim = Claim {
            remote: record.tunnel_endpoint_ip != local_vtep,
            vtep: record.tunnel_endpoint_ip,
            key: key.clone(),
            mac: record.endpoint_mac,
        };
        self.endpoints.insert(key, record);
        self.claims.entry(ip).or_default().insert(claim);
        self.refresh(ip, down)
    }

    fn remove_endpoint(&mut self, key: &Key, down: &BTreeSet<IpAddr>) -> bool {
        let Some(record) = self.endpoints.remove(key) else {
            return false;
        };
        let ip = record.endpoint_ip.addr();
        if let Some(claims) = self.claims.get_mut(&ip) {
            claims.retain(|c| &c.key != key);
            if claims.is_empty() {
                self.claims.remove(&ip);
            }
        }
        self.refresh(ip, down)
    }

    fn refresh_vtep(&mut self, vtep: IpAddr, down: &BTreeSet<IpAddr>) -> bool {
        let ips: Vec<Ipv4Addr> = self
            .claims
            .iter()
            .filter(|(_, claims)| claims.iter().any(|c| c.remote && c.vtep == vtep))
            .map(|(&ip, _)| ip)
            .collect();
        let mut changed = false;
        for ip in ips {
            changed |= self.refresh(ip, down);
        }
        changed
    }

    /// Re-chooses `ip`'s claimant; true if the desired state may have changed.
    fn refresh(&mut self, ip: Ipv4Addr, down: &BTreeSet<IpAddr>) -> bool {
        let winner = self
            .claims
            .get(&ip)
            .and_then(|claims| claims.iter().find(|c| eligible(c, down)))
            .cloned();
        let old = match &winner {
            Some(w) => self.chosen.insert(ip, w.clone()),
            None => self.chosen.remove(&ip),
        };
        let programmed = |c: &Claim| c.remote.then_some((c.mac, c.vtep));
        let old = old.as_ref().and_then(programmed);
        let new = winner.as_ref().and_then(programmed);
        if old == new {
            return false;
        }
        if let Some((mac, vtep)) = old {
            self.desired.neighbours.remove(&ip);
            self.fdb_unref(mac, vtep);
        }
        if let Some((mac, vtep)) = new {
            self.desired.neighbours.insert(ip, mac);
            *self.fdb_refs.entry((mac, vtep)).or_insert(0) += 1;
            self.fdb_pick(mac);
        }
        true
    }

    fn fdb_unref(&mut self, mac: Mac, vtep: IpAddr) {
        match self.fdb_refs.get_mut(&(mac, vtep)) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                self.fdb_refs.remove(&(mac, vtep));
            }
            None => debug_assert!(false, "BUG: FDB {mac} -> {vtep} unreferenced twice"),
        }
        self.fdb_pick(mac);
    }

    /// Sets the desired FDB entry of `mac` to its smallest referenced VTEP, if any.
    fn fdb_pick(&mut self, mac: Mac) {
        let vtep = self
            .fdb_refs
            .range((mac, MIN_IP)..)
            .next()
            .filter(|((m, _), _)| *m == mac)
            .map(|((_, v), _)| *v);
        match vtep {
            Some(v) => self.desired.fdb.insert(mac, v),
            None => self.desired.fdb.remove(&mac),
        };
    }

    /// The desired state computed from scratch (no claim index, no reference counts).
    fn recompute(&self, local_vtep: IpAddr, down: &BTreeSet<IpAddr>) -> KernelState {
        let mut best: BTreeMap<Ipv4Addr, (bool, IpAddr, &Key, Mac)> = BTreeMap::new();
        for (key, r) in &self.endpoints {
            let remote = r.tunnel_endpoint_ip != local_vtep;
            if remote && down.contains(&r.tunnel_endpoint_ip) {
                continue;
            }
            let candidate = (remote, r.tunnel_endpoint_ip, key, r.endpoint_mac);
            best.entry(r.endpoint_ip.addr())
                .and_modify(|b| *b = (*b).min(candidate))
                .or_insert(candidate);
        }
        let mut state = KernelState::default();
        for (ip, (remote, vtep, _, mac)) in best {
            if remote {
                state.neighbours.insert(ip, mac);
                state
                    .fdb
                    .entry(mac)
                    .and_modify(|v| *v = (*v).min(vtep))
                    .or_insert(vtep);
            }
        }
        state
    }
}

fn eligible(c: &Claim, down: &BTreeSet<IpAddr>) -> bool {
    !c.remote || !down.contains(&c.vtep)
}

/// The record with its VTEP in canonical form (an IPv4-mapped IPv6 VTEP becomes IPv4), so
/// one host is one VTEP however its address was written.
fn canonical(mut record: PeerRecord) -> PeerRecord {
    record.tunnel_endpoint_ip = record.tunnel_endpoint_ip.to_canonical();
    record
}
