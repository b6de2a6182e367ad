#![allow(clippy::unwrap_used, reason = "test driver: a panic is a test failure")]
#![allow(
    clippy::disallowed_methods,
    reason = "the test's starting point in time; it only moves forward from there"
)]
//! Property tests: several allocators exchanging their entries through a network that
//! reorders, duplicates and loses them, with nodes that crash and restart from their saved
//! state, and nodes lost for good whose space a live node reclaims once the survivors'
//! entries have spread (the operator's `netagent ipam reclaim`). After every step no value is
//! held by two live nodes and no block is believed owned by two live nodes; once the network
//! delivers everything, every allocation is answered.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use ipam::{
    Allocation, Allocator, Entry, IpamError, NodeId, Output, Pool, Request, Snapshot, Ticket,
};
use proptest::prelude::*;

const SUBNET: &str = "198.18.10.0/26";

#[derive(Clone, Debug)]
enum Op {
    /// Node allocates any value, or the pool value at this offset.
    Alloc(usize, Option<u32>),
    /// Node releases the i-th value it holds.
    Release(usize, usize),
    /// Deliver the i-th message in flight.
    Deliver(usize),
    /// Deliver it twice (a duplicate).
    Duplicate(usize),
    /// Lose it.
    Lose(usize),
    /// Time passes for every node.
    Tick,
    /// The node crashes and restarts from its saved state (messages to it meanwhile are lost).
    Restart(usize),
    /// The node is lost for good (while more than two live); once everything in flight is
    /// delivered, the second node reclaims its space.
    Die(usize, usize),
}

/// What travels between nodes: an entry written, or a loan deleted by its borrower.
#[derive(Clone, Debug)]
enum Msg {
    Entry(Entry),
    /// A deletion by its writer (a tombstone): `(table, key)`.
    Withdrawn(&'static str, String),
}

fn op(nodes: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..nodes, proptest::option::weighted(0.2, 0u32..64)).prop_map(|(n, v)| Op::Alloc(n, v)),
        1 => (0..nodes, 0usize..8).prop_map(|(n, i)| Op::Release(n, i)),
        8 => (0usize..64).prop_map(Op::Deliver),
        1 => (0usize..64).prop_map(Op::Duplicate),
        1 => (0usize..64).prop_map(Op::Lose),
        1 => Just(Op::Tick),
        1 => (0..nodes).prop_map(Op::Restart),
        1 => (0..nodes, 0..nodes).prop_map(|(n, by)| Op::Die(n, by)),
    ]
}

struct World {
    pool: Pool,
    nodes: Vec<Allocator>,
    /// Messages in flight: (destination, message).
    flight: Vec<(usize, Msg)>,
    now: Instant,
    /// Tickets waiting for an answer, per node.
    waiting: Vec<BTreeMap<Ticket, Request>>,
    /// What each node saved at its last [`Output::Persist`]: a restart resumes from there.
    saved: Vec<Snapshot>,
    /// Nodes lost for good.
    dead: BTreeSet<usize>,
}

fn name(i: usize) -> NodeId {
    NodeId::from(format!("n{i}"))
}

impl World {
    fn new(n: usize) -> Self {
        let pool = Pool::for_subnet(SUBNET.parse().unwrap()).unwrap();
        let now = Instant::now();
        let mut w = Self {
            pool: pool.clone(),
            nodes: Vec::new(),
            flight: Vec::new(),
            now,
            waiting: vec![BTreeMap::new(); n],
            saved: vec![Snapshot::default(); n],
            dead: BTreeSet::new(),
        };
        for i in 0..n {
            w.nodes.push(Allocator::new(
                name(i),
                name(0),
                pool.clone(),
                Snapshot::default(),
            ));
        }
        let members: BTreeSet<NodeId> = (0..n).map(name).collect();
        for a in &mut w.nodes {
            a.set_members(now, members.clone());
        }
        w
    }

    /// The live members, by name.
    fn members(&self) -> BTreeSet<NodeId> {
        (0..self.nodes.len())
            .filter(|i| !self.dead.contains(i))
            .map(name)
            .collect()
    }

    /// Sends `msg` to every live node but `from`.
    fn broadcast(&mut self, from: usize, msg: &Msg) {
        for j in 0..self.nodes.len() {
            if j != from && !self.dead.contains(&j) {
                self.flight.push((j, msg.clone()));
            }
        }
    }

