//! libnetwork's NetworkDB test suite (`networkdb/networkdb_test.go`), one behaviour test per
//! upstream test, run on the in-memory harness in virtual time.
//!
//! Cluster sizes and windows are upstream's: clusters form within `20 s + 10 s * (n - 1)`,
//! every `verify*` helper polls for 4 s every 50 ms, a watch event is awaited for 1 s. The
//! semantics asserted are moby's where it differs from old libnetwork: watch events carry
//! `prev`/`value` from the local point of view, a graceful leave removes the leaver's entries,
//! a failed node's entries are hidden, local CRUD emits no watch event, and an active node at a
//! reused address is not evicted (moby PR #53688). Tests that poke internals upstream
//! (`TestFindNode`, `TestChangeNodeState`, `TestNodeReincarnation`) go through the public API.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use networkdb::harness::Harness;
use networkdb::wire::{Message, NodeEvent, NodeEventKind};
use networkdb::{Channel, Config, Error, LTime, NodeName, NodeState, WatchEvent, WatchFilter};

/// Harness seeds every cluster test runs with: a run is deterministic, so each seed is one
/// schedule of gossip ticks, timer staggers and peer choices.
const SEEDS: std::ops::RangeInclusive<u64> = 1..=16;
/// The seed of tests on a single node, where no schedule matters.
const SEED: u64 = 1;
/// Upstream `verify*Existence`: 80 polls of 50 ms.
const VERIFY_WINDOW: Duration = Duration::from_secs(4);
/// Upstream poll period.
const POLL: Duration = Duration::from_millis(50);
/// Upstream `testWatch`: each event must arrive within 1 s.
const WATCH_WINDOW: Duration = Duration::from_secs(1);

// ---- helpers (upstream `createNetworkDBInstances` and `verify*`) ----

/// Runs `test` once per seed of [`SEEDS`]; a failure's output names the seed.
fn for_each_seed(test: impl Fn(u64)) {
    for seed in SEEDS {
        eprintln!("seed {seed}");
        test(seed);
    }
}

/// `n` nodes where node `i > 0` joins node `i - 1`, run until every node counts `n` cluster
/// peers (upstream waits at most `20 s + 10 s * (n - 1)`).
fn cluster(n: usize, config: Config, seed: u64) -> Harness {
    let mut h = Harness::cluster(n, config, seed);
    let timeout = Duration::from_secs(20) + Duration::from_secs(10) * (n as u32 - 1);
    let formed = h.run_until_true(timeout, POLL, |h| {
        (0..n).all(|i| h.db(i).cluster_peers().len() == n)
    });
    assert!(
        formed,
        "seed {}: the cluster of {n} did not form within {timeout:?}",
        h.seed()
    );
    h
}

/// Whether node `i` reads `value` under the key (`None`: absent, a tombstone or hidden, which
/// upstream's `IsNotFound` all cover).
fn entry_is(
    h: &Harness,
    i: usize,
    table: &str,
    network: &str,
    key: &str,
    value: Option<&str>,
) -> bool {
    match (h.db(i).get_entry(table, network, key), value) {
        (Ok(v), Some(want)) => v.as_ref() == want.as_bytes(),
        (Err(Error::NotFound { .. } | Error::Deleted { .. } | Error::Hidden { .. }), None) => true,
        _ => false,
    }
}

/// Upstream `verifyEntryExistence`.
fn verify_entry(
    h: &mut Harness,
    i: usize,
    table: &str,
    network: &str,
    key: &str,
    value: Option<&str>,
) {
    let ok = h.run_until_true(VERIFY_WINDOW, POLL, |h| {
        entry_is(h, i, table, network, key, value)
    });
    assert!(
        ok,
        "seed {}: node{i}: want {table}/{network}/{key} = {value:?} within {VERIFY_WINDOW:?}, got {:?}",
        h.seed(),
        h.db(i).get_entry(table, network, key)
    );
}

/// Upstream `verifyNetworkExistence`: `node` attached to `network` and not leaving, as node `i`
/// sees it (`i`'s own name for its local attachment).
fn verify_network(h: &mut Harness, i: usize, node: &NodeName, network: &str, present: bool) {
    let ok = h.run_until_true(VERIFY_WINDOW, POLL, |h| {
        h.db(i).is_attached(network, node) == present
    });
    assert!(
        ok,
        "seed {}: node{i}: want {node} attached to {network} = {present} within {VERIFY_WINDOW:?}",
        h.seed()
    );
}

