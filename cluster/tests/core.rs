#![allow(clippy::unwrap_used, reason = "test driver: a panic is a test failure")]
//! The node core on virtual time, with an in-memory network (no sockets, no crypto): SWIM
//! membership drives NetworkDB.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cluster::{Node, NodeConfig, NodeIdentity, Output};
use networkdb::NodeState;

struct Net {
    now: Instant,
    nodes: Vec<Option<Node>>,
    addrs: Vec<SocketAddr>,
    queue: BTreeMap<(Instant, u64), (usize, Delivery)>,
    seq: u64,
    starts: u64,
}

enum Delivery {
    Datagram(SocketAddr, Vec<u8>),
    Stream(String, Vec<u8>),
}

impl Net {
    fn new(n: usize) -> Self {
        let now = networkdb::harness::epoch();
        let addrs = (0..n)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 20_000 + i as u16)))
            .collect();
        let mut net = Self {
            now,
            nodes: Vec::new(),
            addrs,
            queue: BTreeMap::new(),
            seq: 0,
            starts: 0,
        };
        for i in 0..n {
            net.nodes.push(None);
            net.start(i);
        }
        net
    }

    fn start(&mut self, i: usize) {
        self.starts += 1;
        let id = NodeIdentity::new(format!("node{i}"), self.addrs[i], self.starts);
        let node = Node::new(self.now, id, 1000 + self.starts, NodeConfig::fast()).unwrap();
        self.nodes[i] = Some(node);
    }

    fn node(&mut self, i: usize) -> &mut Node {
        self.nodes[i].as_mut().unwrap()
    }

    fn drain(&mut self, i: usize) {
        let from = self.addrs[i];
        let name = format!("node{i}");
        while let Some(out) = self.nodes[i].as_mut().and_then(Node::poll_output) {
            let (to, delivery) = match out {
                Output::Datagram { to, payload } => {
                    // Every datagram, SWIM or NetworkDB, fits packet_size once sealed.
                    let sealed = payload.len() + cluster::crypto::ENVELOPE_OVERHEAD;
                    assert!(
                        sealed <= 1400,
                        "a {sealed}-byte datagram exceeds packet_size"
                    );
                    (to, Delivery::Datagram(from, payload))
                }
                Output::Stream { to, payload, .. } => (to, Delivery::Stream(name.clone(), payload)),
                _ => continue,
            };
            let Some(j) = self.addrs.iter().position(|a| *a == to) else {
                continue;
            };
            self.seq += 1;
            self.queue.insert(
                (self.now + Duration::from_millis(1), self.seq),
                (j, delivery),
            );
        }
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        for i in 0..self.nodes.len() {
            self.drain(i);
        }
        loop {
            let msg = self.queue.first_key_value().map(|(k, _)| k.0);
            let timer = (0..self.nodes.len())
                .filter_map(|i| self.nodes[i].as_ref().map(|n| (n.poll_timeout(), i)))
                .min();
            let next = match (msg, timer) {
                (Some(m), Some((t, _))) => m.min(t),
                (Some(m), None) => m,
                (None, Some((t, _))) => t,
                (None, None) => break,
            };
            if next > end {
                break;
            }
            self.now = self.now.max(next);
            let now = self.now;
            if msg == Some(next) {
                let Some((_, (j, d))) = self.queue.pop_first() else {
                    break;
                };
                if let Some(node) = self.nodes[j].as_mut() {
                    let _ = match d {
                        Delivery::Datagram(from, p) => node.handle_datagram(now, from, &p),
                        Delivery::Stream(name, p) => node.handle_stream(now, &[name], &p),
                    };
                    self.drain(j);
                }
            } else if let Some((_, i)) = timer {
                self.node(i).handle_timeout(now);
                self.drain(i);
            }
        }
        self.now = end;
    }
}

