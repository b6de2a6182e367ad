//! Regression tests from the review of the core: each failed before its fix.

#![allow(clippy::unwrap_used, reason = "tests")]
use std::time::Duration;

use networkdb::harness::Harness;
use networkdb::{Config, ConfigError, MAX_INTERVAL, NetworkDb, NodeState};

const NET: &str = "net";
const TABLE: &str = "t";

fn cr(h: &mut Harness, i: usize, key: &str, value: &str) {
    let now = h.now();
    h.db_mut(i)
        .create_entry(
            now,
            TABLE.into(),
            NET.into(),
            key.into(),
            value.as_bytes().to_vec(),
        )
        .expect("create");
}

fn sees(h: &Harness, i: usize, key: &str) -> Option<String> {
    h.db(i)
        .get_entry(TABLE, NET, key)
        .ok()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
}

fn setup(seed: u64) -> Harness {
    let mut h = Harness::cluster(3, Config::default(), seed);
    let now = h.now();
    for i in 0..3 {
        h.db_mut(i).join_network(now, NET.into()).expect("join");
    }
    h.run_for(Duration::from_secs(2));
    cr(&mut h, 0, "k0", "v0");
    h.run_for(Duration::from_secs(5));
    for i in 0..3 {
        assert_eq!(sees(&h, i, "k0").as_deref(), Some("v0"));
    }
    h
}

/// node2 is cut off (no failure detection, as in the repo's own partition tests) while node0
/// leaves the network; the partition outlives the leaving attachment (30 min 25 s). After the
/// heal node2's bulk sync re-creates node0's attachment on node1 and with it node0's entries:
/// node0 is not attached, yet node1 and node2 show its entry forever.
#[test]
fn zombie_attachment_after_long_partition() {
    let mut h = setup(901);
    h.isolate(2);
    let now = h.now();
    h.db_mut(0).leave_network(now, NET.into()).expect("leave");
    h.run_for(Duration::from_secs(5));
    assert_eq!(sees(&h, 1, "k0"), None);
    h.run_for(Duration::from_secs(31 * 60));
    h.heal();
    h.run_for(Duration::from_secs(5 * 60));
    let n0 = h.name(0);
    for i in 1..3 {
        eprintln!(
            "node{i}: attached(node0)={} sees k0={:?}",
            h.db(i).is_attached(NET, &n0),
            sees(&h, i, "k0")
        );
    }
    for i in 1..3 {
        assert_eq!(
            sees(&h, i, "k0"),
            None,
            "node{i} shows node0's entry after it left"
        );
        assert!(
            !h.db(i).is_attached(NET, &n0),
            "node{i} still thinks node0 is attached to {NET}"
        );
    }
}

/// The same with failure detection both ways: entries are hidden then reaped, but the
/// attachment stays wrong forever (peers list / network_peers include node0).
#[test]
fn zombie_attachment_after_long_partition_with_failure_detection() {
    let mut h = setup(902);
    h.isolate(2);
    h.report_down_at(2, 0);
    h.report_down_at(2, 1);
    h.report_down_at(0, 2);
    h.report_down_at(1, 2);
    let now = h.now();
    h.db_mut(0).leave_network(now, NET.into()).expect("leave");
    h.run_for(Duration::from_secs(40 * 60));
    h.heal();
    h.report_up_between(2, 0);
    h.report_up_between(2, 1);
    h.run_for(Duration::from_secs(5 * 60));
    assert_eq!(h.db(1).node_state(&h.name(2)), Some(NodeState::Active));
    let n0 = h.name(0);
    for i in 1..3 {
        assert!(
            !h.db(i).is_attached(NET, &n0),
            "node{i} still thinks node0 is attached to {NET}"
        );
    }
}

/// `Config::validate` once accepted intervals that made the core panic on `Instant +
/// Duration`. Such an interval is now refused at construction, naming the field; the largest
/// interval it accepts runs without panicking.
#[test]
fn validated_config_does_not_panic() {
    let now = networkdb::harness::epoch();
    let refused = new_db(Config {
        reap_entry_interval: Duration::MAX,
        ..Config::default()
    });
    assert!(
        matches!(
            refused,
            Err(ConfigError::OutOfRange {
                field: "reap_entry_interval",
                ..
            })
        ),
        "{:?}",
        refused.err()
    );
    let mut db = new_db(Config {
        reap_entry_interval: MAX_INTERVAL,
        ..Config::default()
    })
    .expect("the largest interval is accepted");
    db.join_network(now, NET.into()).unwrap();
    // Once panicked: overflow when adding a duration to an instant.
    db.leave_network(now, NET.into()).unwrap();
    db.handle_timeout(now + Duration::from_secs(3600));
}