/// Upstream `verifyNodeExistence`: node `i` knows `node` as an active cluster member.
fn verify_node(h: &mut Harness, i: usize, node: &NodeName) {
    let ok = h.run_until_true(VERIFY_WINDOW, POLL, |h| {
        h.db(i).node_state(node) == Some(NodeState::Active)
    });
    assert!(
        ok,
        "seed {}: node{i}: want {node} active within {VERIFY_WINDOW:?}",
        h.seed()
    );
}

/// Upstream `testWatch`: the `k`-th event (0-based) node `i` received arrives within 1 s and is
/// `(table, network, key, prev, value)`.
fn expect_watch(
    h: &mut Harness,
    i: usize,
    k: usize,
    (table, network, key): (&str, &str, &str),
    prev: Option<&str>,
    value: Option<&str>,
) {
    let arrived = h.run_until_true(WATCH_WINDOW, POLL, |h| h.host(i).events.len() > k);
    assert!(
        arrived,
        "seed {}: node{i}: watch event #{k} not received within {WATCH_WINDOW:?}",
        h.seed()
    );
    let (_, ev): &(_, WatchEvent) = &h.host(i).events[k];
    assert_eq!(ev.table.as_str(), table, "event #{k}: {ev:?}");
    assert_eq!(ev.network.as_str(), network, "event #{k}: {ev:?}");
    assert_eq!(ev.key.as_str(), key, "event #{k}: {ev:?}");
    assert_eq!(
        ev.prev.as_deref(),
        prev.map(str::as_bytes),
        "event #{k} prev: {ev:?}"
    );
    assert_eq!(
        ev.value.as_deref(),
        value.map(str::as_bytes),
        "event #{k} value: {ev:?}"
    );
}

fn create(h: &mut Harness, i: usize, table: &str, network: &str, key: &str, value: &str) {
    let now = h.now();
    h.db_mut(i)
        .create_entry(
            now,
            table.into(),
            network.into(),
            key.into(),
            value.to_owned(),
        )
        .expect("create_entry");
}

fn update(h: &mut Harness, i: usize, table: &str, network: &str, key: &str, value: &str) {
    let now = h.now();
    h.db_mut(i)
        .update_entry(
            now,
            table.into(),
            network.into(),
            key.into(),
            value.to_owned(),
        )
        .expect("update_entry");
}

fn delete(h: &mut Harness, i: usize, table: &str, network: &str, key: &str) {
    let now = h.now();
    h.db_mut(i)
        .delete_entry(now, table.into(), network.into(), key.into())
        .expect("delete_entry");
}

fn join_network(h: &mut Harness, i: usize, network: &str) {
    let now = h.now();
    h.db_mut(i)
        .join_network(now, network.into())
        .expect("join_network");
}

fn leave_network(h: &mut Harness, i: usize, network: &str) {
    let now = h.now();
    h.db_mut(i)
        .leave_network(now, network.into())
        .expect("leave_network");
}

/// Entries (tombstones included) node `i` holds in `network` (upstream `entriesNumber`).
fn entries(h: &Harness, i: usize, network: &str) -> usize {
    h.db(i)
        .network_stats(network)
        .expect("network joined")
        .entries
}

/// An address of the 192.168.1.0/24 test range, as upstream's manual node insertions use.
fn addr(last: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 168, 1, last)), 7946)
}

/// Delivers `node`'s graceful goodbye (a node LEAVE event, as gossip carries it) to node `i`.
fn deliver_leave(h: &mut Harness, i: usize, node: &str, ltime: u64) {
    let payload = Message::NodeEvent(NodeEvent {
        kind: NodeEventKind::Leave,
        ltime: LTime(ltime),
        node: node.into(),
    })
    .encode();
    let now = h.now();
    h.db_mut(i)
        .handle_message(now, Channel::Datagram, &payload)
        .expect("valid node event");
}

fn counts(h: &Harness, i: usize) -> (usize, usize, usize) {
    let db = h.db(i);
    (
        db.node_count(NodeState::Active),
        db.node_count(NodeState::Failed),
        db.node_count(NodeState::Left),
    )
}

// ---- the suite ----

