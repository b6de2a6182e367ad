//! Peer DB, planner and fake kernel behaviour, scenario by scenario.

#![allow(clippy::unwrap_used, reason = "tests unwrap known-good values")]

mod common;

use std::collections::BTreeMap;

use bytes::Bytes;
use common::*;
use networkdb::{Key, TableName, WatchEvent};
use overlay::{Dataplane, DataplaneError, FakeKernel, KernelState, NeighOp, plan};

fn kernel(node: &Node, network: &str) -> KernelState {
    node.kernel.state(&net(network)).unwrap()
}

fn expect(neigh: &[(u8, u8)], fdb: &[(u8, u8)]) -> KernelState {
    KernelState {
        neighbours: neigh.iter().map(|&(i, m)| (ip(i), mac(m))).collect(),
        fdb: fdb.iter().map(|&(m, v)| (mac(m), vtep(v))).collect(),
    }
}

#[test]
fn remote_peer_is_programmed_and_removed() {
    let mut n = Node::new();
    n.ready("n1");
    let r = record(5, 5, 2);
    n.apply(&create("n1", "ep1", &r));
    assert_eq!(kernel(&n, "n1"), expect(&[(5, 5)], &[(5, 2)]));
    n.apply(&delete("n1", "ep1", &r));
    assert!(kernel(&n, "n1").is_empty());
}

#[test]
fn local_peers_are_kept_but_never_programmed() {
    let mut n = Node::new();
    n.ready("n1");
    let local = record(5, 5, 1);
    n.apply(&create("n1", "ep1", &local));
    assert!(kernel(&n, "n1").is_empty());
    let peers = n.db.network(&net("n1")).unwrap();
    assert_eq!(peers.endpoints().count(), 1);
    assert_eq!(peers.chosen(ip(5)), Some(&Key::from("ep1")));
    assert!(peers.remote_vteps().is_empty());
    // A remote claimant of the same IP is suppressed while the local one exists.
    let remote = record(5, 6, 2);
    n.apply(&create("n1", "ep2", &remote));
    assert!(kernel(&n, "n1").is_empty());
    n.apply(&delete("n1", "ep1", &local));
    assert_eq!(kernel(&n, "n1"), expect(&[(5, 6)], &[(6, 2)]));
}

#[test]
fn ipv4_mapped_local_vtep_is_local() {
    let mut n = Node::new();
    n.ready("n1");
    let mut r = record(5, 5, 1);
    r.tunnel_endpoint_ip = "::ffff:192.0.2.1".parse().unwrap();
    n.apply(&create("n1", "ep1", &r));
    assert!(kernel(&n, "n1").is_empty());
    n.apply(&delete("n1", "ep1", &r));
    assert_eq!(n.db.network(&net("n1")).unwrap().endpoints().count(), 0);
}

#[test]
fn other_tables_and_malformed_records_are_counted_and_dropped() {
    let mut n = Node::new();
    n.ready("n1");
    let mut other = create("n1", "ep1", &record(5, 5, 2));
    other.table = TableName::from("endpoint_table");
    n.apply(&other);
    assert!(kernel(&n, "n1").is_empty());
    assert_eq!(n.db.stats().other_tables, 1);

    let good = record(5, 5, 2);
    n.apply(&create("n1", "ep1", &good));
    // An update to garbage: the old record is gone, the garbage is counted.
    let garbage = Bytes::from_static(b"\x0a\x03abc");
    n.apply(&event(
        "n1",
        "ep1",
        Some(bytes(&good)),
        Some(garbage.clone()),
    ));
    assert!(kernel(&n, "n1").is_empty());
    assert_eq!(n.db.stats().malformed_records, 1);
    // Deleting the garbage changes nothing and is not counted again.
    n.apply(&event("n1", "ep1", Some(garbage), None));
    assert_eq!(n.db.stats().malformed_records, 1);
    assert!(kernel(&n, "n1").is_empty());
}

#[test]
fn update_is_remove_old_plus_add_new() {
    let mut n = Node::new();
    n.ready("n1");
    let old = record(5, 5, 2);
    let new = record(6, 6, 3);
    n.apply(&create("n1", "ep1", &old));
    n.apply(&update("n1", "ep1", &old, &new));
    assert_eq!(kernel(&n, "n1"), expect(&[(6, 6)], &[(6, 3)]));
    // An update to the same value changes nothing.
    let before = n.kernel.ops_applied();
    n.apply(&update("n1", "ep1", &new, &new));
    assert_eq!(n.kernel.ops_applied(), before);
}

