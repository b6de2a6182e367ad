//! [`Engine`]: what a shell drives, a bare [`Node`] or a core built around one.

use std::net::SocketAddr;
use std::time::Instant;

use crate::{Node, Output};

/// A sans-IO state machine around a [`Node`] that a shell (or the simulator) drives: the
/// shell feeds datagrams and stream messages to [`node_mut`](Self::node_mut), runs
/// [`handle_timeout`](Self::handle_timeout) at [`poll_timeout`](Self::poll_timeout), and
/// after every input drains [`poll_output`](Self::poll_output). A core built around a node
/// (the agent's node core) sees the node's outputs first and consumes the watch events of
/// its own watches; the rest reach the shell.
pub trait Engine: Send + 'static {
    /// The node.
    fn node(&self) -> &Node;

    /// The node, to feed it input or call its API.
    fn node_mut(&mut self) -> &mut Node;

    /// Runs the timers due at `now`.
    fn handle_timeout(&mut self, now: Instant);

    /// When [`handle_timeout`](Self::handle_timeout) should run next.
    fn poll_timeout(&self) -> Instant;

    /// The next output for the shell; drain until `None` after every input.
    fn poll_output(&mut self, now: Instant) -> Option<Output>;

    /// Joins the cluster through `seeds`.
    fn join(&mut self, now: Instant, seeds: Vec<SocketAddr>) {
        self.node_mut().join(now, seeds);
    }

    /// Leaves the cluster gracefully (the shell stops after a grace period).
    fn leave(&mut self, now: Instant) {
        self.node_mut().leave(now);
    }
}

impl Engine for Node {
    fn node(&self) -> &Node {
        self
    }

    fn node_mut(&mut self) -> &mut Node {
        self
    }

    fn handle_timeout(&mut self, now: Instant) {
        Node::handle_timeout(self, now);
    }

    fn poll_timeout(&self) -> Instant {
        Node::poll_timeout(self)
    }

    fn poll_output(&mut self, _now: Instant) -> Option<Output> {
        Node::poll_output(self)
    }
}