/// As [`validated_config_does_not_panic`], for the bulk-sync timer.
#[test]
fn validated_config_does_not_panic_timer() {
    let now = networkdb::harness::epoch();
    let refused = new_db(Config {
        bulk_sync_timeout: Duration::MAX,
        ..Config::default()
    });
    assert!(
        matches!(
            refused,
            Err(ConfigError::OutOfRange {
                field: "bulk_sync_timeout",
                ..
            })
        ),
        "{:?}",
        refused.err()
    );
    let mut db = new_db(Config {
        bulk_sync_timeout: MAX_INTERVAL,
        ..Config::default()
    })
    .expect("the largest interval is accepted");
    db.node_up(now, "b".into(), "127.0.0.1:2".parse().unwrap());
    db.join_network(now, NET.into()).unwrap();
    // Once panicked: overflow when adding a duration to an instant.
    db.bulk_sync_with(now, &"b".into()).unwrap();
    db.handle_timeout(now + Duration::from_secs(3600));
}

/// A node "a" at 127.0.0.1:1 with `config`.
fn new_db(config: Config) -> Result<NetworkDb, ConfigError> {
    NetworkDb::new(
        networkdb::harness::epoch(),
        "a".into(),
        "127.0.0.1:1".parse().unwrap(),
        1,
        config,
    )
}

/// A network event larger than one datagram would never be sent nor retired from the cluster
/// queue. A local join with such an id is refused; one relayed from a peer is not queued and
/// is counted.
#[test]
fn oversized_network_event_never_retires() {
    use networkdb::wire::{Message, NetworkEvent, NetworkEventKind};
    use networkdb::{Channel, Error, LTime, NetworkDb};
    let mut h = Harness::cluster(2, Config::default(), 5);
    let long: String = "n".repeat(1500);
    let now = h.now();
    let refused = h.db_mut(0).join_network(now, long.as_str().into());
    assert!(
        matches!(refused, Err(Error::InvalidName { .. })),
        "{refused:?}"
    );
    h.run_for(Duration::from_secs(600));
    assert_eq!(
        h.db(0).cluster_queue_len(),
        0,
        "JOIN still queued after 10 min"
    );

    let now = networkdb::harness::epoch();
    let mut db = NetworkDb::new(
        now,
        "a".into(),
        "10.0.0.1:1".parse().unwrap(),
        1,
        Config::default(),
    )
    .unwrap();
    db.node_up(now, "b".into(), "10.0.0.2:1".parse().unwrap());
    let ev = Message::NetworkEvent(NetworkEvent {
        kind: NetworkEventKind::Join,
        ltime: LTime(5),
        node: "b".into(),
        network: long.as_str().into(),
    });
    db.handle_message(now, Channel::Datagram, &ev.encode())
        .unwrap();
    assert_eq!(
        db.cluster_queue_len(),
        0,
        "an oversized relay is not queued"
    );
    assert_eq!(db.stats().oversized_cluster_events, 1);
}

/// A repeated `node_up` for an active node emits a second NodeTable "create" with no delete
/// in between.
#[test]
fn repeated_node_up_emits_duplicate_create() {
    use networkdb::{NetworkDb, Output, WatchFilter};
    let now = networkdb::harness::epoch();
    let mut db = NetworkDb::new(
        now,
        "a".into(),
        "10.0.0.1:1".parse().unwrap(),
        1,
        Config::default(),
    )
    .unwrap();
    let _ = db.watch(WatchFilter::default());
    db.node_up(now, "b".into(), "10.0.0.2:1".parse().unwrap());
    db.node_up(now, "b".into(), "10.0.0.2:1".parse().unwrap());
    let mut creates = 0;
    while let Some(o) = db.poll_output() {
        if let Output::Watch { event, .. } = o
            && event.is_create()
        {
            creates += 1;
        }
    }
    assert_eq!(creates, 1);
}

/// One table event with `ltime = u64::MAX` (from a buggy member) pins every table clock it
/// reaches at u64::MAX; from then on every write has the same time and only the owner name
/// orders them: node0 (smaller name) can no longer delete node1's entry; its delete is
/// undone by the next bulk sync.
#[test]
fn max_ltime_poisons_the_table_clock() {
    use networkdb::wire::{Message, TableEvent, TableEventKind};
    use networkdb::{Channel, LTime};
    let mut h = setup(903);
    let now = h.now();
    let n1 = h.name(1);
    let ev = Message::TableEvent(TableEvent {
        kind: TableEventKind::Create,
        ltime: LTime(u64::MAX),
        owner: n1.clone(),
        network: NET.into(),
        table: TABLE.into(),
        key: "poison".into(),
        value: bytes::Bytes::from_static(b"x"),
        residual_reap_secs: 0,
    });
    let _ = h
        .db_mut(0)
        .handle_message(now, Channel::Datagram, &ev.encode());
    h.run_for(Duration::from_secs(10));
    cr(&mut h, 1, "k1", "v1");
    h.run_for(Duration::from_secs(5));
    assert_eq!(sees(&h, 0, "k1").as_deref(), Some("v1"));
    let now = h.now();
    h.db_mut(0)
        .delete_entry(now, TABLE.into(), NET.into(), "k1".into())
        .expect("delete");
    h.run_for(Duration::from_secs(120));
    for i in 0..3 {
        assert_eq!(sees(&h, i, "k1"), None, "node{i}: node0's delete was lost");
    }
}