#[test]
fn mac_change_of_an_ip_is_delete_then_add() {
    let mut n = Node::new();
    n.ready("n1");
    let old = record(5, 5, 2);
    n.apply(&create("n1", "ep1", &old));
    let new = record(5, 7, 2);
    n.db.apply(&update("n1", "ep1", &old, &new));
    let nid = n.db.poll_changed().unwrap();
    let ops = plan(n.db.wanted(&nid).unwrap(), &kernel(&n, "n1"));
    assert_eq!(
        ops,
        [
            NeighOp::DelFdb {
                mac: mac(5),
                vtep: vtep(2)
            },
            NeighOp::DelNeigh {
                ip: ip(5),
                mac: mac(5)
            },
            NeighOp::AddNeigh {
                ip: ip(5),
                mac: mac(7)
            },
            NeighOp::AddFdb {
                mac: mac(7),
                vtep: vtep(2)
            },
        ]
    );
}

#[test]
fn one_claimant_per_ip_smallest_vtep_then_id_and_failover() {
    let mut n = Node::new();
    n.ready("n1");
    let a = record(5, 5, 3); // ep-a on host 3
    let b = record(5, 6, 2); // ep-b on host 2: smaller VTEP wins
    let c = record(5, 7, 2); // ep-c on host 2: larger id than ep-b
    n.apply(&create("n1", "ep-a", &a));
    assert_eq!(kernel(&n, "n1"), expect(&[(5, 5)], &[(5, 3)]));
    n.apply(&create("n1", "ep-c", &c));
    assert_eq!(kernel(&n, "n1"), expect(&[(5, 7)], &[(7, 2)]));
    n.apply(&create("n1", "ep-b", &b));
    assert_eq!(kernel(&n, "n1"), expect(&[(5, 6)], &[(6, 2)]));
    let peers = n.db.wanted(&net("n1")).unwrap();
    assert_eq!(peers.chosen(ip(5)), Some(&Key::from("ep-b")));
    // The chosen one goes: the next is programmed at once.
    n.apply(&delete("n1", "ep-b", &b));
    assert_eq!(kernel(&n, "n1"), expect(&[(5, 7)], &[(7, 2)]));
    n.apply(&delete("n1", "ep-c", &c));
    assert_eq!(kernel(&n, "n1"), expect(&[(5, 5)], &[(5, 3)]));
    n.apply(&delete("n1", "ep-a", &a));
    assert!(kernel(&n, "n1").is_empty());
}

#[test]
fn stale_and_duplicate_events_are_harmless() {
    let mut n = Node::new();
    n.ready("n1");
    let old = record(5, 5, 2);
    let new = record(5, 5, 3);
    n.apply(&create("n1", "ep1", &old));
    n.apply(&create("n1", "ep1", &old));
    n.apply(&update("n1", "ep1", &old, &new));
    // A late delete of the old value does not wipe the new one.
    n.apply(&delete("n1", "ep1", &old));
    assert_eq!(n.db.stats().stale_deletes, 1);
    assert_eq!(kernel(&n, "n1"), expect(&[(5, 5)], &[(5, 3)]));
    n.apply(&delete("n1", "ep1", &new));
    n.apply(&delete("n1", "ep1", &new));
    assert!(kernel(&n, "n1").is_empty());
    // IP reuse out of order (moby/libnetwork#1934): the new owner's create arrives before
    // the old owner's delete; the new owner ends up programmed.
    let gone = record(9, 9, 2);
    let reuse = record(9, 9, 4);
    n.apply(&create("n1", "old", &gone));
    n.apply(&create("n1", "new", &reuse));
    n.apply(&delete("n1", "old", &gone));
    assert_eq!(kernel(&n, "n1"), expect(&[(9, 9)], &[(9, 4)]));
}

#[test]
fn fdb_is_reference_counted() {
    let mut n = Node::new();
    n.ready("n1");
    // Two IPs behind one MAC on one host (one MAC, several IPs: moby#35807).
    let a = record(5, 5, 2);
    let b = record(6, 5, 2);
    n.apply(&create("n1", "a", &a));
    n.apply(&create("n1", "b", &b));
    assert_eq!(kernel(&n, "n1"), expect(&[(5, 5), (6, 5)], &[(5, 2)]));
    n.apply(&delete("n1", "a", &a));
    assert_eq!(kernel(&n, "n1"), expect(&[(6, 5)], &[(5, 2)]));
    // One MAC on two hosts: the smallest VTEP holds the FDB entry.
    let c = record(7, 5, 3);
    n.apply(&create("n1", "c", &c));
    assert_eq!(kernel(&n, "n1"), expect(&[(6, 5), (7, 5)], &[(5, 2)]));
    n.apply(&delete("n1", "b", &b));
    assert_eq!(kernel(&n, "n1"), expect(&[(7, 5)], &[(5, 3)]));
}

