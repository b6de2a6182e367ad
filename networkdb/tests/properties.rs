#![allow(clippy::unwrap_used, reason = "test helpers unwrap known-good values")]
//! Property tests of the core: order independence, monotonic clocks, tombstones that hold,
//! and datagrams that never exceed the packet budget.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use networkdb::harness::{Harness, epoch};
use networkdb::wire::{Message, NetworkEvent, NetworkEventKind, TableEvent, TableEventKind};
use networkdb::{Channel, Config, LTime, NetworkDb, NodeName, Output};
use proptest::prelude::*;

const OWNERS: [&str; 3] = ["owner-a", "owner-b", "owner-c"];

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A node attached to network `n` whose peers `OWNERS` are attached too.
fn receiver(now: Instant) -> NetworkDb {
    let db = NetworkDb::new(now, "rx".into(), addr(1), 7, Config::default()).unwrap();
    with_owners(db, now)
}

/// `db` joined to network `n`, with every one of `OWNERS` up and attached to it.
fn with_owners(mut db: NetworkDb, now: Instant) -> NetworkDb {
    db.join_network(now, "n".into()).unwrap();
    for (i, owner) in OWNERS.iter().enumerate() {
        db.node_up(now, NodeName::from(*owner), addr(2 + i as u16));
        let join = Message::NetworkEvent(NetworkEvent {
            kind: NetworkEventKind::Join,
            ltime: LTime(1),
            node: NodeName::from(*owner),
            network: "n".into(),
        });
        db.handle_message(now, Channel::Datagram, &join.encode())
            .unwrap();
    }
    while db.poll_output().is_some() {}
    db
}

#[derive(Clone, Debug)]
struct Ev {
    owner: usize,
    key: u8,
    ltime: u64,
    kind: u8,
    value: u8,
}

fn ev_strategy() -> impl Strategy<Value = Ev> {
    (0..OWNERS.len(), 0u8..4, 1u64..30, 0u8..3, any::<u8>()).prop_map(
        |(owner, key, ltime, kind, value)| Ev {
            owner,
            key,
            ltime,
            kind,
            value,
        },
    )
}

/// Distinct (owner, ltime) pairs: an owner never writes two events with one time.
fn unique(mut evs: Vec<Ev>) -> Vec<Ev> {
    let mut seen = std::collections::BTreeSet::new();
    evs.retain(|e| seen.insert((e.owner, e.ltime)));
    evs
}

fn encode(e: &Ev) -> Vec<u8> {
    let kind = match e.kind {
        0 => TableEventKind::Create,
        1 => TableEventKind::Update,
        _ => TableEventKind::Delete,
    };
    Message::TableEvent(TableEvent {
        kind,
        ltime: LTime(e.ltime),
        owner: NodeName::from(OWNERS[e.owner]),
        network: "n".into(),
        table: "t".into(),
        key: format!("k{}", e.key).into(),
        value: Bytes::from(vec![e.value]),
        residual_reap_secs: if kind == TableEventKind::Delete {
            1800
        } else {
            0
        },
    })
    .encode()
}

fn state(db: &NetworkDb) -> Vec<(String, Vec<u8>, bool)> {
    let mut out = Vec::new();
    db.walk_table("t", |_, key, value, deleted| {
        out.push((key.to_string(), value.to_vec(), deleted));
        false
    });
    out
}