    /// Hands `msg` to node `to`.
    fn deliver(&mut self, to: usize, msg: Msg) {
        if self.dead.contains(&to) {
            return;
        }
        match msg {
            Msg::Entry(entry) => self.nodes[to].handle_entry(self.now, entry),
            Msg::Withdrawn(table, key) => self.nodes[to].handle_withdrawn(table, &key),
        }
        self.drain(to);
    }

    /// Carries out node `i`'s outputs: writes, and the deletions of loans, go to every other
    /// node.
    fn drain(&mut self, i: usize) {
        while let Some(out) = self.nodes[i].poll_output() {
            match out {
                Output::Write(entry) => self.broadcast(i, &Msg::Entry(entry)),
                Output::Delete { table, key } if table == ipam::LOANS_TABLE => {
                    self.broadcast(i, &Msg::Withdrawn(table, key));
                }
                Output::Delete { .. } => {}
                Output::Persist => self.saved[i] = self.nodes[i].snapshot().clone(),
                Output::Allocated { ticket, .. } | Output::Refused { ticket, .. } => {
                    assert!(
                        self.waiting[i].remove(&ticket).is_some(),
                        "n{i}: answer for unknown ticket {ticket:?}"
                    );
                }
                other => panic!("unexpected output {other:?}"),
            }
        }
    }

    fn step(&mut self, op: &Op) {
        match *op {
            Op::Alloc(i, _) | Op::Release(i, _) | Op::Restart(i) | Op::Die(i, _)
                if self.dead.contains(&i) => {}
            Op::Alloc(i, value) => {
                let request = match value {
                    Some(off) => Request::Value(u32::from(self.base()) + off),
                    None => Request::Any,
                };
                match self.nodes[i].allocate(self.now, request) {
                    Ok(Allocation::Pending(t)) => {
                        self.waiting[i].insert(t, request);
                    }
                    Ok(Allocation::Done(_))
                    | Err(IpamError::Taken(_) | IpamError::NotInPool(_))
                    | Err(IpamError::Exhausted { .. } | IpamError::OwnerUnreachable { .. }) => {}
                    Err(e) => panic!("unexpected {e}"),
                }
                self.drain(i);
            }
            Op::Release(i, k) => {
                if let Some(v) = self.nodes[i].held().iter().nth(k).copied() {
                    self.nodes[i].release(self.now, v);
                    self.drain(i);
                }
            }
            Op::Deliver(k) | Op::Duplicate(k) if !self.flight.is_empty() => {
                let k = k % self.flight.len();
                let (to, msg) = if matches!(op, Op::Deliver(_)) {
                    self.flight.swap_remove(k)
                } else {
                    self.flight[k].clone()
                };
                self.deliver(to, msg);
            }
            Op::Lose(k) if !self.flight.is_empty() => {
                let k = k % self.flight.len();
                self.flight.swap_remove(k);
            }
            Op::Tick => {
                self.now += Duration::from_secs(6);
                for i in 0..self.nodes.len() {
                    if !self.dead.contains(&i) {
                        self.nodes[i].handle_timeout(self.now);
                        self.drain(i);
                    }
                }
            }
            Op::Restart(i) => {
                let saved = self.saved[i].clone();
                let members = self.members();
                let mut fresh = Allocator::new(name(i), name(0), self.pool.clone(), saved);
                fresh.set_members(self.now, members);
                self.nodes[i] = fresh;
                // Pending allocations of the crashed run are gone with it.
                self.waiting[i].clear();
                self.flight.retain(|(to, _)| *to != i);
                self.drain(i);
            }
            Op::Die(i, by) => {
                let live = self.nodes.len() - self.dead.len();
                let heirs: Vec<usize> = (0..self.nodes.len())
                    .filter(|j| *j != i && !self.dead.contains(j))
                    .collect();
                if live <= 2 {
                    return;
                }
                self.dead.insert(i);
                self.waiting[i].clear();
                self.flight.retain(|(to, _)| *to != i);
                let members = self.members();
                for j in heirs.clone() {
                    self.nodes[j].set_members(self.now, members.clone());
                    self.drain(j);
                }
                // The operator reclaims a host gone for good, after the survivors' entries
                // have spread (NetworkDB's anti-entropy: here, their claims and loans sent
                // again, which the lossy network may have dropped).
                for j in heirs.clone() {
                    let snapshot = self.nodes[j].snapshot().clone();
                    let blocks: Vec<_> = self.pool.block_ids().collect();
                    for b in blocks {
                        if let Some(claim) = snapshot.claims.get(b)
                            && claim.owner == name(j)
                        {
                            self.broadcast(j, &Msg::Entry(Entry::Claim(b, claim.clone())));
                        }
                    }
                    for (value, donor) in snapshot.borrowed {
                        let loan = ipam::Loan {
                            borrower: name(j),
                            value,
                            donor,
                        };
                        self.broadcast(j, &Msg::Entry(Entry::Loan(loan)));
                    }
                }
                self.settle();
                let by = heirs[by % heirs.len()];
                self.nodes[by].reclaim(self.now, &name(i)).unwrap();
                self.drain(by);
            }
            Op::Deliver(_) | Op::Duplicate(_) | Op::Lose(_) => {}
        }
    }

