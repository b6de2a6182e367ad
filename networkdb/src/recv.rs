//! Receive handling: decode, then the freshness rules of every message type.

use std::time::Instant;

use bytes::Bytes;

use crate::deferred::DEFER_WINDOW;
use crate::digest::attachment_hash;
use crate::entry::Entry;
use crate::network::Attachment;
use crate::wire::{
    BulkSync, DecodeError, MAX_COMPOUND_DEPTH, Message, NetworkEntry, NetworkEvent,
    NetworkEventKind, NodeEvent, NodeEventKind, PROTOCOL_VERSION, PushPull, TableEvent,
    TableEventKind, compound_parts,
};
use crate::{Channel, NetworkDb, NetworkId, NodeName, NodeState};

/// Lamport times above this are refused (2^62: unreachable by incrementing).
const MAX_SANE_LTIME: u64 = 1 << 62;

/// What became of a received event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Applied, and to be relayed by the caller (node and network events).
    Relay,
    /// Applied, or found stale: the same bytes again can only be stale.
    Settled,
    /// Refused for now (an owner not yet known as attached, this node's own event, a bad
    /// time): the same bytes may apply later.
    Open,
}

/// Where a table event came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Via {
    /// A datagram: relayed onwards.
    Gossip,
    /// The owner's backlog sent to every peer on the stream path: not relayed.
    Stream,
    /// A bulk sync.
    BulkSync,
}

impl NetworkDb {
    /// Handles a payload received on `channel`.
    ///
    /// A payload that cannot be decoded is counted in [`Stats`](crate::Stats) and returned as
    /// an error; state is untouched by it (the parts of a compound before a bad part are
    /// applied).
    pub fn handle_message(
        &mut self,
        now: Instant,
        channel: Channel,
        payload: &[u8],
    ) -> Result<(), DecodeError> {
        self.stats.payloads_in += 1;
        self.stats.bytes_in += payload.len() as u64;
        let via = via_of(channel);
        let result = self.handle_payload(now, payload, via);
        if let Err(err) = &result {
            self.count_decode_error(err);
        }
        result
    }

    /// Decodes and handles a payload; a compound's parts are taken from it without copying.
    fn handle_payload(
        &mut self,
        now: Instant,
        payload: &[u8],
        via: Via,
    ) -> Result<(), DecodeError> {
        let (&version, body) = payload.split_first().ok_or(DecodeError::Empty)?;
        if version != PROTOCOL_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        match compound_parts(body)? {
            // At depth 1, as `dispatch` hands a compound's parts on.
            Some(parts) => parts
                .into_iter()
                .try_for_each(|part| self.dispatch_part(now, part, 1, via)),
            None => Message::decode_part(body)
                .and_then(|msg| self.dispatch(now, msg, None, 0, via))
                .map(drop),
        }
    }

    /// Handles a message already decoded by the caller (the cluster layer decodes stream
    /// messages to check their sender against the peer's certificate first).
    pub fn handle_decoded(
        &mut self,
        now: Instant,
        channel: Channel,
        msg: Message,
    ) -> Result<(), DecodeError> {
        let result = self.dispatch(now, msg, None, 0, via_of(channel)).map(drop);
        if let Err(err) = &result {
            self.count_decode_error(err);
        }
        result
    }

    /// Whether a Lamport time could have been reached by counting. Larger ones (a buggy or
    /// hostile peer) are refused and counted: witnessing one would pin the clock at
    /// `u64::MAX` and leave only owner names to order writes.
    pub(crate) fn sane(&mut self, ltime: crate::LTime) -> bool {
        if ltime.0 > MAX_SANE_LTIME {
            self.stats.dropped_malformed += 1;
            return false;
        }
        true
    }

    fn count_decode_error(&mut self, err: &DecodeError) {
        match err {
            DecodeError::Empty => self.stats.dropped_empty += 1,
            DecodeError::UnsupportedVersion(_) => self.stats.dropped_version += 1,
            DecodeError::TooDeep => self.stats.dropped_too_deep += 1,
            _ => self.stats.dropped_malformed += 1,
        }
    }

