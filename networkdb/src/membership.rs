//! Membership inputs and node state changes (libnetwork `nodemgmt.go`, `event_delegate.go`).

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use rand::RngExt;

use crate::node::Node;
use crate::wire::{Message, NodeEvent, NodeEventKind};
use crate::{
    Channel, Key, LTime, NODE_TABLE, NetworkDb, NetworkId, NodeName, NodeState, TableName,
};

/// How many members, on average, exchange attachments (push/pull) with a node new to them; the
/// new node does the same with as many of the members it hears of, and the periodic push/pull
/// and gossip fill in the rest. With this many, a newcomer misses every exchange with
/// probability about `e^-6`.
pub(crate) const JOIN_PUSH_PULLS: f64 = 3.0;

impl NetworkDb {
    /// Starts cluster membership: remembers `bootstrap` (the addresses the membership layer
    /// was asked to join; they are offered again by [`Output::RejoinBootstrap`](crate::Output)
    /// when none of them is an active peer) and announces this node.
    pub fn join(&mut self, now: Instant, bootstrap: Vec<SocketAddr>) {
        self.bootstrap = bootstrap;
        let ltime = self.network_clock.increment();
        self.queue_node_event(now, NodeEventKind::Join, ltime);
    }

    /// Leaves the cluster gracefully: sends a node LEAVE at once to as many active nodes as
    /// gossip would reach, so that they drop this node's entries rather than hide them. The
    /// shell sends the transmits, then shuts the membership layer down.
    pub fn leave(&mut self, now: Instant) {
        let ltime = self.network_clock.increment();
        let msg = Message::NodeEvent(NodeEvent {
            kind: NodeEventKind::Leave,
            ltime,
            node: self.me.clone(),
        });
        let payload = msg.encode();
        let limit =
            crate::queue::retransmit_limit(self.config.retransmit_mult, self.active.len() + 1);
        let count = self.config.gossip_fanout.saturating_mul(limit as usize);
        for peer in self.sample_active(count) {
            self.send(&peer, Channel::Datagram, payload.clone());
        }
        self.queue_node_event(now, NodeEventKind::Leave, ltime);
    }

    /// The membership layer reports `name` alive at `addr` (memberlist `NotifyJoin`).
    ///
    /// A new node is added; a failed node is restored with its hidden entries and bulk-synced;
    /// both exchange attachments (push/pull). A failed node at the same address under another
    /// name is a previous incarnation and is retired; an active one is left alone, since the
    /// membership layer's probes settle which is alive (moby PR #53688).
    pub fn node_up(&mut self, now: Instant, name: NodeName, addr: SocketAddr) {
        if name == self.me {
            return;
        }
        let previous = self.nodes.get(&name).map(|n| n.state);
        if previous != Some(NodeState::Active) {
            self.notify_node_table(&name, addr, true);
        }
        match previous {
            Some(NodeState::Active) => {
                if let Some(n) = self.nodes.get_mut(&name) {
                    n.addr = addr;
                }
                return;
            }
            Some(NodeState::Failed) => {
                if let Some(n) = self.nodes.get_mut(&name) {
                    n.addr = addr;
                    n.state = NodeState::Active;
                    n.reap_at = None;
                }
                self.node_changed(&name);
                self.restore_entries(&name);
                let networks = self.common_networks(&name);
                if !networks.is_empty() {
                    self.send_bulk_sync(now, &name, networks, true, false, None);
                }
            }
            Some(NodeState::Left) | None => {
                let incarnations: Vec<NodeName> = self
                    .failed
                    .iter()
                    .filter(|other| {
                        **other != name && self.nodes.get(*other).is_some_and(|n| n.addr == addr)
                    })
                    .cloned()
                    .collect();
                for old in incarnations {
                    self.set_left(now, &old);
                }
                let ltime = self.nodes.get(&name).map_or(LTime(0), |n| n.ltime);
                self.nodes.insert(
                    name.clone(),
                    Node {
                        addr,
                        state: NodeState::Active,
                        ltime,
                        reap_at: None,
                    },
                );
                self.node_changed(&name);
                // Every member hears of a new node: if each exchanged its whole view with it,
                // a cluster forming (or a newcomer) would cost a number of full exchanges
                // that grows with the square of its size. About JOIN_PUSH_PULLS members do.
                let members = self.active.len().max(1) as f64;
                let p = (JOIN_PUSH_PULLS / members).min(1.0);
                if !self.rng.random_bool(p) {
                    return;
                }
            }
        }
        self.send_push_pull(&name, false);
    }

    /// The membership layer reports `name` unreachable (memberlist `NotifyLeave`): an active
    /// node becomes failed and its entries are hidden until it returns; a node that already
    /// said goodbye stays left.
    pub fn node_down(&mut self, now: Instant, name: &str) {
        let Some(node) = self.nodes.get_mut(name) else {
            return;
        };
        if node.state != NodeState::Active || name == self.me.as_str() {
            return;
        }
        let addr = node.addr;
        node.state = NodeState::Failed;
        node.reap_at = Some(now + self.config.node_reap_interval);
        let name = NodeName::from(name);
        self.node_changed(&name);
        self.notify_node_table(&name, addr, false);
        self.hide_entries(now, &name);
        self.abandon_syncs_to(now, &name);
    }