#[test]
fn five_nodes_converge_and_survive_a_restart() {
    let mut net = Net::new(5);
    let seed = net.addrs[0];
    for i in 1..5 {
        let now = net.now;
        net.node(i).join(now, vec![seed]);
    }
    net.run_for(Duration::from_secs(5));
    for i in 0..5 {
        assert_eq!(net.node(i).members().len(), 4, "node{i} members");
    }
    for i in 0..5 {
        let now = net.now;
        net.node(i).db_mut().join_network(now, "n".into()).unwrap();
    }
    net.run_for(Duration::from_secs(1));
    for i in 0..5 {
        let now = net.now;
        let key = format!("k{i}");
        net.node(i)
            .db_mut()
            .create_entry(now, "t".into(), "n".into(), key.into(), vec![i as u8])
            .unwrap();
    }
    net.run_for(Duration::from_secs(2));
    for i in 0..5 {
        assert_eq!(
            net.node(i).db().table_by_network("t", "n").len(),
            5,
            "node{i}"
        );
    }

    // Crash node 4: the others mark it failed and hide its entry.
    let old_name = net.node(4).identity().db_name();
    net.nodes[4] = None;
    net.run_for(Duration::from_secs(5));
    for i in 0..4 {
        assert_eq!(
            net.node(i).db().node_state(old_name.as_str()),
            Some(NodeState::Failed),
            "node{i}"
        );
        assert_eq!(
            net.node(i).db().table_by_network("t", "n").len(),
            4,
            "node{i}"
        );
    }

    // Restart it with a new incarnation: the old run is retired, the new one joins.
    net.start(4);
    let now = net.now;
    net.node(4).join(now, vec![seed]);
    net.run_for(Duration::from_secs(5));
    let now = net.now;
    net.node(4).db_mut().join_network(now, "n".into()).unwrap();
    net.node(4)
        .db_mut()
        .create_entry(now, "t".into(), "n".into(), "k4".into(), vec![44])
        .unwrap();
    net.run_for(Duration::from_secs(3));
    for i in 0..5 {
        assert_eq!(
            net.node(i).members().len(),
            4,
            "node{i} members after restart"
        );
        let table = net.node(i).db().table_by_network("t", "n");
        assert_eq!(table.len(), 5, "node{i}: {table:?}");
        assert_eq!(table.get("k4").map(|e| e.value.to_vec()), Some(vec![44]));
    }
}

/// A stream message from a sender SWIM has not reported yet is kept, and applied once the
/// sender becomes a member (a certificate alone is not membership, but ordering races between
/// SWIM and the stream path must not lose state).
#[test]
fn stream_from_a_not_yet_member_is_applied_when_it_joins() {
    use networkdb::LTime;
    use networkdb::wire::{Message, NetworkEntry, PushPull};

    let mut net = Net::new(2);
    let name1 = net.node(1).identity().db_name();
    let pp = Message::PushPull(PushPull {
        ltime: LTime(1000),
        node: name1.clone(),
        networks: vec![NetworkEntry {
            network: "early".into(),
            ltime: LTime(2),
            node: name1.clone(),
            leaving: false,
        }],
        reply: true,
    });
    let now = net.now;
    let refused = net.node(0).handle_stream(now, &["node1"], &pp.encode());
    assert!(
        matches!(refused, Err(cluster::InputError::NotMember(_))),
        "{refused:?}"
    );
    assert_eq!(net.node(0).stats().deferred_streams, 1);
    assert!(!net.node(0).db().is_attached("early", name1.as_str()));
    assert!(net.node(0).db().clocks().0 < LTime(1000));

    let seed = net.addrs[0];
    let now = net.now;
    net.node(1).join(now, vec![seed]);
    net.run_for(Duration::from_secs(3));
    assert!(
        net.node(0).db().clocks().0 > LTime(1000),
        "applied after MemberUp"
    );
    assert_eq!(net.node(0).stats().dropped_not_member, 0);
    // node1 is not attached to "early": it answered the stale claim with a LEAVE.
    assert!(!net.node(0).db().is_attached("early", name1.as_str()));
}

/// foca sizes its dissemination once (for 32 members by default); the node rescales it as the
/// cluster grows past that, so every member hears of every join.
#[test]
fn swim_settings_follow_the_cluster_size() {
    let n = 40;
    let mut net = Net::new(n);
    assert_eq!(net.node(0).swim_sized_for(), 32);
    let seed = net.addrs[0];
    for i in 1..n {
        let now = net.now;
        net.node(i).join(now, vec![seed]);
    }
    net.run_for(Duration::from_secs(10));
    for i in 0..n {
        assert_eq!(net.node(i).members().len(), n - 1, "node{i} members");
        assert_eq!(net.node(i).swim_sized_for(), 64, "node{i}");
        assert!(net.node(i).stats().swim_rescales >= 1);
    }
}