    /// Handles one decoded message; `raw` is its encoding when it came as a compound part.
    /// Returns what became of it (a compound, or a message of the stream path, is
    /// [`Fate::Settled`]).
    fn dispatch(
        &mut self,
        now: Instant,
        msg: Message,
        raw: Option<&[u8]>,
        depth: usize,
        via: Via,
    ) -> Result<Fate, DecodeError> {
        let mut fate = Fate::Settled;
        match msg {
            Message::NodeEvent(ev) => {
                fate = self.handle_node_event(now, &ev);
                if fate == Fate::Relay {
                    let bytes = raw.map_or_else(
                        || Message::NodeEvent(ev.clone()).encode_part(),
                        <[u8]>::to_vec,
                    );
                    self.push_cluster(now, None, Bytes::from(bytes));
                }
            }
            Message::NetworkEvent(ev) => {
                fate = self.handle_network_event(now, &ev);
                if fate == Fate::Relay {
                    let bytes = raw.map_or_else(
                        || Message::NetworkEvent(ev.clone()).encode_part(),
                        <[u8]>::to_vec,
                    );
                    let key = Some((ev.network.clone(), ev.node.clone()));
                    self.push_cluster(now, key, Bytes::from(bytes));
                }
            }
            Message::TableEvent(ev) => {
                fate = self.handle_table_event(now, ev, raw, via);
            }
            // Push/pull and bulk sync belong to the stream path, where the transport
            // authenticates the sender; one datagram must not make this node send full copies
            // of its tables to whoever it names.
            Message::PushPull(_)
            | Message::BulkSync(_)
            | Message::SyncDigest(_)
            | Message::PartialSync(_)
            | Message::PushPullDigest(_)
                if via == Via::Gossip =>
            {
                self.stats.wrong_channel += 1;
            }
            Message::PushPull(pp) => self.handle_push_pull(now, pp),
            Message::BulkSync(bs) => self.handle_bulk_sync(now, bs),
            Message::SyncDigest(d) => self.handle_sync_digest(now, d),
            Message::PartialSync(ps) => self.handle_partial_sync(now, ps),
            Message::PushPullDigest(d) => self.handle_push_pull_digest(now, d),
            Message::Compound(parts) => {
                if depth >= MAX_COMPOUND_DEPTH {
                    return Err(DecodeError::TooDeep);
                }
                for part in parts {
                    self.dispatch_part(now, &part.0, depth + 1, via)?;
                }
            }
        }
        Ok(fate)
    }

    /// Handles one part of a gossip compound, skipping it undecoded when the same bytes were
    /// settled recently ([`SeenParts`](crate::seen::SeenParts)).
    fn dispatch_part(
        &mut self,
        now: Instant,
        part: &[u8],
        depth: usize,
        via: Via,
    ) -> Result<(), DecodeError> {
        let hash = self.seen.hash(part);
        if self.seen.contains(hash) {
            self.stats.duplicate_parts += 1;
            self.stats.stale_events += 1;
            // The first byte is the message's tag: node and network events are 0 and 1.
            if part.first().is_some_and(|tag| *tag <= 1) {
                self.stats.stale_cluster_events += 1;
            }
            return Ok(());
        }
        let msg = Message::decode_part(part)?;
        if self.dispatch(now, msg, Some(part), depth, via)? != Fate::Open {
            self.seen.insert(hash);
        }
        Ok(())
    }

    /// libnetwork `handleNodeEvent`.
    pub(crate) fn handle_node_event(&mut self, now: Instant, ev: &NodeEvent) -> Fate {
        if !self.sane(ev.ltime) {
            return Fate::Open;
        }
        self.network_clock.witness(ev.ltime);
        if ev.node == self.me {
            self.stats.own_events += 1;
            return Fate::Open;
        }
        let Some(node) = self.nodes.get_mut(&ev.node) else {
            return Fate::Open;
        };
        if node.ltime >= ev.ltime {
            self.stats.stale_events += 1;
            self.stats.stale_cluster_events += 1;
            return Fate::Settled;
        }
        node.ltime = ev.ltime;
        match (ev.kind, node.state) {
            // Only the membership layer makes a node active (moby/libnetwork#2013).
            (NodeEventKind::Join, _) | (NodeEventKind::Leave, NodeState::Left) => Fate::Settled,
            // A goodbye also retires a node already seen as failed: what was kept for its
            // return is dropped (moby PR #53142).
            (NodeEventKind::Leave, NodeState::Active | NodeState::Failed) => {
                let name = ev.node.clone();
                self.set_left(now, &name);
                Fate::Relay
            }
        }
    }