proptest! {
    /// Any interleaving, duplication or reordering of the same events gives the same state.
    #[test]
    fn order_and_duplicates_do_not_matter(
        evs in prop::collection::vec(ev_strategy(), 1..40),
        order in prop::collection::vec(any::<prop::sample::Index>(), 0..80),
    ) {
        let evs = unique(evs);
        let now = epoch();
        let mut a = receiver(now);
        for e in &evs {
            let _ = a.handle_message(now, Channel::Datagram, &encode(e));
        }
        // The same events in another order, each at least once, some several times.
        let mut b = receiver(now);
        let mut sequence: Vec<&Ev> = order.iter().map(|i| i.get(&evs)).collect();
        sequence.extend(evs.iter().rev());
        for e in sequence {
            let _ = b.handle_message(now, Channel::Datagram, &encode(e));
        }
        prop_assert_eq!(state(&a), state(&b));
    }

    /// A deleted entry never comes back while its tombstone lives, whatever older events
    /// arrive after the delete.
    #[test]
    fn tombstone_holds_against_older_events(
        older in prop::collection::vec(ev_strategy(), 0..30),
        delete_owner in 0..OWNERS.len(),
    ) {
        let now = epoch();
        let mut db = receiver(now);
        let delete = Ev { owner: delete_owner, key: 0, ltime: 100, kind: 2, value: 0 };
        db.handle_message(now, Channel::Datagram, &encode(&delete)).unwrap();
        for mut e in older {
            e.key = 0;
            db.handle_message(now, Channel::Datagram, &encode(&e)).unwrap();
            prop_assert!(db.get_entry("t", "n", "k0").is_err());
        }
        let later = now + Duration::from_secs(29 * 60);
        db.handle_timeout(later);
        prop_assert!(db.get_entry("t", "n", "k0").is_err());
    }

    /// Clocks never go back, whatever the workload.
    #[test]
    fn clocks_never_go_back(ops in prop::collection::vec((0usize..3, 0u8..6, 0u8..4), 1..60)) {
        let mut h = Harness::cluster(3, Config::default(), 11);
        let mut last = [(LTime(0), LTime(0)); 3];
        for (node, op, key) in ops {
            let now = h.now();
            let db = h.db_mut(node);
            let (t, n, k) = ("t".into(), "n".into(), format!("k{key}").into());
            let _ = match op {
                0 => db.join_network(now, n),
                1 => db.leave_network(now, n),
                2 => db.create_entry(now, t, n, k, &b"v"[..]),
                3 => db.update_entry(now, t, n, k, &b"w"[..]),
                4 => db.delete_entry(now, t, n, k),
                _ => Ok(()),
            };
            h.run_for(Duration::from_millis(300));
            for (i, prev) in last.iter_mut().enumerate() {
                let clocks = h.db(i).clocks();
                prop_assert!(clocks.0 >= prev.0 && clocks.1 >= prev.1);
                *prev = clocks;
            }
        }
    }

    /// Every datagram fits `packet_size`, and an event too big for one goes by stream.
    #[test]
    fn datagrams_fit_the_packet_budget(
        sizes in prop::collection::vec(0usize..700, 1..200),
        packet_size in 500usize..1500,
    ) {
        let now = epoch();
        let config = Config { packet_size, ..Config::default() };
        let db = NetworkDb::new(now, "tx".into(), addr(1), 3, config).unwrap();
        let mut db = with_owners(db, now);
        for (i, size) in sizes.iter().enumerate() {
            db.create_entry(now, "t".into(), "n".into(), format!("k{i}").into(), vec![7u8; *size])
                .unwrap();
        }
        let mut t = now;
        let mut table_events = 0usize;
        // Enough ticks to send every event its four times, a part or more per datagram.
        for _ in 0..sizes.len() * 4 + 10 {
            t += Duration::from_millis(200);
            db.handle_timeout(t);
            while let Some(out) = db.poll_output() {
                if let Output::Transmit(tx) = out
                    && tx.channel == Channel::Datagram {
                        prop_assert!(tx.payload.len() <= packet_size,
                            "datagram of {} bytes over {}", tx.payload.len(), packet_size);
                        if let Ok(Message::Compound(parts)) = Message::decode(&tx.payload) {
                            table_events += parts.len();
                        }
                    }
            }
        }
        let oversized = db.stats().oversized_via_stream as usize;
        prop_assert!(table_events > 0 || oversized == sizes.len());
        prop_assert_eq!(db.network_stats("n").unwrap().queue_len, 0);
    }
}

proptest! {
    /// Arbitrary bytes, and valid payloads with bytes flipped, truncated or extended, are
    /// counted and dropped: no panic, and a valid payload that follows is still applied.
    #[test]
    fn garbage_never_panics(
        noise in prop::collection::vec(any::<u8>(), 0..300),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let now = epoch();
        let mut db = receiver(now);
        let _ = db.handle_message(now, Channel::Datagram, &noise);
        let mut versioned = vec![networkdb::wire::PROTOCOL_VERSION];
        versioned.extend_from_slice(&noise);
        let _ = db.handle_message(now, Channel::Stream, &versioned);
        let valid = encode(&Ev { owner: 0, key: 1, ltime: 5, kind: 0, value: 9 });
        let mut mutated = valid.clone();
        for (i, b) in &flips {
            let i = i.index(mutated.len());
            mutated[i] ^= b;
        }
        let _ = db.handle_message(now, Channel::Datagram, &mutated);
        let _ = db.handle_message(now, Channel::Datagram, &valid[..cut.index(valid.len())]);
        let compound = Message::Compound(vec![networkdb::wire::Part(noise.clone())]).encode();
        let _ = db.handle_message(now, Channel::Datagram, &compound);
        let later = encode(&Ev { owner: 1, key: 2, ltime: 50, kind: 0, value: 3 });
        prop_assert!(db.handle_message(now, Channel::Datagram, &later).is_ok());
        prop_assert_eq!(db.get_entry("t", "n", "k2").unwrap(), Bytes::from(vec![3u8]));
    }
}

