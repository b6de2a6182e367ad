//! Periodic work: gossip, anti-entropy (bulk sync, push/pull), reaping, reconnection and the
//! bootstrap check.

use std::time::Instant;

use bytes::Bytes;
use rand::seq::SliceRandom;

use crate::db::{PendingSync, SyncKind};
use crate::peers::sample_indices;
use crate::queue::retransmit_limit;
use crate::wire::{
    BulkSync, COMPOUND_HEADER_BYTES, Message, NetworkEntry, PushPull, TableEvent, TableEventKind,
    encode_compound,
};
use crate::{Channel, Error, NetworkDb, NetworkId, NodeName, NodeState, Output};

/// Most compounds per network one eager push sends; fresh events beyond them wait for the
/// gossip tick, so a flood of relayed events cannot turn every coalescing window into a burst.
pub(crate) const EAGER_DATAGRAMS_PER_NETWORK: usize = 2;

impl NetworkDb {
    /// Picks `min(count, candidates.len())` distinct candidates uniformly (moby's exact
    /// `mRandomNodes`).
    pub(crate) fn sample(&mut self, candidates: &[NodeName], count: usize) -> Vec<NodeName> {
        sample_indices(&mut self.rng, candidates.len(), count)
            .map(|i| candidates[i].clone())
            .collect()
    }

    /// One gossip tick: per local network (leaving ones too, so queues drain), one compound
    /// of local events then relayed ones, within the packet budget, to up to `gossip_fanout`
    /// random peers, each copy one transmit; then cluster events to random active nodes.
    pub(crate) fn gossip(&mut self, _now: Instant) {
        let budget = self
            .config
            .payload_budget()
            .saturating_sub(COMPOUND_HEADER_BYTES);
        let networks: Vec<NetworkId> = self.local.keys().cloned().collect();
        let mut parts = Vec::new();
        for network in networks {
            let peers = self.cached_peers(&network);
            if peers.is_empty() {
                // libnetwork drains the queue even with nobody to send to; keeping the events
                // lets a peer that attaches later still receive them.
                continue;
            }
            let limit = retransmit_limit(self.config.retransmit_mult, peers.len() + 1);
            let targets = self.sample(&peers, self.config.gossip_fanout);
            self.flush_backlog(&network, &peers, budget);
            let Some(net) = self.local.get_mut(&network) else {
                continue;
            };
            parts.clear();
            // Every copy counts as one transmission (see `gossip_cluster_events`).
            let charge = u32::try_from(targets.len()).unwrap_or(u32::MAX);
            let used = net.local.drain(budget, false, charge, limit, &mut parts);
            net.relay
                .drain(budget - used, false, charge, limit, &mut parts);
            if parts.is_empty() {
                continue;
            }
            net.messages_sent += parts.len() as u64;
            let payload = encode_compound(&parts);
            debug_assert!(
                payload.len() <= self.config.payload_budget(),
                "BUG: oversized compound"
            );
            for peer in targets {
                self.send(&peer, Channel::Datagram, payload.clone());
            }
        }
        self.gossip_cluster_events(budget);
    }

    /// With more than one datagram's worth of local events queued for `network` (and
    /// [`Config::stream_backlog`](crate::Config::stream_backlog)), every peer gets the whole
    /// backlog reliably now, in one stream message.
    fn flush_backlog(&mut self, network: &NetworkId, peers: &[NodeName], budget: usize) {
        let Some(net) = self.local.get_mut(network) else {
            return;
        };
        if !self.config.stream_backlog || net.local.bytes() <= budget {
            return;
        }
        let backlog = net.local.take_all();
        self.stats.backlog_flushes += 1;
        self.stats.backlog_events += backlog.len() as u64;
        let payload = encode_compound(&backlog);
        for peer in peers {
            self.send(peer, Channel::Stream, payload.clone());
        }
    }

