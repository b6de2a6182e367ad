//! Table events that arrive before their owner's network join wait for it (bounded), instead
//! of being refused until a sync.

use std::time::Duration;

use bytes::Bytes;
use networkdb::harness::epoch;
use networkdb::wire::{Message, NetworkEvent, NetworkEventKind, TableEvent, TableEventKind};
use networkdb::{Channel, Config, DEFER_WINDOW, LTime, NetworkDb, Output};

fn node() -> (NetworkDb, std::time::Instant) {
    let now = epoch();
    let mut db = NetworkDb::new(
        now,
        "a".into(),
        "127.0.0.1:7001".parse().expect("addr"),
        1,
        Config::default(),
    )
    .expect("config");
    db.join_network(now, "net".into()).expect("join");
    db.node_up(now, "b".into(), "127.0.0.1:7002".parse().expect("addr"));
    while db.poll_output().is_some() {}
    (db, now)
}

fn b_event(key: &str) -> Vec<u8> {
    Message::TableEvent(TableEvent {
        kind: TableEventKind::Create,
        ltime: LTime(7),
        owner: "b".into(),
        network: "net".into(),
        table: "t".into(),
        key: key.into(),
        value: Bytes::from_static(b"v"),
        residual_reap_secs: 0,
    })
    .encode()
}

fn b_joins() -> Vec<u8> {
    Message::NetworkEvent(NetworkEvent {
        kind: NetworkEventKind::Join,
        ltime: LTime(3),
        node: "b".into(),
        network: "net".into(),
    })
    .encode()
}

#[test]
fn an_event_before_its_owners_join_is_applied_when_the_join_arrives() {
    let (mut db, now) = node();
    db.handle_message(now, Channel::Datagram, &b_event("k"))
        .expect("decodes");
    assert!(db.get_entry("t", "net", "k").is_err(), "not applied yet");
    assert_eq!(db.stats().deferred_events, 1);
    assert_eq!(db.stats().not_member, 0);
    db.handle_message(now, Channel::Datagram, &b_joins())
        .expect("decodes");
    assert!(
        db.get_entry("t", "net", "k").is_ok(),
        "applied with the join"
    );
    assert_eq!(db.stats().deferred_applied, 1);
    // Nothing waits any more: no repair when the window ends.
    db.handle_timeout(now + DEFER_WINDOW + Duration::from_millis(1));
    assert_eq!(db.stats().attachment_repairs, 0);
}

#[test]
fn without_the_join_the_owner_is_asked_for_a_sync_when_the_window_ends() {
    let (mut db, now) = node();
    db.handle_message(now, Channel::Datagram, &b_event("k"))
        .expect("decodes");
    assert!(db.poll_timeout() <= now + DEFER_WINDOW);
    db.handle_timeout(now + DEFER_WINDOW);
    assert_eq!(db.stats().not_member, 1);
    assert_eq!(db.stats().attachment_repairs, 1);
    let asked = std::iter::from_fn(|| db.poll_output()).any(|out| match out {
        Output::Transmit(t) => {
            t.to.as_str() == "b"
                && matches!(Message::decode(&t.payload), Ok(Message::SyncDigest(_)))
        }
        _ => false,
    });
    assert!(asked, "a digest round with the owner");
}

#[test]
fn waiting_events_are_bounded() {
    let (mut db, now) = node();
    for i in 0..5000 {
        db.handle_message(now, Channel::Datagram, &b_event(&format!("k{i}")))
            .expect("decodes");
    }
    let s = db.stats();
    assert_eq!(s.deferred_events, 4096);
    assert_eq!(s.deferred_refused, 5000 - 4096);
}

#[test]
fn a_join_syncs_with_a_few_peers_not_all() {
    use networkdb::harness::Harness;
    let mut h = Harness::cluster(8, Config::default(), 31);
    for i in 1..8 {
        let now = h.now();
        h.db_mut(i).join_network(now, "net".into()).expect("join");
    }
    h.run_for(Duration::from_secs(2));
    let before = h.db(0).stats().bulk_syncs_sent;
    let now = h.now();
    h.db_mut(0).join_network(now, "net".into()).expect("join");
    assert_eq!(
        h.db(0).stats().bulk_syncs_sent - before,
        3,
        "join_sync_peers = 3"
    );
    h.run_for(Duration::from_secs(2));
    assert!(h.db(0).is_in_sync("net"));
    h.check_converged().expect("converged");
}