/// Upstream `TestNetworkDBSimple`.
#[test]
fn network_db_simple() {
    for_each_seed(|seed| {
        let mut h = cluster(2, Config::default(), seed);
        let names = [h.name(0), h.name(1)];
        for i in 0..2 {
            let peers: Vec<NodeName> = h
                .db(i)
                .cluster_peers()
                .into_iter()
                .map(|p| p.name)
                .collect();
            assert_eq!(peers.len(), 2, "node{i}: {peers:?}");
            assert!(
                names.iter().all(|n| peers.contains(n)),
                "node{i}: {peers:?}"
            );
        }
        // closeNetworkDBInstances: a graceful close is seen as a leave, not a failure.
        h.close(0);
        let left = h.run_until_true(VERIFY_WINDOW, POLL, |h| {
            h.db(1).node_state(&names[0]) == Some(NodeState::Left)
        });
        assert!(
            left,
            "node1 sees node0 as {:?}",
            h.db(1).node_state(&names[0])
        );
        assert_eq!(h.db(1).cluster_peers().len(), 1);
        h.close(1);
        assert!(!h.is_up(0) && !h.is_up(1));
    });
}

/// Upstream `TestNetworkDBJoinLeaveNetwork`.
#[test]
fn network_db_join_leave_network() {
    for_each_seed(|seed| {
        let mut h = cluster(2, Config::default(), seed);
        let n0 = h.name(0);
        join_network(&mut h, 0, "network1");
        verify_network(&mut h, 1, &n0, "network1", true);
        leave_network(&mut h, 0, "network1");
        verify_network(&mut h, 1, &n0, "network1", false);
    });
}

/// Upstream `TestNetworkDBJoinLeaveNetworks`.
#[test]
fn network_db_join_leave_networks() {
    for_each_seed(|seed| {
        let mut h = cluster(2, Config::default(), seed);
        let (n0, n1) = (h.name(0), h.name(1));
        let n = 10;
        for i in 1..=n {
            join_network(&mut h, 0, &format!("network0{i}"));
        }
        for i in 1..=n {
            join_network(&mut h, 1, &format!("network1{i}"));
        }
        for i in 1..=n {
            verify_network(&mut h, 1, &n0, &format!("network0{i}"), true);
        }
        for i in 1..=n {
            verify_network(&mut h, 0, &n1, &format!("network1{i}"), true);
        }
        for i in 1..=n {
            leave_network(&mut h, 0, &format!("network0{i}"));
        }
        for i in 1..=n {
            leave_network(&mut h, 1, &format!("network1{i}"));
        }
        for i in 1..=n {
            verify_network(&mut h, 1, &n0, &format!("network0{i}"), false);
        }
        for i in 1..=n {
            verify_network(&mut h, 0, &n1, &format!("network1{i}"), false);
        }
    });
}

/// Upstream `TestNetworkDBCRUDTableEntry`.
#[test]
fn network_db_crud_table_entry() {
    for_each_seed(|seed| {
        let mut h = cluster(3, Config::default(), seed);
        let n0 = h.name(0);
        join_network(&mut h, 0, "network1");
        verify_network(&mut h, 1, &n0, "network1", true);
        join_network(&mut h, 1, "network1");

        create(
            &mut h,
            0,
            "test_table",
            "network1",
            "test_key",
            "test_value",
        );
        verify_entry(
            &mut h,
            1,
            "test_table",
            "network1",
            "test_key",
            Some("test_value"),
        );
        // node2 is not attached to network1: the entry never reaches it.
        verify_entry(&mut h, 2, "test_table", "network1", "test_key", None);
        assert!(matches!(
            h.db(2).get_entry("test_table", "network1", "test_key"),
            Err(Error::NotFound { .. })
        ));

        update(
            &mut h,
            0,
            "test_table",
            "network1",
            "test_key",
            "test_updated_value",
        );
        verify_entry(
            &mut h,
            1,
            "test_table",
            "network1",
            "test_key",
            Some("test_updated_value"),
        );

        delete(&mut h, 0, "test_table", "network1", "test_key");
        verify_entry(&mut h, 1, "test_table", "network1", "test_key", None);
        assert!(matches!(
            h.db(2).get_entry("test_table", "network1", "test_key"),
            Err(Error::NotFound { .. })
        ));
    });
}

