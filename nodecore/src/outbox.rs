//! The core's queue of effects, in the order they must happen: a save comes before every
//! NetworkDB write that follows it, so a node that crashes before saving has published
//! nothing its saved state would contradict.

use std::collections::VecDeque;

use bytes::Bytes;
use networkdb::NetworkDb;
use std::time::Instant;

use crate::Event;

/// One effect.
#[derive(Debug)]
pub(crate) enum Deferred {
    /// Save the state.
    Persist,
    /// Create or update an entry owned by this node.
    Put {
        table: String,
        network: String,
        key: String,
        value: Bytes,
    },
    /// Delete an entry of this node (if visible).
    Delete {
        table: String,
        network: String,
        key: String,
    },
    /// Join a NetworkDB network (unless joined).
    Join(String),
    /// Leave a NetworkDB network (if joined).
    Leave(String),
    /// Tell the driver.
    Event(Event),
}

/// The queue.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    queue: VecDeque<Deferred>,
}

/// What [`Outbox::next`] found.
pub(crate) enum Next {
    /// Save now.
    Persist,
    /// Tell the driver.
    Event(Box<Event>),
}

impl Outbox {
    pub(crate) fn push(&mut self, d: Deferred) {
        if matches!(d, Deferred::Persist) && matches!(self.queue.back(), Some(Deferred::Persist)) {
            return;
        }
        self.queue.push_back(d);
    }

    pub(crate) fn event(&mut self, e: Event) {
        self.push(Deferred::Event(e));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Carries out NetworkDB effects until a save or an event for the driver comes up.
    pub(crate) fn next(&mut self, db: &mut NetworkDb, now: Instant) -> Option<Next> {
        while let Some(d) = self.queue.pop_front() {
            match d {
                Deferred::Persist => return Some(Next::Persist),
                Deferred::Event(e) => return Some(Next::Event(Box::new(e))),
                Deferred::Put {
                    table,
                    network,
                    key,
                    value,
                } => {
                    let visible = db.get_entry(&table, &network, &key).is_ok();
                    let (t, n, k) = (table.into(), network.into(), key.into());
                    // Refusals cannot happen for a checked visible/absent entry; they would
                    // be healed by the next reconciliation.
                    let _ = if visible {
                        db.update_entry(now, t, n, k, value)
                    } else {
                        db.create_entry(now, t, n, k, value)
                    };
                }
                Deferred::Delete {
                    table,
                    network,
                    key,
                } => {
                    if db.get_entry(&table, &network, &key).is_ok() {
                        let _ = db.delete_entry(now, table.into(), network.into(), key.into());
                    }
                }
                Deferred::Join(network) => {
                    if !db.networks().iter().any(|n| n.as_str() == network) {
                        let _ = db.join_network(now, network.into());
                    }
                }
                Deferred::Leave(network) => {
                    if db.networks().iter().any(|n| n.as_str() == network) {
                        let _ = db.leave_network(now, network.into());
                    }
                }
            }
        }
        None
    }
}