#[derive(Clone, Debug)]
enum Op {
    Join(usize, usize),
    Leave(usize, usize),
    Create(usize, usize, u8),
    Update(usize, usize, u8),
    Delete(usize, usize, u8),
    Sleep(u16),
}

fn op_strategy(nodes: usize, networks: usize) -> impl Strategy<Value = Op> {
    let n = 0..nodes;
    let m = 0..networks;
    prop_oneof![
        (n.clone(), m.clone()).prop_map(|(i, j)| Op::Join(i, j)),
        (n.clone(), m.clone()).prop_map(|(i, j)| Op::Leave(i, j)),
        (n.clone(), m.clone(), 0u8..8).prop_map(|(i, j, k)| Op::Create(i, j, k)),
        (n.clone(), m.clone(), 0u8..8).prop_map(|(i, j, k)| Op::Update(i, j, k)),
        (n, m, 0u8..8).prop_map(|(i, j, k)| Op::Delete(i, j, k)),
        (0u16..2000).prop_map(Op::Sleep),
    ]
}

fn workload() -> impl Strategy<Value = (usize, usize, Vec<Op>, u64)> {
    (2usize..=25, 1usize..=5).prop_flat_map(|(nodes, networks)| {
        (
            Just(nodes),
            Just(networks),
            prop::collection::vec(op_strategy(nodes, networks), 1..60),
            any::<u64>(),
        )
    })
}

/// Every visible entry is held by its owner, which is attached to the network.
fn owners_hold_what_others_see(h: &Harness) -> Result<(), String> {
    for i in 0..h.len() {
        let db = h.db(i);
        for network in db.networks() {
            for table in db.tables(&network) {
                for (key, e) in db.table_by_network(&table, &network) {
                    let owner = (0..h.len()).find(|&j| h.db(j).name() == &e.owner);
                    let Some(o) = owner else {
                        return Err(format!(
                            "{} sees {key} owned by unknown {}",
                            db.name(),
                            e.owner
                        ));
                    };
                    let held = h.db(o).get_entry(&table, &network, &key).ok();
                    if held.as_ref() != Some(&e.value) {
                        return Err(format!(
                            "{} sees {network}/{table}/{key}={:?} but its owner {} holds {held:?}",
                            db.name(),
                            e.value,
                            e.owner
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// moby `TestNetworkDBAlwaysConverges`: 2-25 nodes, 1-5 networks, random join, leave,
    /// create, update, delete and sleep; within 2 minutes of virtual time after the last
    /// operation every view agrees and matches the owners'. Shrinks to a minimal workload.
    #[test]
    fn network_db_always_converges((nodes, _networks, ops, seed) in workload()) {
        let mut h = Harness::cluster(nodes, Config::default(), seed);
        for op in &ops {
            let now = h.now();
            let net = |j: usize| networkdb::NetworkId::from(format!("net{j}"));
            let key = |k: u8| networkdb::Key::from(format!("k{k}"));
            let _ = match *op {
                Op::Join(i, j) => h.db_mut(i).join_network(now, net(j)),
                Op::Leave(i, j) => h.db_mut(i).leave_network(now, net(j)),
                Op::Create(i, j, k) => {
                    h.db_mut(i).create_entry(now, "t".into(), net(j), key(k), vec![k, i as u8])
                }
                Op::Update(i, j, k) => {
                    h.db_mut(i).update_entry(now, "t".into(), net(j), key(k), vec![k, i as u8, 1])
                }
                Op::Delete(i, j, k) => h.db_mut(i).delete_entry(now, "t".into(), net(j), key(k)),
                Op::Sleep(ms) => {
                    h.run_for(Duration::from_millis(u64::from(ms)));
                    Ok(())
                }
            };
        }
        let settled = h.run_until_true(Duration::from_secs(120), Duration::from_millis(500), |h| {
            h.check_converged().is_ok() && owners_hold_what_others_see(h).is_ok()
        });
        prop_assert!(
            settled,
            "seed {seed}: not converged 2 min after the workload: {:?} / {:?}",
            h.check_converged(),
            owners_hold_what_others_see(&h)
        );
    }
}
