//! `netagent`: the per-host node agent.
//!
//! Until the cluster transport exists, `netagent demo` runs the NetworkDB core of a few nodes
//! in one process on the in-memory harness (virtual time) and shows entries converging,
//! a failed node's entries hidden and restored, and a graceful leave.

use std::process::ExitCode;
use std::time::Duration;

use networkdb::harness::Harness;
use networkdb::{Config, NetworkDb};

const USAGE: &str = "usage: netagent demo";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("demo") if args.len() == 1 => match demo() {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("demo failed: {err}");
                ExitCode::FAILURE
            }
        },
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

const NODES: usize = 3;
const NETWORK: &str = "demo-net";
const TABLE: &str = "overlay_peer_table";

fn demo() -> Result<(), String> {
    println!(
        "netagent demo: {NODES} NetworkDB cores in one process, in-memory network, virtual time"
    );
    let mut h = Harness::cluster(NODES, Config::default(), 2026);
    let start = h.now();
    let at = |h: &Harness| format!("[t={:>6} ms]", (h.now() - start).as_millis());
    println!(
        "{} cluster formed: every node sees {} peers",
        at(&h),
        h.db(0).cluster_peers().len()
    );

    for i in 0..NODES {
        let now = h.now();
        h.db_mut(i)
            .join_network(now, NETWORK.into())
            .map_err(|e| e.to_string())?;
    }
    h.run_for(Duration::from_millis(500));
    println!(
        "{} all nodes joined {NETWORK}: {} participants",
        at(&h),
        h.db(0).peers(NETWORK).len()
    );

    for i in 0..NODES {
        let now = h.now();
        let key = format!("endpoint-{i}");
        let value = format!(
            "10.18.0.{}/24 02:42:c6:12:00:{:02x} host{}",
            10 + i,
            10 + i,
            i
        );
        h.db_mut(i)
            .create_entry(
                now,
                TABLE.into(),
                NETWORK.into(),
                key.into(),
                value.into_bytes(),
            )
            .map_err(|e| e.to_string())?;
        println!("{} node{i} publishes endpoint-{i}", at(&h));
    }
    let converged = h.run_until_true(Duration::from_secs(10), Duration::from_millis(50), |h| {
        (0..NODES).all(|i| h.db(i).table_by_network(TABLE, NETWORK).len() == NODES)
    });
    if !converged {
        return Err("entries did not converge within 10 s".into());
    }
    println!("{} converged: every node holds {NODES} endpoints", at(&h));
    print_table(h.db(1));

    println!("{} node2 is cut off; membership reports it failed", at(&h));
    h.isolate(2);
    h.report_down_at(0, 2);
    h.report_down_at(1, 2);
    h.run_for(Duration::from_millis(100));
    if h.db(0).table_by_network(TABLE, NETWORK).len() != NODES - 1 {
        return Err("a failed node's entry stayed visible".into());
    }
    println!(
        "{} node0 hides node2's endpoint (kept for its return)",
        at(&h)
    );
    h.heal();
    h.report_up_between(0, 2);
    h.report_up_between(1, 2);
    let restored = h.run_until_true(Duration::from_secs(10), Duration::from_millis(50), |h| {
        (0..NODES).all(|i| h.db(i).table_by_network(TABLE, NETWORK).len() == NODES)
    });
    if !restored {
        return Err("a returning node's entry was not restored".into());
    }
    println!(
        "{} node2 is back: its endpoint is visible again everywhere",
        at(&h)
    );

    println!("{} node1 leaves the cluster gracefully", at(&h));
    h.close(1);
    let gone = h.run_until_true(Duration::from_secs(10), Duration::from_millis(50), |h| {
        h.db(0).table_by_network(TABLE, NETWORK).len() == NODES - 1
    });
    if !gone {
        return Err("a departed node's entry stayed visible".into());
    }
    println!("{} node0 drops node1's endpoint for good", at(&h));
    print_table(h.db(0));
    let stats = h.db(0).stats();
    println!(
        "node0 sent {} datagrams and {} stream messages ({} bytes); demo OK",
        stats.datagrams_out, stats.streams_out, stats.bytes_out
    );
    Ok(())
}

fn print_table(db: &NetworkDb) {
    println!("  {} sees {TABLE} in {NETWORK}:", db.name());
    for (key, elem) in db.table_by_network(TABLE, NETWORK) {
        println!(
            "    {key} -> {} (owner {})",
            String::from_utf8_lossy(&elem.value),
            elem.owner
        );
    }
}
