//! Property tests: whatever the event stream (creates, updates, deletes, malformed values,
//! duplicates, reordering across keys, several endpoints per IP, hosts failing and
//! returning, devices created late), planning after every step keeps the fake kernel equal
//! to the peer DB's wanted view, and the final kernel state depends only on the final table.

#![allow(clippy::unwrap_used, reason = "tests unwrap known-good values")]

mod common;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr};

use bytes::Bytes;
use common::*;
use networkdb::WatchEvent;
use overlay::{KernelState, Mac, PeerRecord};
use proptest::prelude::*;

const NETWORKS: [&str; 2] = ["n0", "n1"];
const KEYS: [&str; 5] = ["k0", "k1", "k2", "k3", "k4"];

/// A table value: a record (ip, mac, vtep indices; vtep 1 is this host) or garbage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Val {
    Rec(u8, u8, u8),
    Garbage,
}

impl Val {
    fn bytes(self) -> Bytes {
        match self {
            Val::Rec(i, m, v) => bytes(&record(i, m, v)),
            Val::Garbage => Bytes::from_static(b"\x0a\x02zz\x12\x01x"),
        }
    }

    fn owner(self) -> Option<IpAddr> {
        match self {
            Val::Rec(_, _, v) => Some(vtep(v)),
            Val::Garbage => None,
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Set(usize, usize, Val),
    Del(usize, usize),
    Down(u8),
    Up(u8),
    Ready(usize),
    Gone(usize),
    Deliver(usize),
    Redeliver(usize),
}

fn val() -> impl Strategy<Value = Val> {
    prop_oneof![
        10 => (1u8..=3, 1u8..=3, 1u8..=4).prop_map(|(i, m, v)| Val::Rec(i, m, v)),
        1 => Just(Val::Garbage),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..NETWORKS.len(), 0..KEYS.len(), val()).prop_map(|(n, k, v)| Op::Set(n, k, v)),
        3 => (0..NETWORKS.len(), 0..KEYS.len()).prop_map(|(n, k)| Op::Del(n, k)),
        1 => (2u8..=4).prop_map(Op::Down),
        1 => (2u8..=4).prop_map(Op::Up),
        1 => (0..NETWORKS.len()).prop_map(Op::Ready),
        1 => (0..NETWORKS.len()).prop_map(Op::Gone),
        8 => any::<usize>().prop_map(Op::Deliver),
        2 => any::<usize>().prop_map(Op::Redeliver),
    ]
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    val: Val,
    hidden: bool,
}

/// The NetworkDB side: the table, the failed hosts, and each key's undelivered events (a
/// key's events stay in order; different keys' events interleave freely).
struct World {
    use_api: bool,
    use_hiding: bool,
    table: BTreeMap<(usize, usize), Entry>,
    down: BTreeSet<IpAddr>,
    pending: BTreeMap<(usize, usize), VecDeque<WatchEvent>>,
    delivered: BTreeMap<(usize, usize), WatchEvent>,
    node: Node,
}

impl World {
    fn new(use_api: bool, use_hiding: bool) -> Self {
        Self {
            use_api,
            use_hiding,
            table: BTreeMap::new(),
            down: BTreeSet::new(),
            pending: BTreeMap::new(),
            delivered: BTreeMap::new(),
            node: Node::new(),
        }
    }

    fn visible(&self, at: (usize, usize)) -> Option<Val> {
        self.table.get(&at).filter(|e| !e.hidden).map(|e| e.val)
    }

    fn emit(&mut self, at: (usize, usize), prev: Option<Val>, value: Option<Val>) {
        if prev.is_none() && value.is_none() {
            return;
        }
        let ev = event(
            NETWORKS[at.0],
            KEYS[at.1],
            prev.map(Val::bytes),
            value.map(Val::bytes),
        );
        self.pending.entry(at).or_default().push_back(ev);
    }

    fn owner_down(&self, v: Option<IpAddr>) -> bool {
        v.is_some_and(|v| self.down.contains(&v))
    }

