//! Cluster benchmark on loopback: `cargo bench -p cluster --bench cluster`.
//!
//! Five nodes with real UDP and TCP sockets, mutual TLS and the AES-256-GCM keyring, one
//! network. Reports:
//! - a burst of 3,000 writes spread over the nodes: time from the last write until every node
//!   holds every entry, and bytes sent per write per node;
//! - the highest sustained write rate (cluster-wide) at which the convergence lag stays under
//!   1 s.
//!
//! Figures are printed, never asserted. Go NetworkDB for comparison (issue figures): about 110
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

async fn cluster(pki: &Pki) -> Vec<Handle> {
    let mut handles = Vec::new();
    let mut seed = None;
    for i in 0..NODES {
        let mut o = opts(pki, &format!("node{i}"), 1);
        o.config = cluster::NodeConfig::default();
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
                members(h).await == NODES - 1
            })
            .await
        );
    }
    handles
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
    rt.block_on(async {
        let pki = Pki::new("bench-ca");
        let handles = cluster(&pki).await;
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