#[test]
fn peers_before_the_device_are_replayed() {
    let mut n = Node::new();
    let a = record(5, 5, 2);
    n.apply(&create("n1", "a", &a));
    n.apply(&create("n1", "b", &record(6, 6, 3)));
    assert!(n.db.wanted(&net("n1")).is_none());
    assert!(!n.kernel.has_network(&net("n1")));
    n.ready("n1");
    assert_eq!(
        kernel(&n, "n1"),
        expect(&[(5, 5), (6, 6)], &[(5, 2), (6, 3)])
    );
    // The device goes away (last local endpoint left) and comes back: replayed again.
    n.db.network_gone(&net("n1"));
    n.kernel.delete_network(&net("n1"));
    n.apply(&delete("n1", "a", &a));
    n.ready("n1");
    assert_eq!(kernel(&n, "n1"), expect(&[(6, 6)], &[(6, 3)]));
    // Network delete flushes the peers.
    n.db.remove_network(&net("n1"));
    n.kernel.delete_network(&net("n1"));
    assert!(n.db.network(&net("n1")).is_none());
    n.sync();
}

#[test]
fn failed_hosts_are_withdrawn_and_restored() {
    let mut n = Node::new();
    n.ready("n1");
    n.ready("n2");
    n.apply(&create("n1", "a", &record(5, 5, 2)));
    n.apply(&create("n1", "b", &record(5, 6, 3)));
    n.apply(&create("n2", "c", &record(7, 7, 2)));
    n.db.host_down(vtep(2));
    n.db.host_down(vtep(2));
    n.sync();
    assert_eq!(kernel(&n, "n1"), expect(&[(5, 6)], &[(6, 3)]));
    assert!(kernel(&n, "n2").is_empty());
    assert!(n.db.is_host_down(vtep(2)));
    // The local host is never down.
    n.db.host_down(LOCAL);
    assert!(!n.db.is_host_down(LOCAL));
    n.db.host_up(vtep(2));
    n.db.host_up(vtep(2));
    n.sync();
    assert_eq!(kernel(&n, "n1"), expect(&[(5, 5)], &[(5, 2)]));
    assert_eq!(kernel(&n, "n2"), expect(&[(7, 7)], &[(7, 2)]));
}

#[test]
fn fake_kernel_is_strict() {
    let mut k = FakeKernel::new();
    let nid = net("n1");
    assert_eq!(
        k.apply(&nid, &[]),
        Err(DataplaneError::NoNetwork(nid.clone()))
    );
    k.create_network(&nid);
    let add = NeighOp::AddNeigh {
        ip: ip(1),
        mac: mac(1),
    };
    let err = k.apply(&nid, &[add, add]).unwrap_err();
    assert!(matches!(err, DataplaneError::Op { index: 1, .. }));
    // The first op stayed applied.
    assert_eq!(
        k.state(&nid).unwrap().neighbours,
        BTreeMap::from([(ip(1), mac(1))])
    );
    let wrong = NeighOp::DelNeigh {
        ip: ip(1),
        mac: mac(2),
    };
    assert!(k.apply(&nid, &[wrong]).is_err());
    let fdb = NeighOp::AddFdb {
        mac: mac(1),
        vtep: vtep(2),
    };
    k.apply(&nid, &[fdb]).unwrap();
    assert!(k.apply(&nid, &[fdb]).is_err());
    assert!(
        k.apply(
            &nid,
            &[NeighOp::DelFdb {
                mac: mac(1),
                vtep: vtep(3)
            }]
        )
        .is_err()
    );
    assert_eq!(k.ops_applied(), 2);
}

#[test]
fn check_detects_drift() {
    let mut n = Node::new();
    n.ready("n1");
    n.apply(&create("n1", "a", &record(5, 5, 2)));
    // Someone removes the neighbour behind our back.
    n.kernel
        .apply(
            &net("n1"),
            &[NeighOp::DelNeigh {
                ip: ip(5),
                mac: mac(5),
            }],
        )
        .unwrap();
    assert!(overlay::check(&n.kernel, &n.db).is_err());
    // Re-planning repairs it.
    n.db.mark_changed(&net("n1"));
    n.sync();
}

#[test]
fn events_without_values_are_ignored() {
    let mut n = Node::new();
    n.ready("n1");
    n.apply(&WatchEvent {
        table: TableName::from(overlay::PEER_TABLE),
        network: net("n1"),
        key: Key::from("x"),
        prev: None,
        value: None,
    });
    assert!(kernel(&n, "n1").is_empty());
}