/// Upstream `TestNetworkDBCRUDTableEntries`.
#[test]
fn network_db_crud_table_entries() {
    for_each_seed(|seed| {
        let mut h = cluster(2, Config::default(), seed);
        let (n0, n1) = (h.name(0), h.name(1));
        join_network(&mut h, 0, "network1");
        verify_network(&mut h, 1, &n0, "network1", true);
        join_network(&mut h, 1, "network1");
        verify_network(&mut h, 0, &n1, "network1", true);

        let n = 10;
        for i in 1..=n {
            create(
                &mut h,
                0,
                "test_table",
                "network1",
                &format!("test_key0{i}"),
                &format!("test_value0{i}"),
            );
        }
        for i in 1..=n {
            create(
                &mut h,
                1,
                "test_table",
                "network1",
                &format!("test_key1{i}"),
                &format!("test_value1{i}"),
            );
        }
        for i in 1..=n {
            let (key, value) = (format!("test_key1{i}"), format!("test_value1{i}"));
            verify_entry(&mut h, 0, "test_table", "network1", &key, Some(&value));
        }
        for i in 1..=n {
            let (key, value) = (format!("test_key0{i}"), format!("test_value0{i}"));
            verify_entry(&mut h, 1, "test_table", "network1", &key, Some(&value));
        }

        for i in 1..=n {
            delete(
                &mut h,
                0,
                "test_table",
                "network1",
                &format!("test_key0{i}"),
            );
        }
        for i in 1..=n {
            delete(
                &mut h,
                1,
                "test_table",
                "network1",
                &format!("test_key1{i}"),
            );
        }
        for i in 1..=n {
            verify_entry(
                &mut h,
                0,
                "test_table",
                "network1",
                &format!("test_key1{i}"),
                None,
            );
        }
        for i in 1..=n {
            verify_entry(
                &mut h,
                1,
                "test_table",
                "network1",
                &format!("test_key0{i}"),
                None,
            );
        }
    });
}

/// Upstream `TestNetworkDBNodeLeave`.
#[test]
fn network_db_node_leave() {
    for_each_seed(|seed| {
        let mut h = cluster(2, Config::default(), seed);
        let n0 = h.name(0);
        join_network(&mut h, 0, "network1");
        join_network(&mut h, 1, "network1");
        create(
            &mut h,
            0,
            "test_table",
            "network1",
            "test_key",
            "test_value",
        );
        verify_entry(
            &mut h,
            1,
            "test_table",
            "network1",
            "test_key",
            Some("test_value"),
        );

        h.close(0);
        verify_entry(&mut h, 1, "test_table", "network1", "test_key", None);
        // moby: a graceful leave removes the leaver's entries (not hidden as for a failure).
        assert_eq!(h.db(1).node_state(&n0), Some(NodeState::Left));
        assert!(
            matches!(
                h.db(1).get_entry("test_table", "network1", "test_key"),
                Err(Error::NotFound { .. })
            ),
            "{:?}",
            h.db(1).get_entry("test_table", "network1", "test_key")
        );
        assert!(
            h.db(1)
                .table_by_network("test_table", "network1")
                .is_empty()
        );
        h.close(1);
    });
}

/// Upstream `TestNetworkDBWatch`.
#[test]
fn network_db_watch() {
    for_each_seed(|seed| {
        let mut h = cluster(2, Config::default(), seed);
        join_network(&mut h, 0, "network1");
        join_network(&mut h, 1, "network1");

        let (_, snapshot) = h.db_mut(1).watch(WatchFilter::default());
        assert!(snapshot.is_empty(), "{snapshot:?}");
        // A watch on the writer too: local CRUD emits no watch event.
        let (_, snapshot) = h.db_mut(0).watch(WatchFilter::default());
        assert!(snapshot.is_empty(), "{snapshot:?}");
        let at = ("test_table", "network1", "test_key");

        create(
            &mut h,
            0,
            "test_table",
            "network1",
            "test_key",
            "test_value",
        );
        expect_watch(&mut h, 1, 0, at, None, Some("test_value"));

        update(
            &mut h,
            0,
            "test_table",
            "network1",
            "test_key",
            "test_updated_value",
        );
        expect_watch(
            &mut h,
            1,
            1,
            at,
            Some("test_value"),
            Some("test_updated_value"),
        );

        delete(&mut h, 0, "test_table", "network1", "test_key");
        expect_watch(&mut h, 1, 2, at, Some("test_updated_value"), None);

        h.run_for(WATCH_WINDOW);
        assert_eq!(h.host(1).events.len(), 3, "{:?}", h.host(1).events);
        assert!(h.host(0).events.is_empty(), "{:?}", h.host(0).events);
    });
}

