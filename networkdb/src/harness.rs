//! An in-memory N-node harness on virtual time (feature `harness`), in the manner of raft-rs'
//! test network: deliver, drop, cut, isolate, crash and restart.
//!
//! The harness stands in for the transport and for the membership layer: it delivers
//! [`Transmit`]s after a latency, tells nodes when others come up or fail (after
//! `failure_detection`), and answers [`Output::Reconnect`] / [`Output::RejoinBootstrap`] the
//! way a SWIM join would (both sides learn each other's live members). Everything is seeded:
//! the same seed and the same calls give the same run.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::{
    Channel, Config, Key, NetworkDb, NodeName, NodeState, Output, TableName, Transmit, WatchEvent,
    WatchId,
};

/// The start of virtual time for tests that drive a [`NetworkDb`] directly. Arbitrary: the
/// core only compares instants it was given.
pub fn epoch() -> Instant {
    #[allow(
        clippy::disallowed_methods,
        reason = "the harness picks the virtual epoch once"
    )]
    Instant::now()
}

/// Knobs of the simulated network.
#[derive(Clone, Debug)]
pub struct NetOptions {
    /// Minimum one-way delay.
    pub latency: Duration,
    /// Extra random delay in `[0, jitter]` (reorders messages).
    pub jitter: Duration,
    /// Probability that a datagram is lost (streams are reliable).
    pub loss: f64,
    /// Probability that a datagram is delivered twice.
    pub duplicate: f64,
    /// How long the membership layer takes to report a crashed node as down.
    pub failure_detection: Duration,
}

impl Default for NetOptions {
    fn default() -> Self {
        Self {
            latency: Duration::from_millis(1),
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
            failure_detection: Duration::from_secs(2),
        }
    }
}

/// One host of the harness.
#[derive(Debug)]
pub struct Host {
    /// The running node, `None` while crashed.
    pub db: Option<NetworkDb>,
    /// The host's fixed address.
    pub addr: SocketAddr,
    /// Starts so far (names are `node<i>` then `node<i>-r<k>`).
    pub incarnation: u32,
    /// Watch events received, in order.
    pub events: Vec<(WatchId, WatchEvent)>,
}

#[derive(Debug)]
enum Pending {
    Deliver {
        to: usize,
        channel: Channel,
        payload: Vec<u8>,
    },
    Down {
        observer: usize,
        name: NodeName,
    },
}

/// N NetworkDB nodes wired together on virtual time.
#[derive(Debug)]
pub struct Harness {
    now: Instant,
    config: Config,
    /// Network model.
    pub net: NetOptions,
    hosts: Vec<Host>,
    queue: BTreeMap<(Instant, u64), Pending>,
    seq: u64,
    rng: Xoshiro256PlusPlus,
    seed: u64,
    cuts: BTreeSet<(usize, usize)>,
}

