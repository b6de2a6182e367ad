//! [`AgentEngine`]: the node core's [`Stack`] as the cluster shell drives it, with the
//! effects of the core's events carried out inside the node's task, in order: the state is
//! saved before anything that follows it (an agent that cannot save stops, exit status 70), peer-table changes go to the overlay driver, name
//! changes to the service-discovery directory, and answers to the API calls that waited.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use cluster::{Engine, Node, Output};
use networkdb::WatchEvent;
use nodecore::{Answer, Event, LocalState, RequestId, Stack, Step};
use tokio::sync::{mpsc, oneshot};

use crate::cnm::save_state;
use crate::dns::directory::Directory;

/// The node's shell engine: a [`Stack`] and where its events go.
pub struct AgentEngine {
    stack: Stack,
    state_dir: PathBuf,
    directory: Directory,
    peers: mpsc::UnboundedSender<WatchEvent>,
    waiters: HashMap<RequestId, oneshot::Sender<Answer>>,
}

/// How many times a save is tried before the agent stops.
const SAVE_TRIES: u32 = 3;

/// The exit status of an agent that cannot save its state (`EX_SOFTWARE`-like: 70).
pub const EXIT_CANNOT_SAVE: i32 = 70;

impl AgentEngine {
    /// An engine saving the state in `state_dir`, feeding `directory` and sending peer-table
    /// changes to `peers` (the overlay driver).
    pub fn new(
        stack: Stack,
        state_dir: PathBuf,
        directory: Directory,
        peers: mpsc::UnboundedSender<WatchEvent>,
    ) -> Self {
        Self {
            stack,
            state_dir,
            directory,
            peers,
            waiters: HashMap::new(),
        }
    }

    /// The stack, for the core's operations.
    pub fn stack(&mut self) -> &mut Stack {
        &mut self.stack
    }

    /// The stack, to read.
    pub fn stack_ref(&self) -> &Stack {
        &self.stack
    }

    /// Registers who awaits the answer of `request`.
    pub fn await_answer(&mut self, request: RequestId) -> oneshot::Receiver<Answer> {
        let (tx, rx) = oneshot::channel();
        self.waiters.insert(request, tx);
        rx
    }

    fn carry_out(&mut self, event: Event) {
        match event {
            Event::Persist(state) => self.save(&state),
            Event::Peer(event) => {
                let _ = self.peers.send(event);
            }
            Event::Names(change) => {
                if let nodecore::NamesChange::Topology { .. } = &change {
                    // The VIP balancers need each sandbox's namespace.
                    let netns = self
                        .stack
                        .core()
                        .sandboxes()
                        .into_iter()
                        .map(|s| (s.name, s.netns))
                        .collect();
                    self.directory.set_sandbox_netns(netns);
                }
                self.directory.apply_change(&change);
            }
            Event::Answer(request, answer) => {
                if let Some(tx) = self.waiters.remove(&request) {
                    let _ = tx.send(answer);
                }
            }
            _ => {}
        }
    }
}

impl AgentEngine {
    /// Saves the state, or stops the agent: the core carries out the writes that depend on
    /// this state (claims given away, records) as soon as this returns, and a node that
    /// published them without saving could, after a restart, hand out space it gave away.
    fn save(&self, state: &LocalState) {
        let mut last = None;
        for _ in 0..SAVE_TRIES {
            match save_state(state, &self.state_dir) {
                Ok(()) => return,
                Err(e) => last = Some(e),
            }
        }
        if let Some(e) = last {
            tracing::error!(error = %e, "cannot save the node's state: stopping");
            eprintln!("netagent: cannot save the node's state, stopping: {e}");
            std::process::exit(EXIT_CANNOT_SAVE);
        }
    }
}

impl Engine for AgentEngine {
    fn node(&self) -> &Node {
        self.stack.node()
    }

    fn node_mut(&mut self) -> &mut Node {
        self.stack.node_mut()
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.stack.handle_timeout(now);
    }

    fn poll_timeout(&self) -> Instant {
        self.stack.poll_timeout()
    }

    fn poll_output(&mut self, now: Instant) -> Option<Output> {
        loop {
            match self.stack.poll(now)? {
                Step::Event(event) => self.carry_out(event),
                Step::Output(output) => return Some(output),
            }
        }
    }
}