    fn base(&self) -> std::net::Ipv4Addr {
        "198.18.10.2".parse().unwrap()
    }

    /// No value held twice; no block believed owned by two nodes; every held value in a block
    /// its holder owns, or borrowed. Among live nodes: a node lost for good holds nothing.
    fn check(&self) {
        let mut holder: BTreeMap<u32, usize> = BTreeMap::new();
        let live = |i: &usize| !self.dead.contains(i);
        for (i, a) in self.nodes.iter().enumerate().filter(|(i, _)| live(i)) {
            for v in a.held() {
                if let Some(j) = holder.insert(*v, i) {
                    panic!("{} held by n{j} and n{i}", ipam::addr(*v));
                }
                let block = self.pool.block_of(*v).unwrap();
                assert!(
                    a.owner(block) == &name(i) || a.snapshot().borrowed.contains_key(v),
                    "n{i} holds {} in a block it does not own",
                    ipam::addr(*v)
                );
            }
        }
        for b in self.pool.block_ids() {
            let believers: Vec<usize> = (0..self.nodes.len())
                .filter(|i| live(i) && self.nodes[*i].owner(b) == &name(*i))
                .collect();
            assert!(believers.len() <= 1, "{b:?} owned by {believers:?}");
        }
    }

    /// Delivers everything, with time passing, until nothing moves.
    fn settle(&mut self) {
        let mut delivered = 0u32;
        for _ in 0..200 {
            while let Some((to, msg)) = self.flight.pop() {
                delivered += 1;
                assert!(delivered < 100_000, "message storm: {msg:?}");
                self.deliver(to, msg);
                self.check();
            }
            if self.waiting.iter().all(BTreeMap::is_empty) {
                return;
            }
            self.step(&Op::Tick);
        }
    }
}

fn run(n: usize, ops: &[Op]) {
    let mut w = World::new(n);
    for op in ops {
        w.step(op);
        w.check();
    }
    w.settle();
    w.check();
    for (i, waiting) in w.waiting.iter().enumerate() {
        assert!(waiting.is_empty(), "n{i} never answered {waiting:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn no_value_is_ever_held_twice(n in 2usize..6, ops in proptest::collection::vec(op(5), 0..200)) {
        let ops: Vec<Op> = ops
            .into_iter()
            .map(|o| match o {
                Op::Alloc(i, v) => Op::Alloc(i % n, v),
                Op::Release(i, k) => Op::Release(i % n, k),
                Op::Restart(i) => Op::Restart(i % n),
                Op::Die(i, by) => Op::Die(i % n, by),
                o => o,
            })
            .collect();
        run(n, &ops);
    }
}

/// Every node allocating at once: the origin serves locally, the others get blocks or loans;
/// every request within the pool's size is served, and the pool is handed out to its last value
/// without a duplicate.
#[test]
fn every_node_allocating_at_once_fills_the_pool() {
    let n = 4;
    let mut w = World::new(n);
    let capacity = w.pool.capacity();
    let share = capacity / n as u64;
    for _ in 0..share {
        for i in 0..n {
            w.step(&Op::Alloc(i, None));
            w.check();
        }
    }
    w.settle();
    for (i, a) in w.nodes.iter().enumerate() {
        assert_eq!(a.held().len() as u64, share, "n{i}");
    }
    // One more from everyone: what is left goes, the rest are refused as exhausted.
    for i in 0..n {
        w.step(&Op::Alloc(i, None));
    }
    w.settle();
    w.check();
    let held: usize = w.nodes.iter().map(|a| a.held().len()).sum();
    assert_eq!(held as u64, capacity, "every value handed out");
}