/// Upstream `TestNetworkDBBulkSync`.
#[test]
fn network_db_bulk_sync() {
    for_each_seed(|seed| {
        let mut h = cluster(2, Config::default(), seed);
        let (n0, n1) = (h.name(0), h.name(1));
        join_network(&mut h, 0, "network1");
        verify_network(&mut h, 1, &n0, "network1", true);

        let n = 1000;
        for i in 1..=n {
            create(
                &mut h,
                0,
                "test_table",
                "network1",
                &format!("test_key0{i}"),
                &format!("test_value0{i}"),
            );
        }

        join_network(&mut h, 1, "network1");
        verify_network(&mut h, 0, &n1, "network1", true);
        for i in 1..=n {
            let (key, value) = (format!("test_key0{i}"), format!("test_value0{i}"));
            verify_entry(&mut h, 1, "test_table", "network1", &key, Some(&value));
        }
        assert!(
            h.db(1).is_in_sync("network1"),
            "the join bulk sync completed"
        );
        assert_eq!(h.db(1).table_by_network("test_table", "network1").len(), n);
    });
}

/// Upstream `TestNetworkDBCRUDMediumCluster`.
#[test]
fn network_db_crud_medium_cluster() {
    for_each_seed(|seed| {
        let n = 5;
        let mut h = cluster(n, Config::default(), seed);
        let names: Vec<NodeName> = (0..n).map(|i| h.name(i)).collect();
        for i in 0..n {
            for (j, name) in names.iter().enumerate() {
                if i != j {
                    verify_node(&mut h, i, name);
                }
            }
        }

        for i in 0..n {
            join_network(&mut h, i, "network1");
        }
        for i in 0..n {
            for name in &names {
                verify_network(&mut h, i, name, "network1", true);
            }
        }

        create(
            &mut h,
            0,
            "test_table",
            "network1",
            "test_key",
            "test_value",
        );
        for i in 1..n {
            verify_entry(
                &mut h,
                i,
                "test_table",
                "network1",
                "test_key",
                Some("test_value"),
            );
        }
        update(
            &mut h,
            0,
            "test_table",
            "network1",
            "test_key",
            "test_updated_value",
        );
        for i in 1..n {
            verify_entry(
                &mut h,
                i,
                "test_table",
                "network1",
                "test_key",
                Some("test_updated_value"),
            );
        }
        delete(&mut h, 0, "test_table", "network1", "test_key");
        for i in 1..n {
            verify_entry(&mut h, i, "test_table", "network1", "test_key", None);
        }
        for i in 1..n {
            let err = h
                .db(i)
                .get_entry("test_table", "network1", "test_key")
                .expect_err("deleted");
            assert!(
                err.to_string()
                    .contains("deleted and pending garbage collection"),
                "node{i}: {err}"
            );
        }
    });
}

/// Upstream `TestNetworkDBNodeJoinLeaveIteration`.
#[test]
fn network_db_node_join_leave_iteration() {
    for_each_seed(|seed| {
        let mut h = cluster(2, Config::default(), seed);
        let (n0, n1) = (h.name(0), h.name(1));

        // Upstream `dbChangeWitness`: wait (3 s, polled every 5 ms) until node `i`'s network clock
        // moved past `stale` and `network` counts `expect` participants, itself included.
        let witness = |h: &mut Harness, i: usize, stale: LTime, network: &str, expect: usize| {
            let ok = h.run_until_true(Duration::from_secs(3), Duration::from_millis(5), |h| {
                h.db(i).clocks().0 > stale && h.db(i).peers(network).len() == expect
            });
            assert!(
                ok,
                "seed {}: node{i}: want {expect} participants in {network}, got {:?}",
                h.seed(),
                h.db(i).peers(network)
            );
        };
        let stale = |h: &Harness, i: usize| h.db(i).clocks().0;

        // Single node join/leave.
        let s0 = stale(&h, 0);
        join_network(&mut h, 0, "network1");
        witness(&mut h, 0, s0, "network1", 1);

        let s0 = stale(&h, 0);
        leave_network(&mut h, 0, "network1");
        witness(&mut h, 0, s0, "network1", 0);

        // Multiple nodes join/leave.
        let (s0, s1) = (stale(&h, 0), stale(&h, 1));
        join_network(&mut h, 0, "network1");
        join_network(&mut h, 1, "network1");

        verify_network(&mut h, 0, &n1, "network1", true);
        witness(&mut h, 0, s0, "network1", 2);
        assert!(
            h.db(0).is_attached("network1", &n0),
            "node0's attachment must not be leaving"
        );

        verify_network(&mut h, 1, &n0, "network1", true);
        witness(&mut h, 1, s1, "network1", 2);
        assert!(
            h.db(1).is_attached("network1", &n1),
            "node1's attachment must not be leaving"
        );

        // A quick leave/join.
        let (s0, s1) = (stale(&h, 0), stale(&h, 1));
        leave_network(&mut h, 0, "network1");
        join_network(&mut h, 0, "network1");

        verify_network(&mut h, 0, &n1, "network1", true);
        witness(&mut h, 0, s0, "network1", 2);
        verify_network(&mut h, 1, &n0, "network1", true);
        witness(&mut h, 1, s1, "network1", 2);
    });
}