    /// The eager push ([`Config::eager_push`](crate::Config::eager_push)): the first
    /// transmission of every event queued since the last one, without waiting for the tick.
    /// Per network, a backlog goes on the stream path as on a tick, then up to
    /// [`EAGER_DATAGRAMS_PER_NETWORK`] compounds of fresh local then relayed events go to
    /// `gossip_fanout` random peers; fresh node and network events go in one compound to
    /// `gossip_fanout` random nodes. Every copy is one transmit, as on a tick.
    /// Whatever does not fit waits for the tick.
    pub(crate) fn eager_push(&mut self, _now: Instant) {
        let budget = self
            .config
            .payload_budget()
            .saturating_sub(COMPOUND_HEADER_BYTES);
        let networks: Vec<NetworkId> = self
            .local
            .iter()
            .filter(|(_, n)| n.local.has_fresh() || n.relay.has_fresh())
            .map(|(id, _)| id.clone())
            .collect();
        let mut parts = Vec::new();
        for network in networks {
            let peers = self.cached_peers(&network);
            if peers.is_empty() {
                continue;
            }
            self.flush_backlog(&network, &peers, budget);
            let limit = retransmit_limit(self.config.retransmit_mult, peers.len() + 1);
            for _ in 0..EAGER_DATAGRAMS_PER_NETWORK {
                let targets = self.sample(&peers, self.config.gossip_fanout);
                let Some(net) = self.local.get_mut(&network) else {
                    break;
                };
                parts.clear();
                let charge = u32::try_from(targets.len()).unwrap_or(u32::MAX);
                let used = net.local.drain(budget, true, charge, limit, &mut parts);
                net.relay
                    .drain(budget - used, true, charge, limit, &mut parts);
                if parts.is_empty() {
                    break;
                }
                net.messages_sent += parts.len() as u64;
                self.stats.eager_datagrams += targets.len() as u64;
                self.stats.eager_events += parts.len() as u64;
                let payload = encode_compound(&parts);
                for peer in targets {
                    self.send(&peer, Channel::Datagram, payload.clone());
                }
            }
        }
        if !self.cluster_queue.has_fresh() {
            return;
        }
        let limit = self.cluster_retransmit_limit(self.active.len() + 1);
        let targets = self.sample_active(self.config.gossip_fanout);
        if targets.is_empty() {
            return;
        }
        parts.clear();
        let charge = u32::try_from(targets.len()).unwrap_or(u32::MAX);
        self.cluster_queue
            .drain(budget, true, charge, limit, &mut parts);
        if parts.is_empty() {
            return;
        }
        self.stats.eager_datagrams += targets.len() as u64;
        self.stats.eager_events += parts.len() as u64;
        let payload = encode_compound(&parts);
        for peer in targets {
            self.send(&peer, Channel::Datagram, payload.clone());
        }
    }

    /// How often a node or network event is sent by each node: `cluster_retransmit_mult *
    /// ceil(log10(n + 1))`, never fewer than a network's events in a small cluster
    /// (`retransmit_mult`).
    fn cluster_retransmit_limit(&self, nodes: usize) -> u32 {
        retransmit_limit(self.config.cluster_retransmit_mult, nodes)
            .max(self.config.retransmit_mult)
    }

    fn gossip_cluster_events(&mut self, budget: usize) {
        if self.cluster_queue.len() == 0 {
            return;
        }
        if self.active.len() == 0 {
            return;
        }
        let limit = self.cluster_retransmit_limit(self.active.len() + 1);
        // As memberlist does for these events, every peer gets its own compound and every
        // copy counts as one transmission: an event is sent `limit` times in all, not
        // `limit` times to `gossip_fanout` peers each (three times the traffic, and three
        // times the stale copies every receiver decodes, for no gain in reach).
        //
        // A surge of attachments (many nodes joining networks at once) would take many ticks
        // to spread, while table events of the new attachments are refused until it has: up
        // to `cluster_datagrams_per_tick` rounds per tick while the backlog lasts.
        let mut parts: Vec<Bytes> = Vec::new();
        for _ in 0..self.config.cluster_datagrams_per_tick {
            for peer in self.sample_active(self.config.gossip_fanout) {
                parts.clear();
                self.cluster_queue
                    .drain(budget, false, 1, limit, &mut parts);
                if parts.is_empty() {
                    return;
                }
                let payload = encode_compound(&parts);
                self.send(&peer, Channel::Datagram, payload);
            }
        }
    }

