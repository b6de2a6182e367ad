//! The eager push: a node's fresh events leave within `eager_push_delay`, not at the next
//! gossip tick, and events queued within that window leave together.

use std::time::Duration;

use networkdb::Config;
use networkdb::harness::Harness;

fn joined(n: usize, config: Config, seed: u64) -> Harness {
    let mut h = Harness::cluster(n, config, seed);
    for i in 0..n {
        let now = h.now();
        h.db_mut(i).join_network(now, "net".into()).expect("join");
    }
    h.run_for(Duration::from_secs(2));
    h
}

fn holders(h: &Harness, key: &str) -> usize {
    (0..h.len())
        .filter(|&i| h.db(i).get_entry("t", "net", key).is_ok())
        .count()
}

/// Writes 40 keys from the nodes in turn, 20 ms apart (so they cover the 200 ms tick's
/// phase), and returns those not on every node 3 ms after their write.
fn late_writes(h: &mut Harness) -> Vec<usize> {
    let mut late = Vec::new();
    for w in 0..40 {
        let key = format!("k{w}");
        let now = h.now();
        h.db_mut(w % 3)
            .create_entry(
                now,
                "t".into(),
                "net".into(),
                key.as_str().into(),
                vec![1u8; 40],
            )
            .expect("create");
        h.run_for(Duration::from_millis(3));
        if holders(h, &key) < 3 {
            late.push(w);
        }
        h.run_for(Duration::from_millis(17));
    }
    late
}

#[test]
fn a_write_reaches_every_peer_within_the_window_and_a_round_trip() {
    // Harness latency 1 ms, window 2 ms: every node holds each write 3 ms after it, whatever
    // the phase of the 200 ms gossip tick.
    let mut h = joined(3, Config::default(), 11);
    let late = late_writes(&mut h);
    assert!(
        late.is_empty(),
        "writes {late:?} not everywhere after 3 ms (seed 11)"
    );
    assert!(h.db(0).stats().eager_datagrams > 0);
    h.run_for(Duration::from_secs(2));
    h.check_converged().expect("converged");
}

#[test]
fn without_eager_push_a_write_waits_for_the_tick() {
    let config = Config {
        eager_push: false,
        ..Config::default()
    };
    let mut h = joined(3, config, 11);
    let late = late_writes(&mut h).len();
    assert!(late > 30, "only {late} of 40 writes waited for a tick");
    assert_eq!(h.db(0).stats().eager_datagrams, 0);
}

#[test]
fn writes_within_the_window_leave_in_one_compound_per_peer() {
    let mut h = joined(3, Config::default(), 12);
    let before = h.db(0).stats();
    let now = h.now();
    for w in 0..5 {
        h.db_mut(0)
            .create_entry(
                now,
                "t".into(),
                "net".into(),
                format!("k{w}").into(),
                vec![1u8; 40],
            )
            .expect("create");
    }
    // Exactly the window: the eager push has run, the next tick (at least 1 ms away only by
    // chance) is checked below.
    h.run_for(Duration::from_millis(2));
    let after = h.db(0).stats();
    assert_eq!(
        after.eager_datagrams - before.eager_datagrams,
        2,
        "one compound to each peer"
    );
    assert_eq!(after.eager_events - before.eager_events, 5);
    h.run_for(Duration::from_millis(2));
    for w in 0..5 {
        assert_eq!(holders(&h, &format!("k{w}")), 3);
    }
}

#[test]
fn a_network_join_reaches_the_cluster_within_the_window() {
    let mut h = Harness::cluster(3, Config::default(), 13);
    h.run_for(Duration::from_secs(2));
    let now = h.now();
    h.db_mut(0).join_network(now, "late".into()).expect("join");
    h.run_for(Duration::from_millis(4));
    let me = h.name(0);
    for i in 1..3 {
        assert!(h.db(i).is_attached("late", &me), "node{i} learnt the join");
    }
}

#[test]
fn a_burst_beyond_one_datagram_goes_on_the_stream_path_at_once() {
    let mut h = joined(3, Config::default(), 14);
    let now = h.now();
    for w in 0..30 {
        h.db_mut(w % 3)
            .create_entry(
                now,
                "t".into(),
                "net".into(),
                format!("k{w}").into(),
                vec![1u8; 150],
            )
            .expect("create");
    }
    h.run_for(Duration::from_millis(4));
    for i in 0..3 {
        assert_eq!(h.db(i).table_by_network("t", "net").len(), 30, "node{i}");
    }
}