impl Harness {
    /// `n` nodes that have not joined each other yet.
    pub fn new(n: usize, config: Config, seed: u64) -> Self {
        let now = epoch();
        let mut h = Self {
            now,
            config,
            net: NetOptions::default(),
            hosts: Vec::new(),
            queue: BTreeMap::new(),
            seq: 0,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            seed,
            cuts: BTreeSet::new(),
        };
        for i in 0..n {
            let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 10_001 + i as u16);
            h.hosts.push(Host {
                db: None,
                addr,
                incarnation: 0,
                events: Vec::new(),
            });
            h.start(i);
        }
        h
    }

    /// `n` nodes where node `i > 0` joins node `i - 1` (libnetwork's test helper), run until
    /// every node sees every other.
    pub fn cluster(n: usize, config: Config, seed: u64) -> Self {
        let mut h = Self::new(n, config, seed);
        for i in 1..n {
            let addr = h.hosts[i - 1].addr;
            h.join(i, vec![addr]);
        }
        h.run_for(Duration::from_millis(100));
        h
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The number of hosts.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Whether there are no hosts.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Host `i`.
    pub fn host(&self, i: usize) -> &Host {
        &self.hosts[i]
    }

    /// Node `i`; panics if it is crashed.
    pub fn db(&self, i: usize) -> &NetworkDb {
        self.hosts[i].db.as_ref().expect("harness: node is crashed")
    }

    /// Node `i`, mutably; panics if it is crashed. Outputs of calls made through it are
    /// drained at the next `run_*`.
    pub fn db_mut(&mut self, i: usize) -> &mut NetworkDb {
        self.hosts[i].db.as_mut().expect("harness: node is crashed")
    }

    /// Whether node `i` runs.
    pub fn is_up(&self, i: usize) -> bool {
        self.hosts[i].db.is_some()
    }

    /// Node `i`'s current name.
    pub fn name(&self, i: usize) -> NodeName {
        self.db(i).name().clone()
    }

    /// Watch events node `i` received so far, with the watch each came from, taken.
    pub fn take_watch_events(&mut self, i: usize) -> Vec<(WatchId, WatchEvent)> {
        std::mem::take(&mut self.hosts[i].events)
    }

    /// Watch events node `i` received so far, taken.
    pub fn take_events(&mut self, i: usize) -> Vec<WatchEvent> {
        std::mem::take(&mut self.hosts[i].events)
            .into_iter()
            .map(|(_, e)| e)
            .collect()
    }

    // ---- membership ----

    /// Node `i` joins the cluster through `bootstrap`, as a SWIM join would: it and every
    /// live node reachable there learn each other.
    pub fn join(&mut self, i: usize, bootstrap: Vec<SocketAddr>) {
        let now = self.now;
        self.db_mut(i).join(now, bootstrap.clone());
        for addr in bootstrap {
            self.contact(i, addr);
        }
        self.drain_all();
    }

    /// Crashes node `i` (no goodbye); the others see it down after `failure_detection`.
    pub fn crash(&mut self, i: usize) {
        let name = self.name(i);
        self.hosts[i].db = None;
        self.report_down(i, name, self.net.failure_detection);
    }

    /// Node `i` leaves gracefully and stops; the others see it down shortly after.
    pub fn close(&mut self, i: usize) {
        let now = self.now;
        self.db_mut(i).leave(now);
        self.drain(i);
        let name = self.name(i);
        self.hosts[i].db = None;
        self.report_down(i, name, self.net.latency * 4);
    }

    /// Restarts host `i` with a new name at the same address; with `join`, it contacts those
    /// addresses.
    pub fn restart(&mut self, i: usize, join: Option<Vec<SocketAddr>>) {
        self.hosts[i].db = None;
        self.hosts[i].incarnation += 1;
        self.start(i);
        if let Some(addrs) = join {
            self.join(i, addrs);
        }
    }

    /// The membership layer of `observer` reports `target` down now.
    pub fn report_down_at(&mut self, observer: usize, target: usize) {
        let name = self.name(target);
        let now = self.now;
        self.db_mut(observer).node_down(now, &name);
        self.drain(observer);
    }

    /// The membership layers of `a` and `b` see each other alive now.
    pub fn report_up_between(&mut self, a: usize, b: usize) {
        let now = self.now;
        let (na, aa) = (self.name(a), self.hosts[a].addr);
        let (nb, ab) = (self.name(b), self.hosts[b].addr);
        self.db_mut(a).node_up(now, nb, ab);
        self.db_mut(b).node_up(now, na, aa);
        self.drain_all();
    }

    // ---- faults ----

    /// Drops every message between `a` and `b`, both ways.
    pub fn cut(&mut self, a: usize, b: usize) {
        self.cuts.insert((a, b));
        self.cuts.insert((b, a));
    }

    /// Drops every message from `from` to `to` only.
    pub fn cut_one_way(&mut self, from: usize, to: usize) {
        self.cuts.insert((from, to));
    }

    /// Cuts `i` from every other host.
    pub fn isolate(&mut self, i: usize) {
        for j in 0..self.hosts.len() {
            if j != i {
                self.cut(i, j);
            }
        }
    }

    /// Removes every cut.
    pub fn heal(&mut self) {
        self.cuts.clear();
    }

    // ---- time ----

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        self.run_until(end);
    }

    /// Runs until `end`, delivering messages and firing timers in time order.
    pub fn run_until(&mut self, end: Instant) {
        self.drain_all();
        loop {
            let next_msg = self.queue.first_key_value().map(|(k, _)| k.0);
            let next_timer = self
                .hosts
                .iter()
                .enumerate()
                .filter_map(|(i, h)| h.db.as_ref().map(|db| (db.poll_timeout(), i)))
                .min();
            let take_msg = match (next_msg, next_timer) {
                (Some(m), Some((t, _))) => m <= t,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if take_msg {
                let Some((&(at, seq), _)) = self.queue.first_key_value() else {
                    break;
                };
                if at > end {
                    break;
                }
                let Some(pending) = self.queue.remove(&(at, seq)) else {
                    break;
                };
                self.now = self.now.max(at);
                self.apply(pending);
            } else if let Some((at, i)) = next_timer {
                if at > end {
                    break;
                }
                self.now = self.now.max(at);
                let now = self.now;
                self.db_mut(i).handle_timeout(now);
                self.drain(i);
            }
        }
        self.now = self.now.max(end);
    }

    /// Runs in steps of `step` until `done` holds or `timeout` passes; returns whether it held.
    pub fn run_until_true(
        &mut self,
        timeout: Duration,
        step: Duration,
        mut done: impl FnMut(&Self) -> bool,
    ) -> bool {
        let end = self.now + timeout;
        loop {
            if done(self) {
                return true;
            }
            if self.now >= end {
                return false;
            }
            self.run_for(step);
        }
    }

    // ---- checks ----

    /// Every running node attached to a network sees the same visible entries in every table
    /// of it. Returns the first difference.
    pub fn check_converged(&self) -> Result<(), String> {
        let mut networks = BTreeSet::new();
        for h in &self.hosts {
            if let Some(db) = &h.db {
                networks.extend(db.networks());
            }
        }
        for network in networks {
            let mut reference: Option<(NodeName, View)> = None;
            for h in &self.hosts {
                let Some(db) = &h.db else { continue };
                if !db.is_attached(&network, db.name()) {
                    continue;
                }
                let view = visible_view(db, &network);
                match &reference {
                    None => reference = Some((db.name().clone(), view)),
                    Some((name, other)) if *other != view => {
                        return Err(format!(
                            "network {network}: {name} sees {} entries, {} sees {}: first \
                             difference {:?}",
                            other.len(),
                            db.name(),
                            view.len(),
                            first_difference(other, &view)
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(())
    }

    /// What the owners hold in `network`: the visible entries each running, attached node
    /// owns, in order. After convergence every attached node's [`visible_view`] equals it.
    pub fn owners_view(&self, network: &str) -> View {
        let mut out = View::new();
        for db in self.hosts.iter().filter_map(|h| h.db.as_ref()) {
            if !db.is_attached(network, db.name()) {
                continue;
            }
            for table in db.tables(network) {
                for (key, elem) in db.table_by_network(&table, network) {
                    if &elem.owner == db.name() {
                        out.push((table.clone(), key, elem.value.to_vec()));
                    }
                }
            }
        }
        out.sort();
        out
    }

    /// The seed this harness was built with (print it when a check fails).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    // ---- internals ----

    fn start(&mut self, i: usize) {
        let inc = self.hosts[i].incarnation;
        let name = if inc == 0 {
            format!("node{i}")
        } else {
            format!("node{i}-r{inc}")
        };
        let seed = self.seed ^ ((i as u64) << 32) ^ u64::from(inc);
        let db = NetworkDb::new(
            self.now,
            name.into(),
            self.hosts[i].addr,
            seed,
            self.config.clone(),
        )
        .expect("harness: invalid config");
        self.hosts[i].db = Some(db);
    }

    fn index_of(&self, addr: SocketAddr) -> Option<usize> {
        self.hosts.iter().position(|h| h.addr == addr)
    }

    fn reachable(&self, a: usize, b: usize) -> bool {
        !self.cuts.contains(&(a, b)) && !self.cuts.contains(&(b, a))
    }

    /// Node `i` contacts `addr` as a SWIM join does: if a live node answers, the live members
    /// both know end up knowing each other.
    fn contact(&mut self, i: usize, addr: SocketAddr) {
        let Some(j) = self.index_of(addr) else { return };
        if i == j || !self.is_up(i) || !self.is_up(j) || !self.reachable(i, j) {
            return;
        }
        let mut group: BTreeSet<usize> = BTreeSet::new();
        for k in [i, j] {
            group.insert(k);
            for peer in self.db(k).cluster_peers() {
                if let Some(idx) = peer.addr.and_then(|a| self.index_of(a))
                    && self.is_up(idx)
                    && self.db(idx).name() == &peer.name
                {
                    group.insert(idx);
                }
            }
        }
        let members: Vec<(NodeName, SocketAddr, usize)> = group
            .iter()
            .map(|&k| (self.name(k), self.hosts[k].addr, k))
            .collect();
        let now = self.now;
        for &(_, _, k) in &members {
            for (name, addr, other) in &members {
                if *other == k {
                    continue;
                }
                let known = self.db(k).node_state(name) == Some(NodeState::Active);
                if !known {
                    self.db_mut(k).node_up(now, name.clone(), *addr);
                }
            }
        }
    }

    fn report_down(&mut self, target: usize, name: NodeName, after: Duration) {
        let at = self.now + after;
        for observer in 0..self.hosts.len() {
            if observer == target {
                continue;
            }
            self.seq += 1;
            self.queue.insert(
                (at, self.seq),
                Pending::Down {
                    observer,
                    name: name.clone(),
                },
            );
        }
    }

    fn apply(&mut self, pending: Pending) {
        let now = self.now;
        match pending {
            Pending::Deliver {
                to,
                channel,
                payload,
            } => {
                let Some(db) = self.hosts[to].db.as_mut() else {
                    return;
                };
                let _ = db.handle_message(now, channel, &payload);
                self.drain(to);
            }
            Pending::Down { observer, name } => {
                let Some(db) = self.hosts[observer].db.as_mut() else {
                    return;
                };
                db.node_down(now, &name);
                self.drain(observer);
            }
        }
    }

    fn drain_all(&mut self) {
        for i in 0..self.hosts.len() {
            self.drain(i);
        }
    }

    fn drain(&mut self, i: usize) {
        let mut contacts = Vec::new();
        loop {
            let Some(db) = self.hosts[i].db.as_mut() else {
                return;
            };
            let Some(out) = db.poll_output() else { break };
            match out {
                Output::Transmit(t) => self.route(i, t),
                Output::Watch { watch, event } => self.hosts[i].events.push((watch, event)),
                Output::Reconnect { addr, .. } => contacts.push(addr),
                Output::RejoinBootstrap { addrs } => contacts.extend(addrs),
            }
        }
        for addr in contacts {
            self.contact(i, addr);
            self.drain_all();
        }
    }

    fn route(&mut self, from: usize, t: Transmit) {
        let Some(to) = self.index_of(t.addr) else {
            return;
        };
        if !self.is_up(to) || self.cuts.contains(&(from, to)) {
            return;
        }
        let mut copies = 1;
        if t.channel == Channel::Datagram {
            if self.net.loss > 0.0 && self.rng.random_bool(self.net.loss.min(1.0)) {
                return;
            }
            if self.net.duplicate > 0.0 && self.rng.random_bool(self.net.duplicate.min(1.0)) {
                copies = 2;
            }
        }
        for _ in 0..copies {
            let jitter = if self.net.jitter.is_zero() {
                Duration::ZERO
            } else {
                let max = u64::try_from(self.net.jitter.as_nanos()).unwrap_or(u64::MAX);
                Duration::from_nanos(self.rng.random_range(0..=max))
            };
            let at = self.now + self.net.latency + jitter;
            self.seq += 1;
            let payload = t.payload.clone();
            self.queue.insert(
                (at, self.seq),
                Pending::Deliver {
                    to,
                    channel: t.channel,
                    payload,
                },
            );
        }
    }
}

/// What readers of one network see: (table, key, value), in order.
pub type View = Vec<(TableName, Key, Vec<u8>)>;

/// The visible entries of `network` on `db`, in order.
pub fn visible_view(db: &NetworkDb, network: &str) -> View {
    let mut out = Vec::new();
    for table in db.tables(network) {
        for (key, elem) in db.table_by_network(&table, network) {
            out.push((table.clone(), key, elem.value.to_vec()));
        }
    }
    out
}

fn first_difference<T: std::fmt::Debug + PartialEq>(a: &[T], b: &[T]) -> String {
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return format!("{x:?} vs {y:?}");
        }
    }
    let longer = if a.len() > b.len() {
        a.get(b.len())
    } else {
        b.get(a.len())
    };
    format!("extra {longer:?}")
}