    /// Bulk-syncs every common network with `node` now (libnetwork `bulkSyncNode`). A failed
    /// node is tried at its last address (moby); an unknown node is an error.
    pub fn bulk_sync_with(&mut self, now: Instant, node: &NodeName) -> Result<(), Error> {
        if !self.syncable(node) {
            self.stats.bulk_sync_unknown_node += 1;
            return Err(Error::UnknownNode(node.clone()));
        }
        let networks = self.common_networks(node);
        self.send_bulk_sync(now, node, networks, true, false, None);
        Ok(())
    }

    /// Sends this node's copy of `networks` to `peer`. A request registers a wait for the
    /// reply, correlated by Lamport time.
    pub(crate) fn send_bulk_sync(
        &mut self,
        now: Instant,
        peer: &NodeName,
        networks: Vec<NetworkId>,
        unsolicited: bool,
        join: bool,
        fallback: Option<NodeName>,
    ) {
        if !self.syncable(peer) {
            self.stats.bulk_sync_unknown_node += 1;
            return;
        }
        let mut attachments = Vec::new();
        let mut events = Vec::new();
        for network in &networks {
            attachments.extend(self.attachment_entries(network));
            self.collect_events(now, network, &mut events, |_| true);
        }
        let ltime = self.table_clock.increment();
        let msg = Message::BulkSync(BulkSync {
            ltime,
            unsolicited,
            node: self.me.clone(),
            networks: networks.clone(),
            attachments,
            events,
        });
        self.stats.bulk_syncs_sent += 1;
        self.send(peer, Channel::Stream, msg.encode());
        if unsolicited {
            self.await_reply(now, peer, ltime, networks, join, fallback, SyncKind::Full);
        }
    }

    /// A reply from `peer` at `ltime` (bulk, digest or partial) completes every request sent
    /// to it before.
    pub(crate) fn complete_syncs(&mut self, now: Instant, peer: &NodeName, ltime: crate::LTime) {
        // Any reply newer than a request answers it (moby#51701: concurrent syncs to one
        // peer no longer overwrite each other's wait).
        let mut answered = Vec::new();
        self.pending_syncs.retain(|p| {
            let done = &p.peer == peer && p.ltime < ltime;
            if done {
                answered.push(p.sent);
            }
            !done
        });
        for sent in answered {
            self.stats.bulk_syncs_completed += 1;
            let took = now.saturating_duration_since(sent);
            self.stats.bulk_sync_micros_total = self
                .stats
                .bulk_sync_micros_total
                .saturating_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
        }
        self.update_in_sync();
    }

