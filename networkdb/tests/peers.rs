//! The nodes gossip and reconnection pick from follow every state change: active nodes are
//! sampled, failed ones offered for reconnection, and a reaped one is forgotten by both.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use networkdb::{Config, NetworkDb, NodeName, Output};

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, i], 7946))
}

/// Runs the timers from `from` to `to` in 100 ms steps, returning every output.
fn run(db: &mut NetworkDb, from: Instant, to: Instant) -> Vec<Output> {
    let mut out = Vec::new();
    let mut now = from;
    while now < to {
        now += Duration::from_millis(100);
        db.handle_timeout(now);
        while let Some(o) = db.poll_output() {
            out.push(o);
        }
    }
    out
}

fn reconnects(outputs: &[Output]) -> Vec<String> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Reconnect { node, .. } => Some(node.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn leave_goes_to_active_nodes_only() {
    let t0 = networkdb::harness::epoch();
    let mut db =
        NetworkDb::new(t0, "me".into(), addr(1), 7, Config::default()).expect("valid config");
    for i in 2..=6 {
        db.node_up(t0, NodeName::from(format!("n{i}")), addr(i));
    }
    db.node_down(t0, "n3");
    db.node_retired(t0, "n4");
    while db.poll_output().is_some() {}
    db.leave(t0);
    let mut to: Vec<String> = std::iter::from_fn(|| db.poll_output())
        .filter_map(|o| match o {
            Output::Transmit(t) => Some(t.to.to_string()),
            _ => None,
        })
        .collect();
    to.sort();
    to.dedup();
    assert_eq!(to, ["n2", "n5", "n6"]);
}

#[test]
fn failed_nodes_are_offered_until_they_return_or_are_reaped() {
    let t0 = networkdb::harness::epoch();
    let config = Config {
        node_reap_interval: Duration::from_secs(5),
        reap_period: Duration::from_secs(1),
        ..Config::default()
    };
    let mut db = NetworkDb::new(t0, "me".into(), addr(1), 7, config).expect("valid config");
    db.node_up(t0, "n2".into(), addr(2));
    db.node_up(t0, "n3".into(), addr(3));
    db.node_down(t0, "n2");
    db.node_down(t0, "n3");
    let t1 = t0 + Duration::from_secs(3);
    let offered = reconnects(&run(&mut db, t0, t1));
    assert!(offered.contains(&"n2".to_owned()), "{offered:?}");
    assert!(offered.contains(&"n3".to_owned()), "{offered:?}");

    // n2 comes back: only n3 is offered.
    db.node_up(t1, "n2".into(), addr(2));
    let t2 = t1 + Duration::from_secs(1);
    let offered = reconnects(&run(&mut db, t1, t2));
    assert!(offered.iter().all(|n| n == "n3"), "{offered:?}");

    // n3 is reaped 5 s after it failed: nothing is offered any more.
    let t3 = t0 + Duration::from_secs(7);
    run(&mut db, t2, t3);
    let offered = reconnects(&run(&mut db, t3, t3 + Duration::from_secs(3)));
    assert!(offered.is_empty(), "{offered:?}");
}
