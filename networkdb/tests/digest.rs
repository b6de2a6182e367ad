//! Digest-first anti-entropy: an idle periodic sync sends summaries only, and a difference is
//! repaired by a partial sync of the buckets that differ, after a gap or a long partition.

use std::time::Duration;

use networkdb::harness::Harness;
use networkdb::wire::{Message, PartialSync, SyncDigest, SyncScope};
use networkdb::{Channel, Config, LTime};

const ENTRIES: usize = 3000;

/// `n` nodes on one network holding `ENTRIES` entries written by node 0, converged.
fn populated(config: Config, seed: u64) -> Harness {
    let mut h = Harness::cluster(3, config, seed);
    for i in 0..3 {
        let now = h.now();
        h.db_mut(i).join_network(now, "net".into()).expect("join");
    }
    h.run_for(Duration::from_secs(1));
    for w in 0..ENTRIES {
        let now = h.now();
        h.db_mut(w % 3)
            .create_entry(
                now,
                "t".into(),
                "net".into(),
                format!("key-{w}").into(),
                vec![7u8; 47],
            )
            .expect("create");
    }
    // Past the first push/pull and periodic syncs: the join syncs deferred by nodes that
    // joined before knowing any peer of the network are done.
    h.run_for(Duration::from_secs(65));
    h.check_converged().expect("converged after the writes");
    h
}

/// NetworkDB bytes sent per node per second over `secs` of idleness.
fn idle_bytes_per_node_second(h: &mut Harness, secs: u64) -> f64 {
    let before: u64 = (0..3).map(|i| h.db(i).stats().bytes_out).sum();
    h.run_for(Duration::from_secs(secs));
    let after: u64 = (0..3).map(|i| h.db(i).stats().bytes_out).sum();
    (after - before) as f64 / 3.0 / secs as f64
}

#[test]
fn an_idle_sync_sends_summaries_not_entries() {
    let mut h = populated(Config::default(), 21);
    let digest = idle_bytes_per_node_second(&mut h, 300);
    let stats: Vec<_> = (0..3).map(|i| h.db(i).stats()).collect();
    assert!(stats.iter().map(|s| s.sync_networks_equal).sum::<u64>() >= 20);
    assert_eq!(stats.iter().map(|s| s.partial_syncs_sent).sum::<u64>(), 0);
    assert_eq!(stats.iter().map(|s| s.bulk_sync_timeouts).sum::<u64>(), 0);
    assert!(stats.iter().map(|s| s.push_pull_digests_sent).sum::<u64>() >= 20);
    assert_eq!(
        stats
            .iter()
            .map(|s| s.push_pull_digests_differ)
            .sum::<u64>(),
        0
    );

    let full = Config {
        digest_sync: false,
        ..Config::default()
    };
    let mut h = populated(full, 21);
    let full = idle_bytes_per_node_second(&mut h, 300);
    eprintln!(
        "idle, {ENTRIES} entries, 3 nodes: NetworkDB bytes per node per second {digest:.1} with \
         digests, {full:.0} with full syncs ({:.2} %)",
        digest / full * 100.0
    );
    // Not a timing: bytes of the protocol, on virtual time.
    assert!(
        digest * 100.0 < full,
        "idle bytes per node per second: {digest:.0} with digests, {full:.0} with full syncs"
    );
}

#[test]
fn a_missed_write_is_repaired_by_a_partial_sync_of_its_bucket() {
    let mut h = populated(Config::default(), 22);
    h.isolate(2);
    let now = h.now();
    h.db_mut(0)
        .create_entry(
            now,
            "t".into(),
            "net".into(),
            "missed".into(),
            vec![1u8; 10],
        )
        .expect("create");
    let now = h.now();
    h.db_mut(1)
        .delete_entry(now, "t".into(), "net".into(), "key-1".into())
        .expect("delete");
    // Every gossip transmission of both changes is spent while node 2 hears nothing.
    h.run_for(Duration::from_secs(3));
    h.heal();
    assert!(h.db(2).get_entry("t", "net", "missed").is_err());

    let repaired = h.run_until_true(Duration::from_secs(65), Duration::from_millis(500), |h| {
        h.db(2).get_entry("t", "net", "missed").is_ok()
            && h.db(2).get_entry("t", "net", "key-1").is_err()
    });
    assert!(repaired, "the periodic sync repaired node 2 (seed 22)");

    h.check_converged().expect("converged");
    let partial: u64 = (0..3).map(|i| h.db(i).stats().partial_sync_events).sum();
    assert!(partial > 0, "the repair went by partial sync");
    assert!(
        partial < 200,
        "{partial} events for two changed keys out of {ENTRIES}"
    );
}