/// Upstream `TestNetworkDBGarbageCollection`.
#[test]
fn network_db_garbage_collection() {
    for_each_seed(|seed| {
        let keys = 5;
        let config = Config {
            reap_entry_interval: Duration::from_secs(30),
            ..Config::default()
        };
        let reap_entry_interval = config.reap_entry_interval;
        let mut h = cluster(3, config, seed);

        join_network(&mut h, 0, "network1");
        join_network(&mut h, 1, "network1");
        for i in 0..keys {
            create(
                &mut h,
                i % 2,
                "testTable",
                "network1",
                &format!("key-{i}"),
                "value",
            );
        }
        h.run_for(Duration::from_secs(1));
        for i in 0..keys {
            delete(&mut h, i % 2, "testTable", "network1", &format!("key-{i}"));
        }
        for i in 0..2 {
            assert_eq!(
                entries(&h, i, "network1"),
                keys,
                "node{i}: entries number should match"
            );
        }

        // The tombstones' reap countdown runs; 5 s later a third node joins and gets them by the
        // join bulk sync (upstream's JoinNetwork waits for that sync).
        h.run_for(Duration::from_secs(5));
        join_network(&mut h, 2, "network1");
        let synced = h.run_until_true(VERIFY_WINDOW, POLL, |h| {
            (0..3).all(|i| h.db(i).is_in_sync("network1") && entries(h, i, "network1") == keys)
        });
        assert!(
            synced,
            "seed {}: entries number should match: {:?}",
            h.seed(),
            (0..3)
                .map(|i| entries(&h, i, "network1"))
                .collect::<Vec<_>>()
        );

        let reaped = h.run_until_true(2 * reap_entry_interval, Duration::from_secs(1), |h| {
            (0..3).all(|i| entries(h, i, "network1") == 0)
        });
        assert!(
            reaped,
            "seed {}: tombstones should have been garbage collected: {:?}",
            h.seed(),
            (0..3)
                .map(|i| entries(&h, i, "network1"))
                .collect::<Vec<_>>()
        );

        // They do not come back.
        h.run_for(Duration::from_secs(15));
        for i in 0..3 {
            assert_eq!(
                entries(&h, i, "network1"),
                0,
                "node{i}: entries should stay collected"
            );
        }
    });
}

/// Upstream `TestFindNode`.
#[test]
fn find_node() {
    let mut h = Harness::new(1, Config::default(), SEED);
    let me = h.name(0);
    let now = h.now();
    let db = h.db_mut(0);
    db.node_up(now, "active".into(), addr(1));
    db.node_up(now, "failed".into(), addr(2));
    db.node_down(now, "failed");
    db.node_up(now, "left".into(), addr(3));
    deliver_leave(&mut h, 0, "left", 1);

    let db = h.db(0);
    assert_eq!(db.node_state(&me), Some(NodeState::Active));
    assert_eq!(db.node_state("active"), Some(NodeState::Active));
    assert_eq!(db.node_state("failed"), Some(NodeState::Failed));
    assert_eq!(db.node_state("left"), Some(NodeState::Left));
    assert_eq!(db.node_state("unknown"), None);
    // Self is counted among the active nodes.
    assert_eq!(counts(&h, 0), (2, 1, 1));

    // Once removed from its list, a node is not found: nodes are forgotten when reaped.
    let now = h.now();
    h.db_mut(0).node_down(now, "active");
    let reap_after = h.db(0).config().node_reap_interval + h.db(0).config().reap_period;
    h.run_for(reap_after);
    for name in ["active", "failed", "left"] {
        assert_eq!(h.db(0).node_state(name), None, "{name} should be forgotten");
    }
    assert_eq!(counts(&h, 0), (1, 0, 0));
}

