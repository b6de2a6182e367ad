//! Operations waiting for space from another node.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use ipam::Ticket;

use crate::event::RequestId;
use crate::model::{Endpoint, NetworkSpec};

/// What an operation that waits will finish when its value comes.
#[derive(Clone, Debug)]
pub(crate) enum Draft {
    /// An endpoint, complete but for its address (and MAC, if derived from it).
    Endpoint {
        endpoint: Box<Endpoint>,
        /// The network, as it was when the operation started (its catalogue entry may be out
        /// of sight when the address comes: its owner away, a partition).
        spec: NetworkSpec,
        /// The MAC was given; otherwise it is derived from the address.
        mac_given: bool,
    },
    /// A network, complete but for its VNI.
    Network(NetworkSpec),
    /// An address reservation on this network.
    Reservation(NetworkSpec),
}

/// One waiting operation.
#[derive(Clone, Debug)]
pub(crate) struct Waiter {
    pub(crate) request: RequestId,
    pub(crate) deadline: Instant,
    pub(crate) draft: Draft,
}

/// The waiting operations, by the (pool, ticket) they wait on.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    next: u64,
    waiting: BTreeMap<(String, Ticket), Waiter>,
    /// Tickets whose operation was refused after its deadline: a value that comes later is
    /// released at once.
    abandoned: BTreeSet<(String, Ticket)>,
}

impl Pending {
    /// Registers an operation waiting on `ticket` of `pool`; returns its request ID.
    pub(crate) fn wait(
        &mut self,
        pool: &str,
        ticket: Ticket,
        deadline: Instant,
        draft: Draft,
    ) -> RequestId {
        let request = crate::core::next_request(&mut self.next);
        self.waiting.insert(
            (pool.to_owned(), ticket),
            Waiter {
                request,
                deadline,
                draft,
            },
        );
        request
    }

    /// The operation waiting on `ticket`, taken; `Err(true)` if it was abandoned (release
    /// the value), `Err(false)` if nobody waits (a restored endpoint's claim: keep it).
    pub(crate) fn take(&mut self, pool: &str, ticket: Ticket) -> Result<Waiter, bool> {
        let key = (pool.to_owned(), ticket);
        match self.waiting.remove(&key) {
            Some(w) => Ok(w),
            None => Err(self.abandoned.remove(&key)),
        }
    }

    /// The operations past their deadline, taken (their tickets are remembered as
    /// abandoned).
    pub(crate) fn expired(&mut self, now: Instant) -> Vec<Waiter> {
        let late: Vec<(String, Ticket)> = self
            .waiting
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for key in late {
            if let Some(w) = self.waiting.remove(&key) {
                self.abandoned.insert(key);
                out.push(w);
            }
        }
        out
    }

    /// The operations waiting on `pool`, taken (its allocator is gone); their tickets are
    /// forgotten, so a new allocator's tickets never meet them.
    pub(crate) fn take_pool(&mut self, pool: &str) -> Vec<Waiter> {
        let keys: Vec<(String, Ticket)> = self
            .waiting
            .keys()
            .filter(|(p, _)| p == pool)
            .cloned()
            .collect();
        self.abandoned.retain(|(p, _)| p != pool);
        keys.into_iter()
            .filter_map(|k| self.waiting.remove(&k))
            .collect()
    }

    /// The earliest deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.waiting.values().map(|w| w.deadline).min()
    }

    /// Whether an endpoint named `name` on `network_id` is being created.
    pub(crate) fn endpoint_named(&self, network_id: &str, name: &str) -> bool {
        self.waiting.values().any(|w| {
            matches!(&w.draft, Draft::Endpoint { endpoint, .. }
                if endpoint.network_id == network_id && endpoint.name == name)
        })
    }

    /// Whether a network named `name` is being created.
    pub(crate) fn network_named(&self, name: &str) -> bool {
        self.waiting
            .values()
            .any(|w| matches!(&w.draft, Draft::Network(spec) if spec.name == name))
    }
}