#[test]
fn a_long_partition_heals_within_one_sync_period() {
    let mut h = populated(Config::default(), 23);
    // Node 2 is cut off, without being declared down, while both sides write.
    h.isolate(2);
    for w in 0..300 {
        let now = h.now();
        let (node, key) = if w % 2 == 0 {
            (0, format!("a-{w}"))
        } else {
            (2, format!("b-{w}"))
        };
        h.db_mut(node)
            .create_entry(now, "t".into(), "net".into(), key.into(), vec![3u8; 20])
            .expect("create");
        h.run_for(Duration::from_millis(200));
    }
    h.run_for(Duration::from_secs(60));
    h.heal();
    // One bulk-sync interval (30 s) plus the round's messages.
    h.run_for(Duration::from_secs(31));
    h.check_converged()
        .expect("converged within one sync period after the heal");
}

#[test]
fn a_missed_attachment_elsewhere_is_repaired_by_the_push_pull_digest() {
    let mut h = populated(Config::default(), 25);
    // Node 2 misses node 0 joining a network node 2 is not on (no digest round covers it).
    h.isolate(2);
    let now = h.now();
    h.db_mut(0).join_network(now, "other".into()).expect("join");
    h.run_for(Duration::from_secs(5));
    h.heal();
    let n0 = h.name(0);
    assert!(!h.db(2).is_attached("other", &n0), "node 2 missed the join");
    let repaired = h.run_until_true(Duration::from_secs(65), Duration::from_millis(500), |h| {
        h.db(2).is_attached("other", &n0)
    });
    assert!(repaired, "the periodic push/pull repaired it (seed 25)");
    let differ: u64 = (0..3)
        .map(|i| h.db(i).stats().push_pull_digests_differ)
        .sum();
    assert!(differ >= 1);
}

fn payload(msg: Message) -> Vec<u8> {
    msg.encode()
}

#[test]
fn malformed_sync_messages_are_counted_and_change_nothing() {
    let mut h = populated(Config::default(), 24);
    let now = h.now();
    let sender = h.name(1);
    let before = h.db(0).stats();
    let entries = h.db(0).table_by_network("t", "net");
    // A digest on the datagram path.
    let digest = payload(Message::SyncDigest(SyncDigest {
        ltime: LTime(5),
        reply: true,
        node: sender.clone(),
        networks: vec![],
    }));
    h.db_mut(0)
        .handle_message(now, Channel::Datagram, &digest)
        .expect("decodes");
    // A reply whose buckets are not whole 32-bit hashes.
    let bad_reply = payload(Message::SyncDigest(SyncDigest {
        ltime: LTime(6),
        reply: true,
        node: sender.clone(),
        networks: vec![networkdb::wire::NetworkDigest {
            network: "net".into(),
            attachments: 0,
            entries: 0,
            count: 0,
            buckets: vec![1, 2, 3],
        }],
    }));
    h.db_mut(0)
        .handle_message(now, Channel::Stream, &bad_reply)
        .expect("decodes");
    // Partial syncs naming no bucket split, or a bucket beyond it.
    for (buckets, indices) in [(0u32, vec![]), (4, vec![4]), (5000, vec![1])] {
        let partial = payload(Message::PartialSync(PartialSync {
            ltime: LTime(7),
            unsolicited: true,
            node: sender.clone(),
            scopes: vec![SyncScope {
                network: "net".into(),
                attachments: true,
                buckets,
                indices,
            }],
            attachments: vec![],
            events: vec![],
        }));
        h.db_mut(0)
            .handle_message(now, Channel::Stream, &partial)
            .expect("decodes");
    }
    let after = h.db(0).stats();
    assert_eq!(after.wrong_channel - before.wrong_channel, 1);
    assert_eq!(after.dropped_malformed - before.dropped_malformed, 4);
    assert_eq!(h.db(0).table_by_network("t", "net"), entries);
}
