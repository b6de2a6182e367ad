//! Cluster benchmark on loopback: `cargo bench -p cluster --bench cluster`.
//!
//! Real UDP and TCP sockets, mutual TLS and the AES-256-GCM keyring. Reports, on three nodes
//! and one network, with the eager push on (the default) and off (every change waits for the
//! next gossip tick, as upstream):
//! - from a write on one node until the other two hold it (the receivers' watch events), p50,
//!   p99 and max over 200 writes spread over the tick's phase;
//! - a burst of 30 writes spread over the three nodes: from its first write until every node
//!   holds all 30, over 20 bursts;
//!
//! then, on five nodes:
//! - a burst of 3,000 writes spread over the nodes: time from the last write until every node
//!   holds every entry, and bytes sent per write per node;
//! - the highest sustained write rate (cluster-wide) at which the convergence lag stays under
//!   1 s.
//!
//! - idle, 3,000 entries in one network on three nodes: bytes each node sends per second, with
//!   the digest-first periodic sync and with full bulk syncs;
//!
//! `cargo bench -p cluster --bench cluster -- latency` (or `-- idle`, `-- throughput`) runs
//! that part only. Figures are printed, never asserted. Go NetworkDB for comparison (issue figures): about 110
//! table events per second per network (one 1400-byte compound per 200 ms tick), so a burst of
//! 3,000 writes over 3 nodes takes about 27 s to converge.

#![allow(
    clippy::disallowed_methods,
    reason = "the bench measures wall-clock time"
)]
#![allow(clippy::unwrap_used, reason = "bench setup")]
#![allow(missing_docs, reason = "bench binary")]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use cluster::shell::Handle;
use common::{Pki, eventually, members, opts, start};

const NODES: usize = 5;
/// Nodes of the latency runs.
const LATENCY_NODES: usize = 3;
/// Single writes timed per configuration.
const WRITES: usize = 200;
/// Bursts of 30 timed per configuration.
const BURSTS: usize = 20;

async fn cluster(
    pki: &Pki,
    prefix: &str,
    nodes: usize,
    db: impl Fn(&mut networkdb::Config),
) -> Vec<Handle> {
    let mut handles = Vec::new();
    let mut seed = None;
    for i in 0..nodes {
        let mut o = opts(pki, &format!("{prefix}{i}"), 1);
        o.config = cluster::NodeConfig::default();
        db(&mut o.config.db);
        let (h, addr) = start(o, None).await;
        if let Some(s) = seed {
            h.join(vec![s]).await.unwrap();
        } else {
            seed = Some(addr);
        }
        handles.push(h);
    }
    for h in &handles {
        assert!(
            eventually(Duration::from_secs(30), || async {
                members(h).await == nodes - 1
            })
            .await
        );
    }
    handles
}

/// Arrivals of keys on the watching nodes: `(node, key, when)`.
type Arrivals = tokio::sync::mpsc::UnboundedReceiver<(usize, String, Instant)>;

/// Watches table `t` of `network` on every node; each arrival of a value is reported with
/// the instant the watch event was received.
async fn watch_arrivals(handles: &mut [Handle], network: &'static str) -> Arrivals {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    for (i, h) in handles.iter_mut().enumerate() {
        h.with_node(move |n, _| {
            n.db_mut().watch(networkdb::WatchFilter {
                table: Some("t".into()),
                network: Some(network.into()),
                own: false,
            })
        })
        .await
        .unwrap();
        let mut events = h.take_events().unwrap();
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some((_, ev)) = events.recv().await {
                if ev.value.is_some() {
                    let _ = tx.send((i, ev.key.to_string(), Instant::now()));
                }
            }
        });
    }
    rx
}

/// Waits until every key of `keys` arrived on every node but its writer (`keys[k].1`);
/// returns the last arrival, or `None` after 5 s.
async fn all_arrived(
    arrivals: &mut Arrivals,
    keys: &[(String, usize)],
    nodes: usize,
) -> Option<Instant> {
    let mut missing: std::collections::BTreeSet<(usize, String)> = keys
        .iter()
        .flat_map(|(k, writer)| {
            (0..nodes)
                .filter(move |n| n != writer)
                .map(move |n| (n, k.clone()))
        })
        .collect();
    let mut last = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !missing.is_empty() {
        let (node, key, at) = tokio::time::timeout_at(deadline, arrivals.recv())
            .await
            .ok()??;
        if missing.remove(&(node, key)) {
            last = Some(at);
        }
    }
    last
}

fn percentiles(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let pct = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
    println!(
        "  {what}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} samples)",
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3,
        samples.len()
    );
}