/// Upstream `TestChangeNodeState`.
#[test]
fn change_node_state() {
    let mut h = Harness::new(1, Config::default(), SEED);
    let node_reap = h.db(0).config().node_reap_interval;
    let now = h.now();
    for (name, last) in [("node1", 1), ("node2", 2), ("node3", 3)] {
        h.db_mut(0).node_up(now, name.into(), addr(last));
    }
    assert_eq!(counts(&h, 0), (4, 0, 0));

    // active -> failed: the node gets a reap countdown (checked with node4 below).
    h.db_mut(0).node_down(now, "node1");
    assert_eq!(h.db(0).node_state("node1"), Some(NodeState::Failed));
    assert_eq!(counts(&h, 0), (3, 1, 0));

    // failed -> active, half-way through the countdown: it is cleared.
    h.run_for(node_reap / 2);
    let now = h.now();
    h.db_mut(0).node_up(now, "node1".into(), addr(1));
    assert_eq!(h.db(0).node_state("node1"), Some(NodeState::Active));
    assert_eq!(counts(&h, 0), (4, 0, 0));
    h.run_for(node_reap / 2 + Duration::from_secs(3600));
    assert_eq!(h.db(0).node_state("node1"), Some(NodeState::Active));

    // The three nodes move to left.
    for name in ["node1", "node2", "node3"] {
        deliver_leave(&mut h, 0, name, 1);
        assert_eq!(h.db(0).node_state(name), Some(NodeState::Left), "{name}");
    }
    assert_eq!(counts(&h, 0), (1, 0, 3));

    // Each left node has a full countdown: node1's is fresh, not the one of its failure (which
    // is long past; keeping it would have reaped node1 at once).
    h.run_for(node_reap - Duration::from_secs(3600));
    assert_eq!(counts(&h, 0), (1, 0, 3));
    h.run_for(Duration::from_secs(2 * 3600));
    for name in ["node1", "node2", "node3"] {
        assert_eq!(h.db(0).node_state(name), None, "{name} should be forgotten");
    }
    assert_eq!(counts(&h, 0), (1, 0, 0));

    // active -> failed sets a countdown: the failed node is forgotten once it runs out.
    let now = h.now();
    h.db_mut(0).node_up(now, "node4".into(), addr(4));
    h.db_mut(0).node_down(now, "node4");
    h.run_for(node_reap - Duration::from_secs(3600));
    assert_eq!(h.db(0).node_state("node4"), Some(NodeState::Failed));
    h.run_for(Duration::from_secs(2 * 3600));
    assert_eq!(h.db(0).node_state("node4"), None);
}

/// Upstream `TestNodeReincarnation`, as changed by moby PR #53688.
#[test]
fn node_reincarnation() {
    let mut h = Harness::new(1, Config::default(), SEED);
    let now = h.now();
    h.db_mut(0).node_up(now, "node1".into(), addr(1));
    h.db_mut(0).node_up(now, "node2".into(), addr(2));
    deliver_leave(&mut h, 0, "node2", 1);
    h.db_mut(0).node_up(now, "node3".into(), addr(3));
    h.db_mut(0).node_down(now, "node3");
    assert_eq!(h.db(0).node_state("node1"), Some(NodeState::Active));
    assert_eq!(h.db(0).node_state("node2"), Some(NodeState::Left));
    assert_eq!(h.db(0).node_state("node3"), Some(NodeState::Failed));
    assert_eq!(counts(&h, 0), (2, 1, 1));

    // A new name at an active node's address: the active node stays (probes settle it).
    h.db_mut(0).node_up(now, "node4".into(), addr(1));
    assert_eq!(h.db(0).node_state("node1"), Some(NodeState::Active));
    assert_eq!(h.db(0).node_state("node4"), Some(NodeState::Active));

    // At a left node's address: it stays left.
    h.db_mut(0).node_up(now, "node5".into(), addr(2));
    assert_eq!(h.db(0).node_state("node2"), Some(NodeState::Left));

    // At a failed node's address: the previous incarnation is retired to left.
    h.db_mut(0).node_up(now, "node6".into(), addr(3));
    assert_eq!(h.db(0).node_state("node3"), Some(NodeState::Left));

    // At an address nobody holds: nothing is retired.
    h.db_mut(0).node_up(now, "node7".into(), addr(10));

    // self, node1, node4, node5, node6, node7 active; node2 and node3 left.
    assert_eq!(counts(&h, 0), (6, 0, 2));
}