    /// libnetwork `handleNetworkEvent` with moby's fixes.
    pub(crate) fn handle_network_event(&mut self, now: Instant, ev: &NetworkEvent) -> Fate {
        if !self.sane(ev.ltime) {
            return Fate::Open;
        }
        self.network_clock.witness(ev.ltime);
        if ev.node == self.me {
            self.stats.own_events += 1;
            // A peer believes this node is attached to a network it is not attached to (it
            // missed the LEAVE, and the leaving record has since been reaped everywhere): say
            // it again, newer than the peer's copy, or the peer keeps the attachment (and
            // accepts this node's stale entries from anyone) forever.
            let attached = self.local.get(&ev.network).is_some_and(|n| !n.leaving);
            if ev.kind == NetworkEventKind::Join && !attached {
                let ltime = self.network_clock.increment();
                let network = ev.network.clone();
                self.queue_network_event(now, NetworkEventKind::Leave, ltime, &network);
            }
            return Fate::Open;
        }
        // The common case, a copy of an event already applied, decided with two lookups.
        if self
            .attachments
            .get(&ev.network)
            .and_then(|a| a.get(&ev.node))
            .is_some_and(|att| att.ltime >= ev.ltime)
        {
            self.stats.stale_events += 1;
            self.stats.stale_cluster_events += 1;
            return Fate::Settled;
        }
        let leave = ev.kind == NetworkEventKind::Leave;
        let reap_at = now + self.config.reap_network_interval();
        let node_active = self
            .nodes
            .get(&ev.node)
            .is_some_and(|n| n.state == NodeState::Active);
        let attached = self.attachments.entry(ev.network.clone()).or_default();
        match attached.get_mut(&ev.node) {
            // Newer than the record: the check above returned for a stale one.
            Some(att) => {
                att.ltime = ev.ltime;
                att.leaving = leave;
                att.hash = attachment_hash(&ev.network, &ev.node, ev.ltime, leave);
                att.reap_at = leave.then_some(reap_at);
            }
            None => {
                if leave || !node_active {
                    if attached.is_empty() {
                        self.attachments.remove(&ev.network);
                    }
                    return Fate::Open;
                }
                attached.insert(
                    ev.node.clone(),
                    Attachment {
                        ltime: ev.ltime,
                        leaving: false,
                        reap_at: None,
                        hash: attachment_hash(&ev.network, &ev.node, ev.ltime, false),
                    },
                );
            }
        }
        self.peer_cache.remove(&ev.network);
        let waiting = self.deferred.take(&ev.network, &ev.node);
        if leave {
            // moby PR #50342: the leaver's entries are removed, no tombstones are forged.
            self.purge_owner_entries(Some(&ev.network), &ev.node);
            self.stats.not_member += waiting.len() as u64;
        } else {
            for (event, raw, via) in waiting {
                self.stats.deferred_applied += 1;
                self.handle_table_event(now, event, raw.as_deref(), via);
            }
        }
        Fate::Relay
    }

    /// Whether `owner` is an active node of which this node holds no attachment record to
    /// `network` at all (not even a leaving one): its join has not arrived yet.
    fn attachment_unknown(&self, network: &NetworkId, owner: &NodeName) -> bool {
        let known = self
            .attachments
            .get(network)
            .is_some_and(|a| a.contains_key(owner));
        let active = self
            .nodes
            .get(owner)
            .is_some_and(|n| n.state == NodeState::Active);
        !known && active
    }

    /// Events whose owner's join did not arrive within [`DEFER_WINDOW`]: the owner is asked
    /// for a sync of the network (it carries the attachment and the entries).
    pub(crate) fn expire_deferred(&mut self, now: Instant) {
        if self.deferred.len() == 0 {
            return;
        }
        for (network, owner, dropped) in self.deferred.expire(now) {
            self.stats.not_member += dropped as u64;
            if self.local.get(&network).is_some_and(|n| !n.leaving) {
                self.repair_attachment(now, &owner, &network);
            }
        }
    }

    /// A network this node joined with no peer known to bulk-sync with (an agent restarted
    /// with containers joins their networks at once, before its first attachment exchange)
    /// is synced with the first peer whose attachment exchange lists it, instead of waiting
    /// for the periodic bulk sync. Only the exchange triggers it: peers that join at the same
    /// moment learn each other by gossip and have nothing to sync yet, and a bulk sync would
    /// take their join events out of the epidemic (what arrives by sync is not relayed).
    pub(crate) fn sync_if_joined_alone(
        &mut self,
        now: Instant,
        network: &NetworkId,
        peer: &NodeName,
    ) {
        if !self
            .local
            .get(network)
            .is_some_and(|l| l.joined_alone && !l.leaving)
            || !self.syncable(peer)
        {
            return;
        }
        // One sync covers every network shared with the peer: none of them waits any more.
        let networks = self.common_networks(peer);
        for n in &networks {
            if let Some(local) = self.local.get_mut(n) {
                local.joined_alone = false;
            }
        }
        self.stats.join_syncs_deferred += 1;
        self.send_bulk_sync(now, peer, networks, true, false, None);
    }