/// Single writes and bursts of 30 on three nodes: the time until every node holds them.
async fn latency(pki: &Pki, eager: bool) {
    let mut handles = cluster(pki, "node", LATENCY_NODES, |db| db.eager_push = eager).await;
    join_network(&handles, "lat").await;
    let mut arrivals = watch_arrivals(&mut handles, "lat").await;
    println!(
        "latency on {LATENCY_NODES} nodes, eager push {}:",
        if eager {
            "on (default)"
        } else {
            "off (every change waits for a gossip tick)"
        }
    );
    let mut singles = Vec::with_capacity(WRITES);
    for w in 0..WRITES {
        let writer = w % LATENCY_NODES;
        let key = format!("{w:064x}");
        let k = key.clone();
        let t0 = Instant::now();
        handles[writer]
            .with_node(move |n, now| {
                n.db_mut()
                    .create_entry(now, "t".into(), "lat".into(), k.into(), value(w))
            })
            .await
            .unwrap()
            .unwrap();
        let done = all_arrived(&mut arrivals, &[(key, writer)], LATENCY_NODES).await;
        singles.push(done.expect("a write reached every node within 5 s") - t0);
        // A pause that walks the writes over the 200 ms tick's phase (a write must not
        // follow the tick that delivered the previous one at a fixed distance).
        tokio::time::sleep(Duration::from_millis(1 + (w as u64 * 37) % 199)).await;
    }
    percentiles("one write until both other nodes hold it", singles);
    let mut bursts = Vec::with_capacity(BURSTS);
    for b in 0..BURSTS {
        let keys: Vec<(String, usize)> = (0..30)
            .map(|w| (format!("b{b}-{w:061x}"), w % LATENCY_NODES))
            .collect();
        let t0 = Instant::now();
        for (writer, h) in handles.iter().enumerate() {
            let mine: Vec<(String, usize)> = keys
                .iter()
                .enumerate()
                .filter(|(_, (_, w))| *w == writer)
                .map(|(i, (k, _))| (k.clone(), i))
                .collect();
            h.with_node(move |n, now| {
                for (k, i) in mine {
                    n.db_mut()
                        .create_entry(now, "t".into(), "lat".into(), k.into(), value(i))
                        .unwrap();
                }
            })
            .await
            .unwrap();
        }
        let done = all_arrived(&mut arrivals, &keys, LATENCY_NODES).await;
        bursts.push(done.expect("a burst reached every node within 5 s") - t0);
        tokio::time::sleep(Duration::from_millis(1 + (b as u64 * 53) % 199)).await;
    }
    percentiles(
        "a burst of 30 writes over the 3 nodes until every node holds all",
        bursts,
    );
    for h in handles {
        h.kill();
    }
}