/// Upstream `TestParallelCreate`: of 20 creates of one key, exactly one succeeds.
#[test]
fn parallel_create() {
    let mut h = cluster(1, Config::default(), SEED);
    let now = h.now();
    let results: Vec<Result<(), Error>> = (0..20)
        .map(|_| {
            h.db_mut(0).create_entry(
                now,
                "testTable".into(),
                "testNetwork".into(),
                "key".into(),
                "value",
            )
        })
        .collect();
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(e, Error::EntryExists { .. })),
        "{results:?}"
    );
    assert_eq!(
        h.db(0)
            .get_entry("testTable", "testNetwork", "key")
            .expect("created")
            .as_ref(),
        b"value"
    );
}

/// Upstream `TestParallelDelete`: of 20 deletes of one key, exactly one succeeds.
#[test]
fn parallel_delete() {
    let mut h = cluster(1, Config::default(), SEED);
    create(&mut h, 0, "testTable", "testNetwork", "key", "value");
    let now = h.now();
    let results: Vec<Result<(), Error>> = (0..20)
        .map(|_| {
            h.db_mut(0)
                .delete_entry(now, "testTable".into(), "testNetwork".into(), "key".into())
        })
        .collect();
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(e, Error::DeleteNotFound { .. })),
        "{results:?}"
    );
    assert!(matches!(
        h.db(0).get_entry("testTable", "testNetwork", "key"),
        Err(Error::Deleted { .. })
    ));
}

/// Upstream `TestNetworkDBIslands`.
#[test]
fn network_db_islands() {
    for_each_seed(|seed| {
        // moby shortens the rejoin timers tenfold to speed the test up.
        let defaults = Config::default();
        let config = Config {
            rejoin_interval: defaults.rejoin_interval / 10,
            ..defaults
        };
        let heal_window = Duration::from_secs(120);
        let mut h = cluster(5, config, seed);

        // Nodes 0, 1 and 2 are the bootstrap nodes of nodes 3 and 4.
        let members: Vec<SocketAddr> = (0..3).map(|i| h.host(i).addr).collect();
        for i in 3..5 {
            h.join(i, members.clone());
        }

        // The three bootstrap nodes leave cleanly and are marked left on the other two.
        let departed: Vec<NodeName> = (0..3).map(|i| h.name(i)).collect();
        for i in 0..3 {
            h.close(i);
        }
        let gone = h.run_until_true(heal_window, Duration::from_secs(1), |h| {
            (3..5).all(|i| counts(h, i) == (2, 0, 3))
        });
        assert!(
            gone,
            "seed {}: (active, failed, left) on node3/node4: {:?}/{:?}",
            h.seed(),
            counts(&h, 3),
            counts(&h, 4)
        );
        for i in 3..5 {
            for name in &departed {
                assert_eq!(
                    h.db(i).node_state(name),
                    Some(NodeState::Left),
                    "node{i}: {name}"
                );
            }
        }

        // The three come back with new names at the same addresses and join nobody: the
        // survivors' periodic bootstrap rejoin heals the islands.
        for i in 0..3 {
            h.restart(i, None);
        }
        let healed = h.run_until_true(heal_window, Duration::from_secs(1), |h| {
            (0..5).all(|i| {
                let (active, failed, _) = counts(h, i);
                active == 5 && failed == 0
            })
        });
        assert!(
            healed,
            "seed {}: (active, failed, left): {:?}",
            h.seed(),
            (0..5).map(|i| counts(&h, i)).collect::<Vec<_>>()
        );
        for i in 0..3 {
            assert_eq!(
                counts(&h, i).2,
                0,
                "node{i} (new incarnation) knows no left node"
            );
        }
        for i in 3..5 {
            assert_eq!(
                counts(&h, i).2,
                3,
                "node{i} still remembers the three departed nodes"
            );
        }
    });
}