/// node1 misses node0's network join (every copy of the event and node0's join-time bulk sync
/// are lost). node0's later writes reached node1 and were refused, and kept being refused
/// until the next push/pull or periodic bulk sync, up to 30 s later. Now a write from a live
/// owner with no known attachment waits for the join (`DEFER_WINDOW`), then asks the owner
/// for a sync.
#[test]
fn missed_attachment_is_repaired_by_the_first_refused_write() {
    // No periodic digest round: only the refused write can trigger the repair.
    let config = Config {
        digest_sync_interval: Duration::from_secs(3600),
        ..Config::default()
    };
    let mut h = Harness::cluster(2, config, 907);
    let now = h.now();
    h.db_mut(1).join_network(now, NET.into()).expect("join");
    h.run_for(Duration::from_secs(2));
    h.cut_one_way(0, 1);
    let now = h.now();
    h.db_mut(0).join_network(now, NET.into()).expect("join");
    // Long enough for the join's retransmissions to run out.
    h.run_for(Duration::from_secs(5));
    h.heal();
    let n0 = h.name(0);
    assert!(
        !h.db(1).peers(NET).iter().any(|p| p.name == n0),
        "node1 must have missed the join for this test to mean anything"
    );
    cr(&mut h, 0, "k", "v");
    h.run_for(Duration::from_secs(3));
    assert_eq!(sees(&h, 1, "k").as_deref(), Some("v"));
    assert!(h.db(1).stats().attachment_repairs >= 1);
}

/// A watch with `own` sees this node's own writes, in order, and its own entries in the
/// snapshot; a watch without it sees neither (libnetwork's behaviour).
#[test]
fn a_watch_can_include_the_nodes_own_writes() {
    use networkdb::WatchFilter;
    let mut h = setup(902);
    cr(&mut h, 0, "mine", "a");
    let own = WatchFilter {
        table: Some(TABLE.into()),
        network: None,
        own: true,
    };
    let (_, snapshot) = h.db_mut(0).watch(own);
    let keys: Vec<&str> = snapshot.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        ["k0", "mine"],
        "the snapshot holds the node's own entries too"
    );
    let (_, others) = h.db_mut(0).watch(WatchFilter::default());
    assert!(others.iter().all(|e| e.key.as_str() != "mine"));
    let _ = h.take_events(0);
    let now = h.now();
    let db = h.db_mut(0);
    db.update_entry(now, TABLE.into(), NET.into(), "mine".into(), b"b".to_vec())
        .unwrap();
    db.delete_entry(now, TABLE.into(), NET.into(), "mine".into())
        .unwrap();
    h.run_for(Duration::from_millis(1));
    let events = h.take_events(0);
    let seen: Vec<String> = events
        .iter()
        .map(|e| format!("{:?} -> {:?}", e.prev.as_deref(), e.value.as_deref()))
        .collect();
    assert_eq!(
        seen,
        ["Some([97]) -> Some([98])", "Some([98]) -> None"],
        "only the own watch reports them, update then delete"
    );
}

/// Found by the Docker plugin's end-to-end test: an agent restarted with a container joins
/// the container's network at once, before it has heard which peers are attached to it, so
/// its join bulk sync has nobody to ask; it then waited for the periodic bulk sync (30 s) to
/// get the network's entries, and its container could reach nobody meanwhile. A node that
/// joined a network alone now syncs with the first peer it learns is attached there.
#[test]
fn a_network_joined_before_its_peers_are_known_syncs_when_they_are() {
    let mut h = setup(902);
    let seeds = vec![h.host(0).addr];
    h.restart(2, Some(seeds));
    let now = h.now();
    h.db_mut(2).join_network(now, NET.into()).expect("join");
    assert_eq!(
        h.db(2).peers(NET).len(),
        1,
        "the restarted node knows no peer of the network yet"
    );
    h.run_for(Duration::from_secs(3));
    assert_eq!(sees(&h, 2, "k0").as_deref(), Some("v0"));
}