    fn step(&mut self, op: &Op) {
        match *op {
            Op::Set(n, k, val) => {
                let at = (n, k);
                let cur = self.table.get(&at).copied();
                // A failed owner writes nothing; nobody writes for it.
                if cur.is_some_and(|e| e.hidden || self.owner_down(e.val.owner()))
                    || self.owner_down(val.owner())
                {
                    return;
                }
                let prev = self.visible(at);
                self.table.insert(at, Entry { val, hidden: false });
                self.emit(at, prev, Some(val));
            }
            Op::Del(n, k) => {
                let at = (n, k);
                let Some(cur) = self.table.get(&at).copied() else {
                    return;
                };
                if cur.hidden || self.owner_down(cur.val.owner()) {
                    return;
                }
                self.table.remove(&at);
                self.emit(at, Some(cur.val), None);
            }
            Op::Down(v) => {
                let v = vtep(v);
                if !self.down.insert(v) {
                    return;
                }
                if self.use_hiding {
                    let owned: Vec<_> = self
                        .table
                        .iter()
                        .filter(|(_, e)| !e.hidden && e.val.owner() == Some(v))
                        .map(|(&at, _)| at)
                        .collect();
                    for at in owned {
                        let e = self.table.get_mut(&at).unwrap();
                        e.hidden = true;
                        let prev = e.val;
                        self.emit(at, Some(prev), None);
                    }
                }
                if self.use_api {
                    self.node.db.host_down(v);
                    self.node.sync();
                }
            }
            Op::Up(v) => {
                let v = vtep(v);
                if !self.down.remove(&v) {
                    return;
                }
                let hidden: Vec<_> = self
                    .table
                    .iter()
                    .filter(|(_, e)| e.hidden && e.val.owner() == Some(v))
                    .map(|(&at, _)| at)
                    .collect();
                for at in hidden {
                    let e = self.table.get_mut(&at).unwrap();
                    e.hidden = false;
                    let value = e.val;
                    self.emit(at, None, Some(value));
                }
                if self.use_api {
                    self.node.db.host_up(v);
                    self.node.sync();
                }
            }
            Op::Ready(n) => self.node.ready(NETWORKS[n]),
            Op::Gone(n) => {
                self.node.db.network_gone(&net(NETWORKS[n]));
                self.node.kernel.delete_network(&net(NETWORKS[n]));
                self.node.sync();
            }
            Op::Deliver(slot) => {
                let keys: Vec<_> = self
                    .pending
                    .iter()
                    .filter(|(_, q)| !q.is_empty())
                    .map(|(&at, _)| at)
                    .collect();
                if let Some(&at) = keys.get(slot % keys.len().max(1)) {
                    self.deliver(at);
                }
            }
            Op::Redeliver(slot) => {
                let evs: Vec<_> = self.delivered.values().cloned().collect();
                if let Some(ev) = evs.get(slot % evs.len().max(1)) {
                    self.node.apply(ev);
                }
            }
        }
    }

    fn deliver(&mut self, at: (usize, usize)) {
        let Some(ev) = self.pending.get_mut(&at).and_then(VecDeque::pop_front) else {
            return;
        };
        self.node.apply(&ev);
        self.delivered.insert(at, ev);
    }

    fn finish(&mut self) {
        let keys: Vec<_> = self.pending.keys().copied().collect();
        for at in keys {
            while self.pending.get(&at).is_some_and(|q| !q.is_empty()) {
                self.deliver(at);
            }
        }
        for n in NETWORKS {
            self.node.ready(n);
        }
    }

    /// The final table's visible records, by network and key.
    fn final_records(&self) -> Vec<(usize, usize, PeerRecord)> {
        self.table
            .iter()
            .filter_map(|(&(n, k), e)| match (e.hidden, e.val) {
                (false, Val::Rec(i, m, v)) => Some((n, k, record(i, m, v))),
                _ => None,
            })
            .collect()
    }

    /// What every network's device must hold, computed from the final table alone.
    fn oracle(&self) -> BTreeMap<usize, KernelState> {
        let mut best: BTreeMap<(usize, Ipv4Addr), (bool, IpAddr, usize, Mac)> = BTreeMap::new();
        for (n, k, r) in self.final_records() {
            let v = r.tunnel_endpoint_ip;
            if self.use_api && self.down.contains(&v) {
                continue;
            }
            let cand = (v != LOCAL, v, k, r.endpoint_mac);
            let slot = best.entry((n, r.endpoint_ip.addr())).or_insert(cand);
            *slot = (*slot).min(cand);
        }
        let mut out: BTreeMap<usize, KernelState> = (0..NETWORKS.len())
            .map(|n| (n, KernelState::default()))
            .collect();
        for ((n, ip), (remote, v, _, mac)) in best {
            if remote {
                let s = out.get_mut(&n).unwrap();
                s.neighbours.insert(ip, mac);
                let f = s.fdb.entry(mac).or_insert(v);
                *f = (*f).min(v);
            }
        }
        out
    }
}

fn run(use_api: bool, use_hiding: bool, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut w = World::new(use_api, use_hiding);
    for op in ops {
        w.step(op);
    }
    w.finish();
    let oracle = w.oracle();
    for (n, want) in &oracle {
        let got = w.node.kernel.networks().get(&net(NETWORKS[*n])).cloned();
        prop_assert_eq!(got.as_ref(), Some(want), "network {}", NETWORKS[*n]);
    }

    // A fresh node that only ever saw the final table ends in the same state.
    let mut fresh = Node::new();
    for n in NETWORKS {
        fresh.ready(n);
    }
    if use_api {
        for &v in &w.down {
            fresh.db.host_down(v);
        }
    }
    for (n, k, r) in w.final_records() {
        fresh.apply(&create(NETWORKS[n], KEYS[k], &r));
    }
    fresh.sync();
    prop_assert_eq!(fresh.kernel.networks(), w.node.kernel.networks());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn kernel_tracks_table_with_networkdb_hiding(ops in proptest::collection::vec(op(), 0..80)) {
        run(false, true, &ops)?;
    }

    #[test]
    fn kernel_tracks_table_with_host_api(ops in proptest::collection::vec(op(), 0..80)) {
        run(true, false, &ops)?;
    }

    #[test]
    fn kernel_tracks_table_with_both(ops in proptest::collection::vec(op(), 0..80)) {
        run(true, true, &ops)?;
    }
}
