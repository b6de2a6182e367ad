//! [`Stack`]: a `cluster::Node` with the [`NodeCore`] built on it, driven as one.

use std::time::Instant;

use cluster::{MemberEvent, Node, Output};
use networkdb::NetworkDb;

use crate::{Event, LocalState, NodeCore, Settings};

/// The next thing a [`Stack`]'s driver carries out.
#[derive(Debug)]
pub enum Step {
    /// An output of the node (a datagram, a stream message, a watch event of a watch that is
    /// not the core's, a membership change).
    Output(Output),
    /// An event of the core.
    Event(Event),
}

/// A node and its core: what the agent's shell and every simulated host run.
///
/// Inputs go to [`node_mut`](Self::node_mut) (datagrams, stream messages) or to the core's
/// operations through [`split`](Self::split); after every input drain
/// [`poll`](Self::poll): the core sees the node's watch events and membership changes first,
/// and its own events come before the node's outputs that follow them.
pub struct Stack {
    node: Node,
    core: NodeCore,
}

impl Stack {
    /// Builds the core on `node`, resuming from `state`.
    pub fn new(mut node: Node, now: Instant, settings: Settings, state: LocalState) -> Self {
        let core = NodeCore::new(node.db_mut(), now, settings, state);
        Self { node, core }
    }

    /// The node.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The node, for input.
    pub fn node_mut(&mut self) -> &mut Node {
        &mut self.node
    }

    /// The core.
    pub fn core(&self) -> &NodeCore {
        &self.core
    }

    /// The core and the node's NetworkDB, for the core's operations.
    pub fn split(&mut self) -> (&mut NodeCore, &mut NetworkDb) {
        (&mut self.core, self.node.db_mut())
    }

    /// Runs the timers of the node and the core due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.node.poll_timeout() <= now {
            self.node.handle_timeout(now);
        }
        if self.core.poll_timeout() <= now {
            self.core.handle_timeout(self.node.db(), now);
        }
    }

    /// The next deadline of the node or the core.
    pub fn poll_timeout(&self) -> Instant {
        self.node.poll_timeout().min(self.core.poll_timeout())
    }

    /// The next step to carry out; drain until `None` after every input.
    pub fn poll(&mut self, now: Instant) -> Option<Step> {
        loop {
            if let Some(event) = self.core.poll_event(self.node.db_mut(), now) {
                return Some(Step::Event(event));
            }
            match self.node.poll_output()? {
                Output::Watch { watch, event } if self.core.owns_watch(watch) => {
                    self.core.handle_watch(self.node.db(), now, watch, event);
                }
                Output::Member(event) => {
                    if matches!(event, MemberEvent::Up(_) | MemberEvent::Down(_)) {
                        self.core.members_changed(self.node.db(), now);
                    }
                    return Some(Step::Output(Output::Member(event)));
                }
                other => return Some(Step::Output(other)),
            }
        }
    }
}