    /// The membership layer reports that `name` is gone for good (a newer run of the same
    /// node replaced it at its address): it moves to left and its state is dropped.
    pub fn node_retired(&mut self, now: Instant, name: &str) {
        if name == self.me.as_str() {
            return;
        }
        let name = NodeName::from(name);
        self.set_left(now, &name);
    }

    /// Moves a node to left: its attachments and entries are dropped (libnetwork
    /// `changeNodeState(left)`).
    pub(crate) fn set_left(&mut self, now: Instant, name: &NodeName) {
        let Some(node) = self.nodes.get_mut(name) else {
            return;
        };
        if node.state == NodeState::Left {
            return;
        }
        let was_active = node.state == NodeState::Active;
        node.state = NodeState::Left;
        if node.reap_at.is_none() {
            node.reap_at = Some(now + self.config.node_reap_interval);
        }
        let addr = node.addr;
        self.node_changed(name);
        if was_active {
            self.notify_node_table(name, addr, false);
        }
        self.drop_node_state(name);
        self.abandon_syncs_to(now, name);
    }

    /// Removes every attachment and entry of `name`.
    pub(crate) fn drop_node_state(&mut self, name: &NodeName) {
        self.node_changed(name);
        self.attachments.retain(|_, attached| {
            attached.remove(name);
            !attached.is_empty()
        });
        self.purge_owner_entries(None, name);
    }

    /// Hard-deletes the entries `owner` holds (in one network, or all), notifying watches of
    /// those that were visible.
    pub(crate) fn purge_owner_entries(&mut self, network: Option<&NetworkId>, owner: &NodeName) {
        self.seen.clear();
        let mut gone: Vec<(NetworkId, TableName, Key, Bytes)> = Vec::new();
        for (nid, tables) in self.tables.iter_mut() {
            if network.is_some_and(|n| n != nid) {
                continue;
            }
            for (table, entries) in tables.iter_mut() {
                entries.retain(|key, e| {
                    if &e.owner != owner {
                        return true;
                    }
                    if let Some(v) = e.visible_value() {
                        gone.push((nid.clone(), table.clone(), key.clone(), v.clone()));
                    }
                    false
                });
            }
            tables.retain(|_, entries| !entries.is_empty());
        }
        self.tables.retain(|_, tables| !tables.is_empty());
        for (nid, table, key, prev) in gone {
            self.notify(&table, &nid, &key, Some(prev), None);
        }
    }

    /// Hides the live entries of a failed owner until it returns (moby PR #53142).
    fn hide_entries(&mut self, now: Instant, owner: &NodeName) {
        let reap_at = now + self.config.reap_entry_interval;
        let mut hidden = Vec::new();
        for (nid, tables) in self.tables.iter_mut() {
            for (table, entries) in tables.iter_mut() {
                for (key, e) in entries.iter_mut() {
                    if &e.owner != owner || e.deleting || e.hidden {
                        continue;
                    }
                    e.hidden = true;
                    e.reap_at = Some(reap_at);
                    hidden.push((nid.clone(), table.clone(), key.clone(), e.value.clone()));
                }
            }
        }
        for (nid, table, key, prev) in hidden {
            self.notify(&table, &nid, &key, Some(prev), None);
        }
    }

    /// Makes a returning owner's hidden entries visible again.
    fn restore_entries(&mut self, owner: &NodeName) {
        let mut shown = Vec::new();
        for (nid, tables) in self.tables.iter_mut() {
            for (table, entries) in tables.iter_mut() {
                for (key, e) in entries.iter_mut() {
                    if &e.owner != owner || !e.hidden {
                        continue;
                    }
                    e.hidden = false;
                    e.reap_at = None;
                    shown.push((nid.clone(), table.clone(), key.clone(), e.value.clone()));
                }
            }
        }
        for (nid, table, key, value) in shown {
            self.notify(&table, &nid, &key, None, Some(value));
        }
    }

    fn queue_node_event(&mut self, now: Instant, kind: NodeEventKind, ltime: LTime) {
        let msg = Message::NodeEvent(NodeEvent {
            kind,
            ltime,
            node: self.me.clone(),
        });
        self.push_cluster(now, None, Bytes::from(msg.encode_part()));
    }

    /// A `NodeTable` watch event: key = node name, value = `{"Addr":"<ip>"}`.
    fn notify_node_table(&mut self, name: &NodeName, addr: SocketAddr, up: bool) {
        if self.watches.is_empty() {
            return;
        }
        let value = Bytes::from(format!("{{\"Addr\":\"{}\"}}", addr.ip()));
        let (prev, value) = if up {
            (None, Some(value))
        } else {
            (Some(value), None)
        };
        let table = TableName::from(NODE_TABLE);
        let network = NetworkId::from("");
        let key = Key::new(name.as_str());
        self.notify(&table, &network, &key, prev, value);
    }
}