async fn join_network(handles: &[Handle], network: &'static str) {
    for h in handles {
        h.with_node(move |n, now| n.db_mut().join_network(now, network.into()))
            .await
            .unwrap()
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
}

async fn min_entries(handles: &[Handle], network: &'static str) -> usize {
    let mut min = usize::MAX;
    for h in handles {
        let n = h
            .with_node(move |n, _| n.db().table_by_network("t", network).len())
            .await
            .unwrap();
        min = min.min(n);
    }
    min
}

async fn bytes_out(handles: &[Handle]) -> u64 {
    let mut total = 0;
    for h in handles {
        total += h.with_node(|n, _| n.db().stats().bytes_out).await.unwrap();
    }
    total
}

/// A value the size of an overlay peer record.
fn value(i: usize) -> Vec<u8> {
    format!(
        "10.{}.{}.{}/16 02:42:0a:00:{:02x}:{:02x} 198.18.0.{}",
        i % 200,
        (i / 200) % 250,
        i % 250,
        i % 256,
        (i / 256) % 256,
        i % 5 + 1
    )
    .into_bytes()
}

async fn burst(handles: &[Handle]) {
    join_network(handles, "burst").await;
    let total = 3000;
    let before = bytes_out(handles).await;
    let start = Instant::now();
    for (i, h) in handles.iter().enumerate() {
        h.with_node(move |n, now| {
            for w in (i..total).step_by(NODES) {
                let key = format!("{:064x}", w);
                n.db_mut()
                    .create_entry(now, "t".into(), "burst".into(), key.into(), value(w))
                    .unwrap();
            }
        })
        .await
        .unwrap();
    }
    let last_write = Instant::now();
    while min_entries(handles, "burst").await < total {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let converged = last_write.elapsed();
    let bytes = bytes_out(handles).await - before;
    println!(
        "burst: {total} writes over {NODES} nodes issued in {:.1} ms; every node holds every entry {:.0} ms after the last write",
        (last_write - start).as_secs_f64() * 1e3,
        converged.as_secs_f64() * 1e3
    );
    println!(
        "  bytes sent (NetworkDB payloads, before sealing): {:.0} per write per node",
        bytes as f64 / total as f64 / NODES as f64
    );
    println!("  Go NetworkDB: ~27 s for 3,000 writes over 3 nodes (~110 events/s per network)");
}

/// Writes at `rate` per second for `secs`, sampling the lag: how long ago the oldest write not
/// yet on every node was issued. Returns the worst lag seen.
async fn sustained(handles: &[Handle], network: &'static str, rate: usize, secs: u64) -> Duration {
    join_network(handles, network).await;
    let total = rate * secs as usize;
    let mut issued: Vec<Instant> = Vec::with_capacity(total);
    let start = Instant::now();
    let mut worst = Duration::ZERO;
    let tick = Duration::from_millis(20);
    let mut next_sample = start;
    while issued.len() < total {
        let due = ((start.elapsed().as_secs_f64() * rate as f64) as usize).min(total);
        while issued.len() < due {
            let w = issued.len();
            let h = &handles[w % NODES];
            h.with_node(move |n, now| {
                let key = format!("{:064x}", w);
                n.db_mut()
                    .create_entry(now, "t".into(), network.into(), key.into(), value(w))
                    .unwrap();
            })
            .await
            .unwrap();
            issued.push(Instant::now());
        }
        if Instant::now() >= next_sample {
            let everywhere = min_entries(handles, network).await;
            if everywhere < issued.len() {
                worst = worst.max(issued[everywhere].elapsed());
            }
            next_sample += Duration::from_millis(100);
        }
        tokio::time::sleep(tick).await;
    }
    // Drain: the lag of the last writes.
    loop {
        let everywhere = min_entries(handles, network).await;
        if everywhere >= total {
            break;
        }
        worst = worst.max(issued[everywhere].elapsed());
        if worst > Duration::from_secs(30) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    worst
}

/// Transport bytes a node sent so far: sealed datagrams and stream frames (before TLS).
async fn transport_bytes(h: &Handle) -> u64 {
    let s = h.stats().await.unwrap();
    s.datagram_bytes_out + s.frame_bytes_out
}

/// Three nodes, 3,000 entries in one network, nothing changing: bytes each node sends per
/// second, with the digest-first periodic sync and with full bulk syncs (upstream's).
async fn idle(pki: &Pki, digest: bool) {
    let handles = cluster(pki, "idle", LATENCY_NODES, |db| db.digest_sync = digest).await;
    join_network(&handles, "idle").await;
    for (i, h) in handles.iter().enumerate() {
        h.with_node(move |n, now| {
            for w in (i..3000).step_by(LATENCY_NODES) {
                n.db_mut()
                    .create_entry(
                        now,
                        "t".into(),
                        "idle".into(),
                        format!("{w:064x}").into(),
                        value(w),
                    )
                    .unwrap();
            }
        })
        .await
        .unwrap();
    }
    // Past the writes, the first attachment exchanges and the first periodic round.
    tokio::time::sleep(Duration::from_secs(35)).await;
    assert_eq!(min_entries(&handles, "idle").await, 3000);
    let secs = 60;
    let mut before = Vec::new();
    for h in &handles {
        let db = h.with_node(|n, _| n.db().stats().bytes_out).await.unwrap();
        before.push((transport_bytes(h).await, db));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (mut transport, mut db) = (0u64, 0u64);
    for (h, (t0, d0)) in handles.iter().zip(before) {
        let d1 = h.with_node(|n, _| n.db().stats().bytes_out).await.unwrap();
        transport += transport_bytes(h).await - t0;
        db += d1 - d0;
    }
    let per = |b: u64| b as f64 / LATENCY_NODES as f64 / secs as f64;
    println!(
        "idle, 3 nodes, 3,000 entries in one network, {}: {:.0} B/s per node on the transport \
         (sealed datagrams and stream frames, SWIM included), of which NetworkDB {:.0} B/s",
        if digest {
            "digest-first sync (default)"
        } else {
            "full bulk syncs (upstream's)"
        },
        per(transport),
        per(db)
    );
    for h in handles {
        h.kill();
    }
}

fn main() {
    if std::env::args().all(|a| a != "--bench") {
        println!("(run with `cargo bench -p cluster --bench cluster` for the figures)");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // `-- latency`, `-- idle` or `-- throughput` runs only that part.
    let only = |part: &str| {
        let parts = ["latency", "idle", "throughput"];
        let asked: Vec<String> = std::env::args()
            .filter(|a| parts.contains(&a.as_str()))
            .collect();
        asked.is_empty() || asked.iter().any(|a| a == part)
    };
    rt.block_on(async {
        let pki = Pki::new("bench-ca");
        if only("latency") {
            latency(&pki, true).await;
            latency(&pki, false).await;
        }
        if only("idle") {
            idle(&pki, true).await;
            idle(&pki, false).await;
        }
        if !only("throughput") {
            return;
        }
        let handles = cluster(&pki, "node", NODES, |_| {}).await;
        burst(&handles).await;
        let mut best = 0;
        for (i, rate) in [1_000usize, 2_000, 4_000, 8_000, 16_000, 32_000].into_iter().enumerate() {
            let network: &'static str = ["r0", "r1", "r2", "r3", "r4", "r5"][i];
            let lag = sustained(&handles, network, rate, 5).await;
            println!("sustained {rate:>5} writes/s for 5 s: worst convergence lag {:.0} ms", lag.as_secs_f64() * 1e3);
            if lag < Duration::from_secs(1) {
                best = rate;
            } else {
                break;
            }
        }
        println!("highest sustained rate with lag under 1 s: {best} writes/s (Go NetworkDB: ~110/s per network)");
        for h in handles {
            h.kill();
        }
    });
}