    /// Registers a sync request sent to `peer` at `ltime`: any reply from `peer` newer than
    /// it completes it; after `bulk_sync_timeout` it is counted and its fallback is tried.
    #[allow(
        clippy::too_many_arguments,
        reason = "the fields of one pending request"
    )]
    pub(crate) fn await_reply(
        &mut self,
        now: Instant,
        peer: &NodeName,
        ltime: crate::LTime,
        networks: Vec<NetworkId>,
        join: bool,
        fallback: Option<NodeName>,
        kind: SyncKind,
    ) {
        self.pending_syncs.push(PendingSync {
            peer: peer.clone(),
            ltime,
            deadline: now + self.config.bulk_sync_timeout,
            sent: now,
            networks,
            join,
            fallback,
            kind,
        });
    }

    /// Every attachment this node knows of in `network`, its own first.
    pub(crate) fn attachment_entries(&self, network: &NetworkId) -> Vec<NetworkEntry> {
        let mut out = Vec::new();
        if let Some(local) = self.local.get(network) {
            out.push(NetworkEntry {
                network: network.clone(),
                ltime: local.ltime,
                node: self.me.clone(),
                leaving: local.leaving,
            });
        }
        if let Some(attached) = self.attachments.get(network) {
            for (node, a) in attached {
                out.push(NetworkEntry {
                    network: network.clone(),
                    ltime: a.ltime,
                    node: node.clone(),
                    leaving: a.leaving,
                });
            }
        }
        out
    }

    /// Appends the entries of `network` whose key hash ([`key_hash`](crate::digest::key_hash))
    /// `wanted` accepts to `out`, as a sync carries them: creates and deletes with their
    /// residual life, expired tombstones left out.
    pub(crate) fn collect_events(
        &self,
        now: Instant,
        network: &NetworkId,
        out: &mut Vec<TableEvent>,
        mut wanted: impl FnMut(u64) -> bool,
    ) {
        let Some(tables) = self.tables.get(network) else {
            return;
        };
        for (table, entries) in tables {
            for (key, e) in entries.iter().filter(|(_, e)| !e.expired(now)) {
                if !wanted(e.key_hash) {
                    continue;
                }
                out.push(TableEvent {
                    kind: if e.deleting {
                        TableEventKind::Delete
                    } else {
                        TableEventKind::Create
                    },
                    ltime: e.ltime,
                    owner: e.owner.clone(),
                    network: network.clone(),
                    table: table.clone(),
                    key: key.clone(),
                    value: e.value.clone(),
                    residual_reap_secs: e.residual_secs(now),
                });
            }
        }
    }

    /// Every `bulk_sync_interval`: for each joined network in random order, one random peer
    /// (a second one as fallback if it does not answer); one sync covers every network shared
    /// with that peer.
    pub(crate) fn periodic_bulk_sync(&mut self, now: Instant) {
        let mut pending: Vec<NetworkId> = self
            .local
            .iter()
            .filter(|(_, n)| !n.leaving)
            .map(|(id, _)| id.clone())
            .collect();
        pending.shuffle(&mut self.rng);
        while let Some(network) = pending.pop() {
            let peers = self.cached_peers(&network);
            let chosen = self.sample(&peers, 2);
            let Some(first) = chosen.first().cloned() else {
                continue;
            };
            let networks = self.common_networks(&first);
            pending.retain(|n| !networks.contains(n));
            let fallback = chosen.get(1).cloned();
            if self.config.digest_sync {
                self.send_digest(now, &first, networks, fallback);
            } else {
                self.send_bulk_sync(now, &first, networks, true, false, fallback);
            }
        }
    }

    /// Active and failed nodes can be bulk-synced (a failed one may still be alive); left and
    /// unknown ones cannot.
    pub(crate) fn syncable(&self, node: &NodeName) -> bool {
        self.nodes
            .get(node)
            .is_some_and(|n| n.state != NodeState::Left)
    }

    /// Forgets the requests waiting on `peer` (it failed or left); a periodic one tries its
    /// fallback peer at once.
    pub(crate) fn abandon_syncs_to(&mut self, now: Instant, peer: &NodeName) {
        let (gone, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending_syncs)
            .into_iter()
            .partition(|p| &p.peer == peer);
        self.pending_syncs = keep;
        for p in gone {
            self.try_fallback(now, p);
        }
        self.update_in_sync();
    }

    /// A periodic request that will not be answered is sent to its fallback peer instead.
    fn try_fallback(&mut self, now: Instant, pending: PendingSync) {
        let Some(fallback) = pending.fallback else {
            return;
        };
        let networks = self.common_networks(&fallback);
        if networks.is_empty() {
            return;
        }
        match pending.kind {
            SyncKind::Digest => self.send_digest(now, &fallback, networks, None),
            SyncKind::Full | SyncKind::Partial => {
                self.send_bulk_sync(now, &fallback, networks, true, false, None);
            }
        }
    }

    /// Requests whose reply did not come in time are counted; a periodic one tries its
    /// fallback peer.
    pub(crate) fn expire_syncs(&mut self, now: Instant) {
        let (expired, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending_syncs)
            .into_iter()
            .partition(|p| p.deadline <= now);
        self.pending_syncs = waiting;
        for p in expired {
            self.stats.bulk_sync_timeouts += 1;
            self.try_fallback(now, p);
        }
        self.update_in_sync();
    }

    /// Sends every attachment this node knows of to `peer`.
    pub(crate) fn send_push_pull(&mut self, peer: &NodeName, reply: bool) {
        let mut networks = Vec::new();
        for (network, local) in &self.local {
            networks.push(NetworkEntry {
                network: network.clone(),
                ltime: local.ltime,
                node: self.me.clone(),
                leaving: local.leaving,
            });
        }
        for (network, attached) in &self.attachments {
            for (node, a) in attached {
                networks.push(NetworkEntry {
                    network: network.clone(),
                    ltime: a.ltime,
                    node: node.clone(),
                    leaving: a.leaving,
                });
            }
        }
        let msg = Message::PushPull(PushPull {
            ltime: self.network_clock.time(),
            node: self.me.clone(),
            networks,
            reply,
        });
        self.send(peer, Channel::Stream, msg.encode());
    }

    pub(crate) fn periodic_push_pull(&mut self, _now: Instant) {
        if let Some(peer) = self.sample_active(1).pop() {
            if self.config.digest_sync {
                self.send_push_pull_digest(&peer);
            } else {
                self.send_push_pull(&peer, false);
            }
        }
    }

    /// Removes expired tombstones, hidden entries, leaving attachments and dead nodes.
    pub(crate) fn reap(&mut self, now: Instant) {
        // Reaping removes only leaving attachments and nodes no longer active: no cached peer
        // list holds them.
        let due = |at: Option<Instant>| at.is_some_and(|at| at <= now);
        let mut removed = false;
        for tables in self.tables.values_mut() {
            for entries in tables.values_mut() {
                entries.retain(|_, e| {
                    let expired = e.expired(now);
                    removed |= expired;
                    !expired
                });
            }
            tables.retain(|_, entries| !entries.is_empty());
        }
        self.tables.retain(|_, tables| !tables.is_empty());
        self.attachment_repairs.retain(|_, next| *next > now);
        for attached in self.attachments.values_mut() {
            attached.retain(|_, a| {
                let reaped = a.leaving && due(a.reap_at);
                removed |= reaped;
                !reaped
            });
        }
        if removed {
            self.seen.clear();
        }
        self.attachments.retain(|_, attached| !attached.is_empty());
        self.local.retain(|_, n| !(n.leaving && due(n.reap_at)));
        let dead: Vec<NodeName> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.state != NodeState::Active && due(n.reap_at))
            .map(|(name, _)| name.clone())
            .collect();
        for name in dead {
            self.drop_node_state(&name);
            self.nodes.remove(&name);
            self.node_changed(&name);
        }
    }

    /// Offers one random failed node for reconnection.
    pub(crate) fn offer_reconnect(&mut self) {
        let Some(node) = self.failed.sample(&mut self.rng, 1).pop() else {
            return;
        };
        if let Some(addr) = self.nodes.get(&node).map(|n| n.addr) {
            self.outputs.push_back(Output::Reconnect { node, addr });
        }
    }

    /// Asks for a rejoin when no bootstrap address (address and port) is an active peer.
    pub(crate) fn check_bootstrap(&mut self) {
        if self.bootstrap.is_empty() {
            return;
        }
        let present = self.nodes.iter().any(|(name, n)| {
            *name != self.me && n.state == NodeState::Active && self.bootstrap.contains(&n.addr)
        });
        let own = self.bootstrap.iter().all(|a| *a == self.addr);
        if !present && !own {
            let addrs = self
                .bootstrap
                .iter()
                .copied()
                .filter(|a| *a != self.addr)
                .collect();
            self.outputs.push_back(Output::RejoinBootstrap { addrs });
        }
    }
}