    /// Applies a table event ([`Fate::Settled`] when applied or stale; relaying is queued
    /// here).
    pub(crate) fn handle_table_event(
        &mut self,
        now: Instant,
        ev: TableEvent,
        raw: Option<&[u8]>,
        via: Via,
    ) -> Fate {
        if !self.sane(ev.ltime) {
            return Fate::Open;
        }
        if ev.owner == self.me {
            // Own events never re-enter (and are not witnessed).
            self.stats.own_events += 1;
            // This node is the authority on its own writes. A peer may still hold one this
            // node no longer holds at all: another node took the entry over and then left the
            // network, and this node purged it with the leaver's entries while the peer never
            // saw the takeover. Answer with a tombstone newer than the peer's copy, or the
            // peer would show it forever.
            let joined = self.local.get(&ev.network).is_some_and(|n| !n.leaving);
            if ev.kind != TableEventKind::Delete
                && joined
                && self.entry(&ev.network, &ev.table, &ev.key).is_none()
            {
                self.table_clock.witness(ev.ltime);
                let TableEvent {
                    network,
                    table,
                    key,
                    value,
                    ..
                } = ev;
                self.write_local(now, TableEventKind::Delete, table, network, key, value);
            }
            return Fate::Open;
        }
        self.table_clock.witness(ev.ltime);
        let local_ok = self.local.get(&ev.network).is_some_and(|n| !n.leaving);
        let owner_ok = self
            .attachments
            .get(&ev.network)
            .and_then(|a| a.get(&ev.owner))
            .is_some_and(|a| !a.leaving);
        if !local_ok || !owner_ok {
            // An owner whose join this node has not heard of yet: the event waits for it.
            if local_ok && via != Via::BulkSync && self.attachment_unknown(&ev.network, &ev.owner) {
                let (network, owner) = (ev.network.clone(), ev.owner.clone());
                let until = now + DEFER_WINDOW;
                if self
                    .deferred
                    .push(until, (ev, raw.map(Bytes::copy_from_slice), via))
                {
                    self.stats.deferred_events += 1;
                } else {
                    self.stats.deferred_refused += 1;
                    self.repair_attachment(now, &owner, &network);
                }
                return Fate::Open;
            }
            self.stats.not_member += 1;
            return Fate::Open;
        }
        let existing = self.entry(&ev.network, &ev.table, &ev.key);
        // Newer Lamport time wins; equal times from different owners (concurrent writes) are
        // ordered by owner name, so every node keeps the same one whatever the arrival order.
        if existing.is_some_and(|e| (e.ltime, &e.owner) >= (ev.ltime, &ev.owner)) {
            self.stats.stale_events += 1;
            return Fate::Settled;
        }
        let found = existing.is_some();
        let prev = existing.and_then(Entry::visible_value).cloned();
        let owner_failed = self
            .nodes
            .get(&ev.owner)
            .is_some_and(|n| n.state == NodeState::Failed);
        let deleting = ev.kind == TableEventKind::Delete;
        let mut residual = ev.residual_reap_secs;
        if deleting && residual == 0 {
            // An older peer sent no reap time: give the tombstone its full life.
            self.stats.zero_reap_time += 1;
        }
        let full = self.config.reap_entry_interval;
        // A residual longer than a full life (a buggy or hostile peer) is cut to one.
        residual = residual.min(u32::try_from(full.as_secs()).unwrap_or(u32::MAX));
        let life = |secs: u32| {
            if secs == 0 {
                full
            } else {
                std::time::Duration::from_secs(u64::from(secs))
            }
        };
        let reap_at = (deleting || owner_failed).then(|| now + life(residual));
        if !deleting && !owner_failed {
            residual = 0;
        }
        let entry = Entry::new(
            ev.owner.clone(),
            ev.ltime,
            ev.value.clone(),
            deleting,
            owner_failed && !deleting,
            reap_at,
        );
        let value = entry.visible_value().cloned();
        self.put_entry(&ev.network, &ev.table, &ev.key, entry);
        self.stats.table_events_applied += 1;
        self.notify(&ev.table, &ev.network, &ev.key, prev, value);

        let Some(local) = self.local.get(&ev.network) else {
            return Fate::Settled;
        };
        let relay = if !found && deleting {
            // A tombstone learnt for a key never seen is spread again only when it came by
            // bulk sync and still has more than a sixth of its life (moby/libnetwork#1944).
            via == Via::BulkSync
                && local.in_sync
                && life(residual) > self.config.reap_entry_interval / 6
        } else {
            // The owner sent its backlog to every peer directly: relaying it would only
            // repeat it.
            local.in_sync && via != Via::Stream
        };
        if relay {
            if via == Via::BulkSync && local.relay.len() > self.config.max_relay_queue_on_sync {
                self.stats.relay_skipped_on_sync += 1;
            } else {
                self.queue_table_event(now, ev, raw, false);
            }
        }
        Fate::Settled
    }

