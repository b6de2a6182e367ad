//! The backlog path: a burst of writes larger than a datagram goes to every peer on the stream
//! path at the next tick, instead of trickling out a few events per tick.

use std::time::Duration;

use networkdb::Config;
use networkdb::harness::Harness;

#[test]
fn burst_of_3000_writes_converges_at_the_next_tick() {
    let mut h = Harness::cluster(5, Config::default(), 3);
    for i in 0..5 {
        let now = h.now();
        h.db_mut(i).join_network(now, "net".into()).expect("join");
    }
    h.run_for(Duration::from_secs(1));
    for w in 0..3000 {
        let now = h.now();
        let node = w % 5;
        let key = format!("key-{node}-{w}");
        h.db_mut(node)
            .create_entry(now, "t".into(), "net".into(), key.into(), vec![7u8; 40])
            .expect("create");
    }
    // One gossip interval plus delivery: every node holds every entry.
    h.run_for(Duration::from_millis(250));
    for i in 0..5 {
        assert_eq!(h.db(i).table_by_network("t", "net").len(), 3000, "node{i}");
        assert!(
            h.db(i).stats().backlog_flushes >= 1,
            "node{i} used the stream path"
        );
        assert_eq!(
            h.db(i).network_stats("net").map(|s| s.relay_queue_len),
            Some(0)
        );
    }
    h.check_converged().expect("converged");
}

#[test]
fn without_the_backlog_path_the_same_burst_still_converges_by_gossip() {
    let config = Config {
        stream_backlog: false,
        ..Config::default()
    };
    let mut h = Harness::cluster(3, config, 4);
    for i in 0..3 {
        let now = h.now();
        h.db_mut(i).join_network(now, "net".into()).expect("join");
    }
    h.run_for(Duration::from_secs(1));
    for w in 0..300 {
        let now = h.now();
        let key = format!("key-{w}");
        h.db_mut(w % 3)
            .create_entry(now, "t".into(), "net".into(), key.into(), vec![7u8; 40])
            .expect("create");
    }
    let done = h.run_until_true(Duration::from_secs(120), Duration::from_millis(200), |h| {
        (0..3).all(|i| h.db(i).table_by_network("t", "net").len() == 300)
    });
    assert!(done, "gossip alone delivers the burst (slowly)");
    assert_eq!(h.db(0).stats().backlog_flushes, 0);
}
