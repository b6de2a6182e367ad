//! Table events that arrive before their owner's attachment.
//!
//! Gossip does not order an owner's network join (spread cluster-wide) before its table
//! events (spread to the network's peers, and pushed at once by the eager push), so a node
//! often hears an entry of a network's new member before it hears that the member joined.
//! Upstream refuses such events and waits for the next push/pull; here they wait, bounded,
//! for [`DEFER_WINDOW`] and are applied the moment the attachment arrives. Only when it does
//! not arrive in time is the owner asked for a sync.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::recv::Via;
use crate::wire::TableEvent;
use crate::{NetworkId, NodeName};

/// How long an event waits for its owner's attachment before the owner is asked for a sync.
pub const DEFER_WINDOW: Duration = Duration::from_secs(1);

/// The most events waiting at once, over every owner; more are refused and counted.
pub(crate) const MAX_DEFERRED: usize = 4096;

/// One deferred event: the event, its encoded bytes when it came in a compound (relayed as
/// they are), and the path it came by.
pub(crate) type DeferredEvent = (TableEvent, Option<Bytes>, Via);

/// Events waiting for their owner's attachment, by (network, owner).
#[derive(Debug, Default)]
pub(crate) struct Deferred {
    waiting: BTreeMap<(NetworkId, NodeName), (Instant, Vec<DeferredEvent>)>,
    len: usize,
}

impl Deferred {
    /// Keeps `event` until `until` unless [`MAX_DEFERRED`] events already wait. Returns
    /// whether it was kept.
    pub(crate) fn push(&mut self, until: Instant, event: DeferredEvent) -> bool {
        if self.len >= MAX_DEFERRED {
            return false;
        }
        let key = (event.0.network.clone(), event.0.owner.clone());
        self.waiting
            .entry(key)
            .or_insert_with(|| (until, Vec::new()))
            .1
            .push(event);
        self.len += 1;
        true
    }

    /// Removes and returns the events of `owner` in `network`.
    pub(crate) fn take(&mut self, network: &NetworkId, owner: &NodeName) -> Vec<DeferredEvent> {
        if self.waiting.is_empty() {
            return Vec::new();
        }
        let Some((_, events)) = self.waiting.remove(&(network.clone(), owner.clone())) else {
            return Vec::new();
        };
        self.len -= events.len();
        events
    }

    /// Removes the groups whose window ended at `now`: `(network, owner, events dropped)`.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<(NetworkId, NodeName, usize)> {
        let mut out = Vec::new();
        self.waiting.retain(|(network, owner), (until, events)| {
            if *until > now {
                return true;
            }
            out.push((network.clone(), owner.clone(), events.len()));
            false
        });
        self.len -= out.iter().map(|(_, _, n)| n).sum::<usize>();
        out
    }

    /// When the first window ends.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.waiting.values().map(|(until, _)| *until).min()
    }

    /// Events waiting.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}