    fn handle_push_pull(&mut self, now: Instant, pp: PushPull) {
        let sender = pp.node.clone();
        self.apply_attachments(now, &pp.ltime, &pp.node, &pp.networks);
        for e in &pp.networks {
            if e.node == sender && !e.leaving {
                self.sync_if_joined_alone(now, &e.network, &sender);
            }
        }
        if !pp.reply && sender != self.me {
            self.send_push_pull(&sender, true);
        }
    }

    /// Applies a peer's attachments as node and network events, without relaying them.
    pub(crate) fn apply_attachments(
        &mut self,
        now: Instant,
        ltime: &crate::LTime,
        node: &crate::NodeName,
        entries: &[NetworkEntry],
    ) {
        let join = NodeEvent {
            kind: NodeEventKind::Join,
            ltime: *ltime,
            node: node.clone(),
        };
        self.handle_node_event(now, &join);
        for e in entries {
            let ev = as_event(e);
            self.handle_network_event(now, &ev);
        }
    }

    /// A live owner wrote to a network this node shares, and this node holds no record of
    /// the owner's attachment at all: it missed the owner's join (a gossip event that never
    /// reached it, or arrived before the owner was a member). Without a repair every entry
    /// of that owner is refused until the next push/pull, up to 30 s later. Ask the owner
    /// for a sync of the network (a digest round, or a bulk sync with `digest_sync` off): it
    /// carries the attachment and the entries.
    /// A known but leaving attachment is no miss (the event is stale), and nothing is asked
    /// of a node not known as active.
    fn repair_attachment(&mut self, now: Instant, owner: &NodeName, network: &NetworkId) {
        if !self.attachment_unknown(network, owner) {
            return;
        }
        if self
            .attachment_repairs
            .get(owner)
            .is_some_and(|next| *next > now)
        {
            return;
        }
        self.attachment_repairs
            .insert(owner.clone(), now + ATTACHMENT_REPAIR_INTERVAL);
        self.stats.attachment_repairs += 1;
        if self.config.digest_sync {
            self.send_digest(now, owner, vec![network.clone()], None);
        } else {
            self.send_bulk_sync(now, owner, vec![network.clone()], true, false, None);
        }
    }

    fn handle_bulk_sync(&mut self, now: Instant, bs: BulkSync) {
        if !self.sane(bs.ltime) {
            return;
        }
        if bs.ltime.0 > 0 {
            self.table_clock.witness(bs.ltime);
        }
        if bs.node == self.me {
            self.stats.own_events += 1;
            return;
        }
        self.apply_sync(now, &bs.node, &bs.attachments, bs.events);
        if bs.unsolicited {
            self.send_bulk_sync(now, &bs.node, bs.networks, false, false, None);
        } else {
            self.complete_syncs(now, &bs.node, bs.ltime);
        }
    }

    /// Applies the attachments and entries a bulk or partial sync from `sender` carries, without
    /// relaying the attachments.
    pub(crate) fn apply_sync(
        &mut self,
        now: Instant,
        sender: &NodeName,
        attachments: &[NetworkEntry],
        events: Vec<TableEvent>,
    ) {
        for e in attachments {
            let ev = as_event(e);
            self.handle_network_event(now, &ev);
            // The sender's entries of a network it is attached to are in this sync.
            if &e.node == sender
                && !e.leaving
                && let Some(local) = self.local.get_mut(&e.network)
            {
                local.joined_alone = false;
            }
        }
        for ev in events {
            self.handle_table_event(now, ev, None, Via::BulkSync);
        }
    }
}

/// The shortest pause between two bulk syncs asked of one owner to learn a missed attachment.
pub const ATTACHMENT_REPAIR_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

fn via_of(channel: Channel) -> Via {
    match channel {
        Channel::Datagram => Via::Gossip,
        Channel::Stream => Via::Stream,
    }
}

/// The network event an attachment record stands for (push/pull and bulk sync apply them as
/// such).
fn as_event(e: &NetworkEntry) -> NetworkEvent {
    NetworkEvent {
        kind: if e.leaving {
            NetworkEventKind::Leave
        } else {
            NetworkEventKind::Join
        },
        ltime: e.ltime,
        node: e.node.clone(),
        network: e.network.clone(),
    }
}
