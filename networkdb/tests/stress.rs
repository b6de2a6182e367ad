//! Seeded fault stress: crash, close, restart, partitions with and without failure detection,
//! loss and duplication, then a calm phase in which every node reports every other one up;
//! every node must then hold exactly what the owners hold.

#![allow(clippy::unwrap_used, reason = "tests")]
use std::time::Duration;

use networkdb::harness::{Harness, visible_view};
use networkdb::{Config, Key};
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

fn utf8(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn settled(h: &Harness, networks: &[&str]) -> Result<(), String> {
    h.check_converged()?;
    for &nw in networks {
        let truth = h.owners_view(nw);
        for i in 0..h.len() {
            if !h.is_up(i) {
                continue;
            }
            let db = h.db(i);
            if db.is_attached(nw, db.name()) && visible_view(db, nw) != truth {
                return Err(format!(
                    "{nw}: {} sees {:?}, owners hold {truth:?}",
                    db.name(),
                    visible_view(db, nw)
                ));
            }
            for j in 0..h.len() {
                if !h.is_up(j) || i == j {
                    continue;
                }
                let other = h.name(j);
                let t = h.db(j).is_attached(nw, &other);
                if db.is_attached(nw, &other) != t {
                    return Err(format!(
                        "{nw}: {} thinks {other} attached = {}",
                        db.name(),
                        !t
                    ));
                }
            }
        }
    }
    Ok(())
}

fn case(n: usize, seed: u64, long: bool, silent: bool) -> Result<(), String> {
    let networks = ["net-a", "net-b"];
    let tables = ["t1"];
    let mut h = Harness::cluster(n, Config::default(), seed);
    h.net.loss = 0.1;
    h.net.duplicate = 0.05;
    h.net.jitter = Duration::from_millis(20);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut counter = 0u64;
    let mut isolated: Option<usize> = None;
    for step in 0..400 {
        let r = rng.random_range(0..100);
        if r < 3 && isolated.is_none() {
            let i = rng.random_range(0..n);
            if h.is_up(i) {
                h.isolate(i);
                if !silent {
                    for j in 0..n {
                        if j != i && h.is_up(j) {
                            h.report_down_at(i, j);
                            h.report_down_at(j, i);
                        }
                    }
                }
                isolated = Some(i);
            }
        } else if r < 6 {
            if let Some(i) = isolated.take() {
                h.heal();
                for j in 0..n {
                    if j != i && h.is_up(j) && h.is_up(i) {
                        h.report_up_between(i, j);
                    }
                }
            }
        } else if r < 7 {
            let i = rng.random_range(0..n);
            if h.is_up(i) && isolated != Some(i) {
                if rng.random_bool(0.5) {
                    h.crash(i);
                } else {
                    h.close(i);
                }
            }
        } else if r < 9 {
            let i = rng.random_range(0..n);
            if !h.is_up(i) {
                let j = (0..n).find(|&j| j != i && h.is_up(j));
                if let Some(j) = j {
                    let a = h.host(j).addr;
                    h.restart(i, Some(vec![a]));
                }
            }
        } else {
            let i = rng.random_range(0..n);
            if h.is_up(i) {
                let nw = networks[rng.random_range(0..networks.len())];
                let table = tables[0];
                let now = h.now();
                let me = h.name(i);
                let db = h.db_mut(i);
                if !db.is_attached(nw, &me) {
                    if rng.random_bool(0.5) {
                        db.join_network(now, nw.into()).unwrap();
                    }
                } else {
                    let any: Vec<Key> = db
                        .table_by_network(table, nw)
                        .into_iter()
                        .filter(|_| true)
                        .map(|(k, _)| k)
                        .collect();
                    let roll = rng.random_range(0..100);
                    counter += 1;
                    let value = format!("v{counter}").into_bytes();
                    if roll < 40 || any.is_empty() {
                        db.create_entry(
                            now,
                            table.into(),
                            nw.into(),
                            format!("k{i}-{counter}").into(),
                            value,
                        )
                        .unwrap();
                    } else if roll < 65 {
                        let k = any[rng.random_range(0..any.len())].clone();
                        db.update_entry(now, table.into(), nw.into(), k, value)
                            .unwrap();
                    } else if roll < 92 {
                        let k = any[rng.random_range(0..any.len())].clone();
                        db.delete_entry(now, table.into(), nw.into(), k).unwrap();
                    } else {
                        db.leave_network(now, nw.into()).unwrap();
                    }
                }
            }
        }
        let d = if long && step % 50 == 49 {
            Duration::from_secs(35 * 60)
        } else {
            Duration::from_millis(300)
        };
        h.run_for(d);
    }
    if let Some(i) = isolated.take() {
        h.heal();
        for j in 0..n {
            if j != i && h.is_up(j) && h.is_up(i) {
                h.report_up_between(i, j);
            }
        }
    }
    h.heal();
    // SWIM eventually tells every live node about every other live node.
    for a in 0..n {
        for b in 0..n {
            if a < b && h.is_up(a) && h.is_up(b) {
                let (na, nb) = (h.name(a), h.name(b));
                if h.db(a).node_state(&nb) != Some(networkdb::NodeState::Active)
                    || h.db(b).node_state(&na) != Some(networkdb::NodeState::Active)
                {
                    h.report_up_between(a, b);
                }
            }
        }
    }
    h.net.loss = 0.0;
    h.net.jitter = Duration::ZERO;
    let ok = h.run_until_true(Duration::from_secs(600), Duration::from_secs(1), |h| {
        settled(h, &networks).is_ok()
    });
    if !ok && std::env::var("DUMP").is_ok() {
        for i in 0..h.len() {
            if !h.is_up(i) {
                eprintln!("host{i} down");
                continue;
            }
            let db = h.db(i);
            let names: Vec<_> = (0..h.len())
                .filter(|&j| h.is_up(j))
                .map(|j| h.name(j))
                .collect();
            eprintln!(
                "== {} states: {:?}",
                db.name(),
                names
                    .iter()
                    .map(|n| (n.to_string(), db.node_state(n)))
                    .collect::<Vec<_>>()
            );
            for nw in networks {
                eprintln!(
                    "  {nw}: self attached {} in_sync {} attached: {:?} stats {:?}",
                    db.is_attached(nw, db.name()),
                    db.is_in_sync(nw),
                    names
                        .iter()
                        .filter(|n| db.is_attached(nw, n))
                        .map(|n| n.to_string())
                        .collect::<Vec<_>>(),
                    db.network_stats(nw)
                );
                db.walk_table("t1", |net, k, v, del| {
                    if net.as_str() == nw {
                        eprintln!("    {k} {} del={del}", utf8(v));
                    }
                    false
                });
                for (k, e) in db.table_by_network("t1", nw) {
                    eprintln!("    vis {k} owner {}", e.owner);
                }
            }
            eprintln!("  stats {:?}", db.stats());
        }
    }
    if ok {
        Ok(())
    } else {
        Err(format!(
            "seed {seed} n {n} long {long}: {:?}",
            settled(&h, &networks)
        ))
    }
}

fn sweep(seeds: std::ops::Range<u64>) {
    let mut fails = Vec::new();
    let only: Option<u64> = std::env::var("SEED").ok().map(|s| s.parse().unwrap());
    for seed in seeds {
        if only.is_some_and(|o| o != seed) {
            continue;
        }
        for (n, long, silent) in [
            (4, false, false),
            (6, true, false),
            (5, false, true),
            (5, true, true),
        ] {
            if let Err(e) = case(n, seed, long, silent) {
                fails.push(format!(
                    "{e}\n  replay: SEED={seed} cargo test --release -p networkdb --test stress -- --include-ignored"
                ));
            }
        }
    }
    for f in &fails {
        eprintln!("{f}");
    }
    assert!(fails.is_empty(), "{} failures", fails.len());
}

/// A fixed set of seeds, run in CI.
#[test]
fn stress_fixed_seeds() {
    sweep(160..163);
}

/// The long sweep (960 runs): `cargo test --release -p networkdb --test stress -- --ignored`.
#[test]
#[ignore = "long sweep; run on demand"]
fn stress_sweep() {
    sweep(160..400);
}
